"""``check()`` is the crash tests' oracle, so every failure branch of it is shown to fire.

Each backend's store is seeded into a sound state that exercises what a checker must not
mistake for damage — TTLs (expired and swept, expired and not swept, overwritten after
expiry), deletes and re-creations, transactions, a change log trimmed by retention so
that items are older than the log, events, an audit chain — and then damaged one way at
a time: raw ``sqlite3`` edits (and garbage pages) on the closed SQLite file, raw SQL on
the PostgreSQL schema, raw commands on the Redis keys, direct edits of the memory
backend.  For each, ``Store.check()`` and ``clawstate check`` must name the problem and
(the CLI) exit 1 with a JSON report — never a traceback.  The sound store must report
nothing.

Also here: the files the embedded store creates are owner-only (0600 files, 0700
directories), and read commands on a missing store say "no store at …" and create
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import typer.main

import clawstate
from clawstate import ConfigError, IntegrityError
from clawstate.backends.memory import MemoryBackend
from clawstate.server.audit import append as audit_append
from clawstate.testing import FakeClock
from clawstate.types import Change
from services import require_module

ROOT = Path(__file__).resolve().parent.parent
#: Changes older than this are trimmed by a sweep (the seeded stores use a fake clock).
RETENTION = 100.0


# -- a sound store that looks like real use ------------------------------------------------


def _seed(store: clawstate.Store, clock: FakeClock) -> None:
    """Everything a checker must accept.  Afterwards the log starts after seq 1 (trimmed),
    ``orders/old3``… are older than the log, ``orders/new1`` and ``orders/twice`` (two
    retained puts) are plain live items, and ``carts`` holds expired items swept and
    unswept."""
    orders, carts = store.namespace("orders"), store.namespace("carts")
    for i in range(6):
        orders.put(f"old{i}", {"i": i})
    orders.delete("old0")
    orders.put("old1", {"i": 11})
    carts.put("gone", 1)
    carts.delete("gone")
    carts.put("reborn", 1)
    carts.delete("reborn")
    carts.put("short", 1, ttl=10)
    clock.advance(20)
    store.sweep()  # purges "short" with an expire row
    clock.advance(RETENTION * 2)
    orders.put("new1", {"n": 1})
    orders.put("twice", 1)
    orders.put("twice", 2)
    orders.put("old2", {"i": 22})  # overwrites an item whose earlier put is trimmed
    carts.put("reborn", 2)  # re-created after a trimmed delete
    carts.put("lapsed", 1, ttl=5)
    carts.put("stale", 1, ttl=5)
    with store.transaction() as tx:
        tx.namespace("orders").put("tx1", {"t": 1})
        tx.namespace("carts").put("tx2", {"t": 2})
    carts.put("idem", 1, idempotency_key="req-1")
    carts.put("idem", 1, idempotency_key="req-1")  # a replay: applied once
    if store.backend.capabilities.events:
        store.events.append("order-1", [clawstate.Event("Created", {"total": 9})])
    store.sweep()  # trims every row older than RETENTION: the first-phase history
    clock.advance(10)  # "lapsed" and "stale" expire, unswept
    carts.put("stale", 2)  # a put over an expired item starts it afresh
    assert carts.delete("lapsed") is False  # expired: absent, logs nothing
    audit_append(store, [{"action": "test", "n": i} for i in range(3)])
    backend = store.backend
    first = backend.first_seq()
    assert first > 1, "the seed must leave a trimmed log"
    old3 = store.namespace("orders").get("old3")
    assert old3 is not None


def _problems(report: clawstate.CheckReport) -> str:
    return "\n".join(report.problems)


def _assert_names(text: str, needles: list[str]) -> None:
    for needle in needles:
        assert needle in text, f"{needle!r} not reported in:\n{text}"


def _env(keyring: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["COLUMNS"] = "200"
    if keyring is not None:
        env["CLAWSTATE_KEYRING"] = keyring
    return env


def _cli(
    args: list[str], cwd: Path, *, keyring: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=cwd,
        env=_env(keyring),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli_check(
    url: str, cwd: Path, needles: list[str], *, ok: bool = False, keyring: str | None = None
) -> None:
    """``clawstate check``: a JSON report naming every needle, exit 1 (0 when ``ok``)."""
    out = _cli(["--url", url, "check"], cwd, keyring=keyring)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == (0 if ok else 1), out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is ok
    _assert_names("\n".join(report["problems"]), needles)


# -- SQLite --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One way to damage a store: raw edits, then what check must say about it."""

    name: str
    edit: Any  # backend-specific: SQL statements, a callable…
    needles: list[str] = field(default_factory=list)
    #: damage so deep that opening the store already refuses it (IntegrityError)
    open_may_fail: bool = False


def _ns(name: str) -> str:
    return f"(SELECT id FROM namespaces WHERE name = '{name}')"


def _garbage(offset_pages: int, pages: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with open(path, "r+b") as fh:
            fh.seek(offset_pages * 4096)
            fh.write(os.urandom(pages * 4096))

    return damage


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _index_out_of_step(path: Path) -> None:
    """Redefine an index under its data: SQLite's own integrity_check notices."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX items_expiry ON items (created_at) "
        "WHERE expires_at IS NOT NULL' WHERE name = 'items_expiry'"
    )
    conn.commit()
    conn.close()


_MAX = "(SELECT MAX(seq) FROM changes)"
_NEW1 = f"ns = {_ns('orders')} AND key = 'new1'"
SQLITE_DAMAGE = [
    Damage("integrity_check", _index_out_of_step, ["integrity_check", "items_expiry"]),
    Damage("garbage pages", _garbage(8, 40), ["malformed"], open_may_fail=True),
    Damage("truncated file", _truncate, ["malformed"], open_may_fail=True),
    Damage(
        "item version bumped",
        [f"UPDATE items SET version = version + 1 WHERE {_NEW1}"],
        ["no matching change-log row: orders/new1", "differ from their newest", "orders/new1"],
    ),
    Damage(
        "item's change row names another key",
        [f"UPDATE changes SET key = 'elsewhere' WHERE seq = (SELECT seq FROM items WHERE {_NEW1})"],
        ["no matching change-log row: orders/new1", "no item", "orders/elsewhere"],
    ),
    Damage(
        "put row whose item is gone",
        [f"DELETE FROM items WHERE {_NEW1}"],
        ["last written by a put", "no later delete or expire", "orders/new1"],
    ),
    Damage(
        "delete row but the item is kept",
        [
            "INSERT INTO changes (seq, ns, key, op, version, ts) SELECT "
            f"{_MAX} + 1, ns, key, 1, version, updated_at FROM items WHERE {_NEW1}"
        ],
        ["exist although their newest change-log row is a delete", "orders/new1"],
    ),
    Damage(
        "log version beyond the item's",
        [
            "INSERT INTO changes (seq, ns, key, op, version, ts) SELECT "
            f"{_MAX} + 1, ns, key, 0, version + 1, updated_at FROM items WHERE {_NEW1}"
        ],
        ["differ from their newest change-log row", "orders/new1", "log: seq"],
    ),
    Damage(
        "gap in the log",
        [
            "DELETE FROM changes WHERE seq = (SELECT MIN(seq) FROM changes "
            f"WHERE ns = {_ns('orders')} AND key = 'twice')"
        ],
        ["misses 1 seqs"],
    ),
    Damage(
        "seq beyond the log",
        [f"UPDATE items SET seq = {_MAX} + 10 WHERE ns = {_ns('orders')} AND key = 'old3'"],
        ["beyond the change log's last", "orders/old3"],
    ),
    Damage(
        "orphans",
        ["DELETE FROM namespaces WHERE name = 'carts'"],
        ["items belong to no namespace", "change-log rows belong to no namespace"],
    ),
    Damage(
        "impossible item metadata",
        [f"UPDATE items SET updated_at = created_at - 1 WHERE {_NEW1}"],
        ["impossible metadata"],
    ),
    Damage(
        "impossible change op",
        [f"UPDATE changes SET op = 9 WHERE seq = {_MAX}"],
        ["impossible seq, version or op"],
    ),
    Damage("audit record rewritten", "audit", ["audit log:", "record 2"]),
]


def _tamper_audit(store: clawstate.Store) -> None:
    """Rewrite one record through the store: items and log stay consistent, the chain not."""
    audit = store._system_namespace("_audit")
    rec = audit.get(f"{2:020d}")
    assert rec is not None
    audit.put(rec.key, {**rec.value, "action": "rewritten"})


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed, sound, seeded SQLite store file to copy for each case."""
    path = tmp_path_factory.mktemp("template") / "state.db"
    clock = FakeClock()
    with clawstate.open(
        f"sqlite:///{path}", clock=clock, sweep_interval=0, changelog_retention=RETENTION
    ) as store:
        _seed(store, clock)
    assert not path.with_name("state.db-wal").exists()  # closed: everything in the file
    return path


def _sqlite_copy(template: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the template store: its file and whatever lives beside it (the keyring)."""
    for item in template.parent.iterdir():
        shutil.copy2(item, tmp_path / item.name)
    path = tmp_path / template.name
    return path, f"sqlite:///{path}"


class TestSQLite:
    def test_a_sound_store_reports_nothing(self, sqlite_template: Path, tmp_path: Path) -> None:
        _, url = _sqlite_copy(sqlite_template, tmp_path)
        with clawstate.open(url, sweep_interval=0) as store:
            report = store.check(deep=True)
            assert report.ok, report.problems
            assert report.checked["audit_records"] == 3
            assert report.checked["items"] > 0 and report.checked["changes"] > 0
        _cli_check(url, tmp_path, [], ok=True)

    @pytest.mark.parametrize("damage", SQLITE_DAMAGE, ids=lambda d: d.name)
    def test_each_damage_is_named_and_exits_1(
        self, damage: Damage, sqlite_template: Path, tmp_path: Path
    ) -> None:
        path, url = _sqlite_copy(sqlite_template, tmp_path)
        if damage.edit == "audit":
            with clawstate.open(url, sweep_interval=0) as store:
                _tamper_audit(store)
        elif callable(damage.edit):
            damage.edit(path)
        else:
            conn = sqlite3.connect(path)
            for statement in damage.edit:
                assert conn.execute(statement).rowcount != 0, statement
            conn.commit()
            conn.close()
        try:
            with clawstate.open(url, sweep_interval=0) as store:
                report = store.check()
        except IntegrityError as exc:
            assert damage.open_may_fail, exc
            text = str(exc)
        else:
            assert not report.ok
            text = _problems(report)
        _assert_names(text, damage.needles)
        _cli_check(url, tmp_path, damage.needles)

    def test_a_file_that_is_not_a_database(self, sqlite_template: Path, tmp_path: Path) -> None:
        """Garbage in the header page: opening is an IntegrityError, ``check`` a report."""
        path, url = _sqlite_copy(sqlite_template, tmp_path)
        _garbage(0, 1)(path)
        with pytest.raises(IntegrityError) as err:
            clawstate.open(url, sweep_interval=0)
        assert "not a database" in str(err.value)
        _cli_check(url, tmp_path, ["damaged", "not a database"])
        other = _cli(["--url", url, "get", "orders", "new1"], tmp_path)
        assert other.returncode == 1 and "IntegrityError" in other.stderr, other.stderr
        assert "Traceback" not in other.stderr

    def test_damaged_data_pages_in_a_store_that_still_opens(self, tmp_path: Path) -> None:
        """Garbage in the middle of a larger file: the store opens (its schema pages are
        intact), reads of the damaged pages are IntegrityErrors — translated at the edge,
        not BackendUnavailable ("retry later") — and ``check`` reports the damage."""
        path = tmp_path / "big.db"
        url = f"sqlite:///{path}"
        with clawstate.open(url, sweep_interval=0) as store:
            for start in range(0, 3000, 500):
                store.namespace("big").put_many(
                    [(f"k{i:05d}", "x" * 200) for i in range(start, start + 500)]
                )
        pages = path.stat().st_size // 4096
        _garbage(pages // 2, 5)(path)
        with clawstate.open(url, sweep_interval=0) as store:
            with pytest.raises(IntegrityError) as err:
                cursor: str | None = None
                while True:
                    page = store.namespace("big").scan(limit=1000, cursor=cursor)
                    if page.cursor is None:
                        break
                    cursor = page.cursor
            assert "damaged" in str(err.value)
            with pytest.raises(IntegrityError):
                store.namespace("big").count()
            # stats() reads the per-namespace counters, not the damaged item pages.
            assert store.stats()["namespaces"]["big"]["items"] == 3000
            report = store.check()
        assert not report.ok
        _assert_names(_problems(report), ["malformed", "could not check"])
        _cli_check(url, tmp_path, ["malformed"])


# -- memory (the reference backend: damaged through its own structures) --------------------


def _mem(store: clawstate.Store) -> MemoryBackend:
    backend = store.backend
    assert isinstance(backend, MemoryBackend)
    return backend


def _mem_drop_item(b: MemoryBackend) -> None:
    ns = b._data["orders"]
    del ns.items["new1"]
    ns.keys.remove("new1")


def _mem_bump_version(b: MemoryBackend) -> None:
    ns = b._data["orders"]
    ns.items["new1"] = msgspec.structs.replace(
        ns.items["new1"], version=ns.items["new1"].version + 1
    )


def _mem_log_delete(b: MemoryBackend) -> None:
    it = b._data["orders"].items["new1"]
    b._seq += 1
    b._changes.append(Change(b._seq, "orders", "new1", "delete", it.version, it.updated_at))


def _mem_gap(b: MemoryBackend) -> None:
    first = min(c.seq for c in b._changes if c.key == "twice")
    b._changes = [c for c in b._changes if c.seq != first]


MEMORY_DAMAGE = [
    Damage("put row whose item is gone", _mem_drop_item, ["orders/new1", "no item"]),
    Damage("item version bumped", _mem_bump_version, ["orders/new1", "differs from"]),
    Damage("delete row but the item is kept", _mem_log_delete, ["orders/new1", "exists"]),
    Damage("gap in the log", _mem_gap, ["gap-free"]),
]


class TestMemory:
    def test_a_sound_store_reports_nothing(self) -> None:
        clock = FakeClock()
        with clawstate.open(
            "memory://", clock=clock, sweep_interval=0, changelog_retention=RETENTION
        ) as store:
            _seed(store, clock)
            report = store.check(deep=True)
            assert report.ok, report.problems

    @pytest.mark.parametrize("damage", MEMORY_DAMAGE, ids=lambda d: d.name)
    def test_each_damage_is_named(self, damage: Damage) -> None:
        clock = FakeClock()
        with clawstate.open(
            "memory://", clock=clock, sweep_interval=0, changelog_retention=RETENTION
        ) as store:
            _seed(store, clock)
            damage.edit(_mem(store))
            report = store.check()
        assert not report.ok
        _assert_names(_problems(report), damage.needles)


# -- PostgreSQL ----------------------------------------------------------------------------


def _pg_damage(s: str) -> list[Damage]:
    ns = f"(SELECT id FROM {s}.namespaces WHERE name = 'orders')"
    new1 = f"ns = {ns} AND key = 'new1'"
    top = f"(SELECT MAX(seq) FROM {s}.changes)"
    bump_head = f"UPDATE {s}.head SET seq = seq + 1"
    return [
        Damage(
            "item version bumped",
            [f"UPDATE {s}.items SET version = version + 1 WHERE {new1}"],
            ["no matching change-log row", "differ from their newest", "orders/new1"],
        ),
        Damage(
            "put row whose item is gone",
            [f"DELETE FROM {s}.items WHERE {new1}"],
            ["last written by a put", "orders/new1"],
        ),
        Damage(
            "delete row but the item is kept",
            [
                f"INSERT INTO {s}.changes (seq, ns, key, op, version, ts) SELECT {top} + 1, "
                f"ns, key, 1, version, updated_at FROM {s}.items WHERE {new1}",
                bump_head,
            ],
            ["exist although their newest change-log row is a delete", "orders/new1"],
        ),
        Damage(
            "log version beyond the item's",
            [
                f"INSERT INTO {s}.changes (seq, ns, key, op, version, ts) SELECT {top} + 1, "
                f"ns, key, 0, version + 1, updated_at FROM {s}.items WHERE {new1}",
                bump_head,
            ],
            ["differ from their newest change-log row", "orders/new1"],
        ),
        Damage(
            "gap in the log",
            [
                f"DELETE FROM {s}.changes WHERE seq = (SELECT MIN(seq) FROM {s}.changes "
                f"WHERE ns = {ns} AND key = 'twice')"
            ],
            ["misses 1 seqs"],
        ),
        Damage(
            "seq beyond the log",
            [f"UPDATE {s}.items SET seq = {top} + 10 WHERE ns = {ns} AND key = 'old3'"],
            ["beyond the change log's last"],
        ),
        Damage(
            "orphans",
            [f"DELETE FROM {s}.namespaces WHERE name = 'carts'"],
            ["items belong to no namespace", "change-log rows belong to no namespace"],
        ),
        Damage(
            "impossible change op",
            [f"UPDATE {s}.changes SET op = 9 WHERE seq = {top}"],
            ["impossible seq, version or op"],
        ),
        Damage("audit record rewritten", "audit", ["audit log:", "record 2"]),
    ]


PG_DAMAGE_NAMES = [d.name for d in _pg_damage("s")]


@dataclass(frozen=True)
class Served:
    """A seeded store on a server: its URL, where its keyring lives, its raw name."""

    url: str
    keyring: str
    name: str  # the quoted schema (PostgreSQL) or the key prefix (Redis)
    raw: Any = None  # a raw client (Redis)

    def open(self) -> clawstate.Store:
        return clawstate.open(self.url, keyring=self.keyring, sweep_interval=0)


def _seed_served(url: str, keyring: str) -> None:
    clock = FakeClock()
    with clawstate.open(
        url, clock=clock, keyring=keyring, sweep_interval=0, changelog_retention=RETENTION
    ) as store:
        _seed(store, clock)


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[Served]:
    """A fresh seeded store in its own schema, dropped afterwards."""
    require_module("psycopg")
    from _backends import drop_schema, new_schema, pg_probe, pg_url
    from services import require

    require("postgresql", pg_probe)
    schema = new_schema()
    url = pg_url(schema)
    keyring = f"file:{tmp_path / 'keys.json'}"
    try:
        _seed_served(url, keyring)
        yield Served(url, keyring, f'"{schema}"')
    finally:
        drop_schema(schema)


class TestPostgres:
    def test_a_sound_store_reports_nothing(self, pg_store: Served, tmp_path: Path) -> None:
        with pg_store.open() as store:
            report = store.check(deep=True)
        assert report.ok, report.problems
        _cli_check(pg_store.url, tmp_path, [], ok=True, keyring=pg_store.keyring)

    @pytest.mark.parametrize("name", PG_DAMAGE_NAMES)
    def test_each_damage_is_named_and_exits_1(
        self, name: str, pg_store: Served, tmp_path: Path
    ) -> None:
        import psycopg

        from services import POSTGRES_URL

        damage = next(d for d in _pg_damage(pg_store.name) if d.name == name)
        if damage.edit == "audit":
            with pg_store.open() as store:
                _tamper_audit(store)
        else:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                for statement in damage.edit:
                    assert conn.execute(statement).rowcount != 0, statement
        with pg_store.open() as store:
            report = store.check()
        assert not report.ok
        _assert_names(_problems(report), damage.needles)
        _cli_check(pg_store.url, tmp_path, damage.needles, keyring=pg_store.keyring)


# -- Redis ---------------------------------------------------------------------------------


def _redis_damage(p: str) -> list[Damage]:
    item = f"{p}i:orders/new1"
    log = f"{p}log"

    def next_id(r: Any) -> str:
        top = r.xrevrange(log, "+", "-", count=1)
        return f"0-{int(top[0][0].decode()[2:]) + 1}"

    def log_entry(op: str, bump: int) -> Callable[[Any], None]:
        def edit(r: Any) -> None:
            ver = int(r.hget(item, "ver")) + bump
            r.xadd(
                log, {"ns": "orders", "key": "new1", "op": op, "ver": ver, "ts": "1"}, next_id(r)
            )

        return edit

    def gap(r: Any) -> None:
        for entry_id, f in r.xrange(log, "-", "+"):
            if f[b"key"] == b"twice":  # the first of its two entries
                assert r.xdel(log, entry_id) == 1
                return
        raise AssertionError("no entry to delete")

    def seq_beyond(r: Any) -> None:
        top = int(r.xrevrange(log, "+", "-", count=1)[0][0].decode()[2:])
        r.hset(f"{p}i:orders/old3", "seq", top + 10)

    def bad_op(r: Any) -> None:
        r.xadd(log, {"ns": "orders", "key": "x", "op": "9", "ver": 1, "ts": "1"}, next_id(r))

    return [
        Damage(
            "item version bumped",
            lambda r: r.hincrby(item, "ver", 1),
            ["orders/new1: no matching change-log row", "orders/new1: differs from"],
        ),
        Damage(
            "put row whose item is gone",
            lambda r: r.delete(item),
            ["orders/new1: in the key index but its item hash is missing", "last written by a put"],
        ),
        Damage(
            "delete row but the item is kept",
            log_entry("1", 0),
            ["orders/new1: exists although its newest change-log entry is a delete"],
        ),
        Damage(
            "log version beyond the item's",
            log_entry("0", 1),
            ["orders/new1: differs from its newest change-log entry"],
        ),
        Damage("gap in the log", gap, ["misses 1 seqs"]),
        Damage("seq beyond the log", seq_beyond, ["orders/old3: seq", "beyond the last seq"]),
        Damage("impossible change op", bad_op, ["impossible op or version"]),
        Damage("audit record rewritten", "audit", ["audit log:", "record 2"]),
    ]


REDIS_DAMAGE_NAMES = [d.name for d in _redis_damage("p:")]


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[Served]:
    """A fresh seeded store under its own prefix, deleted afterwards."""
    require_module("redis")
    from _backends import drop_prefix, new_prefix, redis_client, redis_url
    from services import require

    client = redis_client()
    require("redis", client.ping)
    prefix = new_prefix()
    url = redis_url(prefix)
    keyring = f"file:{tmp_path / 'keys.json'}"
    try:
        _seed_served(url, keyring)
        yield Served(url, keyring, prefix, client)
    finally:
        drop_prefix(client, prefix)
        client.close()


class TestRedis:
    def test_a_sound_store_reports_nothing(self, redis_store: Served, tmp_path: Path) -> None:
        with redis_store.open() as store:
            report = store.check(deep=True)
        assert report.ok, report.problems
        _cli_check(redis_store.url, tmp_path, [], ok=True, keyring=redis_store.keyring)

    @pytest.mark.parametrize("name", REDIS_DAMAGE_NAMES)
    def test_each_damage_is_named_and_exits_1(
        self, name: str, redis_store: Served, tmp_path: Path
    ) -> None:
        damage = next(d for d in _redis_damage(redis_store.name) if d.name == name)
        if damage.edit == "audit":
            with redis_store.open() as store:
                _tamper_audit(store)
        else:
            damage.edit(redis_store.raw)
        with redis_store.open() as store:
            report = store.check()
        assert not report.ok
        _assert_names(_problems(report), damage.needles)
        _cli_check(redis_store.url, tmp_path, damage.needles, keyring=redis_store.keyring)


# -- retention trims a prefix, so "gap-free" is an invariant check may hold ------------------


def _trim_after_the_clock_stepped_back(url: str, **options: Any) -> None:
    """Rows whose timestamps go back (several processes' clocks, an NTP step): the sweep
    trims only the prefix before the first row young enough to keep — it never cuts
    a hole that a follower would silently skip and check would report."""
    clock = FakeClock(10_000.0)
    with clawstate.open(
        url, clock=clock, sweep_interval=0, changelog_retention=RETENTION, **options
    ) as store:
        ns = store.namespace("n")
        ns.put("a", 1)  # ts 10000
        clock.set(10_000.0 - 2 * RETENTION)
        ns.put("b", 1)  # ts 9800: older than its predecessor
        clock.set(10_000.0 + RETENTION / 2)
        ns.put("c", 1)
        store.sweep()  # cut-off 9950: "b" is old, "a" before it is not
        seqs = [c.seq for c in store.backend.changes(0, 100)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) == 3, seqs
        clock.set(10_000.0 + RETENTION * 3)
        ns.put("d", 1)
        store.sweep()  # now every row but the newest is old: a prefix again
        assert [c.key for c in store.backend.changes(0, 100)] == ["d"]
        report = store.check()
        assert report.ok, report.problems


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_retention_never_cuts_a_hole(kind: str, tmp_path: Path) -> None:
    _trim_after_the_clock_stepped_back(
        "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/x.db"
    )


def test_retention_never_cuts_a_hole_postgres(pg_store: Served) -> None:
    schema = pg_store.name.strip('"') + "_trim"
    from _backends import drop_schema, pg_url

    try:
        _trim_after_the_clock_stepped_back(pg_url(schema), keyring=pg_store.keyring)
    finally:
        drop_schema(schema)


def test_retention_never_cuts_a_hole_redis(redis_store: Served) -> None:
    from _backends import redis_url

    prefix = redis_store.name + "trim:"  # under the fixture's prefix: deleted with it
    _trim_after_the_clock_stepped_back(redis_url(prefix), keyring=redis_store.keyring)


# -- files the embedded store creates are owner-only ---------------------------------------


def _mode(path: Path, kind: Callable[[int], bool]) -> int:
    """The permission bits of ``path``, which must exist and be of ``kind`` (never None)."""
    st = os.stat(path)
    assert kind(st.st_mode), f"{path} is not the expected file type"
    return stat.S_IMODE(st.st_mode)


class TestPermissions:
    def test_database_wal_shm_and_new_directories_are_owner_only(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "state.db"
        with clawstate.open(f"sqlite:///{path}", sweep_interval=0) as store:
            store.namespace("n").put("k", 1)
            store.events.append("s", [clawstate.Event("E", {})])
            files = [path, path.with_name("state.db-wal"), path.with_name("state.db-shm")]
            for f in files:
                assert _mode(f, stat.S_ISREG) == 0o600, f
        for d in (tmp_path / "a", tmp_path / "a" / "b"):
            assert _mode(d, stat.S_ISDIR) == 0o700, d

    def test_the_default_store_directory_is_0700(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in list(os.environ):
            if name.startswith("CLAWSTATE_"):
                monkeypatch.delenv(name)
        monkeypatch.chdir(tmp_path)
        with clawstate.open(sweep_interval=0) as store:
            store.namespace("n").put("k", 1)
        assert _mode(tmp_path / ".clawstate", stat.S_ISDIR) == 0o700
        assert _mode(tmp_path / ".clawstate" / "state.db", stat.S_ISREG) == 0o600

    def test_existing_directories_keep_their_mode(self, tmp_path: Path) -> None:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o755)
        with clawstate.open(f"sqlite:///{shared / 'state.db'}", sweep_interval=0) as store:
            store.namespace("n").put("k", 1)
        assert _mode(shared, stat.S_ISDIR) == 0o755
        assert _mode(shared / "state.db", stat.S_ISREG) == 0o600

    @pytest.mark.parametrize("name", ["we ird", "q?x", "h#x", "p%41x", "ü"])
    def test_paths_with_uri_characters(self, name: str, tmp_path: Path) -> None:
        """Connections open the file as a ``file:…?mode=rw`` URI: the path is quoted, so
        it names this file and no other (``%41`` is not ``A``, ``?`` starts no query)."""
        from clawstate.backends.sqlite import SQLiteBackend

        path = tmp_path / name / "x.db"
        backend = SQLiteBackend(path)
        backend.close()
        reopened = SQLiteBackend(path, create=False)
        assert reopened.namespaces() == []
        reopened.close()
        assert _tree(tmp_path) == [name, f"{name}/x.db"]
        assert _mode(path, stat.S_ISREG) == 0o600

    def test_the_mode_check_cannot_pass_on_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            _mode(tmp_path / "absent", stat.S_ISREG)
        with pytest.raises(AssertionError):
            _mode(tmp_path, stat.S_ISREG)


# -- read commands on a missing store create nothing ---------------------------------------

#: Every CLI command that only reads, with arguments that make it run to completion.
READ_COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("get",): ["get", "n", "k"],
    ("scan",): ["scan", "n"],
    ("query",): ["query", "n", "{}"],
    ("watch",): ["watch", "--timeout", "0.1"],
    ("stats",): ["stats"],
    ("check",): ["check"],
    # builds declared indexes of an existing store; never creates one
    ("index",): ["index"],
    ("token", "list"): ["token", "list"],
    ("audit", "verify"): ["audit", "verify"],
    ("events", "read"): ["events", "read", "s"],
    ("events", "tail"): ["events", "tail", "--timeout", "0.1"],
    ("projections", "status"): ["projections", "status"],
    ("locks", "get"): ["locks", "get", "job"],
    ("machines", "ls"): ["machines", "ls"],
    ("machines", "show"): ["machines", "show", "m"],
    ("machines", "get"): ["machines", "get", "m", "i"],
    ("machines", "history"): ["machines", "history", "m", "i"],
    ("timers", "ls"): ["timers", "ls"],
    ("timers", "get"): ["timers", "get", "t"],
    # These two change only an existing store's checkpoints: they never create one.
    ("projections", "retry"): ["projections", "retry", "p"],
    ("projections", "skip"): ["projections", "skip", "p"],
}
#: Commands that write (or serve) and so create the store they are pointed at.
WRITE_COMMANDS = {
    ("put",),
    ("delete",),
    ("demo",),
    ("keys", "rotate"),
    ("token", "create"),
    ("token", "revoke"),
    ("audit", "seal"),
    ("audit", "prune"),
    ("events", "append"),
    ("projections", "rebuild"),
    ("locks", "acquire"),
    ("locks", "release"),
    ("machines", "define"),
    ("machines", "create"),
    ("machines", "fire"),
    ("timers", "schedule"),
    ("timers", "cancel"),
    ("worker",),
    ("serve",),
}


def _all_commands() -> set[tuple[str, ...]]:
    from clawstate import cli

    found: set[tuple[str, ...]] = set()

    def walk(group: Any, path: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, (*path, name))
            else:
                found.add((*path, name))

    walk(typer.main.get_command(cli.app), ())
    return found


def test_every_command_is_classified_read_or_write() -> None:
    """A new command must say whether it may create a store (this list is the decision)."""
    assert _all_commands() == set(READ_COMMANDS) | WRITE_COMMANDS


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class TestReadCommandsCreateNothing:
    @pytest.mark.parametrize("command", sorted(READ_COMMANDS), ids=" ".join)
    def test_missing_store_in_a_missing_directory(
        self, command: tuple[str, ...], tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path / 'typo' / 'dir' / 'x.db'}"
        out = _cli(["--url", url, *READ_COMMANDS[command]], tmp_path)
        assert out.returncode != 0, out.stdout
        assert "no store at" in out.stderr and "typo/dir/x.db" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
        assert _tree(tmp_path) == []

    @pytest.mark.parametrize("command", [("get",), ("stats",), ("events", "read")], ids=" ".join)
    def test_missing_default_store(self, command: tuple[str, ...], tmp_path: Path) -> None:
        out = _cli(READ_COMMANDS[command], tmp_path)
        assert out.returncode != 0 and "no store at" in out.stderr, out.stderr
        assert _tree(tmp_path) == []

    def test_the_message_is_one_line_on_a_narrow_terminal(self, tmp_path: Path) -> None:
        path = tmp_path / "typo" / "dir" / "x.db"
        out = subprocess.run(
            [sys.executable, "-m", "clawstate.cli", "--url", f"sqlite:///{path}", "stats"],
            cwd=tmp_path,
            env={**_env(), "COLUMNS": "40"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2  # a ConfigError (docs/cli.md)
        assert out.stderr.count("\n") == 1 and f"no store at {path} " in out.stderr, out.stderr

    def test_a_file_that_holds_no_store_is_left_alone(self, tmp_path: Path) -> None:
        empty = tmp_path / "x.db"
        empty.touch()
        out = _cli(["--url", f"sqlite:///{empty}", "scan", "n"], tmp_path)
        assert out.returncode != 0 and "holds no clawstate store" in out.stderr, out.stderr
        assert _tree(tmp_path) == ["x.db"] and empty.stat().st_size == 0

    def test_the_api_refuses_too(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as err:
            clawstate.open(f"sqlite:///{tmp_path / 'd' / 'x.db'}", create=False)
        assert err.value.field == "store.url" and "no store at" in str(err.value)
        assert _tree(tmp_path) == []

    def test_an_existing_store_is_read(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'x.db'}"
        assert _cli(["--url", url, "put", "n", "k", "7"], tmp_path).returncode == 0
        got = _cli(["--url", url, "get", "n", "k", "--value"], tmp_path)
        assert got.returncode == 0 and json.loads(got.stdout) == 7


class TestWriteCommandsCreateTheStore:
    @pytest.mark.parametrize(
        "args", [["put", "n", "k", "1"], ["events", "append", "s", "T"]], ids=lambda a: a[0]
    )
    def test_write_commands_create_it_owner_only(self, args: list[str], tmp_path: Path) -> None:
        path = tmp_path / "new" / "dir" / "x.db"
        out = _cli(["--url", f"sqlite:///{path}", *args], tmp_path)
        assert out.returncode == 0, out.stderr
        assert _mode(path, stat.S_ISREG) == 0o600
        assert _mode(path.parent, stat.S_ISDIR) == 0o700
        assert _mode(path.parent.parent, stat.S_ISDIR) == 0o700

    def test_serve_creates_it(self, tmp_path: Path) -> None:
        require_module("litestar")
        path = tmp_path / "srv" / "x.db"
        argv = ["--url", f"sqlite:///{path}", "serve", "--port", "0"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "clawstate.cli", *argv],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("clawstate serve: http://"), first + proc.stderr.read()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert _mode(path, stat.S_ISREG) == 0o600
        assert _mode(path.parent, stat.S_ISDIR) == 0o700
