"""Latencies the unit tests used to assert with wall-clock bounds, measured here instead.

A test asserting "woken within 100 ms" fails on a loaded machine and proves little on an
idle one; the tests now prove *how* a waiter is woken (the poll set to an hour, so only
the notification can explain a delivery), and this case reports *how soon*:

* an event waiter on SQLite, woken by a commit of its own store (the notification) and
  by a commit of another store on the same file (the 50 ms poll: another store has its
  own backend, so it is what another process is to the waiter);
* an event waiter on PostgreSQL, woken by NOTIFY from another store;
* a change watcher on Redis (``XREAD BLOCK``), woken by another store's write;
* ``Worker.stop()`` with ``idle_wait`` = 0.5 s (documented: "returns within about
  ``idle_wait``");
* the write-back loss window: a child process puts through a write-back cache (flush
  delay 100 ms) until SIGKILLed; the window is the kill time minus the acknowledgement
  of the oldest write that did not survive (docs/cache.md quotes it).

Each latency is taken from just before the write was issued to the waiter's return,
so it includes the write's own commit.  PostgreSQL and Redis rows are skipped, saying
why, when their servers are not reachable.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import clawstate
from clawstate import Event

from .harness import Case, Settings, Table, fresh_dir

AREA = "wakeups"

#: A waiter's own time limit: far beyond any wake-up, so a sample is never a timeout.
LONG = 30.0


def _row(label: str, samples: list[float], how: str) -> list[str]:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return [
        label,
        f"{statistics.median(ms):,.1f}",
        f"{p90:,.1f}",
        f"{ms[-1]:,.1f}",
        str(len(ms)),
        how,
    ]


def _skipped(label: str, why: str) -> list[str]:
    return [label, "–", "–", "–", "0", f"skipped: {why}"]


def _wake_samples(
    wait: Callable[[int], bool], position: Callable[[], int], write: Callable[[int], object], n: int
) -> list[float]:
    """``n`` rounds: a thread blocks in ``wait(after)``; the caller then ``write``s; the
    sample is the time from just before the write to the waiter's return."""
    out: list[float] = []
    for i in range(n):
        after = position()
        woke: list[float] = []
        ready = threading.Event()

        def waiter(
            after: int = after, woke: list[float] = woke, ready: threading.Event = ready
        ) -> None:
            ready.set()
            if wait(after):
                woke.append(time.perf_counter())

        t = threading.Thread(target=waiter)
        t.start()
        ready.wait(5)
        time.sleep(0.02)  # the waiter is blocked, not about to start waiting
        sent = time.perf_counter()
        write(i)
        t.join(LONG + 5)
        if woke:
            out.append(woke[0] - sent)
    return out


def _events_rows(
    url: str, label: str, how_local: str | None, how_other: str, n: int
) -> list[list[str]]:
    """Rows for an event store at ``url``: its own commit (when ``how_local``) and
    another store's."""
    rows: list[list[str]] = []
    waiter = clawstate.open(url, sweep_interval=0)
    other = clawstate.open(url, sweep_interval=0)
    try:
        log = waiter.events._log

        def wait(after: int) -> bool:
            return bool(log.wait_for_events(after, LONG))

        def position() -> int:
            return int(waiter.events.last_position)

        waiter.events.append("warm", [Event("Warm")])
        other.events.append("warm", [Event("Warm")])
        if how_local is not None:
            own = _wake_samples(
                wait, position, lambda i: waiter.events.append("w", [Event("P", {"i": i})]), n
            )
            rows.append(_row(f"{label}: a commit of the same store", own, how_local))
        theirs = _wake_samples(
            wait, position, lambda i: other.events.append("w", [Event("P", {"i": i})]), n
        )
        rows.append(_row(f"{label}: a commit of another store", theirs, how_other))
    finally:
        other.close()
        waiter.close()
    return rows


def _sqlite_rows(settings: Settings) -> list[list[str]]:
    with fresh_dir(settings, "wake") as tmp:
        return _events_rows(
            f"sqlite:///{tmp / 'wake.db'}",
            "SQLite event waiter",
            "notification",
            "poll (50 ms)",
            settings.n(40, 5),
        )


def _postgres_rows(settings: Settings) -> list[list[str]]:
    from .kv_postgres import URL, _admin, _reachable

    label = "PostgreSQL event waiter: a commit of another store"
    why = _reachable()
    if why is not None:
        return [_skipped(label, f"not reachable at `{URL}` ({why})")]
    schema = f"bench_wake_{uuid.uuid4().hex[:8]}"
    try:
        sep = "&" if "?" in URL else "?"
        return _events_rows(
            f"{URL}{sep}schema={schema}",
            "PostgreSQL event waiter",
            None,
            "NOTIFY",
            settings.n(40, 5),
        )
    finally:
        with _admin() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _redis_rows(settings: Settings) -> list[list[str]]:
    from .kv_redis import URL, _drop

    label = "Redis change watcher: a write of another store"
    prefix = f"bench-wake-{uuid.uuid4().hex[:8]}:"
    url = f"{URL}{'&' if '?' in URL else '?'}prefix={prefix}"
    try:
        waiter = clawstate.open(url, sweep_interval=0)
    except clawstate.ClawStateError as exc:
        return [_skipped(label, f"not reachable at `{URL}` ({type(exc).__name__})")]
    other = clawstate.open(url, sweep_interval=0)
    try:
        ns = other.namespace("w")
        ns.put("warm", 0)
        samples = _wake_samples(
            lambda after: bool(waiter.backend.wait_for_change(after, LONG)),
            lambda: int(waiter.last_seq),
            lambda i: ns.put(f"k{i}", i),
            settings.n(40, 5),
        )
        return [_row(label, samples, "XREAD BLOCK")]
    finally:
        other.close()
        waiter.close()
        _drop(prefix)


def _worker_row(settings: Settings) -> list[str]:
    from clawstate.events.projections import EventCounts
    from clawstate.worker import Worker

    samples: list[float] = []
    with fresh_dir(settings, "worker") as tmp:
        store = clawstate.open(f"sqlite:///{tmp / 'w.db'}", sweep_interval=0)
        try:
            store.events.append("s", [Event("A")])
            for _ in range(settings.n(5, 2)):
                worker = Worker(store, [EventCounts()], sweep_interval=0, idle_wait=0.5)
                worker.start()
                deadline = time.monotonic() + LONG
                while (
                    worker.status()["projections"][0]["lag_events"] and time.monotonic() < deadline
                ):
                    time.sleep(0.01)
                time.sleep(0.1)  # idle: waiting for events
                t0 = time.perf_counter()
                worker.stop()
                samples.append(time.perf_counter() - t0)
        finally:
            store.close()
    return _row("`Worker.stop()`, idle_wait 0.5 s", samples, "waits out the idle wait")


_WRITE_BACK_CHILD = """
import sys, time, clawstate
store = clawstate.open(sys.argv[1], sweep_interval=0,
                       namespaces={"*": {"cache": "write-back", "cache_flush_delay": 0.1}})
ns = store.namespace("n")
i = 0
while True:
    i += 1
    ns.put(f"k{i}", i)
    sys.stdout.write(f"{i} {time.time()!r}\\n")
    sys.stdout.flush()
    if i % 50 == 0:
        time.sleep(0.001)
"""


def _write_back_row(settings: Settings) -> list[str]:
    windows: list[float] = []
    with fresh_dir(settings, "wb") as tmp:
        for round_ in range(settings.n(5, 1)):
            url = f"sqlite:///{tmp / f'wb-{round_}.db'}"
            child = subprocess.Popen(
                [sys.executable, "-c", _WRITE_BACK_CHILD, url],
                stdout=subprocess.PIPE,
                text=True,
                env={
                    **os.environ,
                    "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"),
                },
            )
            assert child.stdout is not None
            acks: dict[int, float] = {}
            started: float | None = None
            kill_after = 0.6 + 0.37 * round_  # a different phase of the flush cycle each time
            for line in child.stdout:
                i, t = line.split()
                acks[int(i)] = float(t)
                started = time.monotonic() if started is None else started
                if time.monotonic() - started > kill_after:
                    break
            killed_at = time.time()
            child.send_signal(signal.SIGKILL)
            rest, _ = child.communicate(timeout=30)
            for line in rest.splitlines():
                parts = line.split()
                if len(parts) == 2:
                    acks[int(parts[0])] = float(parts[1])
            with clawstate.open(url, sweep_interval=0) as store:
                durable = store.namespace("n").count()
            lost = [i for i in acks if i > durable]
            windows.append(killed_at - acks[min(lost)] if lost else 0.0)
    return _row("write-back loss window (flush delay 100 ms)", windows, "SIGKILL of the writer")


def case_wakeups(settings: Settings) -> list[Table]:
    rows = [*_sqlite_rows(settings), *_postgres_rows(settings), *_redis_rows(settings)]
    rows += [_worker_row(settings), _write_back_row(settings)]
    return [
        Table(
            "7. Wake-ups, stop and the write-back loss window",
            "Wake-up and stop latencies, and the write-back loss window. The unit tests "
            "prove the mechanism (which path wakes a waiter); these are the figures. Each "
            "sample runs from just before the write to the waiter's return (ms).",
            ["what", "median ms", "p90 ms", "max ms", "samples", "how"],
            rows,
        )
    ]


CASES = [Case(AREA, "latencies", "Wake-ups, stop and the write-back loss window", case_wakeups)]

__all__ = ["CASES"]
