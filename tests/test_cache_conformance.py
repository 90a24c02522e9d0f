"""The conformance suites and the model test, run again with the cache on every namespace.

Every cache mode must keep the store's whole contract — a cache that changes an
answer is a bug, whatever it saves.  Each parametrisation opens every store of the
shipped suites with ``namespaces={"*": <policy>}`` (explicit namespace tables in a
test inherit it), over the memory and SQLite backends:

* ``read-through``, ``write-through``, ``write-back``: the three modes, eventual;
* ``strong``: read-through with ``cache_consistency = "strong"``;
* ``write-through+l2``: write-through with the shared Redis tier (needs Redis).

Write-back runs the suites with a long flush delay, so flushes happen where the
test's own reads put them (the barriers: scan, count, watch, check, close…) and
nowhere else: its acknowledged Items carry a provisional etag until the flush, and
a timer flush between a test's ``put`` and its ``get`` would swap it for the
committed one.  The model test runs write-back with the default 100 ms timer, so
there the flusher interleaves with every step.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

import clawstate
import clawstate.cache._tailer
from clawstate.testing.conformance import (
    AsyncStoreConformance,
    AsyncStoreFactory,
    Clock,
    StoreConformance,
    StoreFactory,
)
from clawstate.testing.fakes import FakeClock
from conftest import BACKENDS, DEFAULT_OPTIONS
from services import REDIS_URL, require, tcp_probe
from test_model import MODEL_SETTINGS, StoreMachine

#: name -> the cache policy every namespace gets
POLICIES: dict[str, dict[str, Any]] = {
    "read-through": {"cache": "read-through"},
    "write-through": {"cache": "write-through"},
    "write-back": {"cache": "write-back", "cache_flush_delay": 1},
    "strong": {"cache": "read-through", "cache_consistency": "strong"},
    "write-through+l2": {"cache": "write-through", "cache_l2": REDIS_URL, "cache_ttl": 60},
}
#: Every policy runs on SQLite; the memory reference backend adds write-back, the mode
#: with the most logic of its own (a memory:// store's L2 keys are private to it anyway).
#: Kept small on purpose: `make test` must stay fast.
PARAMS = [(b, p) for p in POLICIES for b in sorted(BACKENDS) if b == "sqlite" or p == "write-back"]


def _with_cache(options: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    namespaces = dict(options.get("namespaces") or {})
    namespaces["*"] = {**policy, **namespaces.get("*", {})}
    return {**DEFAULT_OPTIONS, **options, "namespaces": namespaces}


def _needs_redis(policy: dict[str, Any]) -> None:
    if policy.get("cache_l2"):
        from urllib.parse import urlsplit

        parts = urlsplit(REDIS_URL)
        require("redis", tcp_probe(parts.hostname or "127.0.0.1", parts.port or 6379))


@pytest.fixture(autouse=True)
def _quick_tailers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a cached store waits for its change-log tailer to let go of the backend,
    up to one wait slice (50 ms); the suites open hundreds of stores, so tests use 5 ms
    slices (more polling, same behaviour)."""
    monkeypatch.setattr(clawstate.cache._tailer, "WAIT", 0.005)


def _close(store: clawstate.Store) -> None:
    store.close()
    purge_l2(store)


def purge_l2(store: clawstate.Store) -> None:
    """Remove what a test store left in the shared Redis (its own key prefix only)."""
    for l2 in store._cache._l2.values():
        try:
            client = l2._client
            for key in client.scan_iter(match=l2.prefix + b"*", count=1000):
                client.unlink(key)
        except Exception:
            pass


@pytest.fixture(params=PARAMS, ids=[f"{b}-{p}" for b, p in PARAMS])
def cache_case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend, name = request.param
    policy = POLICIES[name]
    _needs_redis(policy)
    return backend, policy


@pytest.fixture
def store_factory(cache_case: tuple[str, dict[str, Any]], tmp_path: Path) -> Iterator[StoreFactory]:
    backend, policy = cache_case
    opened: list[clawstate.Store] = []
    counter = itertools.count()

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.Store:
        url = BACKENDS[backend](tmp_path, next(counter))
        store = clawstate.open(url, clock=clock, **_with_cache(options, policy))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        _close(store)


@pytest.fixture
async def async_store_factory(
    cache_case: tuple[str, dict[str, Any]], tmp_path: Path, anyio_backend: str
) -> AsyncIterator[AsyncStoreFactory]:
    backend, policy = cache_case
    opened: list[clawstate.AsyncStore] = []
    counter = itertools.count()

    def factory(clock: Clock | None = None, **options: Any) -> clawstate.AsyncStore:
        url = BACKENDS[backend](tmp_path, next(counter))
        astore = clawstate.open_async(url, clock=clock, **_with_cache(options, policy))
        opened.append(astore)
        return astore

    yield factory
    for astore in opened:
        await astore.close()
        purge_l2(astore.sync)


class TestCachedStore(StoreConformance):
    """The sync facade's whole contract with the cache on."""

    def test_scan_items_carry_metadata(
        self, store: clawstate.Store, cache_case: tuple[str, dict[str, Any]]
    ) -> None:
        if cache_case[1]["cache"] != "write-back":
            super().test_scan_items_carry_metadata(store)
            return
        # The one documented difference: write-back acknowledges before the write has
        # a change-log seq, so the acknowledged etag is provisional ("~…"); everything
        # else about the item is what the backend then stores, and once flushed every
        # read agrees on the committed etag.
        ns = store.namespace("s")
        put = ns.put("k", {"v": 1})
        assert put.etag.startswith("~")
        (item,) = ns.scan().items
        assert msgspec.structs.replace(item, etag=put.etag) == put
        got = ns.get("k")
        assert got == item and not item.etag.startswith("~")


class TestCachedAsyncStore(AsyncStoreConformance):
    """The async facade's contract with the cache on."""


# -- the model test ----------------------------------------------------------------------

MODEL_POLICIES: dict[str, dict[str, Any]] = {
    "read-through": {"cache": "read-through"},
    "write-through": {"cache": "write-through", "cache_negative_ttl": 5},
    "write-back": {"cache": "write-back"},  # the default 100 ms flush timer
    "strong": {"cache": "write-through", "cache_consistency": "strong"},
}


class CachedStoreMachine(StoreMachine):
    """The dict-model machine on a store whose namespaces are all cached."""

    def __init__(self, backend: str, policy: dict[str, Any]) -> None:
        # StoreMachine.__init__ with one change: the store is opened with the policy
        # (calling it and reopening would create every example's SQLite file twice).
        RuleBasedStateMachine.__init__(self)
        self.tmp = tempfile.mkdtemp(prefix="clawstate-cache-model-")
        url = "memory://" if backend == "memory" else f"sqlite:///{self.tmp}/state.db"
        self.clock = FakeClock()
        self.store = clawstate.open(
            url, clock=self.clock, sweep_interval=0, namespaces={"*": policy}
        )
        self.model = {}
        self.floors = {}
        self.given = {}
        self.touched = set()
        self.seq = 0


@pytest.mark.parametrize("policy", sorted(MODEL_POLICIES))
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_cached_store_matches_dict_model(backend: str, policy: str) -> None:
    run_state_machine_as_test(
        lambda: CachedStoreMachine(backend, MODEL_POLICIES[policy]),
        settings=settings(MODEL_SETTINGS, max_examples=50),
    )
