"""Concurrency: 8 writers race on the same streams with expected versions.

Each writer loops: read the stream's version, append one event expecting it,
record the outcome (won with a version and position, or lost with the actual
version); losers retry.  Writers run as threads sharing one store (memory,
SQLite and PostgreSQL: group commit) and as separate processes sharing one
SQLite file (its write lock) or one PostgreSQL schema (its head row lock).  A
checker over the recorded history and the log proves: exactly one winner per
(stream, version), every acknowledged event exactly once at its returned
position, no duplicates, a gap-free global log, and every loser saw a version
newer than the one it expected.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import clawstate
from clawstate import Event, WrongExpectedVersion
from clawstate.testing.conformance import StoreFactory

ROOT = Path(__file__).resolve().parent.parent
STREAMS = ["race-a", "race-b", "race-c"]
WRITERS = 8


def race(store: clawstate.Store, writer: int, attempts: int, seed: int) -> list[dict[str, Any]]:
    """One writer's loop; returns its history (one record per attempt)."""
    rng = random.Random(seed)
    events = store.events
    history: list[dict[str, Any]] = []
    for i in range(attempts):
        stream = rng.choice(STREAMS)
        expected = events.stream_metadata(stream).version
        event = Event("Raced", {"writer": writer, "i": i})
        try:
            result = events.append(stream, [event], expected_version=expected)
        except WrongExpectedVersion as exc:
            history.append(
                {"ok": False, "stream": stream, "expected": exc.expected, "actual": exc.actual}
            )
            continue
        history.append(
            {
                "ok": True,
                "stream": stream,
                "expected": expected,
                "version": result.version,
                "position": result.position,
                "id": event.id,
            }
        )
    return history


def check_history(store: clawstate.Store, history: list[dict[str, Any]]) -> None:
    log: list[clawstate.RecordedEvent] = []
    after = 0
    while page := store.events.read_all(after, 1000):
        log += page
        after = page[-1].position
    # A gap-free global log, no duplicate events.
    assert [e.position for e in log] == list(range(1, len(log) + 1))
    assert len({e.id for e in log}) == len(log)
    wins = [h for h in history if h["ok"]]
    # Exactly one winner per (stream, version); every winner's event is in the log,
    # exactly once, at its returned position; and nothing in the log was not won.
    assert Counter((h["stream"], h["version"]) for h in wins).most_common(1)[0][1] == 1
    assert len(wins) == len(log)
    for h in wins:
        event = log[h["position"] - 1]
        assert (event.id, event.stream, event.version) == (h["id"], h["stream"], h["version"])
        assert h["version"] == h["expected"] + 1
    for stream in STREAMS:
        versions = [e.version for e in log if e.stream == stream]
        assert versions == list(range(1, len(versions) + 1)), stream
    # Every loser lost to a newer version than it expected.
    for h in history:
        if not h["ok"]:
            expected = 0 if h["expected"] == "no_stream" else h["expected"]
            assert h["actual"] is not None and h["actual"] > expected, h
    report = store.check()
    assert report.ok, report.problems


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh schema on the test PostgreSQL server, dropped at teardown.

    Skips without a server (fails under ``CLAWSTATE_REQUIRE_SERVICES=1``), like
    ``_backends``' ``pg`` fixture.  Imported here, not at the top: the writer
    processes import this module without ``tests/`` on their path.
    """
    from _backends import drop_schema, new_schema, pg_probe, pg_url
    from services import require

    require("postgresql", pg_probe)
    schema = new_schema()
    yield pg_url(schema)
    drop_schema(schema)


def threads_race(store: clawstate.Store) -> None:
    histories: list[list[dict[str, Any]]] = [[] for _ in range(WRITERS)]
    barrier = threading.Barrier(WRITERS)

    def writer(w: int) -> None:
        barrier.wait()
        histories[w] = race(store, w, 60, seed=w)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = [h for hs in histories for h in hs]
    assert len(history) == WRITERS * 60, "a writer thread failed"
    assert sum(h["ok"] for h in history) > 20
    assert any(not h["ok"] for h in history), "the writers never raced"
    check_history(store, history)


def test_threads_race_with_expected_versions(store_factory: StoreFactory) -> None:
    threads_race(store_factory())


def test_threads_race_with_expected_versions_on_postgresql(pg_url: str) -> None:
    """The threads share one store: their appends are group-committed into shared
    PostgreSQL transactions, each unit checked against the prefetched stream versions."""
    with clawstate.open(pg_url, sweep_interval=0) as store:
        threads_race(store)


def _child(url: str, writer: int, attempts: int, go: str) -> None:
    """A writer process: waits for the start file, races, prints its history."""
    import time

    store = clawstate.open(url, sweep_interval=0)
    assert store.events.last_position >= 0  # connect before the start
    Path(f"{go}.ready-{writer}").touch()
    while not os.path.exists(go):
        time.sleep(0.005)
    print(json.dumps(race(store, writer, attempts, seed=100 + writer)))
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL several processes share: one SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def test_processes_race_with_expected_versions(shared_url: str, tmp_path: Path) -> None:
    url = shared_url
    clawstate.open(url, sweep_interval=0).close()  # create the schema once
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = (
        "import sys, tests.test_events_concurrency as t; "
        "t._child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(w), "40", str(go)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("go.ready-*"))) < WRITERS:
            assert all(p.poll() is None for p in procs), "a writer process died at start"
            assert time.monotonic() < deadline, "the writer processes did not start"
            time.sleep(0.01)
        go.touch()
        history: list[dict[str, Any]] = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            history += json.loads(out.strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(history) == WRITERS * 40
    assert sum(h["ok"] for h in history) > 20
    assert any(not h["ok"] for h in history), "the writers never raced"
    with clawstate.open(url, sweep_interval=0) as store:
        check_history(store, history)


def append_many_race(store: clawstate.Store, threads: int) -> None:
    """Writers move 'money' between streams with append_many: every transfer is all or
    nothing, so the per-stream sums always balance."""
    events = store.events
    for s in STREAMS:
        events.append(s, [Event("Opened", {"balance": 100})], expected_version=0)
    finished: list[int] = []

    def mover(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            a, b = rng.sample(STREAMS, 2)
            try:
                events.append_many(
                    [
                        (a, [Event("Moved", {"delta": -1})], events.stream_metadata(a).version),
                        (b, [Event("Moved", {"delta": 1})], events.stream_metadata(b).version),
                    ]
                )
            except WrongExpectedVersion:
                pass
        finished.append(seed)

    pool = [threading.Thread(target=mover, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(finished) == threads, "a mover thread failed"
    total = sum(
        e.data.get("balance", 0) + e.data.get("delta", 0) for s in STREAMS for e in events.read(s)
    )
    assert total == 100 * len(STREAMS)
    moved = sum(1 for e in events.read_all(0, 10_000) if e.type == "Moved")
    assert moved > 0 and moved % 2 == 0
    report = store.check()
    assert report.ok, report.problems


@pytest.mark.parametrize("threads", [8])
def test_threads_append_many_atomically_across_streams(
    store_factory: StoreFactory, threads: int
) -> None:
    append_many_race(store_factory(), threads)


def test_threads_append_many_atomically_across_streams_on_postgresql(pg_url: str) -> None:
    with clawstate.open(pg_url, sweep_interval=0) as store:
        append_many_race(store, 8)
