"""Write-back: writes acknowledged from the cache, flushed to the backend in batches.

**A write-back write is acknowledged before it is durable.**  ``put`` returns once
the write is in this process's memory; a crash (SIGKILL, power loss, OOM) before the
next flush loses it.  The flush starts at most ``cache_flush_delay`` (default
100 ms) after the oldest unflushed write, so the loss window is that delay plus one
commit — measured by ``tests/test_cache_writeback.py``'s kill test and reported in
docs/cache.md.  Use write-through where that is not acceptable.

How it keeps the store's contract for everything else:

* **Only plain writes are deferred.**  A compare-and-set (``if_version``,
  ``if_absent``), a write with an ``idempotency_key`` and a transaction need the
  backend's verdict, so they first flush what is pending, then commit synchronously.
* **The process reads its own writes.**  Pending writes are pinned in L1 and kept
  in :attr:`WriteBack.pending`; every read that goes past the cache to the backend
  (``scan``, ``query``, ``count``, ``watch``, ``last_seq``, ``sweep``, ``check``,
  ``stats``) flushes first — the facade calls :meth:`WriteBack.flush` (a *barrier*).
* **The acknowledged Item is a prediction**: its version continues from what this
  process knows (pending writes, L1, else one backend read; for a key with no live
  item, the backend's ``version_state`` — a stored expired row's version, else the
  namespace's version floor, raised by pending deletes — since versions never repeat
  across a key's incarnations, docs/backends.md), its timestamps are the
  put's own; its ``etag`` is provisional (``~…``) until the flush, after which the
  cache serves the committed item.  With one writing process the prediction is what
  the backend then assigns; when several processes write the same key, versions may
  differ from the prediction — use write-through (or conditional writes) there.
* **Group batches, millisecond timestamps**: a flush commits the pending writes in
  acknowledgement order as :class:`~clawstate.backends.base.WriteUnit` s, each
  holding a run of consecutive writes acknowledged within :data:`TIME_QUANTUM` (1 ms)
  of the run's first; they are committed with that first write's timestamp, so a
  write-back write's ``updated_at`` (and a new key's ``created_at``) may be up to
  1 ms earlier than its acknowledgement said.  A run is also cut wherever an item the
  run's writes saw would expire inside it, so versions are exactly the predicted
  ones (a TTL boundary decides whether a write keeps ``created_at`` or starts a new
  incarnation).
  A ``put_many`` is always inside one unit, so it stays atomic.  Without merging, a
  flush would make one commit per write and fall behind a busy writer.
* **The delay is a bound, not a hope**: when the oldest pending write is older than
  twice the flush delay (the backend is slower than the writers), writers wait for
  the flush — write-back degrades towards write-through instead of letting the loss
  window grow.
* **A flush that fails for the backend's sake is retried** (back-off up to 1 s) and
  the writes stay readable meanwhile; ``close()`` retries for up to 5 s and then
  raises :class:`~clawstate.errors.BackendUnavailable` saying how many acknowledged
  writes were lost.  Writers block when 100,000 writes are pending (back-pressure),
  and a write that waited 10 s (or 50 flush delays) for a stalled backend is refused
  with ``BackendUnavailable`` rather than accepted into an ever-growing loss window.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..backends.base import Write, WriteUnit
from ..errors import BackendUnavailable, ClawStateError
from ..types import Item

if TYPE_CHECKING:
    from ..backends.base import Backend, Outcome

__all__ = ["MAX_PENDING", "FlushTarget", "PendingUnit", "WriteBack"]

log = logging.getLogger("clawstate.cache")

#: Pending writes beyond which writers wait for the flush (back-pressure).
MAX_PENDING: Final = 100_000
#: Pending writes that start a flush before the delay is up.
FLUSH_EARLY: Final = 2_000
#: Writes acknowledged within this many seconds of a run's first commit as one unit.
TIME_QUANTUM: Final = 0.001
_CLOSE_RETRY_SECONDS: Final = 5.0
#: How long a writer waits for a stalled flush before its write is refused.
_STALL_SECONDS: Final = 10.0


class FlushTarget(Protocol):
    """The namespace cache a pending unit belongs to, as the flusher sees it.

    A Protocol (satisfied by ``_namespace.NamespaceCache``) rather than an import
    of it: the namespace cache imports this module, so importing it back would
    close a loop."""

    def flushed(self, unit: PendingUnit, outcomes: Sequence[Outcome]) -> None:
        """The unit's writes are durable: the cache takes their outcomes."""
        ...

    def discard(self, unit: PendingUnit) -> None:
        """The unit's writes were refused or lost: the cache forgets them."""
        ...


class PendingUnit:
    """Writes acknowledged together (a put, a delete, a put_many), not yet durable."""

    __slots__ = ("cache", "expiries", "items", "now", "since", "writes")

    def __init__(
        self,
        cache: FlushTarget,
        writes: list[Write],
        now: float,
        items: list[Item | None],
        expiries: list[float],
    ) -> None:
        self.cache = cache
        self.writes = writes
        self.now = now
        #: what each write made the key look like (None: deleted), as acknowledged
        self.items = items
        #: expiry times of the items these writes replaced, that were still live when
        #: acknowledged: a commit at or after one of them would assign another version
        self.expiries = expiries
        self.since = time.monotonic()


class WriteBack:
    """The pending writes of one backend and the thread that flushes them."""

    def __init__(self, backend: Backend, backend_name: str) -> None:
        self.backend = backend
        self.backend_name = backend_name
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self._flush_lock = threading.Lock()
        self._queue: list[PendingUnit] = []
        self._count = 0
        self._deadline = math.inf
        #: (namespace, key) -> (the acknowledged state, the unit holding it)
        self.pending: dict[tuple[str, str], tuple[Item | None, PendingUnit]] = {}
        self._wake = threading.Event()
        self._stopping = False
        self.flushed = 0
        self.flushes = 0
        self.units = 0
        self.failed = 0
        self.retries = 0
        self.last_flush_ms = 0.0
        self.max_age_ms = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"clawstate-cache-flush-{backend_name}", daemon=True
        )
        self._thread.start()

    # -- acknowledging ------------------------------------------------------------------

    def submit(self, unit: PendingUnit, delay: float) -> None:
        """Queue ``unit`` (the caller already pinned its entries in L1)."""
        give_up = time.monotonic() + max(_STALL_SECONDS, 50 * delay)
        with self._cond:
            while not self._stopping and (
                self._count >= MAX_PENDING
                or (self._queue and time.monotonic() - self._queue[0].since > 2 * delay)
            ):
                if time.monotonic() > give_up:
                    raise BackendUnavailable(
                        f"write-back on {self.backend_name}: {self._count} write(s) have waited "
                        f"{time.monotonic() - self._queue[0].since:.1f} s for a flush the "
                        "backend does not take; this write was not accepted"
                    )
                self._wake.set()
                self._cond.wait(delay)
            unit_deadline = time.monotonic() + delay
            self._queue.append(unit)
            self._count += len(unit.writes)
            for w, item in zip(unit.writes, unit.items, strict=True):
                self.pending[(w.namespace, w.key)] = (item, unit)
            if unit_deadline < self._deadline or self._count >= FLUSH_EARLY:
                self._deadline = min(self._deadline, unit_deadline)
                self._wake.set()

    def lookup(self, namespace: str, key: str) -> tuple[bool, Item | None]:
        """``(True, state)`` when ``key`` has an unflushed write; no lock (one dict read)."""
        found = self.pending.get((namespace, key))
        if found is None:
            return False, None
        return True, found[0]

    # -- flushing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Commit everything pending now (a barrier); raise if the backend refuses."""
        # Always take the flush lock: a flush in progress on another thread has already
        # emptied the queue, and a barrier must wait for it to commit.
        with self._flush_lock:
            with self.lock:
                batch, self._queue = self._queue, []
                self._deadline = math.inf
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[PendingUnit]) -> None:
        started = time.monotonic()
        groups = _runs(batch)
        done = 0
        try:
            for group in groups:
                writes = [w for u in group for w in u.writes]
                try:
                    outcomes = self.backend.write(WriteUnit(writes, group[0].now))
                except BackendUnavailable:
                    raise
                except ClawStateError as exc:
                    # Not retryable (the backend refused these writes): they are lost.
                    self._drop(group, exc)
                    done += len(group)
                    continue
                i = 0
                for unit in group:
                    n = len(unit.writes)
                    unit.cache.flushed(unit, outcomes[i : i + n])
                    i += n
                self._release(group)
                done += len(group)
                self.units += 1
                self.flushed += len(writes)
        except BaseException:
            with self._cond:
                self._queue[:0] = batch[done:]
                self._deadline = time.monotonic()
            raise
        finally:
            self.flushes += 1
            self.last_flush_ms = (time.monotonic() - started) * 1000

    def _release(self, group: list[PendingUnit]) -> None:
        with self._cond:
            for unit in group:
                self._count -= len(unit.writes)
                for w in unit.writes:
                    slot = (w.namespace, w.key)
                    held = self.pending.get(slot)
                    if held is not None and held[1] is unit:
                        del self.pending[slot]
            self._cond.notify_all()

    def _drop(self, group: list[PendingUnit], exc: ClawStateError) -> None:
        lost = sum(len(u.writes) for u in group)
        self.failed += lost
        log.error(
            "write-back on %s: the backend refused %d acknowledged write(s), which are lost: %s",
            self.backend_name,
            lost,
            exc,
        )
        for unit in group:
            unit.cache.discard(unit)
        self._release(group)

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not self._queue:
                    wait = 1.0
                elif self._count >= FLUSH_EARLY:
                    wait = 0.0
                else:
                    wait = self._deadline - time.monotonic()
            if wait > 0:
                # Woken early by a submit with an earlier deadline or by close();
                # the loop recomputes the wait from the state either way.
                self._wake.wait(min(wait, 1.0))
                self._wake.clear()
                continue
            try:
                self.flush()
                backoff = 0.05
            except ClawStateError as exc:
                self.retries += 1
                log.warning(
                    "write-back on %s: flush failed (%s); %d write(s) pending, retrying",
                    self.backend_name,
                    exc,
                    self._count,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:
                self.retries += 1
                log.exception("write-back on %s: flush failed; retrying", self.backend_name)
                time.sleep(1.0)

    # -- lifecycle ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "pending": self._count,
            "flushed": self.flushed,
            "flushes": self.flushes,
            "units": self.units,
            "failed": self.failed,
            "retries": self.retries,
            "last_flush_ms": round(self.last_flush_ms, 3),
        }

    def close(self) -> None:
        """Stop the flusher and flush what is left, retrying for up to 5 s."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        give_up = time.monotonic() + _CLOSE_RETRY_SECONDS
        while True:
            try:
                self.flush()
                return
            except BackendUnavailable as exc:
                if time.monotonic() >= give_up:
                    lost = self._count
                    raise BackendUnavailable(
                        f"write-back on {self.backend_name}: {lost} acknowledged write(s) "
                        f"could not be flushed before close and are lost: {exc}"
                    ) from exc
                time.sleep(0.1)


def _runs(batch: list[PendingUnit]) -> list[list[PendingUnit]]:
    """Cut ``batch`` into runs committed as one WriteUnit each, at the first unit's time
    (see the module docstring): a unit joins the run if it was acknowledged within
    :data:`TIME_QUANTUM` after the run's first, and no item its writes replaced
    expires between the run's time and its own — else a new run starts."""
    runs: list[list[PendingUnit]] = []
    start = -math.inf
    for unit in batch:
        if (
            runs
            and start <= unit.now < start + TIME_QUANTUM
            and not any(start < e <= unit.now for e in unit.expiries)
        ):
            runs[-1].append(unit)
        else:
            runs.append([unit])
            start = unit.now
    return runs
