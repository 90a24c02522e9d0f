"""The server's SSE followers: one shared read per change, one SSE writer.

Every SSE stream of the server (``GET /v1/changes``, ``GET /v1/events/subscribe``)
is a :class:`clawstate._follow.Cursor` over its log, waiting with
:meth:`~clawstate._follow.Cursor.wait_async` on the log's one
:class:`~clawstate._follow.Hub` — no thread per stream, and the same gap rule
(:class:`~clawstate.errors.LogTrimmed`) as an in-process ``watch``.

**Fan-out.**  When a change commits, the hub wakes every waiting stream in one
call per event loop.  Were each stream to read the log itself, N streams on one
namespace would issue N identical queries (and encode the same change N times)
per change: with 1,000 watchers that is most of the latency.  So streams that
read the same filtered view of a log (a :class:`Feed`: the backend and
namespace, or the event log and its stream prefix and types) share their reads:
the first stream to ask for ``(after, limit)`` reads on the pool, every other
stream asking for the same position awaits that one read (single flight), and
the last few non-empty answers stay cached for streams a little behind.  A
cached answer is the log's truth for good — rows after ``after`` up to its
watermark never change — except for retention, which the read checks at once
(``first_available`` after the rows, as the cursor would) and records in the
answer.  An empty answer is never cached: the next read must see new rows.
Each row's SSE frame is encoded once, with the answer.

**Writing.**  :func:`sse_follow` is the one SSE writer: ``retry:``, the frames,
keep-alive comments every ``heartbeat`` seconds, the idle ``timeout``, and the
final ``event: end``.  A stream whose position retention overtakes while it runs
gets ``event: error`` with the 410 problem document (and no ``end``): the client
raises :class:`~clawstate.errors.LogTrimmed`, as a local follower would.  A start
that is already trimmed is refused before the stream opens (410 problem).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Generic, TypeVar

import msgspec

from .._follow import Batch, Cursor, Source
from ..errors import ClawStateError, LogTrimmed

__all__ = ["Feed", "Feeds", "PrefetchedSource", "sse_follow"]

T = TypeVar("T")

#: How long a stream pauses when a wake found nothing to read (seconds).
IDLE_WAKE: Final = 0.01
#: Non-empty answers a feed keeps for followers at other positions (a few behind).
RECENT: Final = 16

_json = msgspec.json.Encoder().encode


class _Answer(Generic[T]):
    """One shared read: the batch (its ``contiguous`` already settled against
    retention), the log's first position when it was not, and each row's frame."""

    __slots__ = ("batch", "first", "frames")

    def __init__(self, batch: Batch[T], first: int, frames: list[bytes]) -> None:
        self.batch = batch
        self.first = first
        self.frames = frames


class _Retry(Exception):
    """The stream that read for the others was cancelled: read again."""


class Feed(Generic[T]):
    """Every SSE stream of this server on one filtered view of one log.

    ``source`` is that view; ``frame`` encodes one row as its SSE frame; ``settle``
    (optional) runs before each read — the store's write-back flush, so a stream
    sees this process's own pending writes."""

    def __init__(
        self,
        source: Source[T],
        frame: Callable[[T], bytes],
        run: Callable[..., Any],
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self._frame = frame
        self._run = run
        self._settle = settle
        #: reads in flight, with the futures of the streams that wait for each
        self._inflight: dict[tuple[int, int], list[asyncio.Future[_Answer[T]]]] = {}
        self._recent: OrderedDict[tuple[int, int], _Answer[T]] = OrderedDict()
        #: reads issued to the log (stats and tests: N followers, one read per change)
        self.reads = 0
        #: set by :class:`Feeds`: its key, and how many streams use it
        self.key: tuple[Any, ...] = ()
        self.users = 0

    def _read(self, after: int, limit: int) -> _Answer[T]:
        """On the pool: the rows, then (only when the rows do not prove it) the log's
        first position — after the read, as :class:`Cursor` does — and the frames."""
        if self._settle is not None:
            self._settle()
        batch = self.source.read(after, limit)
        first = 0
        if not batch.contiguous and (batch.rows or batch.end > after):
            first = self.source.first_available()
            if first <= after + 1:
                batch = Batch(batch.rows, batch.end, True)
        return _Answer(batch, first, [self._frame(r) for r in batch.rows])

    async def read(self, after: int, limit: int) -> _Answer[T]:
        """The answer for ``(after, limit)``: cached, in flight, or read now.

        A stream that finds the read in flight parks a future of its own on it, which
        the reader resolves: no ``asyncio.shield`` (an outer future and two callbacks
        per stream per change), and a cancelled stream cancels only its own future."""
        key = (after, limit)
        got = self._recent.get(key)
        if got is not None:
            return got
        loop = asyncio.get_running_loop()
        parked = self._inflight.get(key)
        if parked is not None:
            mine: asyncio.Future[_Answer[T]] = loop.create_future()
            parked.append(mine)
            try:
                return await mine
            except _Retry:
                return await self.read(after, limit)
        parked = self._inflight[key] = []
        try:
            self.reads += 1
            answer: _Answer[T] = await self._run(self._read, after, limit)
        except BaseException as exc:
            del self._inflight[key]
            for fut in parked:
                if not fut.done():
                    # a cancelled reader is not the others' error: they read again
                    fut.set_exception(
                        exc if not isinstance(exc, asyncio.CancelledError) else _Retry()
                    )
            raise
        del self._inflight[key]
        batch = answer.batch
        if batch.rows or batch.end > after:  # an empty answer must be read again
            self._recent[key] = answer
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        for fut in parked:
            if not fut.done():
                fut.set_result(answer)
        return answer


class PrefetchedSource(Generic[T]):
    """One stream's view of a :class:`Feed` for its :class:`Cursor`: ``read`` returns
    the answer the stream fetched from the feed (no I/O on the event loop); waits and
    positions are the log's, so the cursor shares the log's hub with every other
    follower of it (in-process watches too)."""

    __slots__ = ("_answer", "feed", "log_name", "retention")

    def __init__(self, feed: Feed[T]) -> None:
        self.feed = feed
        self.log_name = feed.source.log_name
        self.retention = feed.source.retention
        self._answer: _Answer[T] | None = None

    def load(self, answer: _Answer[T]) -> None:
        self._answer = answer

    def read(self, after: int, limit: int) -> Batch[T]:
        answer = self._answer
        assert answer is not None, "read before load"
        return answer.batch

    def first_available(self) -> int:
        answer = self._answer
        if answer is not None and answer.first:
            return answer.first
        return self.feed.source.first_available()  # the cursor's start check (pool)

    def wait(self, after: int, timeout: float) -> bool:
        return self.feed.source.wait(after, timeout)

    def last(self) -> int:
        return self.feed.source.last()

    def hub_key(self) -> tuple[object, str]:
        return self.feed.source.hub_key()


class Feeds:
    """The server's feeds by key, and its open stream cursors (closed at shutdown)."""

    def __init__(self) -> None:
        self._feeds: dict[tuple[Any, ...], Feed[Any]] = {}
        self._open: set[Cursor[Any]] = set()
        self.stopping = False

    def feed(self, key: tuple[Any, ...], make: Callable[[], Feed[T]]) -> Feed[T]:
        """The feed for ``key`` (made by ``make`` on first use), for one more stream:
        :func:`sse_follow` releases it.  A feed lives while a stream uses it, so a
        closed test store's backend is not kept alive by a feed."""
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = make()
            feed.key = key
        feed.users += 1
        return feed

    def release(self, feed: Feed[Any]) -> None:
        feed.users -= 1
        if feed.users <= 0 and self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]

    def stop_all(self) -> None:
        """Shutdown: every open stream's wait returns now, and the stream ends."""
        self.stopping = True
        for cursor in list(self._open):
            cursor.close()

    def track(self, cursor: Cursor[Any]) -> None:
        if self.stopping:
            cursor.close()
        self._open.add(cursor)

    def untrack(self, cursor: Cursor[Any]) -> None:
        self._open.discard(cursor)


def _trimmed_event(exc: LogTrimmed) -> bytes:
    # The 410 problem document (requested, first_available, field), as a JSON
    # answer would carry it.
    return b"event: error\ndata: %s\n\n" % _json(exc.to_problem())


async def sse_follow(
    feeds: Feeds,
    feed: Feed[T],
    cursor: Cursor[T],
    *,
    keep: Callable[[T], bool] | None,
    timeout: float | None,
    beat: float,
    end: Callable[[int, T | None], bytes],
) -> AsyncIterator[bytes]:
    """The one SSE writer: ``cursor`` (over a :class:`PrefetchedSource` of ``feed``)
    read in shared reads, each kept row's frame sent, keep-alives, the idle
    ``timeout`` (seconds without a row sent), and ``end(position, last row sent)``'s
    final event.  ``keep`` filters rows per stream (a key prefix, visibility).
    The caller closes nothing: the cursor is closed when the stream ends."""
    loop = asyncio.get_running_loop()
    source = cursor.source
    assert isinstance(source, PrefetchedSource)
    limit = cursor.limit
    last: T | None = None
    feeds.track(cursor)
    try:
        yield b"retry: 1000\n\n"
        deadline = None if timeout is None else loop.time() + timeout
        next_beat = loop.time() + beat
        woke = False
        while not feeds.stopping and not cursor.closed:
            before = cursor.position
            answer = await feed.read(before, limit)
            source.load(answer)
            try:
                rows = cursor.read()
            except LogTrimmed as exc:
                yield _trimmed_event(exc)
                return
            if rows:
                if keep is None:
                    out = answer.frames
                    last = rows[-1]
                else:
                    out = []
                    for row, frame in zip(rows, answer.frames, strict=True):
                        if keep(row):
                            out.append(frame)
                            last = row
                woke = False
                if out:
                    yield b"".join(out)
                    now = loop.time()
                    deadline = None if timeout is None else now + timeout
                    next_beat = now + beat
                if len(rows) >= limit:
                    continue  # a full batch: read on at once
                # Wait rather than read again: the hub answers at once when it already
                # knows of a row after the new position, so nothing is missed — and
                # 1,000 streams do not each await a second (empty) shared read per
                # change before they park.
            elif cursor.position > before:
                woke = False
                continue  # rows of other filters skipped: there may be more to read
            elif woke:
                # Woken, yet nothing to read: the log's end is ahead of its readable
                # rows (a commit not yet visible to this read).  Do not spin on it.
                await asyncio.sleep(IDLE_WAKE)
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if now >= next_beat:
                yield b": keep-alive\n\n"
                next_beat = now + beat
            wait = next_beat - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            try:
                woke = await cursor.wait_async(max(wait, 0.0))
            except ClawStateError:
                woke = False
                # The backend's wait failed (the hub retries with backoff): pause as
                # long as a wait would have, then read again and meet the error or
                # the data.
                await asyncio.sleep(min(max(wait, 0.0), 1.0))
        yield end(cursor.position, last)
    finally:
        feeds.untrack(cursor)
        feeds.release(feed)
        cursor.close()
