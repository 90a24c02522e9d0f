"""Test doubles that belong to the public testing kit: a controllable clock."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A clock tests move by hand: pass it as ``clawstate.open(..., clock=clock)``.

    Expiry, idempotency windows and timestamps all read the store's clock, so a
    test can jump an hour ahead without sleeping.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now
