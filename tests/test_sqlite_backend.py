"""What is specific to the embedded SQLite backend: files, processes, schema,
network filesystems, encryption at rest, the background sweep."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import clawstate
from clawstate.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from clawstate.backends.sqlite import files as sqlite_backend
from clawstate.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


def _open(path: Path, **options: object) -> clawstate.Store:
    options.setdefault("sweep_interval", 0)
    options.setdefault("keyring", f"file:{path.parent / 'keys.json'}")
    return clawstate.open(f"sqlite:///{path}", **options)


def test_wal_mode_and_synchronous_follow_durability(tmp_path: Path) -> None:
    for mode, expected in (("process", 1), ("power", 2)):  # NORMAL = 1, FULL = 2
        db = tmp_path / f"{mode}.db"
        with _open(db, durability=mode) as store:
            store.namespace("a").put("k", 1)
            backend = store.backend
            assert isinstance(backend, SQLiteBackend)
            conn = backend._conn()
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == expected


def test_bad_durability_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(clawstate.ConfigError) as err:
        _open(tmp_path / "x.db", durability="eventually")
    assert "durability" in str(err.value)


def test_network_filesystem_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "_mount_fstype", lambda path: "nfs4")
    with pytest.raises(clawstate.ConfigError) as err:
        _open(tmp_path / "x.db")
    assert "network filesystem" in str(err.value) and "nfs4" in str(err.value)
    assert not (tmp_path / "x.db").exists()


def test_local_filesystem_type_is_read_from_proc_mounts(tmp_path: Path) -> None:
    """The type must come back (None would let a network mount through unnoticed), and be
    the one the kernel's mount table gives for this directory."""
    fstype = sqlite_backend._mount_fstype(tmp_path)
    assert isinstance(fstype, str) and fstype, f"no filesystem type for {tmp_path}"
    assert fstype not in sqlite_backend.NETWORK_FILESYSTEMS
    df = subprocess.run(
        ["df", "--output=fstype", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert fstype == df.stdout.split()[-1]


#: Mount tables and the type each must give for /srv/data/db/x.db: the longest
#: mountpoint holding the path wins, ``\040`` is a space, a prefix of a name is not a
#: parent directory.
MOUNT_TABLES = [
    ("/dev/sda1 / ext4 rw 0 0\nnas:/x /srv nfs4 rw 0 0\n", "nfs4"),
    ("nas:/x /srv nfs4 rw 0 0\n/dev/sdb1 /srv/data xfs rw 0 0\n", "xfs"),
    ("/dev/sda1 / ext4 rw 0 0\nnas:/x /srv/dat cifs rw 0 0\n", "ext4"),
    ("/dev/sda1 / ext4 rw 0 0\n//h/s /srv/data\\040db smb3 rw 0 0\n", "ext4"),
    ("/dev/sda1 / ext4 rw 0 0\nnas:/x /srv/data/db/x.db nfs rw 0 0\n", "nfs"),
    ("garbage\n/dev/sda1 / btrfs rw 0 0\n", "btrfs"),
]


@pytest.mark.parametrize(("table", "expected"), MOUNT_TABLES)
def test_the_mount_holding_the_path_gives_the_type(
    table: str, expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "mounts"
    fake.write_text(table)
    real_open = open

    def fake_open(path: str, *args: object, **kwargs: object) -> object:
        return real_open(fake if path == "/proc/mounts" else path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(sqlite_backend, "open", fake_open, raising=False)
    assert sqlite_backend._mount_fstype(Path("/srv/data/db/x.db")) == expected


def test_schema_is_versioned_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with _open(db) as store:
        store.namespace("a").put("k", 1)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == (
        SCHEMA_VERSION
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(clawstate.ConfigError) as err:
        _open(db)
    assert "schema version" in str(err.value)


def test_reopen_keeps_data_and_versions(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with _open(db) as store:
        store.namespace("a").put("k", {"v": 1})
        store.namespace("a").put("k", {"v": 2})
        last = store.last_seq
    with _open(db) as store:
        item = store.namespace("a").get("k")
        assert item is not None and item.value == {"v": 2} and item.version == 2
        assert store.last_seq == last
        assert store.check().ok


_CAS_CHILD = textwrap.dedent(
    """
    import sys, clawstate
    store = clawstate.open("sqlite:///" + sys.argv[1], sweep_interval=0)
    ns = store.namespace("counters")
    done = 0
    while done < int(sys.argv[2]):
        cur = ns.get("c")
        try:
            if cur is None:
                ns.put("c", 1, if_absent=True)
            else:
                ns.put("c", cur.value + 1, if_version=cur.version)
        except clawstate.VersionConflict:
            continue
        done += 1
    store.close()
    """
)


def test_two_processes_share_one_file_with_exact_cas(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    with _open(db) as store:
        store.namespace("counters")  # create the file before the race
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    procs = [
        subprocess.Popen([sys.executable, "-c", _CAS_CHILD, str(db), "150"], env=env)
        for _ in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    with _open(db) as store:
        item = store.namespace("counters").get("c")
        assert item is not None
        assert item.value == 450 and item.version == 450
        changes = [c for c in store.watch(0, timeout=0) if c.key == "c"]
        assert [c.version for c in changes] == list(range(1, 451))
        assert store.check().ok


def test_watch_sees_commits_from_another_process(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with _open(db) as store:
        start = store.last_seq
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        code = (
            "import sys, clawstate; s = clawstate.open('sqlite:///' + sys.argv[1], "
            "sweep_interval=0); [s.namespace('x').put(f'k{i}', i) for i in range(20)]"
        )
        child = subprocess.Popen([sys.executable, "-c", code, str(db)], env=env)
        seen = []
        for change in store.watch(start, timeout=10):
            seen.append(change.key)
            if len(seen) == 20:
                break
        assert child.wait(timeout=60) == 0
        assert seen == [f"k{i}" for i in range(20)]


def test_encrypted_namespace_leaves_no_plaintext_in_the_file(tmp_path: Path) -> None:
    db = tmp_path / "enc.db"
    secret = "PLAINTEXT-MARKER-4242"
    with _open(db, namespaces={"vault": {"encrypt": True}}) as store:
        for i in range(50):
            store.namespace("vault").put(f"k{i}", {"secret": secret, "i": i})
        store.namespace("open").put("k", {"note": "VISIBLE-MARKER"})
        conn = store.backend._conn()  # type: ignore[attr-defined]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("enc.db*"))
    assert secret.encode() not in raw
    assert b"VISIBLE-MARKER" in raw  # the check can see plaintext when it is there
    with _open(db, namespaces={"vault": {"encrypt": True}}) as store:
        item = store.namespace("vault").get("k7")
        assert item is not None and item.value == {"secret": secret, "i": 7}
        assert store.check(deep=True).ok


def test_tampered_ciphertext_is_an_error_never_wrong_data(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with _open(db, namespaces={"vault": {"encrypt": True}}) as store:
        store.namespace("vault").put("k", {"secret": "s3cr3t"})
    conn = sqlite3.connect(db)
    (value,) = conn.execute("SELECT value FROM items WHERE key = 'k'").fetchone()
    tampered = bytearray(value)
    tampered[-5] ^= 0x01
    conn.execute("UPDATE items SET value = ? WHERE key = 'k'", (bytes(tampered),))
    conn.commit()
    conn.close()
    with _open(db, namespaces={"vault": {"encrypt": True}}) as store:
        with pytest.raises(clawstate.IntegrityError):
            store.namespace("vault").get("k")
        report = store.check(deep=True)
        assert not report.ok and any("vault/k" in p for p in report.problems)


def test_rotation_rewraps_everything_and_all_stays_readable(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    opts: dict[str, object] = {"namespaces": {"vault": {"encrypt": True}}}
    with _open(db, **opts) as store:
        vault = store.namespace("vault")
        for i in range(600):
            vault.put(f"k{i}", {"i": i})
        before = {k: vault.get(k) for k in ("k0", "k599")}
        calls: list[tuple[int, int]] = []
        result = store.rotate_keys(progress=lambda done, total: calls.append((done, total)))
        assert result["rewrapped"] == 600 and calls[-1] == (600, 600)
        primary = result["primary"]
        for key, old in before.items():
            new = vault.get(key)
            assert new is not None and old is not None
            assert (new.value, new.version, new.etag) == (old.value, old.version, old.etag)
    # A second process (fresh keyring load) reads everything; every header names the new key.
    with _open(db, **opts) as store:
        vault = store.namespace("vault")
        assert [vault.get(f"k{i}").value for i in range(600)] == [{"i": i} for i in range(600)]  # type: ignore[union-attr]
        for st in store.backend.iter_items("vault"):
            assert vault._codec.describe(st.value)["kid"] == primary
        assert store.check(deep=True).ok


def test_background_sweep_purges_expired_items(tmp_path: Path) -> None:
    db = tmp_path / "sw.db"
    with clawstate.open(f"sqlite:///{db}", sweep_interval=0.05) as store:
        ns = store.namespace("s")
        ns.put("gone", 1, ttl=0.05)
        ns.put("kept", 2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(c.op == "expire" and c.key == "gone" for c in store.watch(0, timeout=0)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the background sweep never purged the expired item")
        assert ns.get("gone") is None and ns.get("kept") is not None
        assert store.check().ok


# -- versions never repeat (docs/backends.md), across processes and upgrades ------------------


def test_the_version_floor_is_durable_across_reopen(tmp_path: Path) -> None:
    """The floor is in the file, not the process: a store reopened after a delete (or
    a sweep) still re-creates the key above every version it had."""
    db = tmp_path / "floor.db"
    clock = FakeClock()
    with _open(db, clock=clock) as store:
        ns = store.namespace("a")
        for i in range(3):
            ns.put("k", i)
        assert ns.delete("k") is True
        assert ns.put("t", 1, ttl=5).version == 4  # above the deleted k's 3
        clock.advance(5)
        assert store.sweep()["expired"] == 1
    with _open(db, clock=clock) as store:
        ns = store.namespace("a")
        assert ns.put("k", "again").version == 5  # the sweep's floor (4) + 1
        with pytest.raises(clawstate.VersionConflict):
            ns.put("k", "stale", if_version=1)
        assert store.namespace("b").put("k", 1).version == 1
        assert store.check().ok


def test_an_older_store_gets_its_floors_from_the_change_log(tmp_path: Path) -> None:
    """Upgrading a store written before version floors: the migration starts each
    namespace's floor from the deletes and expiries its change log still holds."""
    db = tmp_path / "old.db"
    with _open(db) as store:
        ns = store.namespace("a")
        for i in range(4):
            ns.put("k", i)
        ns.delete("k")
        store.namespace("b").put("k", 1)
    # Back to the version before the floors' migration (later ones replay too).
    from clawstate.backends.sqlite.schema import _MIGRATIONS

    floors = next(i for i, m in enumerate(_MIGRATIONS) if "version_floors" in m[0])
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE version_floors")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (floors,))
    conn.commit()
    conn.close()
    with _open(db) as store:
        assert store.namespace("a").put("k", "again").version == 5
        assert store.namespace("b").put("new", 1).version == 1
        assert store.check().ok
