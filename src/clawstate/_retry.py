"""Optimistic-concurrency retries: the one home of ``retry_on_conflict``.

Every read-modify-write in clawstate is optimistic: it reads a version, computes,
and writes on condition that the version did not move (``if_version``,
``expected_version``).  When another writer got there first the write raises
:class:`~clawstate.VersionConflict` (or its subclass
:class:`~clawstate.WrongExpectedVersion`) and changes nothing, so the whole
read-compute-write can simply run again.  :meth:`Namespace.update
<clawstate.Namespace.update>`, :meth:`Repository.update
<clawstate.events.Repository.update>` and application code share these two loops
(one sync, one async) instead of each writing its own.

The pause between attempts is random ("full jitter") and grows exponentially up
to ``max_backoff``: writers that collided once should not collide again in lock
step, and a hot key should not be hammered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._validate import check_int
from .errors import VersionConflict

__all__ = ["MAX_RETRIES", "conflict_pause", "retry_on_conflict", "retry_on_conflict_async"]

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
