"""The change-log tailer: the one way a cache learns that a key changed.

DESIGN.md's principle 1 — "invalidation comes from the change log", no second
mechanism.  Each store runs one tailer per backend that has a cached namespace.  It
is a :class:`clawstate._follow.Cursor` over the backend's change log, like every
other follower: it reads ``backend.changes(after_seq)`` in seq order and waits on
the log's shared waiter, one thread per backend blocked in
``backend.wait_for_change`` — which each backend implements its own way (SQLite
polls the file, PostgreSQL listens for NOTIFY, Redis reads its stream) — so the
cache needs nothing of its own to hear about other processes' writes, and an
idle tailer costs no queries.

Every change row (put, delete, expire — the sweep's purge —, each write of a
transaction) evicts its key from L1 when the cached entry is older than the row, and
writes a tombstone for it in L2.  A process's *own* commits are applied at once from
the :class:`~clawstate.backends.base.Outcome` the backend returns (it carries the
row's seq), so a process reads its own writes without waiting for this thread; when
the tailer reaches those rows they find the entry already as new and leave it.

If retention trimmed rows the tailer had not read yet (the cursor raises
:class:`~clawstate.errors.LogTrimmed`), what they changed is unknown: the tailer
clears its caches and goes on from the oldest retained row.  It is the one
follower that catches LogTrimmed — a cache can always be rebuilt from the store.

``sync()`` is how ``consistency = "strong"`` reads work: read the log's watermark
(``last_seq``) and, if the tailer is behind it, apply the missing rows in the
reader's thread before serving from the cache.  Every write committed before the
read began is then reflected in L1.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._backoff import Backoff
from .._follow import ChangeSource, Cursor
from ..errors import ClawStateError, LogTrimmed

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..types import Change

__all__ = ["Invalidated", "Tailer"]

log = logging.getLogger("clawstate.cache")

#: Change-log rows read per query.
BATCH = 1000
#: The longest the tailer waits before reading the log again without a wake-up
#: (None: only when woken — the shared waiter sees every commit, so idle tailers
#: cost no queries; tests shorten it to read again sooner).
WAIT: float | None = None


class Invalidated(Protocol):
    """A namespace cache as the tailer drives it (``_namespace.NamespaceCache``).

    A Protocol, not an import: the namespace cache imports this module."""

    name: str

    def invalidate_many(self, changed: Sequence[tuple[str, int]]) -> int:
        """Apply change rows ``(key, seq)``; how many entries were evicted."""
        ...

    def reset(self, pos: int) -> None:
        """Forget everything but pending writes; the log is followed from ``pos``."""
        ...


class Tailer:
    """Follows one backend's change log from the position at start (the caches start
    empty, so older rows cannot concern them) and invalidates the cached namespaces."""

    def __init__(self, backend: Backend, backend_name: str) -> None:
        self.backend = backend
        self.backend_name = backend_name
        # strict from the first read: rows trimmed before the tailer read them are
        # changes its caches may hold stale, whatever the start position.
        self._cursor: Cursor[Change] = Cursor(
            ChangeSource(backend), backend.last_seq(), limit=BATCH, strict=True
        )
        #: the newest seq this process committed itself (its caches applied it already)
        self.own = 0
        self.lock = threading.Lock()
        self.caches: dict[str, Invalidated] = {}
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

    @property
    def pos(self) -> int:
        """Every change up to this seq has been applied to the caches."""
        return self._cursor.position

    def add(self, cache: Invalidated) -> None:
        self.caches[cache.name] = cache

    def _run(self) -> None:
        backoff = Backoff()
        cursor = self._cursor
        while not self._stop.is_set():
            try:
                self.catch_up()
                # Wait for a change newer than this process's own commits too: those
                # are applied by the committing thread already, and waking for each
                # would cost every local write two queries and a thread switch.
                cursor.wait(WAIT, after=max(self.pos, self.own))
                backoff.succeeded()
            except ClawStateError as exc:
                if self._stop.is_set():
                    return
                self.errors += 1
                log.warning("cache tailer on %s: %s; retrying", self.backend_name, exc)
                backoff.wait(self._stop)
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
                try:
                    rows = self._cursor.read()
                except LogTrimmed as exc:
                    self._reset(exc.first_available - 1)
                    continue
                if not rows:
                    return
                by_ns: dict[str, list[tuple[str, int]]] = {}
                for change in rows:
                    if change.namespace in self.caches:
                        by_ns.setdefault(change.namespace, []).append((change.key, change.seq))
                for name, changed in by_ns.items():
                    self.invalidated += self.caches[name].invalidate_many(changed)
                self.applied += len(rows)
                self.lag = max(0.0, time.time() - rows[-1].ts)
                if len(rows) < BATCH and target is None:
                    return

    def _reset(self, pos: int) -> None:
        """The rows after our position were trimmed by ``changelog_retention`` while we
        were away: what they changed is unknown, so clear the caches."""
        self.resets += 1
        log.warning(
            "cache tailer on %s: change log trimmed past position %d; clearing the caches",
            self.backend_name,
            self.pos,
        )
        for cache in self.caches.values():
            cache.reset(pos)
        self._cursor.skip_to(pos)

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
        """Stop the thread: closing its cursor wakes it at once."""
        self._stop.set()
        self._cursor.close()

    def join(self) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
