"""Group commit without a writer thread: the first waiting caller leads.

Every writer appends its job to a queue.  If no one is committing, it becomes the
leader: it drains *everything* queued so far, commits it as one batch, and keeps
draining until its own job is done.  While a batch commits, new writers pile up
in the queue and become the next batch, so the batch size grows with contention
by itself.  Each waiting writer sleeps on its own lock, released exactly once:
when its batch has committed (so it returns at once, without waiting for the next
batch or for anyone else to wake), or — when the leader leaves with jobs still
queued — to make the oldest of them the next leader.  No thundering herd, and a
slow commit (an fsync, a PostgreSQL round trip) never delays an acknowledgement.

A gather window (PostgreSQL's ``commit_delay`` idea): once a batch has shown
that several writers are active, a new leader waits a moment for the writers
that were just acknowledged to queue their next job before it commits — without
it, batches alternate between one straggler and the rest (measured: a mean of
4.9 of 8 writers per fsync).  The wait ends as soon as as many jobs are queued
as the recent batches held, and never exceeds half the recent commit time (nor
``gather_max``), so it is spent only where a commit costs far more than the wait
(an fsync, a network round trip) and never for a lone writer: a writer alone
commits inline, with no wait, once the recent batches (the last
:data:`_HISTORY`) show it alone.

Why not a dedicated writer thread: a lone writer then pays two thread hand-offs
per commit (measured ~40–80 µs in CPython, more than an SQLite commit in WAL
mode; ``bench/group_commit.py`` measures both designs side by side).  Here a lone
writer commits inline on its own thread.  Each caller is acknowledged only after
the batch holding its job committed; a job's own failure (a version conflict) is
returned to that caller alone.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommitter"]

#: How many recent batch sizes estimate the number of active writers.
_HISTORY = 8
#: A gather window shorter than this is not worth a timed wait.
_MIN_WINDOW = 50e-6

J = TypeVar("J")
R = TypeVar("R")


class _Slot(Generic[J, R]):
    __slots__ = ("done", "error", "job", "result", "wake")

    def __init__(self, job: J) -> None:
        self.job = job
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None
        # Held from birth; released once: when the job is done, or to hand over leadership.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommitter(Generic[J, R]):
    """Coalesces concurrent ``submit`` calls into batches for ``run_batch``.

    ``run_batch(jobs)`` must return one entry per job, in order: a result, or
    the exception to raise in that job's caller.  It must not raise itself.
    """

    def __init__(
        self,
        run_batch: Callable[[list[J]], list[R | BaseException]],
        max_batch: int = 512,
        *,
        gather_max: float = 0.0005,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._gather_max = gather_max
        self._queue: list[_Slot[J, R]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._leading = False
        self._gather_target = 0  # > 0 while a leader gathers: notify it at this queue length
        self._recent: deque[int] = deque([1], maxlen=_HISTORY)
        self._commit_time = 0.0  # moving average of a batch's commit, in seconds
        self.batches = 0
        self.jobs = 0
        self.largest_batch = 0
        self.gathers = 0

    def submit(self, job: J) -> R:
        with self._lock:
            inline = not self._leading and not self._queue and self._window() == 0.0
            if inline:
                self._leading = True
            else:
                slot: _Slot[J, R] = _Slot(job)
                self._queue.append(slot)
                lead = not self._leading
                if lead:
                    self._leading = True
                elif self._gather_target and len(self._queue) >= self._gather_target:
                    self._arrived.notify()
        if inline:
            # Nobody commits and nobody waits: commit inline, with no slot to hand over.
            # Writers arriving meanwhile queue up and wait, as below.
            try:
                started = time.perf_counter()
                results = self._run_batch([job])
                self._timed(time.perf_counter() - started)
            finally:
                self._step_down()
            self._count(1)
            result = results[0]
            if isinstance(result, BaseException):
                raise result
            return result
        if not lead:
            slot.wake.acquire()  # woken exactly once: our job is done, or we lead now
        if not slot.done:
            try:
                while not slot.done:
                    with self._lock:
                        self._gather()
                        batch = self._queue[: self._max_batch]
                        del self._queue[: self._max_batch]
                    self._commit(batch)
            finally:
                self._step_down()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _window(self) -> float:
        """How long a new leader may wait for more jobs (0: commit at once).  Caller
        holds the lock."""
        if max(self._recent) <= 1:
            return 0.0  # a lone writer (as far as the recent batches show)
        window = min(self._gather_max, self._commit_time / 2)
        return window if window >= _MIN_WINDOW else 0.0

    def _gather(self) -> None:
        """Wait (lock held, released while waiting) until as many jobs are queued as
        the recent batches held, or the window ends."""
        target = min(max(self._recent), self._max_batch)
        if len(self._queue) >= target:
            return
        window = self._window()
        if window == 0.0:
            return
        self.gathers += 1
        deadline = time.monotonic() + window
        self._gather_target = target
        try:
            while len(self._queue) < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
        finally:
            self._gather_target = 0

    def _timed(self, seconds: float) -> None:
        self._commit_time = (
            seconds if not self._commit_time else 0.8 * self._commit_time + 0.2 * seconds
        )

    def _step_down(self) -> None:
        """Leave the lead: to the oldest queued writer, or to nobody."""
        with self._lock:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._leading = False
        if successor is not None:
            successor.wake.release()  # it is still queued, so not done: it will lead

    def _count(self, n: int) -> None:
        with self._lock:  # _window() reads the history under the lock
            self._recent.append(n)
        self.batches += 1
        self.jobs += n
        if n > self.largest_batch:
            self.largest_batch = n

    def _commit(self, batch: list[_Slot[J, R]]) -> None:
        started = time.perf_counter()
        try:
            results = self._run_batch([s.job for s in batch])
        except BaseException as exc:  # run_batch broke its contract: fail the whole batch
            results = [exc] * len(batch)
        self._timed(time.perf_counter() - started)
        self._count(len(batch))
        for slot, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                slot.error = result
            else:
                slot.result = result
            slot.done = True
            if slot.wake.locked():
                slot.wake.release()  # its writer returns now, not after the next batch

    def stats(self) -> dict[str, float]:
        return {
            "batches": self.batches,
            "jobs": self.jobs,
            "largest_batch": self.largest_batch,
            "mean_batch": (self.jobs / self.batches) if self.batches else 0.0,
            "gathers": self.gathers,
        }
