"""The one backoff: how long a reconnect loop waits after its n-th failure in a row.

Every loop that retries a lost connection — the log cursor's shared waiter
(:mod:`clawstate._follow`), the cache's change-log tailer, the HTTP client's
followers — waits by this object instead of writing its own ``delay *= 2``.
It follows redis-py's split (``redis.backoff.ExponentialBackoff`` computes a
delay from a failure count; ``redis.retry.Retry`` owns the count): the policy
(:meth:`Backoff.compute`) is pure, and a :class:`Backoff` instance also carries
the count for the one loop that owns it.

Full jitter (a delay drawn from ``[0, cap]`` of the exponential) is off by
default: the loops here retry one local backend each, and a fixed schedule is
easier to reason about in logs and tests.  Turn it on (``jitter=True``) where
many clients would otherwise retry one server in lockstep.
"""

from __future__ import annotations

import random
import threading
from typing import Final

from .errors import InvalidRequest

__all__ = ["Backoff"]

#: The first delay of the tailer's and the cursor's reconnect loops (seconds).
BASE: Final = 0.05
#: The longest delay between two attempts (seconds).
CAP: Final = 2.0


class Backoff:
    """Exponential backoff: ``base * 2**(failures - 1)`` seconds, at most ``cap``.

    ``failed()`` counts a failure and returns the delay to wait before the next
    attempt; ``succeeded()`` starts the schedule over.  ``wait(stop)`` does both
    the counting and the (interruptible) waiting.  One instance per loop: it is
    not shared between threads.
    """

    __slots__ = ("base", "cap", "failures", "jitter")

    def __init__(self, base: float = BASE, cap: float = CAP, *, jitter: bool = False) -> None:
        if not base > 0:  # also refuses NaN
            raise InvalidRequest("base", f"must be a positive number of seconds, got {base!r}")
        if not cap >= base:
            raise InvalidRequest("cap", f"must be at least base ({base!r}), got {cap!r}")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        #: failures in a row since the last success
        self.failures = 0

    def compute(self, failures: int) -> float:
        """The delay after ``failures`` failures in a row (0 for none)."""
        if failures <= 0:
            return 0.0
        # 2**62 seconds is past any cap: stop growing before the float overflows.
        delay = min(self.cap, self.base * (2.0 ** min(failures - 1, 62)))
        return random.uniform(0.0, delay) if self.jitter else delay

    def failed(self) -> float:
        """Count one more failure; the delay to wait before trying again."""
        self.failures += 1
        return self.compute(self.failures)

    def succeeded(self) -> None:
        """The attempt worked: the next failure waits ``base`` again."""
        self.failures = 0

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Count a failure and sleep its delay; True when ``stop`` was set meanwhile
        (the loop should end instead of retrying)."""
        delay = self.failed()
        if stop is None:
            threading.Event().wait(delay)
            return False
        return stop.wait(delay)

    async def wait_async(self) -> None:
        """Count a failure and sleep its delay without blocking the event loop."""
        import asyncio  # here, not at the top: sync-only processes never load asyncio

        await asyncio.sleep(self.failed())
