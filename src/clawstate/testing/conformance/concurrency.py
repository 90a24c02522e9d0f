"""Concurrency: several threads against one store, checked for lost or torn writes."""

from __future__ import annotations

import threading

from clawstate import VersionConflict

from .helpers import StoreFactory, all_changes, scan_all


class ConcurrencyConformance:
    """Threads racing on one store.

    CAS counters stay exact, writes to distinct keys all land, transactions stay atomic.
    """

    # -- concurrency ----------------------------------------------------------------------

    def test_concurrent_cas_increments_are_exact(self, open_store: StoreFactory) -> None:
        store = open_store()
        ns = store.namespace("counters")
        threads_n, per_thread = 8, 200
        barrier = threading.Barrier(threads_n)
        errors: list[BaseException] = []
        conflicts = [0] * threads_n

        def worker(index: int) -> None:
            try:
                barrier.wait(10)
                for _ in range(per_thread):
                    while True:
                        current = ns.get("counter")
                        try:
                            if current is None:
                                ns.put("counter", 1, if_absent=True)
                            else:
                                ns.put("counter", current.value + 1, if_version=current.version)
                            break
                        except VersionConflict:
                            conflicts[index] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors[:3]
        total = threads_n * per_thread
        got = ns.get("counter")
        assert got is not None
        assert (got.value, got.version) == (total, total)
        puts = [c for c in all_changes(store, "counters") if c.key == "counter"]
        assert all(c.op == "put" for c in puts)
        assert [c.version for c in puts] == list(range(1, total + 1))
        seqs = [c.seq for c in all_changes(store)]
        assert seqs == list(range(1, total + 1))

    def test_concurrent_writers_to_distinct_keys_all_land(self, open_store: StoreFactory) -> None:
        store = open_store()
        ns = store.namespace("par")
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                for i in range(50):
                    ns.put(f"t{t}-{i:02d}", {"t": t, "i": i})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert ns.count() == 300
        items = scan_all(ns, limit=37)
        assert len(items) == 300
        assert all(it.version == 1 for it in items)
        assert [c.seq for c in all_changes(store)] == list(range(1, 301))

    def test_concurrent_transactions_are_atomic(self, open_store: StoreFactory) -> None:
        """Transfers between two accounts in two namespaces keep the total constant."""
        store = open_store()
        store.namespace("acct-a").put("balance", 1000)
        store.namespace("acct-b").put("balance", 1000)
        errors: list[BaseException] = []

        def worker(direction: int) -> None:
            try:
                done = 0
                while done < 40:
                    a = store.namespace("acct-a").get("balance")
                    b = store.namespace("acct-b").get("balance")
                    assert a is not None and b is not None
                    try:
                        with store.transaction() as tx:
                            tx.namespace("acct-a").put(
                                "balance", a.value - direction, if_version=a.version
                            )
                            tx.namespace("acct-b").put(
                                "balance", b.value + direction, if_version=b.version
                            )
                        done += 1
                    except VersionConflict:
                        pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(d,)) for d in (1, -1, 2, -2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        a = store.namespace("acct-a").get("balance")
        b = store.namespace("acct-b").get("balance")
        assert a is not None and b is not None
        assert a.value + b.value == 2000
        assert a.value == 1000  # +40 -40 +80 -80
        assert a.version == b.version == 161
