"""Optimistic-concurrency retries: the one home of ``retry_on_conflict``.

Every read-modify-write in clawstate is optimistic: it reads a version, computes,
and writes on condition that the version did not move (``if_version``,
``expected_version``).  When another writer got there first the write raises
:class:`~clawstate.VersionConflict` (or its subclass
:class:`~clawstate.WrongExpectedVersion`) and changes nothing, so the whole
read-compute-write can simply run again.  :meth:`Namespace.update
<clawstate.Namespace.update>`, :meth:`Repository.update
<clawstate.events.Repository.update>` and application code share these two loops
(one sync, one async) instead of each writing its own.  The read-apply-write of
``update`` itself is here too (:func:`update_item`, :func:`update_item_async`): the
local namespace, ``AsyncNamespace`` and both remote clients run this one body.

The pause between attempts is random ("full jitter") and grows exponentially up
to ``max_backoff``: writers that collided once should not collide again in lock
step, and a hot key should not be hammered.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ._validate import check_int, check_key, check_ttl
from .errors import VersionConflict
from .types import Item

__all__ = [
    "MAX_RETRIES",
    "AsyncUpdatable",
    "Updatable",
    "conflict_pause",
    "retry_on_conflict",
    "retry_on_conflict_async",
    "update_item",
    "update_item_async",
]

T = TypeVar("T")

#: The most retries a caller may ask for: past it, a conflict storm is a design problem
#: (one hot key), not something more retries fix.
MAX_RETRIES = 1000


def conflict_pause(attempt: int, backoff: float, max_backoff: float) -> float:
    """The pause before retry number ``attempt + 1``: uniform in [0, min(max_backoff,
    backoff * 2**attempt)]."""
    return random.uniform(0, min(max_backoff, backoff * 2 ** min(attempt, 62)))


def retry_on_conflict(
    fn: Callable[[], T], retries: int = 10, *, backoff: float = 0.002, max_backoff: float = 0.1
) -> T:
    """Call ``fn`` until it does not raise :class:`~clawstate.VersionConflict` (which
    includes :class:`~clawstate.WrongExpectedVersion`), at most ``retries`` extra
    times, sleeping a random, growing pause in between; the last conflict propagates.

    ``fn`` must be safe to run again: it should re-read what it depends on."""
    check_int(retries, "retries", 0, MAX_RETRIES)
    attempt = 0
    while True:
        try:
            return fn()
        except VersionConflict:
            if attempt >= retries:
                raise
            time.sleep(conflict_pause(attempt, backoff, max_backoff))
            attempt += 1


async def retry_on_conflict_async(
    fn: Callable[[], Awaitable[T]],
    retries: int = 10,
    *,
    backoff: float = 0.002,
    max_backoff: float = 0.1,
) -> T:
    """The awaitable twin of :func:`retry_on_conflict`: awaits ``fn()`` and pauses with
    ``asyncio.sleep``, so a retrying task never holds a thread."""
    check_int(retries, "retries", 0, MAX_RETRIES)
    attempt = 0
    while True:
        try:
            return await fn()
        except VersionConflict:
            if attempt >= retries:
                raise
            await asyncio.sleep(conflict_pause(attempt, backoff, max_backoff))
            attempt += 1


# -- Namespace.update: the compare-and-set loop every namespace flavour shares ----------


class Updatable(Protocol):
    """The two calls :func:`update_item` makes: a local :class:`~clawstate.Namespace`
    and a remote one (``clawstate.client``) both answer them."""

    def get(self, key: str) -> Item | None: ...

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
    ) -> Item: ...


class AsyncUpdatable(Protocol):
    """The awaitable twin of :class:`Updatable` (``AsyncNamespace``, the async client)."""

    async def get(self, key: str) -> Item | None: ...

    async def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
    ) -> Item: ...


def _check_update(
    key: str, ttl: float | None, retries: int, max_key_bytes: int, max_ttl: float
) -> None:
    """Refuse bad arguments before the first read, in the order every flavour used."""
    check_key(key, max_key_bytes)
    check_int(retries, "retries", 0, MAX_RETRIES)
    if ttl is not None:
        check_ttl(ttl, max_ttl)


def update_item(
    ns: Updatable,
    key: str,
    fn: Callable[[Any], Any],
    *,
    default: Any,
    ttl: float | None,
    retries: int,
    max_key_bytes: int,
    max_ttl: float,
) -> Item:
    """``Namespace.update``'s body, for the local and the remote namespace alike: read
    ``key``, write ``fn(value)`` (``fn(default)`` when absent) on condition that the key
    did not move (``if_version``, or ``if_absent``), keeping its expiry unless ``ttl``
    gives one, and run it all again on conflict (:func:`retry_on_conflict`)."""
    _check_update(key, ttl, retries, max_key_bytes, max_ttl)

    def attempt() -> Item:
        item = ns.get(key)
        if item is None:
            return ns.put(key, fn(default), ttl=ttl, if_absent=True)
        value = fn(item.value)
        if ttl is None:
            return ns.put(key, value, if_version=item.version, keep_ttl=True)
        return ns.put(key, value, ttl=ttl, if_version=item.version)

    return retry_on_conflict(attempt, retries)


async def update_item_async(
    ns: AsyncUpdatable,
    key: str,
    fn: Callable[[Any], Any],
    *,
    default: Any,
    ttl: float | None,
    retries: int,
    max_key_bytes: int,
    max_ttl: float,
) -> Item:
    """The awaitable twin of :func:`update_item`: ``fn`` runs on the event loop and may
    return an awaitable; pauses between attempts are ``asyncio`` sleeps."""
    _check_update(key, ttl, retries, max_key_bytes, max_ttl)

    async def attempt() -> Item:
        item = await ns.get(key)
        value = fn(default if item is None else item.value)
        if inspect.isawaitable(value):
            value = await value
        if item is None:
            return await ns.put(key, value, ttl=ttl, if_absent=True)
        if ttl is None:
            return await ns.put(key, value, if_version=item.version, keep_ttl=True)
        return await ns.put(key, value, ttl=ttl, if_version=item.version)

    return await retry_on_conflict_async(attempt, retries)
