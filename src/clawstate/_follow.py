"""ONE log cursor: how everything that follows a seq-ordered log reads, waits and stops.

Watch (the KV change log), event subscriptions (the event log), the cache's
tailer — and, in the server and the HTTP client, the SSE streams built on them —
are all "read every row after my position, then wait for more".  They share
this module so that they agree on the three things that are easy to get wrong:

**Gaps.**  Positions are gap-free when written, and retention trims a *prefix*
of a log (``changelog_retention`` for the change log; a stream's retention for
the event log's oldest rows).  A :class:`Cursor` that reads after ``p`` and
gets a first row other than ``p + 1`` — or, for a filtered read, anything at
all — asks the log for its :meth:`~Source.first_available` position *after*
the read.  That position only grows, so if it is still at most ``p + 1``
nothing the read needed was gone when it ran; if it is past ``p + 1``, the
cursor raises :class:`~clawstate.errors.LogTrimmed` instead of skipping.  This
runs on every read, not only at the start: a slow follower that retention
overtakes while it runs is told so too.  (Holes *inside* the retained range of
the event log are streams' own retention — those events are hidden from their
stream's readers at once — and are not reported.)

**Waiting.**  One :class:`Hub` per log per backend is the only thing that
blocks in the backend's wait primitive (``Backend.wait_for_change``: SQLite's
local condition plus its poll of other processes, PostgreSQL's LISTEN,
Redis's ``XREAD BLOCK``; ``EventLog.wait_for_events`` for events).  It runs
one thread while somebody waits and none otherwise, and hands each change to
every waiting cursor through a :class:`threading.Event` (sync) or an asyncio
future resolved with ``loop.call_soon_threadsafe`` (async, one call per loop
per change, not per follower).  So N idle followers cost one blocked thread,
an async follower holds no pool thread while it waits, and an idle log with no
followers costs nothing.

**Closing.**  :meth:`Cursor.close` marks the cursor closed and fires its own
waiter: a reader blocked in :meth:`Cursor.wait` (or :meth:`Cursor.wait_async`)
returns at once, on every backend, whatever the backend's wait granularity —
it never waits on the backend itself.

A :class:`Source` is one follower's view of a log: its filter (a namespace,
an event filter) applies in :meth:`~Source.read`; :meth:`~Source.wait`,
:meth:`~Source.last` and :meth:`~Source.first_available` are the log's.
:class:`ChangeSource` reads the KV change log through the Backend protocol;
:class:`EventSource` reads the event log through the ``EventLog`` protocol.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, Protocol, TypeVar

from ._backoff import Backoff
from .errors import ClawStateError, LogTrimmed

if TYPE_CHECKING:
    import asyncio

    from .backends.base import Backend
    from .types import Change

__all__ = [
    "Batch",
    "ChangeSource",
    "Cursor",
    "EventSource",
    "Hub",
    "Source",
    "hub_for",
]

log = logging.getLogger("clawstate.follow")

T = TypeVar("T")

#: The longest one backend wait of a hub lasts (seconds).  Followers never wait
#: on it (close and timeouts are theirs); it only bounds how long a hub whose last
#: follower left keeps a backend connection blocked.
SLICE: Final = 1.0
#: Seconds a hub's thread stays parked with no waiter before it exits; the next
#: waiter starts a new one.  Long enough that a follower that waits after every
#: change does not pay a thread start each time.
LINGER: Final = 2.0


class Batch(NamedTuple, Generic[T]):
    """One read of a log after a position.

    ``end`` is the position the read covered (a watermark: every row the source's
    filter matches at or below it is in ``rows`` or was before ``after``), so a
    follower may move its position to ``end`` even when ``rows`` is empty — this is
    how a filtered follower moves past rows that are not its own.  ``contiguous`` is
    True when the read itself proves that nothing after ``after`` was trimmed (its
    first row is ``after + 1``); otherwise the cursor asks
    :meth:`Source.first_available`.
    """

    rows: list[T]
    end: int
    contiguous: bool


class Source(Protocol[T]):
    """One follower's view of one seq-ordered log (see the module docstring)."""

    #: names the log in messages and in :class:`~clawstate.errors.LogTrimmed`
    log_name: str
    #: the setting whose retention trims it (for the LogTrimmed message)
    retention: str

    def read(self, after: int, limit: int) -> Batch[T]:
        """Rows after ``after`` that this follower wants, in position order, at most
        ``limit``; never waits."""
        ...

    def wait(self, after: int, timeout: float) -> bool:
        """Block until a row after ``after`` (any row: the log's, not the filter's) is
        committed or ``timeout`` passes; True when there is one.  Only a :class:`Hub`
        calls this — followers wait on the hub."""
        ...

    def last(self) -> int:
        """The log's watermark: every position at or below it is committed."""
        ...

    def first_available(self) -> int:
        """The oldest retained position (``last() + 1`` when the log is empty)."""
        ...

    def hub_key(self) -> tuple[object, str]:
        """``(the object that owns the log, which log)``: followers of the same key
        share one :class:`Hub`."""
        ...


# -- the two logs ----------------------------------------------------------------------


class ChangeSource:
    """The KV change log of one backend, optionally one namespace of it."""

    log_name = "change log"
    retention = "changelog_retention"

    __slots__ = ("backend", "namespace")

    def __init__(self, backend: Backend, namespace: str | None = None) -> None:
        self.backend = backend
        self.namespace = namespace

    def read(self, after: int, limit: int) -> Batch[Change]:
        backend = self.backend
        if self.namespace is None:
            rows = backend.changes(after, limit)
            return Batch(
                rows, rows[-1].seq if rows else after, bool(rows) and rows[0].seq == after + 1
            )
        # Read the log's end *before* the rows: every seq up to it is committed, so if
        # none of them is this namespace's the follower may move past them.  Without
        # it a namespace follower would stay behind other namespaces' changes, the hub
        # would report them again at once, and the follower would never time out.
        end = backend.last_seq()
        rows = backend.changes(after, limit, self.namespace)
        if rows:
            # A full page may stop before ``end``: only its last row is certain.
            end = rows[-1].seq if len(rows) >= limit else max(end, rows[-1].seq)
        return Batch(rows, max(end, after), bool(rows) and rows[0].seq == after + 1)

    def wait(self, after: int, timeout: float) -> bool:
        return self.backend.wait_for_change(after, timeout)

    def last(self) -> int:
        return self.backend.last_seq()

    def first_available(self) -> int:
        return self.backend.first_seq()

    def hub_key(self) -> tuple[object, str]:
        return self.backend, "changes"


class _EventReads(Protocol):
    """What :class:`EventSource` needs of an ``EventLog`` (events/backend.py)."""

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[Any], int]: ...

    def last_position(self) -> int: ...

    def wait_for_events(self, after: int, timeout: float) -> bool: ...


class EventSource(Generic[T]):
    """The event log (global positions), filtered by stream prefix and types.

    ``decode`` turns the backend's row tuples (position first) into what the
    follower hands out — the event store's upcasting decoder for subscriptions,
    anything else (``list``) for a follower that wants raw rows.
    """

    log_name = "event log"
    retention = "stream retention"

    __slots__ = ("decode", "events", "stream_prefix", "types")

    def __init__(
        self,
        events: _EventReads,
        decode: Callable[[list[Any]], list[T]],
        *,
        stream_prefix: str = "",
        types: Sequence[str] = (),
    ) -> None:
        self.events = events
        self.decode = decode
        self.stream_prefix = stream_prefix
        self.types = tuple(types)

    def read(self, after: int, limit: int) -> Batch[T]:
        rows, end = self.events.read_all(after, limit, self.stream_prefix, self.types)
        contiguous = bool(rows) and rows[0][0] == after + 1
        return Batch(self.decode(rows) if rows else [], max(end, after), contiguous)

    def wait(self, after: int, timeout: float) -> bool:
        return bool(self.events.wait_for_events(after, timeout))

    def last(self) -> int:
        return self.events.last_position()

    def first_available(self) -> int:
        # The oldest row by the position index: one indexed row, not a count.
        rows, _ = self.events.read_all(0, 1, "", ())
        return int(rows[0][0]) if rows else self.events.last_position() + 1

    def hub_key(self) -> tuple[object, str]:
        return self.events, "events"


# -- the shared waiter -------------------------------------------------------------------


class _Waiter:
    """One blocked :meth:`Cursor.wait` / :meth:`Cursor.wait_async` call."""

    __slots__ = ("after", "error", "event", "future", "loop")

    def __init__(
        self,
        after: int,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[bool] | None = None,
    ) -> None:
        self.after = after
        #: the backend's error when the hub's wait failed: the follower raises it
        self.error: BaseException | None = None
        self.loop = loop
        self.future = future
        self.event = threading.Event() if loop is None else None

    def fire(self) -> None:
        """Wake this waiter, from any thread."""
        if self.event is not None:
            self.event.set()
        else:
            assert self.loop is not None and self.future is not None
            try:
                self.loop.call_soon_threadsafe(_resolve, [self.future])
            except RuntimeError:  # its loop is closed: nobody is waiting any more
                pass


def _resolve(futures: list[asyncio.Future[bool]]) -> None:
    """On the waiters' loop: the hub (or a close) woke them."""
    for fut in futures:
        if not fut.done():
            fut.set_result(True)


def _expire(future: asyncio.Future[bool]) -> None:
    """On the waiter's loop: its timeout passed first."""
    if not future.done():
        future.set_result(False)


def _fire(waiters: list[_Waiter], error: BaseException | None = None) -> None:
    """Wake ``waiters``: sync ones directly, async ones with one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[bool]]] = {}
    for w in waiters:
        w.error = error
        if w.event is not None:
            w.event.set()
        else:
            assert w.loop is not None and w.future is not None
            by_loop.setdefault(w.loop, []).append(w.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures)
        except RuntimeError:  # the loop closed: its waiters are gone
            pass


class Hub:
    """The one thread that waits on a log's backend for every follower of it.

    Followers register what they wait for (``after``); the hub's thread blocks
    in the log's wait primitive from the newest position it knows (``seen``),
    reads the log's watermark when woken, and fires every waiter whose
    ``after`` is below it.  A waiter that registers below ``seen`` is told at
    once.  Errors of the backend's wait (a lost connection, a closed store) wake
    every waiter so that each reads the log itself and meets the error, or the
    data, in its own thread; the hub then retries with :class:`Backoff`.
    """

    def __init__(self, name: str) -> None:
        # No reference to the log's owner here: the hubs live in a weak registry keyed
        # by it, so only the running thread holds the source it was started with.
        self.name = name
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._waiters: set[_Waiter] = set()
        #: the newest position known committed; -1 until the thread first reads it
        self._seen = -1
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        #: counters for stats and tests
        self.wakeups = 0
        self.errors = 0
        self.threads_started = 0

    @property
    def waiting(self) -> int:
        """Followers blocked on this hub now."""
        return len(self._waiters)

    @property
    def running(self) -> bool:
        """Whether the hub's thread is alive (it exits after :data:`LINGER` idle seconds)."""
        return self._thread is not None

    def register(self, waiter: _Waiter, source: Source[Any]) -> bool:
        """Add ``waiter``; False (not added) when the log already holds a row after its
        ``after`` that the hub knows of — the caller should read instead of waiting.
        ``source`` (any follower's view of this hub's log) is what a thread started
        now waits on."""
        with self._lock:
            if self._seen > waiter.after:
                return False
            self._waiters.add(waiter)
            if self._thread is None:
                self._halt.clear()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(source,),
                    name=f"clawstate-follow-{self.name}",
                    daemon=True,
                )
                self.threads_started += 1
                self._thread.start()
            else:
                self._wanted.notify()
        return True

    def unregister(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def _run(self, source: Source[Any]) -> None:
        backoff = Backoff()
        while True:
            with self._lock:
                if not self._waiters:
                    self._wanted.wait(LINGER)
                    if not self._waiters:
                        self._thread = None
                        return
                after = self._seen
            started = time.monotonic()
            try:
                if after < 0:
                    seen, changed = source.last(), True
                else:
                    changed = source.wait(after, SLICE)
                    seen = source.last() if changed else after
            except Exception as exc:  # the backend's own error: each waiting follower
                # raises it, as it would have had it waited on the backend itself; the
                # hub retries for the followers that wait again.
                self.errors += 1
                if not isinstance(exc, ClawStateError):  # a bug: say so, loudly
                    log.exception("log follower %s failed", self.name)
                elif backoff.failures == 0 and self._waiters:  # not when nobody waits
                    log.warning("log follower %s: %s; retrying", self.name, exc)
                self._fire_all(exc)
                backoff.wait(self._halt)
                continue
            backoff.succeeded()
            if changed and seen > after:
                self._advance(seen)
            elif changed or time.monotonic() - started < SLICE / 10:
                # "Changed" without a newer watermark (a notification ahead of the
                # watermark), or an answer long before the slice ended (a closed
                # backend answers at once): hand the followers back to their own
                # reads and do not spin on it.
                self._fire_all()
                backoff.wait(self._halt)

    def _advance(self, seen: int) -> None:
        with self._lock:
            if seen > self._seen:
                self._seen = seen
            ready = [w for w in self._waiters if w.after < seen]
            self._waiters.difference_update(ready)
        if ready:
            self.wakeups += 1
            _fire(ready)

    def _fire_all(self, error: BaseException | None = None) -> None:
        with self._lock:
            ready = list(self._waiters)
            self._waiters.clear()
        _fire(ready, error)

    def notify(self, seen: int) -> None:
        """Tell the hub that ``seen`` is committed (a writer of this process knows it
        before the backend's wait does): followers waiting below it wake now."""
        self._advance(seen)


#: Hubs by the object that owns the log (a backend), then by log: weak, so a
#: closed and dropped store takes its hubs with it.
_HUBS: weakref.WeakKeyDictionary[object, dict[str, Hub]] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def hub_for(source: Source[Any]) -> Hub:
    """The hub shared by every follower of ``source``'s log."""
    owner, which = source.hub_key()
    with _HUBS_LOCK:
        try:
            hubs = _HUBS.setdefault(owner, {})
        except TypeError:  # an owner that cannot be weakly referenced: a private hub
            return Hub(which)
        hub = hubs.get(which)
        if hub is None:
            hub = hubs[which] = Hub(f"{which}-{getattr(owner, 'name', 'log')}")
        return hub


# -- the cursor ----------------------------------------------------------------------------


class Cursor(Generic[T]):
    """A position in one log, the reads after it, the waits for more, and close.

    ``position`` is the position read up to: every row of the source after it is
    still to come.  :meth:`read` returns the next rows (and moves the position past
    them, and past rows the source's filter skipped); it raises
    :class:`~clawstate.errors.LogTrimmed` when retention removed rows after the
    position.  :meth:`wait` / :meth:`wait_async` block until the log may hold more,
    ``timeout`` passes or :meth:`close` is called (from any thread).

    ``after=0`` starts at the oldest retained row (the first read may find the log
    trimmed: that is where 0 starts), unless ``strict=True``.  Any other start is
    checked at once: a start before the log's first retained row raises LogTrimmed
    (``field`` names the caller's argument in the error).
    """

    def __init__(
        self,
        source: Source[T],
        after: int,
        *,
        limit: int = 500,
        field: str = "from_seq",
        strict: bool | None = None,
        hub: Hub | None = None,
    ) -> None:
        self.source = source
        self.limit = limit
        self.field = field
        self._position = after
        self._hub = hub if hub is not None else hub_for(source)
        self._closed = False
        self._waiter: _Waiter | None = None
        #: False until the first read of a cursor started at 0 (unless ``strict``): it
        #: takes the log as it finds it
        self._strict = after > 0 if strict is None else strict
        if after > 0:
            first = source.first_available()
            if after + 1 < first:
                raise self._trimmed(after + 1, first)

    @property
    def position(self) -> int:
        return self._position

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def hub(self) -> Hub:
        return self._hub

    def _trimmed(self, requested: int, first: int) -> LogTrimmed:
        return LogTrimmed(
            requested,
            first,
            field=self.field,
            log=self.source.log_name,
            retention=self.source.retention,
        )

    def read(self) -> list[T]:
        """The next rows after the position, without waiting ([] at the log's end)."""
        after = self._position
        batch = self.source.read(after, self.limit)
        strict, self._strict = self._strict, True
        if not batch.rows and batch.end <= after:
            return []
        if strict and not batch.contiguous:
            first = self.source.first_available()  # after the read: see the module doc
            if first > after + 1:
                raise self._trimmed(after + 1, first)
        self._position = batch.end
        return batch.rows

    def skip_to(self, position: int) -> None:
        """Move the position forward (a follower that resynchronised after LogTrimmed)."""
        if position > self._position:
            self._position = position

    def wait(self, timeout: float | None = None, *, after: int | None = None) -> bool:
        """Block until the log holds a row after ``after`` (default: the position),
        ``timeout`` seconds pass (None: no limit) or the cursor is closed.  True when
        there may be rows to read; False on timeout or close."""
        if self._closed:
            return False
        waiter = _Waiter(self._position if after is None else after)
        if not self._hub.register(waiter, self.source):
            return True
        self._waiter = waiter
        try:
            if self._closed:  # closed between the check above and registering
                return False
            assert waiter.event is not None
            fired = waiter.event.wait(timeout)
        finally:
            self._waiter = None
            self._hub.unregister(waiter)
        if self._closed:
            return False
        if waiter.error is not None:
            raise waiter.error
        return fired

    async def wait_async(self, timeout: float | None = None, *, after: int | None = None) -> bool:
        """:meth:`wait` for asyncio: awaits a future the hub resolves; holds no thread.

        The timeout is a ``call_later`` that resolves the same future with False, not
        ``asyncio.wait_for``: a server parks one wait per SSE stream and re-parks it
        after every change, and ``wait_for``'s extra future, callbacks and
        cancellation path were a measurable share of the per-stream cost of a change
        (bench 8c, 1,000 streams)."""
        import asyncio

        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        waiter = _Waiter(self._position if after is None else after, loop, future)
        if not self._hub.register(waiter, self.source):
            return True
        self._waiter = waiter
        timer = None if timeout is None else loop.call_later(timeout, _expire, future)
        try:
            if self._closed:
                return False
            fired = await future
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None
            self._hub.unregister(waiter)
        if self._closed:
            return False
        if waiter.error is not None:
            raise waiter.error
        return fired

    def close(self) -> None:
        """Stop following, from any thread: a blocked :meth:`wait` returns at once."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            waiter.fire()
