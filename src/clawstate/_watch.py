"""Watch: the iterator over a backend's change log that ``Namespace.watch`` and
``Store.watch`` return.

Its own module because following the log (resume position, trimmed-log detection,
the shared waiting thread of :mod:`clawstate._follow`) is a job apart from reading
and writing keys, and it needs nothing of the store: only a backend and the
``settle`` callable the store hands it.  Re-exported by :mod:`clawstate.store`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

from ._follow import ChangeSource, Cursor
from ._validate import check_position, check_timeout
from .backends.base import Backend
from .errors import InvalidRequest
from .types import Change

__all__ = ["Watch"]


class Watch(Iterator[Change]):
    """Past changes after ``from_seq``, then new ones as they commit.

    Iteration ends when ``timeout`` seconds pass without a new change (``None``
    waits forever) or when ``close()`` is called from another thread — a blocked
    ``next()`` then returns at once, whatever the backend.  ``from_seq=None``
    starts at the current end; ``from_seq=0`` at the oldest change still
    retained.  ``last_seq`` is the position to resume from.

    A watch never skips a change: if ``changelog_retention`` trimmed changes it
    has not read yet — at the start, or while a slow consumer falls behind — it
    raises :class:`~clawstate.errors.LogTrimmed` (``requested``,
    ``first_available``; an :class:`~clawstate.errors.InvalidRequest`).  It is a
    :class:`clawstate._follow.Cursor` over the change log: idle watches of one
    backend share one waiting thread.
    """

    def __init__(
        self,
        backend: Backend,
        from_seq: int | None,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        batch: int = 500,
        settle: Callable[[], None] | None = None,
    ) -> None:
        # check_position: a seq past 64 bits used to escape from the driver as OverflowError.
        from_seq = backend.last_seq() if from_seq is None else check_position(from_seq, "from_seq")
        if timeout is not None:
            check_timeout(timeout)
        if type(prefix) is not str:
            raise InvalidRequest("prefix", f"must be a string, got {type(prefix).__name__}")
        self._backend = backend
        self._cursor: Cursor[Change] = Cursor(
            ChangeSource(backend, namespace), from_seq, limit=batch, field="from_seq"
        )
        self._namespace = namespace
        self._prefix = prefix
        self._timeout = timeout
        self._buffer: deque[Change] = deque()
        #: flushes this process's pending write-back writes before each read of the log
        self._settle = settle

    @property
    def last_seq(self) -> int:
        """Every change up to this seq has been read (resume with ``watch(last_seq)``)."""
        return self._cursor.position

    @property
    def cursor(self) -> Cursor[Change]:
        """The log cursor under this watch (its position, hub and async wait)."""
        return self._cursor

    @property
    def closed(self) -> bool:
        return self._cursor.closed

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> Change:
        # One deadline per call: changes this watch filters out (other namespaces,
        # other prefixes) must not keep restarting the timeout.
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        cursor = self._cursor
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if cursor.closed:
                raise StopIteration
            if self._fill():
                continue
            if deadline is None:
                cursor.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StopIteration
            cursor.wait(remaining)

    def poll(self) -> list[Change]:
        """Every change available now, without waiting."""
        while self._fill():
            pass
        out = list(self._buffer)
        self._buffer.clear()
        return out

    def _fill(self) -> bool:
        """Read the next batch of changes into the buffer; False at the end of the log."""
        if self._settle is not None:
            self._settle()
        rows = self._cursor.read()
        prefix = self._prefix
        self._buffer.extend(c for c in rows if not prefix or c.key.startswith(prefix))
        return bool(rows)

    def close(self) -> None:
        """Stop the watch from any thread: a blocked ``next()`` returns at once."""
        self._cursor.close()
