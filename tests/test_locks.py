"""Leases with fencing tokens: the locks conformance suite on memory and SQLite
(conftest's ``store_factory``), sync and async, and what only the embedded store has
(a fenced write to another backend, a default TTL policy).  PostgreSQL,
Redis and HTTP: ``test_locks_postgres.py``, ``test_locks_redis.py``,
``test_locks_http.py``."""

from __future__ import annotations

from typing import Any

import pytest

import clawstate
from clawstate import InvalidRequest
from clawstate.testing.conformance.locks import AsyncLocksConformance, LocksConformance


class TestLocks(LocksConformance):
    """memory and SQLite (conftest's ``store_factory``)."""


class TestAsyncLocks(AsyncLocksConformance):
    """memory and SQLite, awaitable."""


# -- embedded only ----------------------------------------------------------------------


def test_fenced_write_to_another_backend_refused(tmp_path: Any) -> None:
    store = clawstate.open(
        f"sqlite:///{tmp_path}/a.db",
        sweep_interval=0,
        backends={"other": f"sqlite:///{tmp_path}/b.db"},
        namespaces={"far": {"backend": "other"}},
    )
    try:
        lease = store.locks.acquire("job")
        with pytest.raises(InvalidRequest) as info:
            store.namespace("far").put("k", 1, fence=lease)
        assert info.value.field == "fence"
        assert store.namespace("far").get("k") is None
    finally:
        store.close()


def test_default_ttl_policy_does_not_expire_fences(tmp_path: Any) -> None:
    """A ``[namespaces."*"] default_ttl`` must not expire fence rows (a token would
    then no longer fence anything): the lock namespaces ignore it."""
    from clawstate.testing.fakes import FakeClock

    clock = FakeClock()
    store = clawstate.open(
        f"sqlite:///{tmp_path}/a.db",
        clock=clock,
        sweep_interval=0,
        namespaces={"*": {"default_ttl": 5}},
    )
    try:
        lease = store.locks.acquire("job", ttl=3600)
        clock.advance(60)
        store.namespace("out").put("k", 1, fence=lease)
        assert store.locks.get("job") == lease
    finally:
        store.close()
