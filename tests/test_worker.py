"""The worker: projections kept current by commits, the sweep on schedule, several
workers on one projection applying each event once, and ``clawstate worker`` as a
real process stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import clawstate
from clawstate import Event, InvalidRequest
from clawstate.events import Projection, handles
from clawstate.events.projections import EventCounts, ReadModel
from clawstate.testing.conformance import StoreFactory
from clawstate.testing.fakes import FakeClock
from clawstate.types import RecordedEvent
from clawstate.worker import Worker

ROOT = Path(__file__).resolve().parent.parent


class Totals(Projection):
    name = "totals"
    stream_prefix = "order-"

    @handles("Placed")
    def placed(self, event: RecordedEvent, view: ReadModel) -> None:
        view.update("sum", lambda t: (t or 0) + event.data["n"])
        view.update("count", lambda c: (c or 0) + 1)


class Broken(Projection):
    name = "broken"

    @handles("Placed")
    def placed(self, event: RecordedEvent, view: ReadModel) -> None:
        raise RuntimeError("handler bug")


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _append_orders(store: clawstate.Store, n: int, start: int = 0) -> int:
    total = 0
    for i in range(start, start + n):
        store.events.append(f"order-{i % 7}", [Event("Placed", {"n": i})])
        total += i
    return total


def test_worker_keeps_projections_current_until_stopped(store_factory: StoreFactory) -> None:
    store = store_factory()
    before = _append_orders(store, 20)
    worker = Worker(store, [Totals(), EventCounts()], sweep_interval=0, idle_wait=0.5)
    worker.start()
    try:
        assert worker.running
        after = _append_orders(store, 30, start=20)
        ns = store.namespace("totals")
        _until(lambda: (it := ns.get("count")) is not None and it.value == 50)
        assert ns.get("sum").value == before + after  # type: ignore[union-attr]
        _until(lambda: all(p["lag_events"] == 0 for p in worker.status()["projections"]))
        assert store.namespace("event-counts").get("Placed").value == 50  # type: ignore[union-attr]
    finally:
        jobs = list(worker._threads)
        worker.stop()
    # Every job's thread ended by itself (stop() joins each for idle_wait + 30 s at most,
    # so a thread still alive is one that ignored the stop).  How soon stop() returns
    # (about idle_wait) is measured by `make bench` (bench/wakeups.py).
    assert jobs and not any(t.is_alive() for t in jobs), "a job ignored stop()"
    assert not worker.running
    # Stopped means stopped: later events are not applied.
    _append_orders(store, 5, start=50)
    time.sleep(0.3)
    assert store.namespace("totals").get("count").value == 50  # type: ignore[union-attr]


def test_run_once_catches_up_and_sweeps(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    store = clawstate.open(f"sqlite:///{tmp_path / 's.db'}", clock=clock, sweep_interval=0)
    try:
        store.namespace("sessions").put("s1", {"u": 1}, ttl=10)
        store.namespace("sessions").put("s2", {"u": 2})
        _append_orders(store, 12)
        clock.advance(11)
        worker = Worker(store, [Totals()], sweep_interval=60)
        done = worker.run_once()
        assert done["handled"] == 12
        assert done["swept"]["expired"] == 1
        assert store.namespace("sessions").get("s2") is not None
        assert worker.run_once()["handled"] == 0
        status = worker.status()
        assert status["sweep"]["runs"] == 2 and status["sweep"]["removed"]["expired"] == 1
        assert status["projections"][0]["position"] == 12
    finally:
        store.close()


def test_the_sweep_job_runs_on_its_interval(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    store = clawstate.open(f"sqlite:///{tmp_path / 's.db'}", clock=clock, sweep_interval=0)
    worker = Worker(store, sweep_interval=0.1)
    try:
        worker.start()
        _until(lambda: worker.status()["sweep"]["runs"] >= 1)
        store.namespace("sessions").put("s1", {"u": 1}, ttl=10)
        clock.advance(11)
        # Expired items are invisible at once; the sweep job is what removes the row.
        _until(lambda: worker.status()["sweep"]["removed"].get("expired", 0) == 1, timeout=5)
        assert store.check().ok
    finally:
        worker.stop()
        store.close()


def test_two_workers_on_one_projection_apply_each_event_once(tmp_path: Path) -> None:
    """Two processes' worth of workers (two stores on one file) race on every page; the
    conditional checkpoint write lets exactly one commit each page."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    stores = [clawstate.open(url, sweep_interval=0) for _ in range(3)]
    writer, *others = stores
    workers = [Worker(s, [Totals()], sweep_interval=0, batch=7, idle_wait=0.2) for s in others]
    try:
        for w in workers:
            w.start()
        expected = sum(_append_orders(writer, 40, start=k * 40) for k in range(5))
        ns = writer.namespace("totals")
        _until(lambda: (it := ns.get("count")) is not None and it.value == 200, timeout=20)
        time.sleep(0.3)  # a page applied twice would show up now
        assert ns.get("count").value == 200  # type: ignore[union-attr]
        assert ns.get("sum").value == expected  # type: ignore[union-attr]
        [status] = writer.events.projection_status()
        assert (status.position, status.events) == (200, 200)
    finally:
        for w in workers:
            w.stop()
        for s in stores:
            s.close()


def test_a_failing_projection_does_not_stop_the_others(store_factory: StoreFactory) -> None:
    store = store_factory()
    worker = Worker(store, [Broken(), Totals()], sweep_interval=0, idle_wait=0.2)
    worker.start()
    try:
        _append_orders(store, 5)
        _until(lambda: (it := store.namespace("totals").get("count")) is not None and it.value == 5)
        _until(
            lambda: any(
                p["name"] == "broken" and p["last_error"] for p in worker.status()["projections"]
            )
        )
        [broken] = [p for p in worker.status()["projections"] if p["name"] == "broken"]
        assert "handler bug" in broken["last_error"]
        assert broken["position"] == 0 and broken["lag_events"] == 5
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sweep_interval": -1}, "sweep_interval"),
        ({"sweep_interval": "soon"}, "sweep_interval"),
        ({"idle_wait": 0}, "idle_wait"),
        ({"idle_wait": 120}, "idle_wait"),
        ({"batch": 0}, "batch"),
    ],
)
def test_bad_options_name_the_field(
    store_factory: StoreFactory, kwargs: dict[str, object], field: str
) -> None:
    store = store_factory()
    with pytest.raises(InvalidRequest) as err:
        Worker(store, [Totals()], **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_a_worker_with_nothing_to_run_refuses_to_start(store_factory: StoreFactory) -> None:
    worker = Worker(store_factory(), sweep_interval=0, timers=False)
    with pytest.raises(InvalidRequest, match="nothing to run"):
        worker.start()
    assert not worker.running


def test_cli_worker_runs_until_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["CLAWSTATE_URL"] = url
    with clawstate.open(url, sweep_interval=0) as store:
        _append_orders(store, 10)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clawstate.cli",
            "worker",
            "--projection",
            "clawstate.events.projections:EventCounts",
            "--idle-wait",
            "0.3",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        started = json.loads(proc.stderr.readline())
        assert started["msg"] == "worker started" and started["projections"] == ["event-counts"]
        assert started["sweep_interval"] == 60.0  # the store's configured default
        with clawstate.open(url, sweep_interval=0) as store:
            _append_orders(store, 15, start=10)
            counts = store.namespace("event-counts")
            _until(lambda: (it := counts.get("Placed")) is not None and it.value == 25)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    status = json.loads(out)
    assert status["running"] is False
    assert status["projections"][0]["position"] == 25
    assert status["sweep"]["runs"] >= 1
