"""The Redis backend: the conformance suites, the model test, crash and multi-process tests.

Every store here gets its own key prefix (``clawstate-test:<random>:``) and its keys
are deleted at teardown — the server is shared, so nothing here flushes it.  Without
a Redis server the tests skip with a message saying how to start one; with
``CLAWSTATE_REQUIRE_SERVICES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

import clawstate
from _backends import (
    Prefixes,
    prefixes,
    raw,
    read_acks,
    redis_async_store_factory,
    redis_store_factory,
    start_crash_writer,
)
from _backends import drop_prefix as _drop
from _backends import redis_url as _url
from clawstate import BackendUnavailable, ConfigError, InvalidRequest, VersionConflict
from clawstate.backends._apply import idempotency_scope
from clawstate.backends.base import OP_DELETE, OP_PUT, OP_REWRAP, Write, WriteUnit
from clawstate.backends.redis import RedisBackend, persistence_mode
from clawstate.backends.redis.scripts import Script as _Script
from clawstate.testing.conformance import (
    AsyncStoreConformance,
    StoreConformance,
    StoreFactory,
)
from services import REDIS_URL
from test_model import StoreMachine

#: Fixtures from ``_backends``, found by name here by pytest.
__all__ = ["prefixes", "raw", "redis_async_store_factory", "redis_store_factory"]


# -- fixtures --------------------------------------------------------------------------


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


@pytest.fixture
def backend(prefixes: Prefixes) -> Iterator[RedisBackend]:
    """A bare backend (no facade) under a fresh prefix."""
    b = _backend(prefixes.new())
    yield b
    b.close()


def _backend(prefix: str, **params: Any) -> RedisBackend:
    store = clawstate.open(_url(prefix, **params), sweep_interval=0)
    b = store.backend
    assert isinstance(b, RedisBackend)
    return b


# -- the conformance suites, unchanged ----------------------------------------------------


class TestRedisStore(StoreConformance):
    """The sync facade's contract over Redis."""


class TestRedisAsyncStore(AsyncStoreConformance):
    """The async facade's contract over Redis."""


# -- the Hypothesis model test ---------------------------------------------------------------


class RedisStoreMachine(StoreMachine):
    """tests/test_model.py's state machine, on a fresh Redis prefix per example."""

    client: redis.Redis

    def __init__(self) -> None:
        super().__init__("memory")
        self.store.close()
        self.prefix = f"clawstate-test:{uuid.uuid4().hex[:12]}:"
        self.store = clawstate.open(_url(self.prefix), clock=self.clock, sweep_interval=0)
        assert isinstance(self.store.backend, RedisBackend)

    def teardown(self) -> None:
        super().teardown()
        _drop(self.client, self.prefix)


def test_model_state_machine(raw: redis.Redis) -> None:
    RedisStoreMachine.client = raw
    run_state_machine_as_test(
        RedisStoreMachine,
        settings=settings(
            max_examples=int(os.environ.get("CLAWSTATE_TEST_REDIS_MODEL_EXAMPLES", "60")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- opening, URLs, persistence ----------------------------------------------------------------


def test_url_parameters(raw: redis.Redis, prefixes: Prefixes) -> None:
    prefix = prefixes.new()
    b = _backend(prefix, max_query_scan=7, socket_timeout=3)
    try:
        assert (b.prefix, b.max_query_scan) == (prefix, 7)
        assert raw.hget(prefix + "meta", "schema") == b"1"
    finally:
        b.close()
    with pytest.raises(ConfigError, match="unknown Redis URL parameter"):
        clawstate.open(_url(prefixes.new(), bogus=1))
    with pytest.raises(ConfigError, match="max_query_scan"):
        clawstate.open(_url(prefixes.new(), max_query_scan="many"))
    with pytest.raises(ConfigError, match="ssl"):
        clawstate.open(_url(prefixes.new(), ssl_cert_reqs="none"))


def test_default_prefix_is_clawstate(raw: redis.Redis) -> None:
    existed = raw.exists("clawstate:meta")
    store = clawstate.open(REDIS_URL, sweep_interval=0)
    try:
        backend = store.backend
        assert isinstance(backend, RedisBackend) and backend.prefix == "clawstate:"
    finally:
        store.close()
        if not existed:  # opening only wrote the schema marker: leave the server as found
            raw.delete("clawstate:meta")


def test_newer_schema_refused(raw: redis.Redis, prefixes: Prefixes) -> None:
    prefix = prefixes.new()
    raw.hset(prefix + "meta", "schema", 99)
    with pytest.raises(ConfigError, match="schema version 99"):
        clawstate.open(_url(prefix))


def test_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="unreachable"):
        clawstate.open("redis://127.0.0.1:1/0?connect_timeout=1")


def test_persistence_mode_descriptions() -> None:
    none = persistence_mode({"appendonly": "no", "appendfsync": "everysec", "save": ""}, {})
    assert none[0] == "none (no RDB, no AOF): data is lost when the server stops"
    assert none[1] is False
    rdb = persistence_mode({"appendonly": "no", "save": "3600 1 300 100"}, {})
    assert rdb[0].startswith("RDB snapshots only (save 3600 1 300 100)") and rdb[1] is False
    always = persistence_mode({"appendonly": "yes", "appendfsync": "always", "save": ""}, {})
    assert "power loss" in always[0] and always[1] is True
    everysec = persistence_mode(
        {"appendonly": "yes", "appendfsync": "everysec", "save": "60 1"}, {}
    )
    assert "last second" in everysec[0] and "RDB snapshots too" in everysec[0] and everysec[1]
    fallback = persistence_mode(None, {"aof_enabled": 1})
    assert fallback[1] is True and "CONFIG GET is not allowed" in fallback[0]
    assert persistence_mode(None, {"aof_enabled": 0})[1] is False


def test_stats_report_persistence_counts_and_bytes(
    raw: redis.Redis, store_factory: StoreFactory
) -> None:
    store = store_factory()
    ns = store.namespace("s")
    ns.put_many({"a": "x" * 100, "b": "y" * 10})
    stats = store.backend.stats()
    cfg: dict[str, str] = {}
    for name in ("appendonly", "appendfsync", "save"):
        cfg.update({_s(k): _s(v) for k, v in raw.config_get(name).items()})
    summary, durable, _ = persistence_mode(cfg, raw.info("persistence"))
    assert stats["persistence"] == summary
    assert stats["durable"] is durable is store.backend.capabilities.durable
    assert stats["namespaces"]["s"]["items"] == 2
    stored = sum(len(it.value) for it in store.backend.iter_items("s"))
    assert stats["namespaces"]["s"]["bytes"] == stored > 110
    assert stats["changelog"] == {"first_seq": 1, "last_seq": 2, "rows": 2}
    assert "sum of the stored" in stats["bytes_are"]
    ns.delete("a")
    assert store.backend.stats()["namespaces"]["s"]["bytes"] < stored


# -- the key layout ------------------------------------------------------------------------


def test_namespace_and_key_separators_do_not_collide(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.namespace("a:b").put("c", 1)
    store.namespace("a").put("b:c", 2)
    store.namespace("a").put("b/c", 3)
    store.namespace("a:b").put("/", 4)
    assert store.namespace("a:b").get("c").value == 1  # type: ignore[union-attr]
    assert store.namespace("a").get("b:c").value == 2  # type: ignore[union-attr]
    assert [it.key for it in store.namespace("a").scan().items] == ["b/c", "b:c"]
    assert [it.key for it in store.namespace("a:b").scan().items] == ["/", "c"]
    assert store.check().ok


def test_layout_uses_the_prefix_only(raw: redis.Redis, store_factory: StoreFactory) -> None:
    store = store_factory()
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    store.namespace("n").put("k", 1, ttl=60)
    store.namespace("n").put("i", 1, idempotency_key="req")
    keys = {k.decode() for k in raw.scan_iter(match=backend.prefix + "*")}
    p = backend.prefix
    # The idempotency record is scoped by the namespaces the unit writes.
    scoped = idempotency_scope(WriteUnit([Write("n", "i", OP_PUT, b"")], 0.0, "req"))
    assert scoped is not None and scoped.endswith(":req")
    assert keys == {
        p + suffix
        for suffix in ("meta", "log", "namespaces", "bytes", "k:n", "x:n", "i:n/k", "i:n/i")
    } | {p + "d:" + scoped, p + "dx"}
    assert raw.type(p + "log") == b"stream"
    assert [e[0] for e in raw.xrange(p + "log")] == [b"0-1", b"0-2"]
    # Items carry no native expiry: the store's clock decides.
    assert raw.pttl(p + "i:n/k") == -1
    # Idempotency records do, only as a backstop: window plus one hour.
    assert raw.pttl(p + "d:" + scoped) > 86400 * 1000


# -- writes -----------------------------------------------------------------------------------


def test_failed_unit_in_a_batch_changes_nothing_and_others_commit(backend: RedisBackend) -> None:
    now = 1000.0
    backend.write(WriteUnit([Write("n", "a", OP_PUT, b"1")], now))
    good = WriteUnit([Write("n", "b", OP_PUT, b"2"), Write("n", "c", OP_PUT, b"3")], now)
    bad = WriteUnit(
        [
            Write("n", "d", OP_PUT, b"4"),
            Write("n", "d", OP_PUT, b"5", if_version=1),  # holds: sees the first write
            Write("n", "a", OP_PUT, b"6", if_version=7),  # fails: nothing of the unit lands
        ],
        now,
    )
    results = backend._run_batch([good, bad, good])
    assert isinstance(results[1], VersionConflict)
    assert (results[1].key, results[1].expected, results[1].actual) == ("a", 7, 1)
    assert results[1].namespace == "n"
    first, third = results[0], results[2]
    assert isinstance(first, list) and isinstance(third, list)
    assert [o.version for o in first] == [1, 1] and [o.version for o in third] == [2, 2]
    assert [o.seq for o in first + third] == [2, 3, 4, 5]
    assert backend.get("n", "d", now) is None
    assert backend.last_seq() == 5
    assert backend.check() == ([], backend.check()[1])


def test_conditions_see_earlier_writes_of_the_same_unit(backend: RedisBackend) -> None:
    now = 10.0
    out = backend.write(
        WriteUnit(
            [
                Write("n", "k", OP_PUT, b"a", if_absent=True),
                Write("n", "k", OP_PUT, b"b", if_version=1),
                Write("n", "k", OP_DELETE, if_version=2),
                Write("n", "k", OP_DELETE),
                Write("n", "k", OP_PUT, b"c", if_absent=True),
            ],
            now,
        )
    )
    assert [(o.op, o.applied, o.version) for o in out] == [
        (OP_PUT, True, 1),
        (OP_PUT, True, 2),
        (OP_DELETE, True, 2),
        (OP_DELETE, False, 0),
        (OP_PUT, True, 3),  # above the deleted version (no ABA), seen within the unit
    ]
    got = backend.get("n", "k", now)
    assert got is not None and (got.value, got.version, got.seq) == (b"c", 3, 4)
    assert [c.op for c in backend.changes(0, 10)] == ["put", "put", "delete", "put"]
    assert backend.stats()["namespaces"]["n"]["bytes"] == 1


def test_expired_item_counts_as_absent(backend: RedisBackend) -> None:
    backend.write(WriteUnit([Write("n", "k", OP_PUT, b"a", expires_at=5.0)], 1.0))
    backend.write(WriteUnit([Write("n", "k", OP_PUT, b"b", expires_at=9.0)], 2.0))
    with pytest.raises(VersionConflict) as info:
        backend.write(WriteUnit([Write("n", "k", OP_PUT, b"c", if_absent=True)], 3.0))
    assert (info.value.expected, info.value.actual) == ("absent", 2)
    # At 9.0 the item has expired: create-only works, a new incarnation (created_at
    # restarts) at the next version, so no version of the old one matches it (no ABA).
    out = backend.write(WriteUnit([Write("n", "k", OP_PUT, b"d", if_absent=True)], 9.0))
    assert (out[0].version, out[0].created_at, out[0].expires_at) == (3, 9.0, None)
    for old in (1, 2):
        with pytest.raises(VersionConflict) as info:
            backend.write(WriteUnit([Write("n", "k", OP_DELETE, if_version=old)], 9.5))
        assert (info.value.expected, info.value.actual) == (old, 3)
    assert backend.count("n", 9.5) == 1
    assert backend.check()[0] == []


def test_rewrap_replaces_bytes_only_when_unchanged(backend: RedisBackend) -> None:
    o = backend.write(WriteUnit([Write("n", "k", OP_PUT, b"old", expires_at=50.0)], 1.0))[0]
    seq = backend.last_seq()
    stale = Write("n", "k", OP_REWRAP, b"nope", if_version=o.version, seq=o.seq + 1)
    fresh = Write("n", "k", OP_REWRAP, b"new!", if_version=o.version, seq=o.seq)
    out = backend.write(WriteUnit([stale, fresh], 2.0))
    assert [x.applied for x in out] == [False, True]
    got = backend.get("n", "k", 2.0)
    assert got is not None and (got.value, got.version, got.seq, got.expires_at) == (
        b"new!",
        1,
        o.seq,
        50.0,
    )
    assert backend.last_seq() == seq  # no change row
    assert backend.check()[0] == []


def test_rewrap_in_the_unit_that_wrote_the_item(backend: RedisBackend) -> None:
    """A rewrap pinned to the seq an earlier write of the same unit takes applies
    (apply_unit's overlay semantics), without a change row of its own."""
    backend.write(WriteUnit([Write("n", "other", OP_PUT, b"x")], 1.0))
    predicted = backend.last_seq() + 1
    out = backend.write(
        WriteUnit(
            [
                Write("n", "k", OP_PUT, b"plain"),
                Write("n", "k", OP_REWRAP, b"wrapped", if_version=1, seq=predicted),
                Write("n", "k", OP_REWRAP, b"nope", if_version=1, seq=predicted + 1),
            ],
            2.0,
        )
    )
    assert [(o.applied, o.seq) for o in out] == [
        (True, predicted),
        (True, predicted),
        (False, predicted + 1),
    ]
    got = backend.get("n", "k", 2.0)
    assert got is not None and (got.value, got.seq) == (b"wrapped", predicted)
    assert backend.last_seq() == predicted
    assert backend.check()[0] == []


def test_changelog_values_are_logged(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.write(WriteUnit([Write("n", "k", OP_PUT, b"payload", log_value=True)], 1.0))
    backend.write(WriteUnit([Write("n", "j", OP_PUT, b"other")], 1.0))
    entries = raw.xrange(backend.prefix + "log")
    assert entries[0][1][b"val"] == b"payload" and b"val" not in entries[1][1]


def test_idempotent_replay_returns_the_original_outcomes(backend: RedisBackend) -> None:
    unit = WriteUnit([Write("n", "k", OP_PUT, b"v", expires_at=100.0)], 10.0, "req", b"fp", 70.0)
    first = backend.write(unit)
    retry = WriteUnit([Write("n", "k", OP_PUT, b"v", expires_at=120.0)], 30.0, "req", b"fp", 90.0)
    assert backend.write(retry) == first  # the first call's timestamps, not the retry's
    other = WriteUnit([Write("n", "k", OP_PUT, b"v")], 30.0, "req", b"other", 90.0)
    with pytest.raises(InvalidRequest) as info:
        backend.write(other)
    assert info.value.field == "idempotency_key"
    # Past its window the key is forgotten: the unit applies again.
    late = WriteUnit([Write("n", "k", OP_PUT, b"w")], 70.0, "req", b"other", 130.0)
    assert backend.write(late)[0].version == 2


def test_unknown_op_refused_without_touching_the_batch(backend: RedisBackend) -> None:
    results = backend._run_batch(
        [
            WriteUnit([Write("n", "k", 9, b"x")], 1.0),
            WriteUnit([Write("n", "k", OP_PUT, b"x")], 1.0),
        ]
    )
    assert isinstance(results[0], InvalidRequest) and results[0].field == "op"
    assert isinstance(results[1], list) and results[1][0].version == 1


def test_concurrent_writers_share_script_calls(store_factory: StoreFactory) -> None:
    store = store_factory()
    ns = store.namespace("gc")
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(60):
                ns.put(f"{t}-{i}", i)
                try:
                    ns.put(f"{t}-{i}", i, if_version=5)  # always fails, alone
                except VersionConflict:
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert ns.count() == 480
    assert store.last_seq == 480
    gc = store.backend.stats()["group_commit"]
    assert gc["jobs"] == 960 and gc["batches"] < 960, gc
    assert store.check().ok


def test_noscript_reloads_and_retries_once(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script missing from the server's cache (restart, SCRIPT FLUSH) is reloaded.

    Simulated with a variant of the write script that was never loaded, so the
    shared server's script cache is left alone.
    """
    import clawstate.backends.redis.backend as mod

    variant = _Script(mod._WRITE.source + f"\n-- {uuid.uuid4().hex}\n")
    monkeypatch.setattr(mod, "_WRITE", variant)
    assert not backend._r.script_exists(variant.sha)[0]
    out = backend.write(WriteUnit([Write("n", "k", OP_PUT, b"v")], 1.0))
    assert out[0].version == 1
    assert backend._r.script_exists(variant.sha)[0]


class _Proxy:
    """A TCP proxy to the Redis server that the test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Stop listening and drop every open connection."""
        assert self._listener is not None
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread (Linux)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def test_connection_loss_is_backend_unavailable_and_recovers(prefixes: Prefixes) -> None:
    parsed = redis.connection.parse_url(REDIS_URL)
    proxy = _Proxy((parsed.get("host", "127.0.0.1"), int(parsed.get("port", 6379))))
    proxy.start()
    db = parsed.get("db", 0)
    url = f"redis://127.0.0.1:{proxy.port}/{db}?prefix={prefixes.new()}&connect_timeout=1"
    store = clawstate.open(url, sweep_interval=0)
    try:
        ns = store.namespace("n")
        ns.put("k", 1)
        proxy.cut()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            ns.get("k")
        with pytest.raises(BackendUnavailable, match="may or may not have been applied"):
            ns.put("k", 2)
        with pytest.raises(BackendUnavailable):
            store.backend.wait_for_change(0, 0.5)
        with pytest.raises(BackendUnavailable):
            store.sweep()
        proxy.start()  # the server is back: connections reopen by themselves
        got = ns.get("k")
        assert got is not None and got.value == 1
        assert ns.put("k", 3).version == 2
        # A restart while the store is idle: the first write after it must not fail on
        # the socket the server closed (it is probed before use, not after sending).
        proxy.cut()
        proxy.start()
        time.sleep(1.2)
        assert ns.put("k", 4).version == 3
        assert store.backend.wait_for_change(0, 0.1)
    finally:
        store.close()
        proxy.cut()


# -- reads, query, sweep, check -----------------------------------------------------------------


def test_query_scans_below_the_bound_and_refuses_above(prefixes: Prefixes) -> None:
    store = clawstate.open(_url(prefixes.new(), max_query_scan=5), sweep_interval=0)
    try:
        ns = store.namespace("q")
        ns.put_many({f"k{i}": {"n": i} for i in range(5)})
        page = ns.query({"filter": {"GT": {"n": 2}}, "sort": [{"key": "n", "order": "DESC"}]})
        assert [it.key for it in page.items] == ["k4", "k3"]
        ns.put("k5", {"n": 5})
        with pytest.raises(InvalidRequest) as info:
            ns.query({"filter": {"GT": {"n": 2}}})
        assert info.value.field == "query" and "max_query_scan (5)" in str(info.value)
    finally:
        store.close()


def test_scan_skips_expired_items_across_pages(backend: RedisBackend) -> None:
    writes = [
        Write("n", f"k{i:03d}", OP_PUT, b"v", expires_at=5.0 if i % 3 else None) for i in range(300)
    ]
    backend.write(WriteUnit(writes, 1.0))
    live = backend.scan("n", "k", None, 50, 10.0)
    assert [it.key for it in live] == [f"k{i:03d}" for i in range(0, 150, 3)]
    after = backend.scan("n", "k", live[-1].key, 1000, 10.0)
    assert len(after) == 50 and after[0].key == "k150"
    assert len(list(backend.iter_items("n"))) == 300
    assert backend.count("n", 10.0) == 100 and backend.count("n", 1.0) == 300


def test_sweep_expires_logs_and_trims(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.write(WriteUnit([Write("n", "a", OP_PUT, b"1", expires_at=50.0)], 10.0))
    backend.write(WriteUnit([Write("n", "b", OP_PUT, b"22")], 20.0, "idem", b"f", 40.0))
    backend.write(WriteUnit([Write("n", "c", OP_PUT, b"333")], 30.0))
    result = backend.sweep(60.0, 0.0)
    assert (result.expired, result.idempotency_keys, result.changes) == (1, 1, 0)
    assert [(c.seq, c.key, c.op, c.ts) for c in backend.changes(3, 10)] == [
        (4, "a", "expire", 60.0)
    ]
    assert raw.exists(backend.prefix + "d:idem") == 0
    assert backend.stats()["namespaces"]["n"] == {"items": 2, "bytes": 5}
    # Trim everything older than ts 1000: all but the newest entry (its ID is the watermark).
    assert backend.sweep(61.0, 1000.0).changes == 3
    assert backend.first_seq() == 4 and backend.last_seq() == 4
    assert backend.sweep(62.0, 1000.0).changes == 0
    assert backend.check()[0] == []


def test_check_finds_structural_damage(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.write(
        WriteUnit(
            [Write("n", k, OP_PUT, b"v", expires_at=99.0 if k == "c" else None) for k in "abcd"],
            1.0,
        )
    )
    assert backend.check()[0] == []
    p = backend.prefix
    raw.delete(p + "i:n/a")  # an index entry without its item
    raw.zrem(p + "k:n", "b")  # an item the index does not know
    raw.zrem(p + "x:n", "c")  # an expiring item missing from the expiry index
    raw.hset(p + "i:n/d", "ver", 5)  # an item whose version disagrees with its log entry
    raw.xadd(p + "log", {"ns": "n"}, id="0-5")  # the newest entry trimmed away
    raw.xdel(p + "log", "0-5")
    problems = " | ".join(backend.check()[0])
    for expected in (
        "n/a: in the key index but its item hash is missing",
        "n/b: item hash missing from the key index",
        "n/c: expiry index disagrees",
        "n/d: no matching change-log row",
        "the change log generated ID 0-5 but its newest entry is 0-4",
        "byte counter",
    ):
        assert expected in problems, problems


# -- watch --------------------------------------------------------------------------------


_CHILD_WRITE = textwrap.dedent(
    """
    import sys, time, clawstate
    store = clawstate.open(sys.argv[1], sweep_interval=0)
    ns = store.namespace("w")
    ns.put("warm", 0)
    print("ready", flush=True)
    for i in range(int(sys.argv[2])):
        sys.stdin.readline()  # one write per line: the parent's watch is already waiting
        time.sleep(0.2)
        ns.put(f"k{i}", i)
        print(repr(time.time()), flush=True)
    store.close()
    """
)


def test_watch_is_woken_by_a_write_of_another_process(prefixes: Prefixes) -> None:
    """A blocked watch returns because another process's write arrived, not because
    its wait ran out: each wait may last a minute (one XREAD BLOCK of a minute), and
    each write comes only once the previous one was seen.  The wake-up latency is
    measured by `make bench` (bench/wakeups.py)."""
    url = _url(prefixes.new(), socket_timeout=300)
    store = clawstate.open(url, sweep_interval=0)
    store.backend._block = 120.0  # type: ignore[attr-defined]  # one blocking read per wait
    rounds = 5
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_WRITE, url, str(rounds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        seq = store.last_seq
        for i in range(rounds):
            woke: list[bool] = []
            watcher = threading.Thread(
                target=lambda seq=seq, woke=woke: woke.append(
                    store.backend.wait_for_change(seq, 60.0)
                )
            )
            watcher.start()
            child.stdin.write("go\n")  # the child writes 0.2 s later, into the blocked watch
            child.stdin.flush()
            watcher.join(30)  # half the wait: only the write can explain an earlier return
            assert woke == [True], f"write {i} did not wake the watch"
            float(child.stdout.readline())  # the child acknowledged write i
            assert store.last_seq > seq
            seq = store.last_seq
        assert not store.backend.wait_for_change(store.last_seq, 0.2)
    finally:
        child.kill()
        child.wait()
        store.close()


def test_close_interrupts_a_blocked_watch(store_factory: StoreFactory) -> None:
    store = store_factory()
    result: list[bool] = []
    th = threading.Thread(target=lambda: result.append(store.backend.wait_for_change(0, 3600)))
    th.start()
    time.sleep(0.2)
    store.close()
    th.join(30)  # the watch waits an hour unless close() interrupts it
    assert not th.is_alive() and result == [False]


# -- processes: CAS and crashes ----------------------------------------------------------------


_CHILD_CAS = textwrap.dedent(
    """
    import sys, clawstate
    store = clawstate.open(sys.argv[1], sweep_interval=0)
    ns = store.namespace("counter")
    done = conflicts = 0
    while done < int(sys.argv[2]):
        cur = ns.get("c")
        try:
            ns.put("c", {"n": cur.value["n"] + 1}, if_version=cur.version)
            done += 1
        except clawstate.VersionConflict:
            conflicts += 1
    print(conflicts)
    store.close()
    """
)


def test_multi_process_cas_increments_are_exact(prefixes: Prefixes) -> None:
    url = _url(prefixes.new())
    procs, per_proc = 4, 100
    with clawstate.open(url, sweep_interval=0) as store:
        store.namespace("counter").put("c", {"n": 0})
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD_CAS, url, str(per_proc)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(procs)
        ]
        conflicts = 0
        for child in children:
            out, _ = child.communicate(timeout=120)
            assert child.returncode == 0
            conflicts += int(out)
        got = store.namespace("counter").get("c")
        assert got is not None
        assert got.value["n"] == procs * per_proc
        assert got.version == procs * per_proc + 1
        assert store.last_seq == procs * per_proc + 1
        assert store.check().ok
    print(f"{procs} processes x {per_proc} CAS increments, {conflicts} conflicts retried")


def test_sigkilled_client_loses_nothing_acknowledged(prefixes: Prefixes, tmp_path: Path) -> None:
    """SIGKILL a client doing acknowledged writes at random moments (not the server)."""
    url = _url(prefixes.new())
    cycles = int(os.environ.get("CLAWSTATE_TEST_REDIS_CRASH_CYCLES", "12"))
    rng = random.Random(int(os.environ.get("CLAWSTATE_TEST_CRASH_SEED", "11")))
    acked_puts: dict[str, int] = {}
    acked_tx: set[str] = set()
    max_cas = -1
    for cycle in range(cycles):
        child = start_crash_writer(url, tmp_path, cycle, put_threads=2)
        time.sleep(rng.uniform(0.02, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        for name in ("put", "put2"):
            for doc in read_acks(tmp_path / f"{name}-{cycle}.log"):
                acked_puts[doc["key"]] = doc["i"]
        for doc in read_acks(tmp_path / f"cas-{cycle}.log"):
            max_cas = max(max_cas, doc["n"])
        acked_tx.update(doc["tid"] for doc in read_acks(tmp_path / f"tx-{cycle}.log"))
        with clawstate.open(url, sweep_interval=0) as store:
            puts = store.namespace("puts")
            keys = list(acked_puts)
            found = {}
            for start in range(0, len(keys), 1000):
                found.update(puts.get_many(keys[start : start + 1000]))
            lost = [k for k in acked_puts if k not in found]
            assert not lost, f"acknowledged puts lost: {lost[:5]}"
            assert all(found[k].value["i"] == i for k, i in acked_puts.items())
            counter = store.namespace("counter").get("c")
            if max_cas >= 0:
                assert counter is not None and counter.value["n"] >= max_cas
            if counter is not None:
                assert counter.value["n"] == counter.version - 1, "counter value and version"
            a = {it.key for it in _scan_all(store, "tx-a")}
            b = {it.key for it in _scan_all(store, "tx-b")}
            assert a == b, f"partial transactions visible: {sorted(a ^ b)[:5]}"
            assert acked_tx <= a, f"acknowledged transactions lost: {sorted(acked_tx - a)[:5]}"
            report = store.check()
            assert report.ok, report.problems
    assert acked_puts and acked_tx and max_cas > 0, "the child never got a write acknowledged"


def _scan_all(store: clawstate.Store, namespace: str) -> Iterator[Any]:
    ns = store.namespace(namespace)
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        yield from page.items
        cursor = page.cursor
        if cursor is None:
            return


def test_version_state_reports_the_row_and_the_floor(backend: RedisBackend) -> None:
    """What the write-back cache predicts versions from; the floor a delete and a
    sweep raise (docs/backends.md, "Versions never repeat")."""
    assert backend.version_state("n", "k") == (None, 0)
    backend.write(WriteUnit([Write("n", "k", OP_PUT, b"a")], 1.0))
    backend.write(WriteUnit([Write("n", "k", OP_PUT, b"b")], 1.0))
    assert backend.version_state("n", "k") == (2, 0)
    backend.write(WriteUnit([Write("n", "k", OP_DELETE)], 1.0))
    assert backend.version_state("n", "k") == (None, 2)
    out = backend.write(WriteUnit([Write("n", "t", OP_PUT, b"x", expires_at=5.0)], 2.0))
    assert out[0].version == 3
    assert backend.version_state("n", "t") == (3, 2)  # expired at 5, not yet swept
    backend.sweep(6.0, 0.0)
    assert backend.version_state("n", "t") == (None, 3)
    assert backend.write(WriteUnit([Write("n", "t", OP_PUT, b"y")], 7.0))[0].version == 4
    assert backend.version_state("other", "k") == (None, 0)
    assert backend.check()[0] == []
