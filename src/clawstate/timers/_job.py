"""The worker's ``timers`` job (see :class:`TimerJob`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import MAX_ATTEMPTS, _log

if TYPE_CHECKING:
    from . import Timers

__all__ = ["TimerJob"]


class TimerJob:
    """The worker's ``timers`` job: fire what is due, then sleep until the next due
    time or a change in ``_timers`` (a schedule, a cancel), whichever comes first.

    The wake-up is the store's change log (a namespace watch on ``_timers``: the
    SQLite wake file, PostgreSQL LISTEN, Redis' stream, memory's condition), so an
    idle worker does no polling; ``max_sleep`` bounds a sleep anyway, which is what
    makes a wall clock that jumps forward fire within that bound.  A full batch
    loops at once (more may be due)."""

    def __init__(
        self,
        timers: Timers,
        *,
        batch: int = 100,
        max_attempts: int = MAX_ATTEMPTS,
        max_sleep: float = 30.0,
    ) -> None:
        self.timers = timers
        self.batch = batch
        self.max_attempts = max_attempts
        self.max_sleep = max_sleep
        self.runs = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._watch: Any = None

    def stop(self) -> None:
        """Stop after the current firing; a sleeping job wakes at once."""
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.close()

    def status(self) -> dict[str, Any]:
        t = self.timers
        return {
            "fired": t.fired,
            "failed": t.failed,
            "parked": t.parked,
            "lag_p99": t.lag_p99(),
            "last_lag": t.lags[-1] if t.lags else None,
            "runs": self.runs,
            "last_error": self.last_error,
        }

    def run(self, stop: threading.Event | None = None) -> None:
        """Until :meth:`stop` (or ``stop`` is set)."""
        from ..errors import ClawStateError

        timers = self.timers
        store = timers._store
        while not self._stopped(stop):
            try:
                if self._watch is None:
                    self._watch = timers._ns.watch(None)
                    if self._stopped(stop):
                        break
                self._watch.poll()  # changes up to now are seen by the read below
                fired = timers.fire_due(limit=self.batch, max_attempts=self.max_attempts)
                self.runs += 1
                self.last_error = None
                if fired >= self.batch:
                    continue
                nxt = timers.next_due(within=self.max_sleep)
                wait = self.max_sleep if nxt is None else nxt - store._clock()
                wait = min(self.max_sleep, max(0.01, wait))
                self._watch.cursor.wait(wait)
            except ClawStateError as exc:
                # A lost connection, a trimmed log: log it, start over after a pause.
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.warning("timers job failed; retrying", extra={"error": self.last_error})
                watch, self._watch = self._watch, None
                if watch is not None:
                    watch.close()
                self._stop.wait(1.0)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def _stopped(self, stop: threading.Event | None) -> bool:
        return self._stop.is_set() or (stop is not None and stop.is_set())
