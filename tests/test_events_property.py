"""Property: a projection rebuilt from zero equals the one built incrementally.

Hypothesis generates a history — appends of orders and cancellations to a few
streams, interleaved with runner passes of random page sizes (so pages split
anywhere, including between two events of one read-model key), stream deletes
and a second, competing runner — and checks that

* the incrementally built read model equals a pure-Python fold of the log
  (the oracle), and
* rebuilding the projection from position 0 gives exactly the same read model.

Runs on memory and SQLite (a fresh store per example).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clawstate
from clawstate import Event, RecordedEvent
from clawstate.testing.events import OrderTotals, read_model

CUSTOMERS = ["ann", "bob", "cy"]
STREAMS = ["order-1", "order-2", "order-3", "misc-1"]

append_op = st.tuples(
    st.just("append"),
    st.sampled_from(STREAMS),
    st.lists(
        st.one_of(
            st.tuples(st.just("OrderPlaced"), st.sampled_from(CUSTOMERS), st.integers(0, 100)),
            st.tuples(st.just("OrderCancelled"), st.sampled_from(CUSTOMERS), st.just(0)),
            st.tuples(st.just("Noise"), st.just(""), st.just(0)),
        ),
        min_size=1,
        max_size=4,
    ),
)
run_op = st.tuples(st.just("run"), st.sampled_from(["a", "b"]), st.integers(1, 6))
delete_op = st.tuples(st.just("delete"), st.sampled_from(STREAMS), st.just(0))
ops = st.lists(st.one_of(append_op, append_op, run_op, delete_op), max_size=25)


def fold(log: list[RecordedEvent]) -> dict[str, Any]:
    """The oracle: what OrderTotals must hold after the whole log."""
    model: dict[str, Any] = {}
    for e in log:
        if not e.stream.startswith("order-"):
            continue
        if e.type == "OrderPlaced":
            doc = model.get(e.data["customer"], {"total": 0, "orders": 0})
            model[e.data["customer"]] = {
                "total": doc["total"] + e.data["total"],
                "orders": doc["orders"] + 1,
            }
        elif e.type == "OrderCancelled":
            model.pop(e.data["customer"], None)
    return model


def _history(store: clawstate.Store, history: list[tuple[Any, ...]]) -> None:
    events = store.events
    runners = {
        name: {b: events.projection_runner([OrderTotals()], batch=b) for b in range(1, 7)}
        for name in ("a", "b")
    }
    for op in history:
        if op[0] == "append":
            _, stream, items = op
            batch = [
                Event(t, {"customer": c, "total": n} if t != "Noise" else {}) for t, c, n in items
            ]
            events.append(stream, batch)
        elif op[0] == "run":
            _, who, page = op
            runners[who][page].run_until_idle()
        else:
            events.delete_stream(op[1])
    runner = runners["a"][3]
    runner.run_until_idle()
    log = events.read_all(0, 10_000)
    incremental = read_model(store, "totals")
    assert incremental == fold(log)
    runner.rebuild("order-totals")
    assert read_model(store, "totals") == incremental
    [status] = runner.status()
    assert status.position == events.last_position and status.lag_events == 0
    report = store.check()
    assert report.ok, report.problems


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=ops)
def test_rebuild_equals_incremental_memory(history: list[tuple[Any, ...]]) -> None:
    with clawstate.open("memory://", sweep_interval=0) as store:
        _history(store, history)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=ops)
def test_rebuild_equals_incremental_sqlite(history: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with clawstate.open(f"sqlite:///{Path(tmp) / 'p.db'}", sweep_interval=0) as store:
            _history(store, history)
