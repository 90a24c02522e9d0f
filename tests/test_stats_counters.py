"""``stats()`` reads per-namespace counters kept in the writing transaction (issue 12:
"stats() stops counting every row … item counts must stay exact").

On every durable backend — SQLite, PostgreSQL, Redis — the counters must equal what
the rows say after puts, overwrites that change a value's size, deletes, TTL expiry
and its sweep, a transaction that rolls back, and a SIGKILL in the middle of
writing.  ``check()`` is the oracle: it recomputes the counts from the rows, and a
tampered counter must make it fail (so the tests below cannot pass vacuously).
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import clawstate
from _backends import (
    DEFAULT_OPTIONS,
    Prefixes,
    drop_schema,
    new_schema,
    pg,
    pg_admin,
    pg_probe,
    prefixes,
    raw,
    redis_client,
    redis_url,
    start_crash_writer,
)
from _backends import pg_url as pg_url_for
from clawstate import VersionConflict
from clawstate.testing import FakeClock
from services import require

__all__ = ["pg", "prefixes", "raw"]  # fixtures, re-exported for pytest

BACKENDS = ("sqlite", "postgres", "redis")


class Target:
    """One fresh store location on one backend: its URL, a way to tamper with its
    counters, and the backend's name."""

    def __init__(self, name: str, url: str, tamper: Callable[[str], None]) -> None:
        self.name = name
        self.url = url
        self.tamper = tamper


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    name: str = request.param
    if name == "sqlite":
        path = tmp_path / "state.db"

        def tamper_sqlite(namespace: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(
                    "UPDATE ns_stats SET items = items + 1 "
                    "WHERE ns = (SELECT id FROM namespaces WHERE name = ?)",
                    (namespace,),
                )

        yield Target(name, f"sqlite:///{path}", tamper_sqlite)
    elif name == "postgres":
        require("postgresql", pg_probe)
        schema = new_schema("cs_stats")

        def tamper_pg(namespace: str) -> None:
            with pg_admin() as conn:
                conn.execute(
                    f'UPDATE "{schema}".ns_stats SET items = items + 1 WHERE ns = '
                    f'(SELECT id FROM "{schema}".namespaces WHERE name = %s)',
                    (namespace,),
                )

        yield Target(name, pg_url_for(schema), tamper_pg)
        drop_schema(schema)
    else:
        p: Prefixes = request.getfixturevalue("prefixes")
        prefix = p.new()

        def tamper_redis(namespace: str) -> None:
            client = redis_client()
            try:
                client.hincrby(f"{prefix}bytes", namespace, 1)
            finally:
                client.close()

        yield Target(name, redis_url(prefix), tamper_redis)


@pytest.fixture
def open_store(target: Target) -> Iterator[Callable[..., clawstate.Store]]:
    opened: list[clawstate.Store] = []

    def factory(**options: Any) -> clawstate.Store:
        store = clawstate.open(target.url, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def counts(store: clawstate.Store, namespace: str) -> tuple[int, int]:
    entry = store.stats()["namespaces"].get(namespace, {"items": 0, "bytes": 0})
    return int(entry["items"]), int(entry["bytes"])


def assert_exact(store: clawstate.Store, namespace: str, items: int) -> None:
    """The counters say ``items`` stored rows and the oracle finds no drift."""
    report = store.check()
    assert report.ok, report.problems
    assert counts(store, namespace)[0] == items


def test_counts_follow_puts_overwrites_and_deletes(
    target: Target, open_store: Callable[..., clawstate.Store]
) -> None:
    store = open_store()
    ns = store.namespace("orders")
    assert counts(store, "orders") == (0, 0)
    ns.put_many({f"k{i:03d}": {"pad": "x" * i} for i in range(100)})
    assert_exact(store, "orders", 100)
    _, small = counts(store, "orders")
    # Overwrites that grow every value: the item count stays, the bytes grow.
    ns.put_many({f"k{i:03d}": {"pad": "y" * (i + 200)} for i in range(100)})
    items, grown = counts(store, "orders")
    assert items == 100 and grown > small
    for i in range(0, 100, 3):
        ns.put(f"k{i:03d}", {"pad": ""})  # shrink a third, one put at a time
    for i in range(0, 100, 2):
        ns.delete(f"k{i:03d}")
    ns.delete("never-there")
    assert_exact(store, "orders", 50)
    assert counts(store, "orders")[1] < grown
    store.namespace("other").put("a", 1)
    assert_exact(store, "other", 1)
    assert counts(store, "orders")[0] == 50
    # A second process's view: the counters are in the store, not in this process.
    again = open_store()
    assert counts(again, "orders") == counts(store, "orders")


def test_counts_follow_expiry_and_sweep(
    target: Target, open_store: Callable[..., clawstate.Store]
) -> None:
    clock = FakeClock(time.time())
    store = open_store(clock=clock)
    ns = store.namespace("s")
    ns.put_many({f"t{i}": i for i in range(20)}, ttl=10)
    ns.put_many({f"p{i}": i for i in range(5)})
    assert_exact(store, "s", 25)
    clock.advance(11)
    assert ns.count() == 5
    # Until the sweep purges them, expired rows are stored rows (as stats() always
    # counted); Redis expires its rows itself, so it may already say 5.
    assert counts(store, "s")[0] in ((25, 5) if target.name == "redis" else (25,))
    store.sweep()
    assert_exact(store, "s", 5)
    ns.put("t0", "back")  # a new incarnation after the sweep
    assert_exact(store, "s", 6)


def test_a_rolled_back_transaction_changes_no_count(
    target: Target, open_store: Callable[..., clawstate.Store]
) -> None:
    store = open_store()
    ns = store.namespace("tx")
    ns.put("held", "v")
    before = counts(store, "tx")
    with pytest.raises(VersionConflict):
        with store.transaction() as tx:
            t = tx.namespace("tx")
            t.put("new-1", "x" * 500)
            t.put("new-2", "y" * 500)
            t.delete("held")
            t.put("held", "z", if_version=99)  # fails: the unit rolls back whole
    assert counts(store, "tx") == before
    assert_exact(store, "tx", 1)
    with pytest.raises(VersionConflict):
        ns.put("held", "w", if_absent=True)
    assert counts(store, "tx") == before


def test_counts_survive_a_kill_mid_write(
    target: Target, open_store: Callable[..., clawstate.Store], tmp_path: Path
) -> None:
    logdir = tmp_path / "acks"
    logdir.mkdir()
    for cycle in range(2):
        child = start_crash_writer(target.url, logdir, cycle, put_threads=3)
        try:
            time.sleep(0.6)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    store = open_store()
    report = store.check()
    assert report.ok, report.problems
    stats = store.stats()["namespaces"]
    assert sum(int(v["items"]) for v in stats.values()) > 0
    for name, entry in stats.items():
        assert int(entry["items"]) == store.namespace(name).count()


def test_check_catches_a_tampered_counter(
    target: Target, open_store: Callable[..., clawstate.Store]
) -> None:
    store = open_store()
    store.namespace("n").put_many({f"k{i}": i for i in range(10)})
    assert store.check().ok
    target.tamper("n")
    report = store.check()
    assert not report.ok
    assert any("'n'" in p or "n:" in p for p in report.problems), report.problems


def _stats_steps(store: clawstate.Store) -> int:
    """SQLite VM instructions (in hundreds) that one ``stats()`` runs on this thread's
    connection: a measure of work that no noisy neighbour can skew."""
    conn: sqlite3.Connection = store.backend._conn()  # type: ignore[attr-defined]
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        store.stats()
    finally:
        conn.set_progress_handler(None, 100)
    return steps


def test_sqlite_stats_work_is_flat_in_the_item_count(tmp_path: Path) -> None:
    store = clawstate.open(f"sqlite:///{tmp_path}/s.db", **DEFAULT_OPTIONS)
    ns = store.namespace("a")
    ns.put_many({f"k{i:06d}": i for i in range(1000)})
    small = _stats_steps(store)
    for start in range(1000, 21000, 1000):
        ns.put_many({f"k{i:06d}": i for i in range(start, start + 1000)})
    large = _stats_steps(store)
    assert store.stats()["namespaces"]["a"]["items"] == 21000
    assert store.stats()["backends"]["default"]["changelog"]["rows"] == 21000
    # 21x the rows; a COUNT over items or changes would make it ~21x the work.
    assert large <= small + 5, (small, large)
    store.close()


def test_migration_starts_the_counters_from_existing_rows(tmp_path: Path) -> None:
    """A store written before the counters existed gets them from its rows: the
    migration's statements, run over a file without the counters, count what is
    there, and the triggers then keep it."""
    from clawstate.backends.sqlite.stats import MIGRATION, TRIGGERS

    path = tmp_path / "old.db"
    store = clawstate.open(f"sqlite:///{path}", **DEFAULT_OPTIONS)
    store.namespace("a").put_many({f"k{i}": "v" * i for i in range(30)})
    store.namespace("b").put("x", 1)
    store.namespace("c").put("gone", 1)
    store.namespace("c").delete("gone")
    expected = {n: counts(store, n) for n in ("a", "b", "c")}
    assert expected["c"] == (0, 0) and expected["a"][0] == 30
    store.close()
    with sqlite3.connect(path) as conn:  # back to a file without the counters
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE ns_stats")
        for statement in MIGRATION:
            conn.execute(statement)
    store = clawstate.open(f"sqlite:///{path}", **DEFAULT_OPTIONS)
    assert {n: counts(store, n) for n in ("a", "b", "c")} == expected
    store.namespace("c").put("again", 1)
    assert_exact(store, "c", 1)
    store.close()


def test_postgres_migration_starts_the_counters_from_existing_rows(pg: None) -> None:
    """The PostgreSQL migration counts the rows a schema already holds, under a lock
    that keeps writers out until its triggers exist."""
    from clawstate.backends.postgres.stats import MIGRATION, TRIGGERS

    schema = new_schema("cs_stats")
    store = clawstate.open(pg_url_for(schema), **DEFAULT_OPTIONS)
    try:
        store.namespace("a").put_many({f"k{i}": "v" * i for i in range(30)})
        store.namespace("b").put("x", 1)
        expected = {n: counts(store, n) for n in ("a", "b")}
        quoted = f'"{schema}"'
        with pg_admin() as conn, conn.transaction():
            for name in TRIGGERS:
                conn.execute(f"DROP TRIGGER {name} ON {quoted}.items")
            conn.execute(f"DROP TABLE {quoted}.ns_stats")
            for statement in MIGRATION:
                conn.execute(statement.replace("{s}", quoted))
        assert {n: counts(store, n) for n in ("a", "b")} == expected
        store.namespace("a").delete("k3")
        assert_exact(store, "a", 29)
    finally:
        store.close()
        drop_schema(schema)


# -- events: the count is the last position minus what the sweep removed ---------------


def _event_count(store: clawstate.Store) -> int:
    return int(store.stats()["backends"]["default"]["events"]["events"])


@pytest.fixture(params=("sqlite", "postgres"))
def events_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """SQLite and PostgreSQL (Redis keeps no events), with a tamper of the removal
    counter so the check below cannot pass vacuously."""
    if request.param == "sqlite":
        path = tmp_path / "ev.db"

        def tamper_sqlite(_: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'events_removed'")

        yield Target("sqlite", f"sqlite:///{path}", tamper_sqlite)
    else:
        require("postgresql", pg_probe)
        schema = new_schema("cs_evstats")

        def tamper_pg(_: str) -> None:
            with pg_admin() as conn:
                conn.execute(
                    f'UPDATE "{schema}".meta SET value = (value::bigint + 1)::text '
                    "WHERE key = 'events_removed'"
                )

        yield Target("postgres", pg_url_for(schema), tamper_pg)
        drop_schema(schema)


def test_event_count_follows_appends_and_the_sweep(events_target: Target) -> None:
    from clawstate import Event

    store = clawstate.open(events_target.url, **DEFAULT_OPTIONS)
    try:
        for s in range(5):
            store.events.append(f"s-{s}", [Event("T", {"i": i}) for i in range(20)])
        assert _event_count(store) == 100
        store.events.set_stream_metadata("s-0", max_count=3)
        store.events.set_stream_metadata("s-1", truncate_before=11)
        store.sweep()
        assert _event_count(store) == 100 - 17 - 10
        assert store.check().ok
        events_target.tamper("")
        report = store.check()
        assert not report.ok
        assert any("removal counter" in p for p in report.problems), report.problems
    finally:
        store.close()


def test_sqlite_event_stats_work_is_flat_in_the_event_count(tmp_path: Path) -> None:
    from clawstate import Event

    store = clawstate.open(f"sqlite:///{tmp_path}/e.db", **DEFAULT_OPTIONS)
    store.events.append("a-0", [Event("T", {"i": i}) for i in range(500)])
    small = _stats_steps(store)
    for s in range(1, 21):
        store.events.append(f"a-{s}", [Event("T", {"i": i}) for i in range(500)])
    large = _stats_steps(store)
    assert _event_count(store) == 10_500
    assert large <= small + 5, (small, large)
    store.close()
