"""The event store on PostgreSQL: the conformance suites over a fresh schema per store,
writers in several processes producing a gap-free global log in commit order, and
subscribers (sync and async) woken by NOTIFY when another process appends."""

from __future__ import annotations

import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

import clawstate
from _backends import (
    ROOT,
    pg,
    pg_async_store_factory,
    pg_store_factory,
    schemas,
)
from _backends import pg_admin as _admin
from _backends import pg_url as url_for
from clawstate.testing.events import AsyncEventStoreConformance, EventStoreConformance

#: Fixtures from ``_backends``, re-exported for pytest.
__all__ = ["pg", "pg_async_store_factory", "pg_store_factory", "schemas"]


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


# -- a subscriber woken by NOTIFY from another process -----------------------------------

_PINGER = """
import sys, clawstate
store = clawstate.open(sys.argv[1], sweep_interval=0)
store.events.append("warm-up", [clawstate.Event("Warm", {})])  # connected, schema made
print("ready", flush=True)
for line in sys.stdin:
    store.events.append("wake", [clawstate.Event("Ping", {"i": int(line)})])
store.close()
"""

#: Each append comes this long after the previous delivery, while the subscriber
#: waits at the end of the log.
PAUSES = (0.1, 0.4)
WAKES = 8
#: How long one wait for events may last: far beyond the test's patience (``PATIENCE``),
#: and the fallback poll is 30 s, so a wait that returns in time was ended by NOTIFY.
LONG_WAIT = 120.0
PATIENCE = 30.0


def _pinger(url: str) -> subprocess.Popen[str]:
    """A process appending event ``{"i": n}`` to stream "wake" for each line ``n`` on stdin."""
    child = subprocess.Popen(
        [sys.executable, "-c", _PINGER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", "the appender process did not start"
    return child


def _ping(child: subprocess.Popen[str], i: int) -> float:
    assert child.stdin is not None
    sent = time.monotonic()
    child.stdin.write(f"{i}\n")
    child.stdin.flush()
    return sent


def _stop(child: subprocess.Popen[str]) -> None:
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_waiter_is_woken_by_notify_from_another_process(schemas: Callable[[], str]) -> None:
    """Each append of another process ends a wait that could last two minutes, with the
    fallback poll at 30 s: only the NOTIFY explains a return within ``PATIENCE``.  The
    wake-up latency is measured by `make bench` (bench/wakeups.py), not asserted here."""
    url = url_for(schemas(), poll_interval=30)
    store = clawstate.open(url, sweep_interval=0)
    child = _pinger(url)
    log = store.events._log
    try:
        for i in range(WAKES):
            after = store.events.last_position
            woke: list[bool] = []
            waiter = threading.Thread(
                target=lambda after=after, woke=woke: woke.append(
                    log.wait_for_events(after, LONG_WAIT)
                )
            )
            waiter.start()
            time.sleep(0.05)  # the waiter is blocked before the append is sent
            _ping(child, i)
            waiter.join(PATIENCE)
            assert woke == [True], f"append {i} did not wake the waiter"
            assert store.events.last_position > after
    finally:
        _stop(child)
        store.close()
    assert child.returncode == 0


def test_a_subscriber_receives_appends_of_another_process(schemas: Callable[[], str]) -> None:
    url = url_for(schemas(), poll_interval=30)
    store = clawstate.open(url, sweep_interval=0)
    child = _pinger(url)
    sub = store.events.subscribe(from_position="end")
    arrivals: queue.Queue[int] = queue.Queue()

    def consume() -> None:
        for event in sub:
            arrivals.put(event.data["i"])

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    rng = random.Random(4)
    try:
        for i in range(WAKES):
            time.sleep(rng.uniform(*PAUSES))  # the subscriber waits at the end of the log
            _ping(child, i)
            assert arrivals.get(timeout=PATIENCE) == i
    finally:
        sub.close()
        consumer.join(timeout=PATIENCE)
        _stop(child)
        store.close()
    assert not consumer.is_alive()
    assert child.returncode == 0


@pytest.mark.anyio
async def test_an_async_subscriber_is_woken_by_an_append_in_another_process(
    schemas: Callable[[], str], anyio_backend: str
) -> None:
    import anyio

    url = url_for(schemas(), poll_interval=30)
    astore = clawstate.open_async(url, sweep_interval=0)
    child = _pinger(url)
    sub = astore.events.subscribe(from_position="end")
    send, receive = anyio.create_memory_object_stream[int](WAKES)
    rng = random.Random(5)

    async def consume() -> None:
        async with send:
            async for event in sub:
                await send.send(event.data["i"])

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for i in range(WAKES):
                await anyio.sleep(rng.uniform(*PAUSES))
                _ping(child, i)
                with anyio.fail_after(PATIENCE):
                    assert await receive.receive() == i
            with anyio.fail_after(PATIENCE):
                await sub.close()  # ends consume(): its pending next() sees the close
    finally:
        _stop(child)
        await astore.close()
    assert child.returncode == 0
