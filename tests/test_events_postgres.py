"""The event store on PostgreSQL: the conformance suites over a fresh schema per store,
and writers in several processes producing a gap-free global log in commit order."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import clawstate
from clawstate.testing.conformance import AsyncStoreFactory, Clock, StoreFactory
from clawstate.testing.events import AsyncEventStoreConformance, EventStoreConformance
from test_postgres import DEFAULT_OPTIONS, _admin, drop_schema, new_schema, pg, url_for

__all__ = ["pg"]  # the fixture, re-exported for pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def schemas(pg: None) -> Iterator[Callable[[], str]]:
    """``schemas()`` -> a fresh schema name, dropped at teardown."""
    made: list[str] = []

    def make() -> str:
        made.append(new_schema())
        return made[-1]

    yield make
    for schema in made:
        drop_schema(schema)


@pytest.fixture
def store_factory(schemas: Callable[[], str]) -> Iterator[StoreFactory]:
    """Overrides conftest's: every store gets a fresh schema on the test server."""
    opened: list[clawstate.Store] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
        store = clawstate.open(url_for(schemas()), clock=clock, **{**DEFAULT_OPTIONS, **options})
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
async def async_store_factory(
    schemas: Callable[[], str], anyio_backend: str
) -> AsyncIterator[AsyncStoreFactory]:
    opened: list[clawstate.AsyncStore] = []

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.AsyncStore:
        astore = clawstate.open_async(
            url_for(schemas()), clock=clock, **{**DEFAULT_OPTIONS, **options}
        )
        opened.append(astore)
        return astore

    yield factory
    for astore in opened:
        await astore.close()


class TestPostgresEventStore(EventStoreConformance):
    """The sync event store over PostgreSQL."""


class TestPostgresAsyncEventStore(AsyncEventStoreConformance):
    """The async event store over PostgreSQL."""


_WRITER = """
import sys, clawstate
from clawstate import Event
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = clawstate.open(url, sweep_interval=0)
for i in range(n):
    r = store.events.append(f"{name}-{i % 3}", [Event("Tick", {"i": i})])
    print(r.position, flush=True)
store.close()
"""


def test_writers_in_several_processes_make_a_gap_free_log(
    schemas: Callable[[], str],
) -> None:
    url = url_for(schemas())
    store = clawstate.open(url, sweep_interval=0)
    try:
        store.events.append("init", [clawstate.Event("Start", {})])  # the schema exists
        n, procs = 100, 4
        seen: list[int] = []
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, url, f"w{k}", str(n)],
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            for k in range(procs)
        ]
        # A reader tailing the log while the writers run never sees a hole.
        after = 0
        while any(c.poll() is None for c in children):
            page = store.events.read_all(from_position=after, limit=1000)
            for ev in page:
                assert ev.position == after + 1, "a reader saw a gap in the global log"
                after = ev.position
                seen.append(ev.position)
        acked: list[int] = []
        for c in children:
            out, _ = c.communicate(timeout=120)
            assert c.returncode == 0
            acked += [int(line) for line in out.split()]
        everything = [ev.position for ev in store.events.read_all(limit=10_000)]
        assert everything == list(range(1, 1 + n * procs + 1))
        assert sorted(acked) == list(range(2, n * procs + 2))
        assert seen == everything[: len(seen)]
    finally:
        store.close()


def test_a_schema_from_before_the_event_store_is_migrated(schemas: Callable[[], str]) -> None:
    schema = schemas()
    url = url_for(schema)
    with clawstate.open(url, sweep_interval=0) as store:
        store.namespace("kv").put("a", 1)
    # Roll the schema back to version 1, as a clawstate without events left it.
    with _admin() as conn:
        conn.execute(f'DROP TABLE "{schema}".events, "{schema}".event_streams')
        conn.execute(f'ALTER TABLE "{schema}".head DROP COLUMN pos')
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '1' WHERE key = 'schema_version'")
    with clawstate.open(url, sweep_interval=0) as store:
        assert store.namespace("kv").get("a").value == 1
        r = store.events.append("s", [clawstate.Event("A", {"x": 1})])
        assert (r.version, r.position) == (1, 1)
        assert store.namespace("kv").put("b", 2).version == 1
        report = store.check()
        assert report.ok, report.problems
        assert report.checked["events"] == 1
