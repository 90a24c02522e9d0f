"""The change-log tailer: the one way a cache learns that a key changed.

DESIGN.md's principle 1 — "invalidation comes from the change log", no second
mechanism.  Each store runs one tailer per backend that has a cached namespace.  It
reads ``backend.changes(after_seq)`` in seq order and waits with
``backend.wait_for_change`` — which each backend implements its own way (SQLite
polls the file, PostgreSQL listens for NOTIFY, Redis reads its stream) — so the
cache needs nothing of its own to hear about other processes' writes.

Every change row (put, delete, expire — the sweep's purge —, each write of a
transaction) evicts its key from L1 when the cached entry is older than the row, and
writes a tombstone for it in L2.  A process's *own* commits are applied at once from
the :class:`~clawstate.backends.base.Outcome` the backend returns (it carries the
row's seq), so a process reads its own writes without waiting for this thread; when
the tailer reaches those rows they find the entry already as new and leave it.

``sync()`` is how ``consistency = "strong"`` reads work: read the log's watermark
(``last_seq``) and, if the tailer is behind it, apply the missing rows in the
reader's thread before serving from the cache.  Every write committed before the
read began is then reflected in L1.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import ClawStateError

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ._namespace import NamespaceCache

__all__ = ["Tailer"]

log = logging.getLogger("clawstate.cache")

#: Change-log rows read per query.
BATCH = 1000
#: The longest the tailer waits in ``wait_for_change`` before looking again.  It
#: bounds how long ``close()`` waits for the tailer to let go of the backend; SQLite
#: polls other processes' commits at the same 50 ms anyway, and backends that are
#: woken by the server (NOTIFY, streams) return as soon as a change arrives.
WAIT = 0.05


class Tailer:
    """Follows one backend's change log from the position at start (the caches start
    empty, so older rows cannot concern them) and invalidates the cached namespaces."""

    def __init__(self, backend: Backend, backend_name: str) -> None:
        self.backend = backend
        self.backend_name = backend_name
        self.pos = backend.last_seq()
        #: the newest seq this process committed itself (its caches applied it already)
        self.own = 0
        self.lock = threading.Lock()
        self.caches: dict[str, NamespaceCache] = {}
        self.applied = 0
        self.invalidated = 0
        self.resets = 0
        self.errors = 0
        self.syncs = 0
        #: wall-clock lag (now - change ts) of the newest change applied, seconds
        self.lag = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"clawstate-cache-tail-{backend_name}", daemon=True
        )
        self._thread.start()

    def add(self, cache: NamespaceCache) -> None:
        self.caches[cache.name] = cache

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                self.catch_up()
                # Wait for a change newer than this process's own commits too: those
                # are applied by the committing thread already, and waking for each
                # would cost every local write two queries and a thread switch.
                started = time.monotonic()
                changed = self.backend.wait_for_change(max(self.pos, self.own), WAIT)
                if not changed and time.monotonic() - started < WAIT / 2:
                    # A backend closed under us answers at once: do not spin on it.
                    self._stop.wait(WAIT)
                backoff = 0.05
            except ClawStateError as exc:
                if self._stop.is_set():
                    return
                self.errors += 1
                log.warning("cache tailer on %s: %s; retrying", self.backend_name, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # a bug must not silently stop invalidation: say so, go on
                if self._stop.is_set():
                    return
                self.errors += 1
                log.exception("cache tailer on %s failed; retrying", self.backend_name)
                self._stop.wait(1.0)

    def sync(self) -> None:
        """Apply every change committed before this call (strong consistency)."""
        target = self.backend.last_seq()
        if self.pos < target:
            self.syncs += 1
            self.catch_up(target)

    def catch_up(self, target: int | None = None) -> None:
        """Apply the change rows after ``pos``: all of them, or at least up to ``target``."""
        with self.lock:
            while target is None or self.pos < target:
                end = self.backend.last_seq()
                rows = self.backend.changes(self.pos, BATCH)
                if not rows:
                    if end > self.pos:
                        self._skip_to(end)
                    return
                if rows[0].seq != self.pos + 1:
                    self._skip_to(rows[0].seq - 1)
                by_ns: dict[str, list[tuple[str, int]]] = {}
                for change in rows:
                    if change.namespace in self.caches:
                        by_ns.setdefault(change.namespace, []).append((change.key, change.seq))
                for name, changed in by_ns.items():
                    self.invalidated += self.caches[name].invalidate_many(changed)
                self.applied += len(rows)
                self.pos = rows[-1].seq
                self.lag = max(0.0, time.time() - rows[-1].ts)
                if len(rows) < BATCH and target is None:
                    return

    def _skip_to(self, pos: int) -> None:
        """Move past a hole in the rows.  If the rows after ``pos`` were trimmed by
        ``changelog_retention`` while we were away, what they changed is unknown:
        clear the caches.  (Seqs are gap-free, so otherwise there is nothing there.)"""
        if self.backend.first_seq() > self.pos + 1:
            self._reset(pos)
        else:
            self.pos = pos

    def _reset(self, pos: int) -> None:
        self.resets += 1
        log.warning(
            "cache tailer on %s: change log trimmed past position %d; clearing the caches",
            self.backend_name,
            self.pos,
        )
        for cache in self.caches.values():
            cache.reset(pos)
        self.pos = pos

    def stats(self) -> dict[str, Any]:
        return {
            "position": self.pos,
            "changes_applied": self.applied,
            "keys_invalidated": self.invalidated,
            "strong_syncs": self.syncs,
            "resets": self.resets,
            "errors": self.errors,
            "lag_seconds": round(self.lag, 6),
        }

    def stop(self) -> None:
        """Ask the thread to stop; it notices within :data:`WAIT`."""
        self._stop.set()

    def join(self) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
