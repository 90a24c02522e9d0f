"""The worker's timers job: fires due timers in its own thread, wakes on a schedule
(no polling wait), stops promptly, reports lag; the CLI's ``--no-timers``."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from clawstate import ConfigError, Store
from clawstate.testing.conformance import StoreFactory
from clawstate.testing.conformance.timers import COUNT
from clawstate.worker import Worker


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _fired(store: Store) -> dict[str, int]:
    return {it.key: it.value for it in store.namespace("fired").scan("", 1000).items}


def test_worker_fires_due_timers_and_wakes_on_schedule(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.timers.schedule("early", handler=COUNT, after=0)
    worker = Worker(store, sweep_interval=0)
    worker.start()
    try:
        _until(lambda: _fired(store) == {"early": 1})
        # The job now sleeps up to 30 s (nothing due): a new schedule must wake it.
        time.sleep(0.2)
        store.timers.schedule("later", handler=COUNT, after=0.3)
        t0 = time.monotonic()
        _until(lambda: _fired(store).get("later") == 1, timeout=5)
        assert time.monotonic() - t0 < 5
        status = worker.status()["timers"]
        assert status["fired"] == 2 and status["last_error"] is None
        assert status["lag_p99"] is not None and status["lag_p99"] >= 0
    finally:
        t0 = time.monotonic()
        worker.stop()
        stop_took = time.monotonic() - t0
    assert not worker.running
    assert stop_took < 5  # the sleeping job wakes on stop, not after its 30 s
    assert store.timers.list().items == []


def test_worker_without_timers_leaves_them(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.timers.schedule("t", handler=COUNT, after=0)
    worker = Worker(store, sweep_interval=0.05, timers=False)
    worker.start()
    try:
        _until(lambda: worker.status()["sweep"]["runs"] >= 2)
    finally:
        worker.stop()
    assert worker.status()["timers"] is None
    assert store.timers.get("t") is not None and _fired(store) == {}


def test_run_once_fires_everything_due(store_factory: StoreFactory) -> None:
    store = store_factory()
    for i in range(250):
        store.timers.schedule(f"t{i}", handler=COUNT, after=0)
    store.timers.schedule("future", handler=COUNT, after=3600)
    done = Worker(store, sweep_interval=0).run_once()
    assert done["timers_fired"] == 250
    assert len(_fired(store)) == 250 and store.timers.get("future") is not None


def test_worker_allow_list(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.timers.schedule("t", handler=COUNT, after=0)
    Worker(store, sweep_interval=0, timer_handlers=["myapp"]).run_once()
    info = store.timers.get("t")
    assert info is not None and info.attempts == 1 and "allow-list" in (info.last_error or "")
    with pytest.raises(ConfigError, match=r"timers\.handlers"):
        Worker(store, sweep_interval=0, timer_handlers=["not a module"])
