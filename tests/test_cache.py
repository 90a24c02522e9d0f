"""The cache's own behaviour: single-flight, invalidation, expiry, consistency, tiers.

The store's contract with the cache on is tests/test_cache_conformance.py; whatever
involves several processes (staleness, kill, the shared L2 tier, its stampede lock,
memoize's L2) runs real processes in tests/test_cache_processes.py.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import clawstate
import clawstate.cache._tailer
from clawstate import InvalidRequest, VersionConflict
from clawstate.backends.memory import MemoryBackend
from clawstate.backends.sqlite import SQLiteBackend
from clawstate.config import load_config
from clawstate.errors import BackendUnavailable
from clawstate.store import Store
from clawstate.testing import FakeClock
from services import REDIS_URL, require, require_binary, tcp_probe


@pytest.fixture(autouse=True)
def _quick_tailers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clawstate.cache._tailer, "WAIT", 0.005)


class Counting:
    """A backend wrapper that counts reads and can slow them down or fail writes."""

    def __init__(self, inner: Any, delay: float = 0.0) -> None:
        self._inner = inner
        self.delay = delay
        self.gets = 0
        self.get_manys = 0
        self.fail_writes: BaseException | None = None
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str, now: float) -> Any:
        with self._lock:
            self.gets += 1
        found = self._inner.get(namespace, key, now)
        if self.delay:
            time.sleep(self.delay)  # a slow reply: the value read can go stale meanwhile
        return found

    def get_many(self, namespace: str, keys: Any, now: float) -> Any:
        with self._lock:
            self.get_manys += 1
        return self._inner.get_many(namespace, keys, now)

    def write(self, unit: Any) -> Any:
        if self.fail_writes is not None:
            raise self.fail_writes
        return self._inner.write(unit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def open_counting(
    inner: Any, policy: dict[str, Any], clock: Any = None, delay: float = 0.0
) -> tuple[Store, Counting]:
    backend = Counting(inner, delay)
    config = load_config(env={}, url="memory://", sweep_interval=0, namespaces={"*": policy})
    return Store(backend, config, clock=clock), backend  # type: ignore[arg-type]


@pytest.fixture
def closing() -> Iterator[list[Store]]:
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close()


# -- single-flight and the hit path --------------------------------------------------------


def test_stampede_100_threads_one_backend_read(closing: list[Store]) -> None:
    store, backend = open_counting(MemoryBackend(), {"cache": "read-through"}, delay=0.05)
    closing.append(store)
    ns = store.namespace("hot")
    ns.put("k", {"v": 1})
    backend.gets = 0
    barrier = threading.Barrier(100)
    results: list[Any] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            barrier.wait(10)
            item = ns.get("k")
            results.append(None if item is None else item.value)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert results == [{"v": 1}] * 100
    assert backend.gets == 1, f"{backend.gets} backend reads for 100 concurrent misses"
    stats = store.stats()["cache"]["namespaces"]["hot"]
    assert stats["backend_reads"] == 1
    assert stats["single_flight_shared"] + stats["l1"]["hits"] == 99


def test_hits_do_not_touch_the_backend(closing: list[Store]) -> None:
    store, backend = open_counting(MemoryBackend(), {"cache": "write-through"})
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", 1)
    for _ in range(50):
        got = ns.get("k")
        assert got is not None and got.value == 1
    assert backend.gets == 0  # write-through filled L1 with the write itself
    assert ns.get_many(["k", "k"]) == {"k": ns.get("k")}
    assert backend.get_manys == 0


def test_negative_entries_cache_misses(closing: list[Store]) -> None:
    store, backend = open_counting(
        MemoryBackend(), {"cache": "read-through", "cache_negative_ttl": 60}
    )
    closing.append(store)
    ns = store.namespace("n")
    assert ns.get("nope") is None
    assert ns.get("nope") is None
    assert backend.gets == 1
    ns.put("nope", "now")  # the store's own write evicts the cached miss
    got = ns.get("nope")
    assert got is not None and got.value == "now"


def test_bad_keys_are_refused_even_with_a_cache(closing: list[Store]) -> None:
    store, _ = open_counting(MemoryBackend(), {"cache": "read-through"})
    closing.append(store)
    ns = store.namespace("n")
    for bad in ["", 5, ["list"], "a\x00b", "x" * 2000]:
        with pytest.raises(InvalidRequest):
            ns.get(bad)  # type: ignore[arg-type]


def test_cached_values_are_not_the_callers_objects(closing: list[Store]) -> None:
    store, _ = open_counting(MemoryBackend(), {"cache": "write-through"})
    closing.append(store)
    ns = store.namespace("n")
    value = {"items": [1]}
    ns.put("k", value)
    value["items"].append(2)  # the caller mutates after the put: not what was stored
    got = ns.get("k")
    assert got is not None and got.value == {"items": [1]}


# -- expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["read-through", "write-through", "write-back"])
def test_never_served_past_expires_at(mode: str, closing: list[Store]) -> None:
    clock = FakeClock()
    store, _ = open_counting(MemoryBackend(), {"cache": mode, "cache_ttl": 3600}, clock=clock)
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", "v", ttl=10)
    assert ns.get("k") is not None
    clock.advance(9.99)
    assert ns.get("k") is not None
    clock.advance(0.01)
    assert ns.get("k") is None
    assert ns.get_many(["k"]) == {}


def test_sweep_expire_change_invalidates(closing: list[Store]) -> None:
    clock = FakeClock()
    store, _ = open_counting(MemoryBackend(), {"cache": "write-through"}, clock=clock)
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", "v", ttl=5)
    clock.advance(6)
    assert store.sweep()["expired"] == 1
    assert ns.get("k") is None
    tailer = store._cache._tailers["default"]
    tailer.catch_up()
    assert tailer.stats()["changes_applied"] >= 1


def test_cache_ttl_bounds_an_entry(closing: list[Store]) -> None:
    clock = FakeClock()
    store, backend = open_counting(
        MemoryBackend(), {"cache": "read-through", "cache_ttl": 30}, clock=clock
    )
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", 1)
    ns.get("k")
    ns.get("k")
    assert backend.gets == 1
    clock.advance(31)
    ns.get("k")
    assert backend.gets == 2


# -- invalidation from the change log ---------------------------------------------------------


def _two_stores(tmp_path: Path, policy: dict[str, Any]) -> tuple[Store, Store]:
    """Two stores on one SQLite file in this process: as far as the cache can tell,
    two processes (each has its own tailer, which only hears of the other's writes
    through the change log)."""
    url = f"sqlite:///{tmp_path}/shared.db"
    a = clawstate.open(url, sweep_interval=0)
    b = clawstate.open(url, sweep_interval=0, namespaces={"*": policy})
    return a, b


def _until(predicate: Any, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)
    return time.monotonic() - start


@pytest.mark.parametrize("op", ["put", "delete", "transaction", "expire"])
def test_other_writers_changes_invalidate(op: str, tmp_path: Path, closing: list[Store]) -> None:
    a, b = _two_stores(tmp_path, {"cache": "read-through", "cache_ttl": 3600})
    closing += [a, b]
    a.namespace("n").put("k", "old", ttl=0.3 if op == "expire" else None)
    cached = b.namespace("n")
    got = cached.get("k")
    assert got is not None and got.value == "old"
    if op == "put":
        a.namespace("n").put("k", "new")
    elif op == "delete":
        a.namespace("n").delete("k")
    elif op == "transaction":
        with a.transaction() as tx:
            tx.namespace("n").put("k", "new")
            tx.namespace("other").put("x", 1)
    else:
        time.sleep(0.35)
        assert cached.get("k") is None  # expires_at honoured on a hit, before any sweep
        assert a.sweep()["expired"] == 1
    want = None if op in ("delete", "expire") else "new"

    def fresh() -> bool:
        item = cached.get("k")
        return (None if item is None else item.value) == want

    _until(fresh)
    _until(lambda: b.stats()["cache"]["change_log"]["default"]["changes_applied"] >= 1)


def test_strong_consistency_sees_other_writers_at_once(
    tmp_path: Path, closing: list[Store]
) -> None:
    a, b = _two_stores(
        tmp_path, {"cache": "read-through", "cache_consistency": "strong", "cache_ttl": 3600}
    )
    closing += [a, b]
    an, bn = a.namespace("n"), b.namespace("n")
    b.namespace("n").get("warm")
    for i in range(50):
        an.put("k", i)
        got = bn.get("k")  # no wait: the read itself catches up with the log
        assert got is not None and got.value == i
        assert bn.get_many(["k"])["k"].value == i


def test_eventual_is_stale_until_the_tailer_applies(tmp_path: Path, closing: list[Store]) -> None:
    a, b = _two_stores(tmp_path, {"cache": "read-through", "cache_ttl": 3600})
    closing += [a, b]
    tailer = b._cache
    b.namespace("n")  # starts the tailer
    tailer._tailers["default"].stop()  # freeze invalidation to observe the stale window
    tailer._tailers["default"].join()
    a.namespace("n").put("k", 1)
    assert b.namespace("n").get("k").value == 1  # type: ignore[union-attr]
    a.namespace("n").put("k", 2)
    assert b.namespace("n").get("k").value == 1  # type: ignore[union-attr]
    tailer._tailers["default"].catch_up()
    assert b.namespace("n").get("k").value == 2  # type: ignore[union-attr]


def test_fill_race_cannot_install_a_stale_value(closing: list[Store]) -> None:
    """A read that loaded v1 must not install it after v2's invalidation was applied."""
    store, backend = open_counting(MemoryBackend(), {"cache": "read-through"}, delay=0.2)
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", 1)
    reader = threading.Thread(target=ns.get, args=("k",))
    reader.start()
    time.sleep(0.05)  # the reader is inside the slow backend read, holding v1
    backend.delay = 0.0
    # another "process" commits v2 straight to the backend; its change reaches the tailer
    writer = clawstate.open("memory://", sweep_interval=0)
    writer._backends["default"] = writer._backend = backend._inner  # the same data
    writer.namespace("n").put("k", 2)
    cache = store._cache._caches["n"]
    _until(lambda: cache.recent.get("k", 0) >= 2)
    reader.join(5)
    got = ns.get("k")
    assert got is not None and got.value == 2
    assert cache.fills_refused >= 1
    writer._backends["default"] = writer._backend = MemoryBackend()  # closes its own only
    writer.close()


# -- write-through and failures -----------------------------------------------------------


def test_failed_commit_leaves_caches_untouched(closing: list[Store]) -> None:
    store, backend = open_counting(MemoryBackend(), {"cache": "write-through"})
    closing.append(store)
    ns = store.namespace("n")
    first = ns.put("k", "v1")
    with pytest.raises(VersionConflict):
        ns.put("k", "v2", if_version=7)
    backend.fail_writes = BackendUnavailable("disk gone")
    with pytest.raises(BackendUnavailable):
        ns.put("k", "v3")
    with pytest.raises(BackendUnavailable):
        ns.delete("k")
    backend.fail_writes = None
    assert ns.get("k") == first
    assert backend.gets == 0


def test_transaction_updates_every_namespace_cache(closing: list[Store]) -> None:
    store, backend = open_counting(MemoryBackend(), {"cache": "write-through"})
    closing.append(store)
    store.namespace("a").put("x", 1)
    store.namespace("b").put("y", 1)
    with store.transaction() as tx:
        tx.namespace("a").put("x", 2)
        tx.namespace("b").delete("y")
    assert store.namespace("a").get("x").value == 2  # type: ignore[union-attr]
    assert store.namespace("b").get("y") is None
    assert backend.gets == 0


def test_l1_is_bounded_by_bytes(closing: list[Store]) -> None:
    store, _ = open_counting(MemoryBackend(), {"cache": "write-through", "cache_l1_bytes": "64KiB"})
    closing.append(store)
    ns = store.namespace("n")
    for i in range(500):
        ns.put(f"k{i}", "x" * 500)
    stats = store.stats()["cache"]["namespaces"]["n"]["l1"]
    assert stats["bytes"] <= 64 * 1024
    assert stats["evictions"] > 0
    assert 0 < stats["entries"] < 500
    assert ns.get("k0").value == "x" * 500  # type: ignore[union-attr]  # evicted: reloaded


def test_lru_keeps_what_is_read(closing: list[Store]) -> None:
    store, backend = open_counting(
        MemoryBackend(), {"cache": "write-through", "cache_l1_bytes": 20_000}
    )
    closing.append(store)
    ns = store.namespace("n")
    ns.put("hot", "h" * 100)
    for i in range(200):
        ns.put(f"k{i}", "x" * 100)
        ns.get("hot")
    assert backend.gets == 0  # "hot" was used all along: never the LRU victim


def test_cache_policy_is_fixed_per_namespace(closing: list[Store]) -> None:
    store, _ = open_counting(MemoryBackend(), {"cache": "read-through"})
    closing.append(store)
    store.namespace("n")
    with pytest.raises(InvalidRequest) as info:
        store.namespace("n", cache="write-back")
    assert info.value.field == "namespaces.n.cache"
    store.namespace("n", default_ttl=60)  # other options stay free


def test_bad_cache_options_are_config_errors() -> None:
    with pytest.raises(clawstate.ConfigError) as info:
        clawstate.open("memory://", namespaces={"x": {"cache": "sometimes"}})
    assert info.value.field == "namespaces.x.cache"
    with pytest.raises(clawstate.ConfigError) as info:
        clawstate.open("memory://", namespaces={"x": {"cache_l2": "postgresql://h/db"}})
    assert info.value.field == "namespaces.x.cache_l2"


def test_stats_report_every_tier(closing: list[Store]) -> None:
    store, _ = open_counting(MemoryBackend(), {"cache": "read-through"})
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", 1)
    ns.get("k")
    ns.get("k")
    ns.get("k")
    cache = store.stats()["cache"]
    entry = cache["namespaces"]["n"]
    assert entry["mode"] == "read-through"
    assert entry["l1"]["hits"] == 2 and entry["l1"]["misses"] == 1
    assert entry["l1"]["hit_ratio"] == pytest.approx(2 / 3, abs=1e-3)
    assert entry["l1"]["bytes"] > 0 and entry["l1"]["entries"] == 1
    assert entry["l2"] is None
    assert "default" in cache["change_log"]


# -- write-back ----------------------------------------------------------------------------


def test_write_back_acknowledges_then_flushes_within_the_delay(
    tmp_path: Path, closing: list[Store]
) -> None:
    url = f"sqlite:///{tmp_path}/wb.db"
    store = clawstate.open(
        url, sweep_interval=0, namespaces={"*": {"cache": "write-back", "cache_flush_delay": 0.1}}
    )
    closing.append(store)
    raw = SQLiteBackend(tmp_path / "wb.db")
    try:
        ns = store.namespace("n")
        item = ns.put("k", {"v": 1})
        assert item.version == 1 and item.etag.startswith("~")
        assert ns.get("k") == item  # served from the cache before it is durable
        # durable by the flusher alone (no flush() call); how soon is `make bench`'s
        _until(lambda: raw.get("n", "k", time.time()) is not None, timeout=30)
        got = ns.get("k")
        assert got is not None and got.value == {"v": 1} and not got.etag.startswith("~")
        assert ns.delete("k") is True
        assert ns.get("k") is None
        store.flush()
        assert raw.get("n", "k", time.time()) is None
        assert store.stats()["cache"]["write_back"]["default"]["flushed"] >= 2
    finally:
        raw.close()


def test_write_back_conditional_writes_see_pending_writes(closing: list[Store]) -> None:
    store, _ = open_counting(MemoryBackend(), {"cache": "write-back", "cache_flush_delay": 30})
    closing.append(store)
    ns = store.namespace("n")
    ns.put("k", 1)
    ns.put("k", 2)
    assert ns.put("k", 3, if_version=2).version == 3  # flushes, then checks
    with pytest.raises(VersionConflict):
        ns.put("k", 4, if_version=2)
    assert ns.count() == 1


def test_write_back_close_flushes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wb.db"
    store = clawstate.open(
        url, sweep_interval=0, namespaces={"*": {"cache": "write-back", "cache_flush_delay": 30}}
    )
    store.namespace("n").put_many({f"k{i}": i for i in range(100)})
    store.close()
    with clawstate.open(url, sweep_interval=0) as again:
        assert again.namespace("n").count() == 100


def test_write_back_close_reports_lost_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("clawstate.cache._writeback._CLOSE_RETRY_SECONDS", 0.2)
    store, backend = open_counting(
        MemoryBackend(), {"cache": "write-back", "cache_flush_delay": 30}
    )
    store.namespace("n").put("k", 1)
    backend.fail_writes = BackendUnavailable("gone")
    with pytest.raises(BackendUnavailable, match="1 acknowledged write"):
        store.close()


def test_write_back_refuses_writes_when_the_backend_stalls(
    monkeypatch: pytest.MonkeyPatch, closing: list[Store]
) -> None:
    monkeypatch.setattr("clawstate.cache._writeback._STALL_SECONDS", 0.2)
    store, backend = open_counting(
        MemoryBackend(), {"cache": "write-back", "cache_flush_delay": 0.001}
    )
    ns = store.namespace("n")
    backend.fail_writes = BackendUnavailable("gone")
    ns.put("a", 1)  # accepted: the loss window is still young
    time.sleep(0.05)
    with pytest.raises(BackendUnavailable, match="was not accepted"):
        ns.put("b", 2)
    assert ns.get("a").value == 1  # type: ignore[union-attr]  # still pending, still served
    backend.fail_writes = None
    store.flush()
    assert ns.get("b") is None
    closing.append(store)


# -- L2 (Redis) ------------------------------------------------------------------------------


def _redis() -> None:
    parts = urlsplit(REDIS_URL)
    require("redis", tcp_probe(parts.hostname or "127.0.0.1", parts.port or 6379))


def _purge(store: Store) -> None:
    for l2 in store._cache._l2.values():
        for key in l2._client.scan_iter(match=l2.prefix + b"*", count=1000):
            l2._client.unlink(key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_down_reads_and_writes_go_to_the_backend(
    tmp_path: Path, closing: list[Store]
) -> None:
    dead = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    url = f"sqlite:///{tmp_path}/down.db"
    for mode in ("read-through", "write-through", "write-back"):
        store = clawstate.open(
            url, sweep_interval=0, namespaces={f"{mode}": {"cache": mode, "cache_l2": dead}}
        )
        closing.append(store)
        ns = store.namespace(mode)
        for i in range(200):
            ns.put(f"k{i % 20}", i)
            got = ns.get(f"k{i % 20}")
            assert got is not None and got.value == i
            assert ns.get(f"missing{i}") is None
        assert len(ns.get_many([f"k{i}" for i in range(20)])) == 20
        assert ns.delete("k0") is True
        l2 = next(iter(store.stats()["cache"]["l2"].values()))
        # Marked down after the first error and left alone for a back-off: hundreds of
        # calls cost a handful of connection attempts, not one each.
        assert l2["available"] is False and 1 <= l2["errors"] <= 20, l2


def test_private_redis_killed_and_restarted(tmp_path: Path, closing: list[Store]) -> None:
    port = _free_port()
    cmd = [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(tmp_path)]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _until(lambda: _listening(port), timeout=10)
        return proc

    server = start()
    try:
        l2 = f"redis://127.0.0.1:{port}/0"
        store = clawstate.open(
            f"sqlite:///{tmp_path}/k.db",
            sweep_interval=0,
            namespaces={"*": {"cache": "write-through", "cache_l2": l2}},
        )
        closing.append(store)
        ns = store.namespace("n")
        ns.put("k", 1)
        assert store.stats()["cache"]["l2"][f"{l2} (default)"]["available"] is True
        server.kill()
        server.wait(10)
        for i in range(100):  # Redis is gone: every call still answers, no error
            ns.put("k", i)
            store._cache._caches["n"].l1.clear()  # force the L2 path
            assert ns.get("k").value == i  # type: ignore[union-attr]
        assert store.stats()["cache"]["l2"][f"{l2} (default)"]["available"] is False
        server = start()
        time.sleep(0.6)  # past the first back-off
        _until(lambda: (ns.put("k", -1), ns.get("k"))[1] is not None and _l2_up(store, l2))
        assert ns.get("k").value == -1  # type: ignore[union-attr]
    finally:
        server.kill()
        server.wait(10)


def _l2_up(store: Store, url: str) -> bool:
    store._cache._caches["n"].l1.clear()
    store.namespace("n").get("k")
    return bool(store.stats()["cache"]["l2"][f"{url} (default)"]["available"])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# -- memoize --------------------------------------------------------------------------------


def test_memoize_caches_by_arguments_for_a_ttl() -> None:
    calls: list[tuple[Any, ...]] = []

    @clawstate.memoize(ttl=0.2)
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3 and add(1, 2) == 3 and add(1, b=2) == 3
    assert add(2) == 2
    assert calls == [(1, 2), (1, 2), (2, 0)]  # add(1, b=2) is another call shape
    time.sleep(0.25)
    assert add(1, 2) == 3
    assert len(calls) == 4
    add.invalidate(2)
    assert add(2) == 2 and len(calls) == 5
    stats = add.stats()
    assert stats["l1"]["hits"] == 1 and stats["calls"] == 5


def test_memoize_single_flight_and_errors_not_cached() -> None:
    calls = 0
    gate = threading.Event()

    @clawstate.memoize(ttl=60)
    def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        gate.wait(5)
        if x < 0:
            raise ValueError("negative")
        return x * 2

    threads = [threading.Thread(target=slow, args=(21,)) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == 1 and slow(21) == 42
    with pytest.raises(ValueError):
        slow(-1)
    with pytest.raises(ValueError):
        slow(-1)
    assert calls == 3


def test_memoize_unhashable_arguments() -> None:
    @clawstate.memoize(ttl=60)
    def total(items: list[int]) -> int:
        return sum(items)

    assert total([1, 2]) == 3 and total([1, 2]) == 3
    assert total.stats()["l1"]["hits"] == 1


def test_memoize_async() -> None:
    import asyncio

    calls = 0

    @clawstate.memoize(ttl=60)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return x + 1

    async def main() -> list[int]:
        first = await asyncio.gather(*(fetch(1) for _ in range(10)))
        return [*first, await fetch(1)]

    assert asyncio.run(main()) == [2] * 11
    assert calls == 1


def test_memoize_with_redis_down_still_works() -> None:
    @clawstate.memoize(ttl=30, l2=f"redis://127.0.0.1:{_free_port()}/0")
    def f(x: int) -> int:
        return x

    assert [f(1), f(1), f(2)] == [1, 1, 2]
    assert f.stats()["l2"]["available"] is False


def test_async_hits_are_answered_on_the_event_loop() -> None:
    import asyncio

    async def main() -> None:
        astore = clawstate.open_async(
            "memory://", sweep_interval=0, namespaces={"*": {"cache": "write-through"}}
        )
        ns = astore.namespace("n")
        await ns.put("k", 1)
        hops: list[Any] = []
        run = ns._run

        async def counting_run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            hops.append(fn)
            return await run(fn, *args, **kwargs)

        ns._run = counting_run  # type: ignore[assignment]
        got = await ns.get("k")
        assert got is not None and got.value == 1
        assert hops == []  # an L1 hit needs no thread
        assert await ns.get("missing") is None
        assert len(hops) == 1  # a miss goes to the pool (it may block on the backend)
        await astore.close()

    asyncio.run(main())
