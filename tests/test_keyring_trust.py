"""The keyring belongs to the store it encrypts (issue 10, item 2).

A store records, in its own backend, the key ids its values are sealed under — before
the first value sealed under a new id is written.  Opening it without those keys is a
ConfigError naming them and where the keyring was looked for, and nothing is written:
no keyring is made in its place.  With no keyring configured, the keyring is found
from the store (beside the config file or the SQLite file), never from the working
directory.  Every test runs from a scratch working directory, so a keyring that
followed the cwd would show up there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import clawstate
from _backends import (
    drop_schema,
    new_prefix,
    new_schema,
    pg_admin,
    pg_probe,
    pg_url,
    redis_client,
    redis_url,
)
from clawstate.backends.memory import MemoryBackend
from clawstate.config import load_config
from clawstate.errors import BackendUnavailable, ConfigError
from clawstate.keyring import Keyring
from clawstate.store import Store
from services import require, require_module

VAULT = {"vault": {"encrypt": True}}
SECRET = {"card": "4111-1111-1111-1111"}


def _kids(ring_path: Path) -> list[str]:
    return list(json.loads(ring_path.read_text())["keys"])


# -- where each kind of store lives ---------------------------------------------------


@dataclass
class Place:
    """A store on one backend: how to open it, and how to see what it holds."""

    kind: str
    url: str
    #: the keyring the store uses; None: found from the store (the SQLite default)
    keyring: Path
    explicit: bool
    #: everything the store holds, to prove that a refused open wrote nothing
    snapshot: Callable[[], Any]
    #: make the store look written before key ids were recorded
    forget_record: Callable[[], None]
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def open(self, **options: Any) -> clawstate.Store:
        if self.explicit:
            options.setdefault("keyring", f"file:{self.keyring}")
        return clawstate.open(self.url, sweep_interval=0, **{"namespaces": VAULT, **options})


def _sqlite_dump(db: Path) -> str:
    """What the file holds, logically (every table's rows and the schema): the file's
    bytes would also change when a WAL written by an earlier connection is merged into
    it by whichever connection closes last, which is not a write by the open tested."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def _sqlite_place(tmp: Path) -> Place:
    db = tmp / "data" / "state.db"

    def forget() -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM meta WHERE key = 'kids' OR key LIKE 'kid:%'")

    return Place(
        "sqlite",
        f"sqlite:///{db}",
        db.parent / "keyring.json",  # the default: beside the database file
        False,
        lambda: _sqlite_dump(db),
        forget,
    )


def _pg_place(tmp: Path) -> Place:
    require_module("psycopg")
    require("postgresql", pg_probe)
    schema = new_schema("cs_kt")

    def sql(statement: str, *args: Any) -> list[Any]:
        with pg_admin() as conn:
            cur = conn.execute(statement, args or None)
            return cur.fetchall() if cur.description else []

    def snapshot() -> dict[str, list[str]]:
        tables = sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            schema,
        )
        return {
            t: sorted(repr(r) for r in sql(f'SELECT * FROM "{schema}"."{t}"')) for (t,) in tables
        }

    place = Place(
        "postgresql",
        pg_url(schema),
        tmp / "keys" / "keyring.json",
        True,
        snapshot,
        lambda: sql(f"DELETE FROM \"{schema}\".meta WHERE key = 'kids' OR key LIKE 'kid:%%'"),
    )
    place.cleanup.append(lambda: drop_schema(schema))
    return place


def _redis_place(tmp: Path) -> Place:
    require_module("redis")
    client = redis_client()
    require("redis", client.ping)
    prefix = new_prefix()

    def keys() -> list[bytes]:
        return sorted(client.scan_iter(match=prefix + "*", count=1000))

    def snapshot() -> dict[bytes, Any]:
        """Each key's type and contents (not DUMP: its encoding may reorder fields)."""
        read = {
            b"string": client.get,
            b"hash": client.hgetall,
            b"set": client.smembers,
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"list": lambda k: client.lrange(k, 0, -1),
            b"stream": lambda k: client.xrange(k),
        }
        return {k: (t, read[t](k)) for k in keys() for t in [client.type(k)]}

    def forget() -> None:
        meta = prefix + "meta"
        fields = [f for f in client.hkeys(meta) if f == b"kids" or f.startswith(b"kid:")]
        if fields:
            client.hdel(meta, *fields)

    def drop() -> None:
        for k in keys():
            client.delete(k)
        client.close()

    place = Place(
        "redis",
        redis_url(prefix),
        tmp / "keys" / "keyring.json",
        True,
        snapshot,
        forget,
    )
    place.cleanup.append(drop)
    return place


PLACES: dict[str, Callable[[Path], Place]] = {
    "sqlite": _sqlite_place,
    "postgresql": _pg_place,
    "redis": _redis_place,
}


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory: a keyring that followed the cwd would appear here."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for var in ("CLAWSTATE_URL", "CLAWSTATE_KEYRING", "CLAWSTATE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return cwd


@pytest.fixture(params=sorted(PLACES))
def place(request: pytest.FixtureRequest, tmp_path: Path, elsewhere: Path) -> Iterator[Place]:
    made = PLACES[request.param](tmp_path)
    yield made
    for undo in made.cleanup:
        undo()


def _sealed(place: Place) -> list[str]:
    """Fill ``place`` with sealed and plain values; the key ids that sealed them."""
    with place.open() as store:
        store.namespace("vault").put("a", SECRET)
        store.namespace("vault").put("b", b"\x00raw")
        store.namespace("plain").put("p", 1)
    assert place.keyring.exists()
    return _kids(place.keyring)


def _no_keyring_files(*dirs: Path) -> list[Path]:
    return [p for d in dirs for p in d.rglob("*") if "keyring" in p.name or "keys" in p.name]


# -- a store with sealed values never runs without its keys ----------------------------


class TestRefusedWithoutItsKeys:
    def test_missing_keyring_is_refused_and_nothing_is_written(
        self, place: Place, elsewhere: Path, tmp_path: Path
    ) -> None:
        kids = _sealed(place)
        place.keyring.rename(tmp_path / "saved.json")
        before = place.snapshot()
        with pytest.raises(ConfigError) as info:
            place.open()
        message = str(info.value)
        assert info.value.field == "keyring.source"
        for kid in kids:
            assert repr(kid) in message
        assert str(place.keyring) in message  # where it looked
        assert place.snapshot() == before
        assert not place.keyring.exists()
        assert _no_keyring_files(elsewhere) == []
        # the real keyring back: everything reads, nothing was lost or replaced
        (tmp_path / "saved.json").rename(place.keyring)
        with place.open() as store:
            got = store.namespace("vault").get("a")
            assert got is not None and got.value == SECRET
        assert _kids(place.keyring) == kids

    def test_refused_even_for_plain_namespaces_and_every_opener(
        self, place: Place, tmp_path: Path
    ) -> None:
        _sealed(place)
        place.keyring.rename(tmp_path / "saved.json")
        before = place.snapshot()
        openers: list[Callable[[], Any]] = [
            lambda: place.open(),
            lambda: place.open(namespaces={}),  # no namespace encrypts
            lambda: place.open(create=False),
            lambda: clawstate.open_async(
                place.url, sweep_interval=0, keyring=f"file:{place.keyring}"
            ),
        ]
        for opener in openers:
            with pytest.raises(ConfigError, match="sealed under key id"):
                opener()
        assert place.snapshot() == before
        assert not place.keyring.exists()

    def test_a_keyring_lacking_a_key_is_refused(self, place: Place, tmp_path: Path) -> None:
        kids = _sealed(place)
        impostor = Keyring.from_source(f"file:{tmp_path / 'other.json'}")
        place.keyring.write_bytes((tmp_path / "other.json").read_bytes())
        before = place.snapshot()
        with pytest.raises(ConfigError) as info:
            place.open()
        assert repr(kids[0]) in str(info.value)
        assert repr(impostor.primary_id) in str(info.value)  # "it holds only …"
        assert place.snapshot() == before
        assert _kids(place.keyring) == [impostor.primary_id]  # not rotated, not merged

    def test_an_explicit_keyring_object_is_checked_too(self, place: Place) -> None:
        _sealed(place)
        with pytest.raises(ConfigError, match="sealed under key id"):
            clawstate.open(place.url, sweep_interval=0, keyring=Keyring.generate())

    def test_rotation_records_the_new_key_id(self, place: Place, tmp_path: Path) -> None:
        old = _sealed(place)
        saved = place.keyring.read_bytes()
        with place.open() as store:
            result = store.rotate_keys()
            assert result["rewrapped"] == 2
        new = result["primary"]
        assert _kids(place.keyring) == [*old, new]
        # the keyring as it was before the rotation lacks the new key: refused by name
        place.keyring.write_bytes(saved)
        with pytest.raises(ConfigError) as info:
            place.open()
        assert repr(new) in str(info.value)

    def test_a_key_id_is_recorded_before_anything_is_sealed_under_it(self, place: Place) -> None:
        with place.open() as store:
            backend: Any = store.backend

            def refuse(kids: Any) -> None:
                raise BackendUnavailable("record refused (test)")

            backend.record_key_ids = refuse
            try:
                with pytest.raises(BackendUnavailable):
                    store.namespace("vault").put("a", SECRET)
                with pytest.raises(BackendUnavailable):
                    store.namespace("vault").put_many([("m1", SECRET), ("m2", 2)])
                with pytest.raises(BackendUnavailable):
                    with store.transaction() as tx:
                        tx.namespace("vault").put("t", SECRET)
            finally:
                del backend.record_key_ids
            assert store.namespace("vault").get("a") is None
            assert store.namespace("vault").count() == 0
            store.namespace("vault").put("a", SECRET)  # recorded now, then sealed
            assert store.backend.key_ids() == set(_kids(place.keyring))

    def test_a_store_written_before_key_ids_were_recorded_is_surveyed(
        self, place: Place, tmp_path: Path
    ) -> None:
        kids = _sealed(place)
        place.forget_record()
        place.keyring.rename(tmp_path / "saved.json")
        before = place.snapshot()
        with pytest.raises(ConfigError) as info:
            place.open()
        assert repr(kids[0]) in str(info.value)
        assert place.snapshot() == before  # the survey's record waits for the check
        (tmp_path / "saved.json").rename(place.keyring)
        with place.open() as store:
            assert store.backend.key_ids() == set(kids)


class TestMemoryBackendRecord:
    """A memory store lives in one process: two Store handles over one backend."""

    def test_record_and_refusal(self, elsewhere: Path, tmp_path: Path) -> None:
        ring = tmp_path / "keys" / "keyring.json"
        cfg = load_config(None, url="memory://", sweep_interval=0, namespaces=VAULT)
        backend = MemoryBackend()
        first = Store(backend, cfg, keyring=Keyring.from_source(f"file:{ring}"))
        first.namespace("vault").put("a", SECRET)
        assert backend.key_ids() == set(_kids(ring))
        with pytest.raises(ConfigError) as info:
            Store(backend, cfg, keyring=Keyring.generate())
        assert repr(_kids(ring)[0]) in str(info.value)

    def test_without_a_source_the_keyring_lives_in_memory(self, elsewhere: Path) -> None:
        with clawstate.open("memory://", sweep_interval=0, namespaces=VAULT) as store:
            store.namespace("vault").put("a", SECRET)
            got = store.namespace("vault").get("a")
            assert got is not None and got.value == SECRET
        assert list(elsewhere.rglob("*")) == []


# -- the keyring is found from the store, never from the working directory --------------


class TestKeyringFollowsTheStore:
    @pytest.mark.parametrize("how", ["argument", "CLAWSTATE_URL", "config file"])
    def test_cd_elsewhere_finds_the_same_keyring(
        self, how: str, tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        project = tmp_path / "project"
        project.mkdir()
        db = project / "data" / "state.db"
        config = project / "clawstate.toml"
        config.write_text(
            '[store]\nurl = "sqlite:///data/state.db"\n[namespaces.vault]\nencrypt = true\n'
        )

        def opened() -> clawstate.Store:
            if how == "argument":
                return clawstate.open(f"sqlite:///{db}", sweep_interval=0, namespaces=VAULT)
            if how == "CLAWSTATE_URL":
                monkeypatch.setenv("CLAWSTATE_URL", f"sqlite:///{db}")
                return clawstate.open(sweep_interval=0, namespaces=VAULT)
            return clawstate.open(config=str(config), sweep_interval=0)

        monkeypatch.chdir(project)
        with opened() as store:
            store.namespace("vault").put("a", SECRET)
        expected = (
            project / ".clawstate" / "keyring.json"
            if how == "config file"
            else db.parent / "keyring.json"
        )
        assert expected.exists()
        kids = _kids(expected)
        for cwd in (elsewhere, tmp_path, Path("/")):
            monkeypatch.chdir(cwd)
            with opened() as store:
                got = store.namespace("vault").get("a")
                assert got is not None and got.value == SECRET
                store.namespace("vault").put("b", SECRET)  # new writes: the same key
            assert _kids(expected) == kids
        assert _no_keyring_files(elsewhere) == []

    def test_a_fresh_store_creates_its_keyring_beside_it(
        self, tmp_path: Path, elsewhere: Path
    ) -> None:
        db = tmp_path / "fresh" / "state.db"
        with clawstate.open(f"sqlite:///{db}", sweep_interval=0, namespaces=VAULT) as store:
            store.namespace("plain").put("p", 1)  # plain values: no keyring needed yet
            assert not (db.parent / "keyring.json").exists()
            store.namespace("vault").put("a", SECRET)
        ring = db.parent / "keyring.json"
        assert ring.exists() and (ring.stat().st_mode & 0o777) == 0o600
        assert _no_keyring_files(elsewhere) == []
        with clawstate.open(f"sqlite:///{db}", sweep_interval=0) as store:
            assert store.backend.key_ids() == set(_kids(ring))

    @pytest.mark.parametrize("kind", ["postgresql", "redis"])
    def test_a_server_store_without_a_config_needs_an_explicit_keyring(
        self, kind: str, tmp_path: Path, elsewhere: Path
    ) -> None:
        place = PLACES[kind](tmp_path)
        try:
            with clawstate.open(place.url, sweep_interval=0, namespaces=VAULT) as store:
                store.namespace("plain").put("p", 1)
                with pytest.raises(ConfigError) as info:
                    store.namespace("vault").put("a", SECRET)
                assert info.value.field == "keyring.source"
                assert "has no directory" in str(info.value)
                assert store.backend.count("vault", time.time()) == 0
                assert store.backend.key_ids() == set()
            assert _no_keyring_files(elsewhere, tmp_path) == []
        finally:
            for undo in place.cleanup:
                undo()

    @pytest.mark.parametrize(
        ("config", "url", "expected"),
        [
            # no config file: beside the SQLite file, else none (a server store needs one)
            (None, "sqlite:////srv/app/state.db", "file:/srv/app/keyring.json"),
            (None, "sqlite:///rel/state.db", "file:{cwd}/rel/keyring.json"),
            (None, None, "file:{cwd}/.clawstate/keyring.json"),
            (None, "postgresql://u@h/db", None),
            (None, "redis://h:6379/0", None),
            (None, "memory://", None),
            # a config file naming the store (or defaulting it): beside the file
            ("file", None, "file:{cfg}/.clawstate/keyring.json"),
            ("file", "sqlite:////srv/app/state.db", "file:{cfg}/.clawstate/keyring.json"),
            ("file", "sqlite:///rel/state.db", "file:{cfg}/.clawstate/keyring.json"),
            ("file", "postgresql://u@h/db", "file:{cfg}/.clawstate/keyring.json"),
            ("file", "memory://", "file:{cfg}/.clawstate/keyring.json"),
            # a config file, but the URL comes from an argument: found from the URL
            ("argument", "sqlite:////srv/app/state.db", "file:/srv/app/keyring.json"),
            ("argument", "postgresql://u@h/db", None),
            ("env", "sqlite:////srv/app/state.db", "file:/srv/app/keyring.json"),
            ("env", "redis://h:6379/0", None),
        ],
    )
    def test_default_keyring_resolution(
        self, config: str | None, url: str | None, expected: str | None, tmp_path: Path
    ) -> None:
        cfg_dir = tmp_path / "cfg"
        cfg_dir.mkdir()
        path, env, args = None, {}, {}
        if config is not None:
            path = cfg_dir / "clawstate.toml"
            path.write_text(f'[store]\nurl = "{url}"\n' if config == "file" and url else "")
        if config == "env":
            env["CLAWSTATE_URL"] = url
        elif config in (None, "argument"):
            args["url"] = url
        got = load_config(path, env=env, **args).keyring
        want = expected and expected.format(cwd=Path.cwd().as_posix(), cfg=cfg_dir.as_posix())
        assert got == want

    def test_an_explicit_keyring_wins(self, tmp_path: Path) -> None:
        for url in ("sqlite:////srv/state.db", "postgresql://u@h/db", "memory://"):
            cfg = load_config(None, env={}, url=url, keyring="file:/etc/k.json")
            assert cfg.keyring == "file:/etc/k.json"
        cfg = load_config(None, env={"CLAWSTATE_KEYRING": "env:KEYS"}, url="memory://")
        assert cfg.keyring == "env:KEYS"


# -- the CLI and the server, run from another working directory ------------------------


def _cli(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


@pytest.fixture
def sealed_db(tmp_path: Path, elsewhere: Path) -> tuple[str, Path]:
    """An SQLite store holding sealed values; its keyring beside it."""
    db = tmp_path / "data" / "state.db"
    with clawstate.open(f"sqlite:///{db}", sweep_interval=0, namespaces=VAULT) as store:
        store.namespace("vault").put("a", SECRET)
    return f"sqlite:///{db}", db.parent / "keyring.json"


class TestCliFromAnotherDirectory:
    def test_reads_writes_and_rotation_use_the_stores_keyring(
        self, sealed_db: tuple[str, Path], elsewhere: Path
    ) -> None:
        url, ring = sealed_db
        kids = _kids(ring)
        got = _cli(elsewhere, "--url", url, "get", "vault", "a", "--value")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout) == SECRET
        put = _cli(elsewhere, "--url", url, "put", "plain", "k", '{"n": 1}')
        assert put.returncode == 0, put.stderr
        rotated = _cli(elsewhere, "--url", url, "keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert len(_kids(ring)) == len(kids) + 1  # rotated beside the store
        assert _no_keyring_files(elsewhere) == []
        checked = _cli(elsewhere, "--url", url, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with clawstate.open(url, sweep_interval=0) as store:
            assert store.backend.key_ids() == set(_kids(ring))

    @pytest.mark.parametrize(
        "args",
        [
            ("get", "vault", "a"),
            ("get", "plain", "nothing"),
            ("put", "plain", "k", "1"),
            ("delete", "vault", "a"),
            ("scan", "vault"),
            ("stats",),
            ("check",),
            ("keys", "rotate"),
            ("token", "list"),
        ],
    )
    def test_every_command_refuses_a_store_without_its_keys(
        self, args: tuple[str, ...], sealed_db: tuple[str, Path], elsewhere: Path, tmp_path: Path
    ) -> None:
        url, ring = sealed_db
        kid = _kids(ring)[0]
        ring.rename(tmp_path / "saved.json")
        db = Path(url[len("sqlite:///") :])
        before = db.read_bytes()
        run = _cli(elsewhere, "--url", url, *args)
        assert run.returncode == 2  # a ConfigError: docs/cli.md's exit status of bad config
        said = run.stderr.replace("\n", "")
        assert "ConfigError" in said and kid in said and str(ring) in said, run.stderr
        assert db.read_bytes() == before
        assert not ring.exists()
        assert _no_keyring_files(elsewhere) == []


class TestServerFromAnotherDirectory:
    def test_serves_sealed_values_with_the_stores_keyring(
        self, sealed_db: tuple[str, Path], elsewhere: Path
    ) -> None:
        require_module("litestar")
        require_module("httpx")
        from clawstate.server.testing import ServerProcess

        url, ring = sealed_db
        kids = _kids(ring)
        with ServerProcess(url, cwd=elsewhere) as server:
            remote = clawstate.open(server.url, token=server.admin_token)
            try:
                got = remote.namespace("vault").get("a")
                assert got is not None and got.value == SECRET
            finally:
                remote.close()
        assert _kids(ring) == kids
        assert _no_keyring_files(elsewhere) == []

    def test_refuses_to_start_without_the_stores_keys(
        self, sealed_db: tuple[str, Path], elsewhere: Path, tmp_path: Path
    ) -> None:
        require_module("litestar")
        require_module("httpx")
        from clawstate.server.testing import ServerProcess

        url, ring = sealed_db
        kid = _kids(ring)[0]
        ring.rename(tmp_path / "saved.json")
        db = Path(url[len("sqlite:///") :])
        before = db.read_bytes()
        server = ServerProcess(url, cwd=elsewhere, startup_timeout=60)
        try:
            with pytest.raises(RuntimeError, match="exited early"):
                server.start()
            assert server.proc is not None
            assert server.proc.wait(60) == 2  # ConfigError: exit 2 (docs/cli.md)
            for _ in range(200):  # the stderr pump may still be reading the last lines
                if kid in server.logs.replace("\n", ""):
                    break
                time.sleep(0.05)
            said = server.logs.replace("\n", "")
            assert "ConfigError" in said and kid in said and str(ring) in said, said
        finally:
            server.close()
        assert db.read_bytes() == before
        assert not ring.exists()
        assert _no_keyring_files(elsewhere) == []
