"""PostgreSQL's one-statement path for event-only batches: a batch whose checks all
pass commits in one statement with the positions and versions the general path
would give; a batch with a failed check writes nothing there and re-runs on the
general path, where every job gets its exact outcome (an append, a replay, a wrong
version, a taken id) and no position is burnt; and a check passed on a stale
snapshot (a writer in another session committed meanwhile) is caught by the unique
indexes and re-run under the lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import clawstate
from _backends import pg, schemas
from _backends import pg_admin as _admin
from _backends import pg_url as url_for
from clawstate import Event, InvalidRequest, WrongExpectedVersion
from clawstate.backends.base import EXPECT_ANY, EXPECT_EXISTS, EventRecord, EventWrite, WriteUnit
from clawstate.backends.postgres import Job as _Job
from clawstate.backends.postgres import PostgresBackend
from test_postgres import backend_of

__all__ = ["pg", "schemas"]  # the fixtures, re-exported for pytest


@pytest.fixture
def store(schemas: Callable[[], str]) -> Iterator[clawstate.Store]:
    s = clawstate.open(url_for(schemas()), sweep_interval=0)
    yield s
    s.close()


def _rec(eid: str, n: int = 0) -> EventRecord:
    # The JSON text the facade makes of Event("T", {"n": n}): a retry is recognised by
    # its content, byte for byte.
    return EventRecord(eid, "T", f'{{"n":{n}}}')


def _job(*appends: tuple[str, int, list[EventRecord]], now: float | None = None) -> _Job:
    unit = WriteUnit(
        [],
        time.time() if now is None else now,
        events=[EventWrite(s, e, evs) for s, e, evs in appends],
    )
    return _Job(unit, {})


def _batch(backend: PostgresBackend, jobs: list[_Job]) -> list[object]:
    """Commit ``jobs`` as one batch, as the group committer would."""
    return list(backend._run_batch(jobs))


def test_a_mixed_batch_gets_each_jobs_own_outcome(store: clawstate.Store) -> None:
    events = store.events
    backend = backend_of(store)
    first = events.append("old", [Event("T", {"n": 0}, id="00000000-0000-7000-8000-000000000001")])
    assert (first.version, first.position) == (1, 1)
    taken = "00000000-0000-7000-8000-000000000001"
    jobs = [
        _job(("a", 0, [_rec("a1"), _rec("a2")])),  # new stream: passes
        _job(("b", 5, [_rec("b1")])),  # wrong version
        _job(("old", EXPECT_ANY, [_rec(taken)])),  # replay of the first append
        _job(("c", EXPECT_ANY, [_rec("c1")]), ("d", EXPECT_EXISTS, [_rec("d1")])),  # d missing
        _job(("e", EXPECT_ANY, [_rec(taken)])),  # id taken by another stream
        _job(("f", 0, [_rec("f1")]), ("g", EXPECT_ANY, [_rec("g1"), _rec("g2")])),  # passes
    ]
    before = dict(backend.counters)
    results = _batch(backend, jobs)
    assert backend.counters["event_fast_failed"] == before["event_fast_failed"] + 1
    assert backend.counters["event_fast_batches"] == before["event_fast_batches"]
    assert backend.counters["general_batches"] == before["general_batches"] + 1
    a, b, replay, cd, e, fg = results
    assert isinstance(a, list) and [(o.version, o.seq) for o in a] == [(2, 3)]
    assert isinstance(b, WrongExpectedVersion) and b.actual is None
    assert isinstance(replay, list) and [(o.applied, o.version, o.seq) for o in replay] == [
        (False, 1, 1)
    ]
    assert isinstance(cd, WrongExpectedVersion) and cd.stream == "d"
    assert isinstance(e, InvalidRequest) and e.field == "events[0].id"
    assert isinstance(fg, list) and [(o.version, o.seq) for o in fg] == [(1, 4), (2, 6)]
    # Failed jobs wrote nothing (not even c, whose own check passed) and burnt no position.
    log = events.read_all(0, 100)
    assert [(ev.position, ev.stream, ev.version) for ev in log] == [
        (1, "old", 1),
        (2, "a", 1),
        (3, "a", 2),
        (4, "f", 1),
        (5, "g", 1),
        (6, "g", 2),
    ]
    assert events.read("c") == []
    report = store.check()
    assert report.ok, report.problems


def test_a_batch_that_passes_commits_in_one_statement(store: clawstate.Store) -> None:
    events = store.events
    backend = backend_of(store)
    events.append("x", [Event("T", {})])
    jobs = [
        _job(("a", 0, [_rec("a1"), _rec("a2")])),
        _job(("x", 1, [_rec("x2")]), ("b", EXPECT_ANY, [_rec("b1")])),
        _job(("c", 0, [_rec("c1"), _rec("c2"), _rec("c3")])),
        _job(("d", EXPECT_ANY, [_rec("d1")])),
    ]
    before = dict(backend.counters)
    results = _batch(backend, jobs)
    assert backend.counters["event_fast_batches"] == before["event_fast_batches"] + 1
    assert backend.counters["general_batches"] == before["general_batches"]
    assert [[(o.key, o.version, o.seq) for o in r] for r in results] == [  # type: ignore[attr-defined]
        [("a", 2, 3)],
        [("x", 2, 4), ("b", 1, 5)],
        [("c", 3, 8)],
        [("d", 1, 9)],
    ]
    log = events.read_all(0, 100)
    assert [(e.position, e.stream, e.version, e.id) for e in log] == [
        (1, "x", 1, log[0].id),
        (2, "a", 1, "a1"),
        (3, "a", 2, "a2"),
        (4, "x", 2, "x2"),
        (5, "b", 1, "b1"),
        (6, "c", 1, "c1"),
        (7, "c", 2, "c2"),
        (8, "c", 3, "c3"),
        (9, "d", 1, "d1"),
    ]
    assert events.last_position == 9
    report = store.check()
    assert report.ok, report.problems


def test_each_event_of_a_batch_is_recorded_at_its_own_units_time(
    store: clawstate.Store,
) -> None:
    backend = backend_of(store)
    jobs = [
        _job(("a", 0, [_rec("a1"), _rec("a2")]), now=1000.0),
        _job(("b", 0, [_rec("b1")]), now=2000.0),
    ]
    _batch(backend, jobs)
    assert backend.counters["event_fast_batches"] == 1
    assert [(e.stream, e.recorded_at) for e in store.events.read_all(0, 10)] == [
        ("a", 1000.0),
        ("a", 1000.0),
        ("b", 2000.0),
    ]


def test_a_batch_naming_one_stream_twice_takes_the_general_path(store: clawstate.Store) -> None:
    backend = backend_of(store)
    fast, general = backend.counters["event_fast_batches"], backend.counters["general_batches"]
    results = _batch(backend, [_job(("s", 0, [_rec("x1")])), _job(("s", 1, [_rec("x2")]))])
    assert [[(o.version, o.seq) for o in r] for r in results] == [[(1, 1)], [(2, 2)]]  # type: ignore[attr-defined]
    assert backend.counters["event_fast_batches"] == fast
    assert backend.counters["general_batches"] == general + 1


def test_a_check_passed_on_a_stale_snapshot_is_caught_and_rerun(
    store: clawstate.Store,
) -> None:
    """Another session holds the head and appends to the stream; our statement's
    snapshot predates that commit, so its version check passes on stale data — the
    unique index refuses the insert and the general path answers correctly."""
    backend = backend_of(store)
    store.events.append("warm", [Event("T", {})])  # the schema exists, the statement is warm
    schema = backend._s
    outcome: list[object] = []
    with _admin() as other:
        other.execute("BEGIN")
        pos = other.execute(f"UPDATE {schema}.head SET pos = pos + 1 WHERE one RETURNING pos")
        row = pos.fetchone()
        assert row is not None
        other.execute(
            f"INSERT INTO {schema}.events (position, stream, version, id, type, schema_version, "
            "data, metadata, recorded_at) VALUES (%s, 's', 1, 'other-1', 'T', 1, '{}', NULL, 0)",
            (row[0],),
        )

        def append() -> None:
            try:
                outcome.append(store.events.append("s", [Event("T", {})], expected_version=0))
            except WrongExpectedVersion as exc:
                outcome.append(exc)

        t = threading.Thread(target=append)
        t.start()
        time.sleep(0.5)  # our statement now waits for the head lock, snapshot taken
        assert not outcome
        other.execute("COMMIT")
        t.join(10)
    [result] = outcome
    assert isinstance(result, WrongExpectedVersion) and result.actual == 1
    assert backend.counters["event_fast_refused"] == 1
    assert [(e.stream, e.version) for e in store.events.read_all(0, 10)] == [
        ("warm", 1),
        ("s", 1),
    ]
    ok = store.events.append("s", [Event("T", {})], expected_version=1)
    assert (ok.version, ok.position) == (2, 3)
    report = store.check()
    assert report.ok, report.problems
