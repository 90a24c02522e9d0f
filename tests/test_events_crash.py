"""Crash test for the event store: SIGKILL appenders and subscribers, then prove that

* every acknowledged append is in the log exactly once, at its returned position
  and version (and an outbox transaction's state write is there with its event);
* the global log stays gap-free and the store passes ``check()``;
* a durable subscription resumes right after its saved checkpoint — never
  skipping an event, never checkpointing past what it delivered — so over all
  runs every event is delivered at least once;
* a projection runner killed mid-page leaves read model and checkpoint in
  agreement: after a final catch-up its counts equal the log's exactly
  (exactly-once effect).

Each cycle starts an appender process (three threads: single appends with
expected versions, outbox transactions, atomic multi-stream appends) and a
subscriber process (a durable subscription and a projection runner), lets them
run for a random moment and SIGKILLs both.  The cycles run over one SQLite file and
over one fresh PostgreSQL schema (skipped without a server, failing instead under
``CLAWSTATE_REQUIRE_SERVICES=1``).  ``CLAWSTATE_TEST_EVENTS_CRASH_CYCLES`` overrides
the number of SQLite cycles (default 12), ``CLAWSTATE_TEST_EVENTS_CRASH_PG_CYCLES``
the number of PostgreSQL cycles (default 8).  Over PostgreSQL the test looks at the
store only once the killed children's server sessions are gone: a COMMIT a child
sent just before its SIGKILL still commits when the server reads it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import clawstate
from clawstate import NO_STREAM, Event, WrongExpectedVersion
from clawstate.events.projections import EventCounts

CYCLES = int(os.environ.get("CLAWSTATE_TEST_EVENTS_CRASH_CYCLES", "12"))
PG_CYCLES = int(os.environ.get("CLAWSTATE_TEST_EVENTS_CRASH_PG_CYCLES", "8"))
ROOT = Path(__file__).resolve().parent.parent
SUB = "crash-sub"
#: The durable subscriber's lease (seconds): a SIGKILLed subscriber holds the name this long.
SUB_LEASE = 1.0


# -- the child processes ----------------------------------------------------------------


def _ack(fd: int, doc: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(doc) + "\n").encode())


def _singles(store: clawstate.Store, fd: int, cycle: int) -> None:
    rng = random.Random(cycle)
    versions: dict[str, int] = {}
    while True:
        stream = f"crash-{rng.randrange(5)}"
        if stream not in versions:
            versions[stream] = store.events.stream_metadata(stream).version
        batch = [Event("Single", {"c": cycle}) for _ in range(rng.randint(1, 3))]
        try:
            r = store.events.append(stream, batch, expected_version=versions[stream])
        except WrongExpectedVersion:
            versions.pop(stream)
            continue
        versions[stream] = r.version
        _ack(
            fd,
            {
                "stream": stream,
                "version": r.version,
                "position": r.position,
                "ids": [e.id for e in batch],
            },
        )


def _outbox(store: clawstate.Store, fd: int, cycle: int) -> None:
    i = 0
    while True:
        event = Event("OrderPlaced", {"c": cycle, "i": i})
        with store.transaction() as tx:
            tx.events.append(f"order-{cycle}-{i}", [event], expected_version=NO_STREAM)
            tx.namespace("orders").put(event.id, {"i": i})
        r = tx.appended[0]
        _ack(
            fd,
            {
                "stream": f"order-{cycle}-{i}",
                "version": r.version,
                "position": r.position,
                "ids": [event.id],
                "outbox": True,
            },
        )
        i += 1


def _multi(store: clawstate.Store, fd: int, cycle: int) -> None:
    i = 0
    while True:
        a, b = Event("Debited", {"i": i}), Event("Credited", {"i": i})
        ra, rb = store.events.append_many(
            [(f"acct-a-{cycle}", [a], "any"), (f"acct-b-{cycle}", [b], "any")]
        )
        _ack(
            fd,
            {
                "stream": f"acct-a-{cycle}",
                "version": ra.version,
                "position": ra.position,
                "ids": [a.id],
            },
        )
        _ack(
            fd,
            {
                "stream": f"acct-b-{cycle}",
                "version": rb.version,
                "position": rb.position,
                "ids": [b.id],
            },
        )
        i += 1


def appender(url: str, log: str, cycle: int) -> None:
    store = clawstate.open(url, sweep_interval=0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for target in (_singles, _outbox, _multi):
        threading.Thread(target=target, args=(store, fd, cycle), daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    threading.Event().wait()


def subscriber(url: str, log: str) -> None:
    store = clawstate.open(url, sweep_interval=0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    runner = store.events.projection_runner([EventCounts()], batch=7)
    threading.Thread(target=runner.run_forever, kwargs={"idle_wait": 0.05}, daemon=True).start()
    # The killed predecessor's lease holds the name until it runs out (a short one
    # here, so a cycle does not wait the default 30 s): retry until it is ours.
    deadline = time.monotonic() + 60
    while True:
        try:
            sub = store.events.subscribe(name=SUB, checkpoint_every=5, lease=SUB_LEASE)
            break
        except clawstate.VersionConflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for event in sub:  # delivered = logged; the next next() marks it processed
        _ack(fd, {"p": event.position})


# -- the parent ---------------------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # torn by the kill: never a completed acknowledgement
    return out


def _start(kind: str, *args: str) -> subprocess.Popen[bytes]:
    code = f"import sys, tests.test_events_crash as t; t.{kind}(*sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        proc.wait()
        raise AssertionError(f"{kind} did not start")
    return proc


def _checkpoint(store: clawstate.Store) -> int:
    item = store._system_namespace("_subscriptions").get(SUB)
    return 0 if item is None else int(item.value["position"])


def _log(store: clawstate.Store) -> list[clawstate.RecordedEvent]:
    out: list[clawstate.RecordedEvent] = []
    while page := store.events.read_all(out[-1].position if out else 0, 5000):
        out += page
    return out


class Target(NamedTuple):
    url: str  #: what the test opens
    child_url: str  #: what the child processes open
    cycles: int
    #: returns once nothing a killed child sent can still change the store
    settle: Callable[[], None]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """One SQLite file, or a fresh PostgreSQL schema dropped at teardown."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
        # A dead process's transaction is over: the file lock went with it.
        yield Target(url, url, CYCLES, lambda: None)
        return
    # Imported here, not at the top: the child processes import this module without
    # tests/ on their path.  require() skips without a server, or fails in CI.
    from _backends import drop_schema, new_schema, pg_probe
    from _backends import pg_admin as _admin
    from _backends import pg_url as url_for
    from services import require

    require("postgresql", pg_probe)
    schema = new_schema()
    app = f"crash-{schema}"

    def settle() -> None:
        # A COMMIT a child sent just before its SIGKILL still commits, once the server
        # reads it: wait until the children's server sessions are gone.
        deadline = time.monotonic() + 30
        with _admin() as conn:
            while conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchone() != (0,):
                assert time.monotonic() < deadline, "the killed children's sessions linger"
                time.sleep(0.01)

    yield Target(url_for(schema), url_for(schema, application_name=app), PG_CYCLES, settle)
    drop_schema(schema)


def test_sigkill_appenders_and_subscribers(target: Target, tmp_path: Path) -> None:
    url, cycles = target.url, target.cycles
    clawstate.open(url, sweep_interval=0).close()
    rng = random.Random(int(os.environ.get("CLAWSTATE_TEST_CRASH_SEED", "11")))
    acked: list[dict[str, Any]] = []
    delivered: set[int] = set()
    checkpoint = 0
    for cycle in range(cycles):
        app_log, sub_log = tmp_path / f"app-{cycle}.log", tmp_path / f"sub-{cycle}.log"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(_start("appender", target.child_url, str(app_log), str(cycle)))
            procs.append(_start("subscriber", target.child_url, str(sub_log)))
        except BaseException:
            for proc in procs:  # a child that did start must not outlive a failed test
                proc.kill()
                proc.wait()
            raise
        time.sleep(rng.uniform(0.05, 0.4))
        rng.shuffle(procs)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
        target.settle()
        acked += _lines(app_log)
        run = [d["p"] for d in _lines(sub_log)]
        if run:
            # Resumed right after the saved checkpoint, then in order without a gap.
            assert run == list(range(checkpoint + 1, checkpoint + 1 + len(run))), (
                cycle,
                checkpoint,
                run[:5],
            )
        delivered.update(run)
        with clawstate.open(url, sweep_interval=0) as store:
            saved = _checkpoint(store)
            assert checkpoint <= saved <= max(delivered, default=0), (
                "checkpoint moved back or past delivery"
            )
            checkpoint = saved
            if cycle % 4 == 3 or cycle == cycles - 1:
                _verify(store, acked)
    assert len(acked) > 50, "the appender never got appends acknowledged"
    assert delivered, "the subscriber never delivered"
    with clawstate.open(url, sweep_interval=0) as store:
        log = _log(store)
        # Over every run plus a final catch-up, every event was delivered at least once.
        time.sleep(SUB_LEASE * 1.5)  # the last killed subscriber's lease runs out
        final = store.events.subscribe(name=SUB, timeout=0.2)
        tail = [e.position for e in final]
        assert not tail or tail[0] == checkpoint + 1
        assert delivered | set(tail) == set(range(1, len(log) + 1))
        # The projection's effect is exactly once: its counts equal the log's.
        store.events.projection_runner([EventCounts()]).run_until_idle()
        counts = {it.key: it.value for it in store.namespace("event-counts").scan(limit=100).items}
        assert counts == dict(Counter(e.type for e in log))


def _verify(store: clawstate.Store, acked: list[dict[str, Any]]) -> None:
    log = _log(store)
    assert [e.position for e in log] == list(range(1, len(log) + 1)), "the global log has a gap"
    ids = Counter(e.id for e in log)
    assert max(ids.values()) == 1, "an event is stored twice"
    for doc in acked:
        first = doc["position"] - len(doc["ids"]) + 1
        for i, eid in enumerate(doc["ids"]):
            event = log[first + i - 1]
            assert event.id == eid, f"acknowledged event {eid} is not at position {first + i}"
            assert event.stream == doc["stream"]
            assert event.version == doc["version"] - len(doc["ids"]) + 1 + i
        if doc.get("outbox"):
            assert store.namespace("orders").get(doc["ids"][0]) is not None, "outbox state lost"
    orders = store.namespace("orders").count()
    assert orders == sum(1 for e in log if e.type == "OrderPlaced"), (
        "outbox event without its state"
    )
    report = store.check()
    assert report.ok, report.problems
