"""Durable timers: firing throughput vs APScheduler 3, and fire lag under a steady rate.

T1 schedules N one-shot timers all due in the same second in a fresh SQLite store and
times firing them all (``Timers.fire_due`` in batches, each firing its own transaction
with the timer row's conditional delete); the peer is APScheduler 3's
``BackgroundScheduler`` with its SQLAlchemy job store on a SQLite file and the same N
one-shot ``date`` jobs, timed from ``start()`` until every job has run.

T2 runs the worker's timers job (``clawstate.worker.Worker``) on a SQLite store while
timers are scheduled at 100 a second, each due at once, and reports the p99 of
``fired_at − due`` (the worker wakes on the change log, not on a poll).
"""

from __future__ import annotations

import tempfile
import threading
import time
from typing import Any

import clawstate

from .harness import Case, Measurement, Peer, Sample, Settings, Table, comparison_table

__all__ = ["CASES", "aps_job", "noop"]

AREA = "timers"
_done = threading.Semaphore(0)


def noop(firing: Any) -> None:
    """The timers' handler: no effect (the firing's own transaction still commits)."""


def aps_job() -> None:
    """APScheduler's job: counts itself."""
    _done.release()


def _claw_fire_all(n: int, tmp: str) -> float:
    store = clawstate.open(f"sqlite:///{tmp}/claw-{time.monotonic_ns()}.db", sweep_interval=0)
    try:
        now = time.time()
        for lo in range(0, n, 1000):
            with store.transaction() as tx:
                for i in range(lo, min(n, lo + 1000)):
                    store.timers.schedule(f"t{i}", handler="bench.timers:noop", at=now, tx=tx)
        t0 = time.perf_counter()
        fired = 0
        while True:
            got = store.timers.fire_due(limit=500)
            if not got:
                break
            fired += got
        seconds = time.perf_counter() - t0
        assert fired == n, (fired, n)
        return seconds
    finally:
        store.close()


def _aps_fire_all(n: int, tmp: str) -> float:
    import logging
    from datetime import datetime, timedelta

    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    url = f"sqlite:///{tmp}/aps-{time.monotonic_ns()}.db"
    sched = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=url)},
        job_defaults={"misfire_grace_time": 3600, "coalesce": False},
    )
    when = datetime.now() + timedelta(seconds=0.5)
    for i in range(n):
        sched.add_job(aps_job, "date", run_date=when, id=f"t{i}")
    while datetime.now() < when:
        time.sleep(0.01)
    t0 = time.perf_counter()
    sched.start()
    for _ in range(n):
        _done.acquire()
    seconds = time.perf_counter() - t0
    sched.shutdown(wait=True)
    return seconds


def case_fire_all(settings: Settings) -> list[Table]:
    title = "T1. Firing N one-shot timers due in the same second"
    n = settings.n(10_000, 300)
    try:
        import apscheduler  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        return [Table(title, "Not measured: apscheduler<4 / sqlalchemy missing.", ["system"], [])]
    claw = Measurement("clawstate (sqlite)", stat=settings.stat)
    aps = Measurement("APScheduler 3 (SQLAlchemy SQLite job store)", stat=settings.stat)
    with tempfile.TemporaryDirectory(dir=settings.tmpdir) as tmp:
        for _ in range(max(1, min(settings.rounds, 3))):
            claw.samples.append(Sample(n, _claw_fire_all(n, tmp)))
            aps.samples.append(Sample(n, _aps_fire_all(n, tmp)))
    return [
        comparison_table(
            "timers.fire_all",
            title,
            f"{n:,} timers scheduled due now in a fresh store, then timed until every one has "
            "run; the target is firing in at most half APScheduler's time (≥ 2× its rate).",
            claw,
            [Peer(aps, 2.0, "BackgroundScheduler, 10 executor threads, same jobs")],
            unit="timer",
            subject_note="fire_due(limit=500): claim per batch, one transaction per firing",
        )
    ]


def case_lag(settings: Settings) -> list[Table]:
    from clawstate.worker import Worker

    title = "T2. Fire lag at 100 timers/s (worker job)"
    seconds = 2.0 if settings.quick else 10.0
    with tempfile.TemporaryDirectory(dir=settings.tmpdir) as tmp:
        store = clawstate.open(f"sqlite:///{tmp}/lag.db", sweep_interval=0)
        worker = Worker(store, sweep_interval=0)
        worker.start()
        try:
            n = int(100 * seconds)
            start = time.perf_counter()
            for i in range(n):
                target = start + i / 100
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                store.timers.schedule(f"t{i}", handler="bench.timers:noop", after=0)
            deadline = time.monotonic() + 30
            while store.timers.next_due() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            job = worker._timer_job
            assert job is not None
            lags = sorted(job.timers.lags)
        finally:
            worker.stop()
            store.close()
    p50 = lags[len(lags) // 2] * 1000
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000
    return [
        Table(
            title,
            f"{n:,} timers scheduled at 100/s, each due at once, fired by `Worker`'s timers "
            "job on SQLite; lag = fired_at − due. Target: p99 < 100 ms.",
            ["timers", "p50 ms", "p99 ms", "max ms", "target"],
            [[f"{len(lags):,}", f"{p50:.1f}", f"{p99:.1f}", f"{lags[-1] * 1000:.1f}", "< 100"]],
        )
    ]


CASES = [
    Case(AREA, "fire_all", "Timers: fire 10,000 due timers vs APScheduler 3", case_fire_all),
    Case(AREA, "lag", "Timers: fire lag p99 at 100 timers/s", case_lag),
]
