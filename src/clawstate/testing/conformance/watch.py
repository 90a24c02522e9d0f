"""The change log as ``Store.watch`` exposes it.

Only public API is used here, so the suite holds whatever implements the follower.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from clawstate import Change, InvalidRequest, Store
from clawstate.testing.fakes import FakeClock

from .helpers import all_changes


class WatchConformance:
    """The change log through ``watch``.

    Gap-free, resumable, filtered, and closable from another thread.
    """

    # -- watch / change log --------------------------------------------------------------

    def test_watch_yields_past_changes_gap_free(self, store: Store) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k1", 1)
        b.put("k2", 2)
        a.put("k1", 3)
        a.delete("k1")
        b.put_many({"x": 1, "y": 2})
        changes = list(store.watch(0, timeout=0))
        assert [c.seq for c in changes] == list(range(1, 7))
        assert [(c.namespace, c.key, c.op, c.version) for c in changes] == [
            ("a", "k1", "put", 1),
            ("b", "k2", "put", 1),
            ("a", "k1", "put", 2),
            ("a", "k1", "delete", 2),
            ("b", "x", "put", 1),
            ("b", "y", "put", 1),
        ]
        assert store.last_seq == 6

    def test_watch_change_timestamps_follow_the_clock(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("w")
        ns.put("a", 1)
        clock.advance(7)
        ns.put("b", 1)
        changes = list(store.watch(0, timeout=0))
        assert [c.ts for c in changes] == [clock() - 7, clock()]

    def test_watch_from_seq_skips_earlier(self, store: Store) -> None:
        ns = store.namespace("w")
        for i in range(5):
            ns.put(f"k{i}", i)
        changes = list(store.watch(3, timeout=0))
        assert [c.seq for c in changes] == [4, 5]
        assert [c.key for c in changes] == ["k3", "k4"]

    def test_watch_resumes_from_last_seq(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("a", 1)
        ns.put("b", 1)
        watch = store.watch(0, timeout=0)
        first = list(watch)
        ns.put("c", 1)
        resumed = list(store.watch(watch.last_seq, timeout=0))
        assert [c.key for c in first] == ["a", "b"]
        assert [c.key for c in resumed] == ["c"]

    def test_watch_from_none_starts_at_the_end(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("old1", 1)
        ns.put("old2", 1)
        watch = ns.watch(from_seq=None, timeout=0)
        assert watch.poll() == []
        ns.put("new", 1)
        changes = list(watch)
        assert [(c.key, c.seq) for c in changes] == [("new", 3)]

    def test_watch_timeout_ends_iteration(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("a", 1)
        ns.put("b", 1)
        started = time.monotonic()
        changes = list(ns.watch(0, timeout=0.3))
        elapsed = time.monotonic() - started
        assert [c.key for c in changes] == ["a", "b"]
        assert 0.25 <= elapsed < 5

    def test_watch_yields_live_changes_from_another_thread(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("before", 0)
        watch = store.watch(0, timeout=10)
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                time.sleep(0.05)
                for i in range(5):
                    ns.put(f"live{i}", i)
                    time.sleep(0.01)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        got: list[Change] = []
        for change in watch:
            got.append(change)
            if len(got) == 6:
                break
        thread.join(10)
        assert not errors
        assert [c.key for c in got] == ["before"] + [f"live{i}" for i in range(5)]
        assert [c.seq for c in got] == list(range(1, 7))

    def test_watch_namespace_filter(self, store: Store) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k1", 1)
        b.put("k2", 1)
        a.put("k3", 1)
        b.put("k4", 1)
        on_a = list(store.watch(0, namespace="a", timeout=0.2))
        assert [(c.namespace, c.key) for c in on_a] == [("a", "k1"), ("a", "k3")]
        on_b = list(b.watch(0, timeout=0.2))
        assert [(c.namespace, c.key) for c in on_b] == [("b", "k2"), ("b", "k4")]
        assert [c.seq for c in on_a] == [1, 3]

    def test_watch_namespace_filter_times_out_while_other_namespaces_write(
        self, store: Store
    ) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        a.put("k", 1)
        b.put("k", 1)  # a later change elsewhere must not keep the watch spinning
        started = time.monotonic()
        changes = list(a.watch(0, timeout=0.3))
        assert [c.key for c in changes] == ["k"]
        assert time.monotonic() - started < 5

    def test_watch_namespace_filter_sees_live_changes_after_foreign_ones(
        self, store: Store
    ) -> None:
        a, b = store.namespace("a"), store.namespace("b")
        watch = a.watch(None, timeout=10)

        def writer() -> None:
            time.sleep(0.05)
            b.put("noise", 1)
            time.sleep(0.05)
            a.put("signal", 1)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        first = next(watch)
        thread.join(10)
        assert (first.namespace, first.key) == ("a", "signal")

    def test_watch_prefix_filter(self, store: Store) -> None:
        ns = store.namespace("w")
        ns.put("user:1", 1)
        ns.put("order:1", 1)
        ns.put("user:2", 1)
        changes = list(ns.watch(0, prefix="user:", timeout=0.2))
        assert [c.key for c in changes] == ["user:1", "user:2"]
        store_wide = list(store.watch(0, prefix="order:", timeout=0.2))
        assert [c.key for c in store_wide] == ["order:1"]

    def test_watch_close_from_another_thread_stops_it(self, store: Store) -> None:
        ns = store.namespace("w")
        watch = ns.watch(None)  # no timeout: waits until closed
        got: list[Change] = []
        done = threading.Event()

        def reader() -> None:
            for change in watch:
                got.append(change)
            done.set()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        ns.put("a", 1)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        watch.close()
        assert done.wait(5), "close() did not stop the watch"
        thread.join(1)
        assert [c.key for c in got] == ["a"]

    @pytest.mark.parametrize("bad", [-1, True, "0", 1.5])
    def test_watch_bad_from_seq_refused(self, store: Store, bad: Any) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.watch(bad)
        assert info.value.field == "from_seq"

    def test_watch_bad_timeout_refused(self, store: Store) -> None:
        with pytest.raises(InvalidRequest) as info:
            store.watch(0, timeout=-1)
        assert info.value.field == "timeout"

    def test_every_write_appends_one_change(self, store: Store, clock: FakeClock) -> None:
        ns = store.namespace("log")
        ns.put("a", 1)
        ns.put("a", 2, if_version=1)
        ns.put("b", 1, if_absent=True)
        ns.put_many({"c": 1, "d": 1})
        ns.delete("a")
        ns.delete("missing")
        with store.transaction() as tx:
            tx.namespace("log").put("e", 1)
            tx.namespace("log").delete("b")
        ns.put("t", 1, ttl=1)
        clock.advance(1)
        store.sweep()
        ops = [(c.key, c.op, c.version) for c in all_changes(store)]
        assert ops == [
            ("a", "put", 1),
            ("a", "put", 2),
            ("b", "put", 1),
            ("c", "put", 1),
            ("d", "put", 1),
            ("a", "delete", 2),
            ("e", "put", 3),  # new keys start above the namespace's deleted versions
            ("b", "delete", 1),
            ("t", "put", 3),
            ("t", "expire", 3),
        ]
        assert [c.seq for c in all_changes(store)] == list(range(1, 11))
