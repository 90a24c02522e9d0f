"""Reading server-sent events: the change-log watches and the event subscriptions,
sync and async.

Every SSE reader of the client — :class:`RemoteWatch`, :class:`AsyncRemoteWatch`,
:class:`SubscriptionStream`, :class:`AsyncSubscriptionStream` — is a thin face on ONE
follower per flavour, :class:`_SSEFollower` (sync) and :class:`_AsyncSSEFollower`,
which agree on:

* **reconnects** — a dropped stream reopens from where the reader stands (the params
  carry the position), waiting by :class:`clawstate._backoff.Backoff` between tries;
  ``Retry.retries`` failures in a row raise
  :class:`~clawstate.errors.BackendUnavailable`.  A stream that opens resets the count.
* **the end** — the server's ``end`` event ends iteration; its ``error`` event (the
  position was trimmed by retention while the stream ran) raises
  :class:`~clawstate.errors.LogTrimmed`, as a local follower would.
* **close** — ``close()`` from any thread (or task) shuts the stream's socket down
  under the blocked reader: its read returns at once, whatever the heartbeat, and the
  reader ends.  Only the closer's ``shutdown`` crosses threads; the connection itself
  is released by the reader.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

import httpx

from .._backoff import Backoff
from .._wire import SSE, ChangeBatch, EventPage
from ..config import Limits
from ..errors import BackendUnavailable, LogTrimmed
from ..types import Change, RecordedEvent
from ._calls import _Call, _changes_call, _dec_change_json, _watch_params
from ._event_calls import _dec_event_json, _page_call, _SubSpec
from ._transport import TEST_CLOCK_HEADER, _AsyncTransport, _error, _Settings, _Transport

T = TypeVar("T")

# -- server-sent events ----------------------------------------------------------------


class _SSEParser:
    """Incremental text/event-stream parser: feed lines, get (event, id, data) tuples."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, line: str) -> tuple[str, str | None, str] | None:
        if line == "":
            if not self.data:
                self.event = "message"
                return None
            out = (self.event, self.id, "\n".join(self.data))
            self.event, self.data = "message", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value
        return None


def _sse_headers(settings: _Settings) -> dict[str, str]:
    headers = {"accept": SSE}
    if settings.clock is not None:
        headers[TEST_CLOCK_HEADER] = repr(float(settings.clock()))
    return headers


def _trimmed(data: str, field: str) -> LogTrimmed:
    """The server's ``error`` event (a 410 problem document) as the error it names."""
    try:
        doc = json.loads(data)
        return LogTrimmed(
            int(doc["requested"]), int(doc["first_available"]), field=doc.get("field") or field
        )
    except (ValueError, KeyError, TypeError):
        raise BackendUnavailable(f"SSE stream: unreadable error event {data[:200]!r}") from None


def _shutdown(response: httpx.Response | None) -> None:
    """Shut the response's socket down (from any thread): a read blocked on it returns
    at once with end-of-stream.  The reader closes the connection itself."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    # A socket.socket (sync) or asyncio's TransportSocket (async): both shut down.
    sock = None if stream is None else stream.get_extra_info("socket")
    shutdown = getattr(sock, "shutdown", None)
    if shutdown is not None:
        try:
            shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed or never connected
            pass


#: what a follower's ``handle`` returns for the ``end`` event
_END: Any = object()


class _Route(NamedTuple):
    """What one kind of SSE reader follows, and how it reads one event."""

    path: str
    #: called at each (re)connect, so it carries the reader's position
    params: Callable[[], dict[str, Any]]
    heartbeat: float
    #: one event as an item, None (skip), or ``_END``
    handle: Callable[[str, str], Any]
    #: named in the error raised when reconnects are exhausted
    what: str
    #: the position's field name, for a LogTrimmed without one
    field: str


class _FollowerCore(Generic[T]):
    """Everything a follower decides, for both faces (see the module docstring): the
    request it opens, what each line of the stream means, and what a failed
    connection leads to.  :class:`_SSEFollower` and :class:`_AsyncSSEFollower` add
    only the blocking or awaited I/O around it, so the two cannot drift apart."""

    def __init__(self, settings: _Settings, route: _Route) -> None:
        self._settings = settings
        self._route = route
        self._backoff = Backoff()
        self._parser = _SSEParser()
        #: why the stream stopped, raised by the face once it dropped the connection:
        #: the server's trim error, else None for the end of iteration
        self._stop_error: LogTrimmed | None = None

    def _request(self) -> dict[str, Any]:
        """The ``client.stream("GET", path, ...)`` keywords of one (re)connect."""
        r = self._route
        return {
            "params": r.params(),
            "headers": _sse_headers(self._settings),
            "timeout": httpx.Timeout(self._settings.timeout, read=r.heartbeat * 3 + 10),
        }

    def _begin(self) -> None:
        """A new ``next()``: a fresh parser (a half-read event is not resumed)."""
        self._parser = _SSEParser()
        self._stop_error = None

    def _feed(self, line: str) -> Any:
        """One line of the stream: an item to return, None (read on), or ``_END``
        (the face drops the connection, then raises :meth:`_stop`)."""
        event = self._parser.feed(line)
        if event is None:
            return None
        kind, _, data = event
        if kind == "error":
            self._stop_error = _trimmed(data, self._route.field)
            return _END
        return self._route.handle(kind, data)

    def _failed(self, exc: httpx.HTTPError) -> float:
        """A connection failed: the delay before the next try, or BackendUnavailable
        once ``Retry.retries`` failures came in a row."""
        if self._backoff.failures >= self._settings.retry.retries:
            raise BackendUnavailable(f"{self._route.what}: {type(exc).__name__}: {exc}") from None
        return self._backoff.failed()


class _SSEFollower(_FollowerCore[T]):
    """The sync face of :class:`_FollowerCore`: blocking reads, close() from any thread."""

    def __init__(self, transport: _Transport, route: _Route) -> None:
        super().__init__(transport.settings, route)
        self._t = transport
        self._closed = threading.Event()
        self._lines: Iterator[str] | None = None
        self._response: httpx.Response | None = None
        self._stream_cm: Any = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _open(self) -> Iterator[str]:
        self._stream_cm = self._t.client.stream("GET", self._route.path, **self._request())
        response = self._stream_cm.__enter__()
        if response.status_code >= 300:
            response.read()
            self._drop()
            raise _error(response)
        self._response = response
        if self._closed.is_set():  # closed while connecting: close() saw no response
            _shutdown(response)
        self._lines = response.iter_lines()
        self._backoff.succeeded()
        return self._lines

    def _drop(self) -> None:
        cm, self._stream_cm, self._response, self._lines = self._stream_cm, None, None, None
        if cm is not None:
            try:
                cm.__exit__(None, None, None)
            except (httpx.HTTPError, RuntimeError, OSError):
                pass

    def next(self) -> T:
        """The next item; StopIteration at the server's end or after close()."""
        self._begin()
        while not self._closed.is_set():
            try:
                lines = self._lines if self._lines is not None else self._open()
                for line in lines:
                    if self._closed.is_set():
                        break
                    item = self._feed(line)
                    if item is _END:
                        self._drop()
                        raise self._stop_error or StopIteration
                    if item is not None:
                        return item  # type: ignore[no-any-return]
                else:
                    # the stream ended without an end event: reconnect from the position
                    self._drop()
                    continue
            except httpx.HTTPError as exc:
                self._drop()
                if self._closed.is_set() or self._closed.wait(self._failed(exc)):
                    break
        self._drop()
        raise StopIteration

    def close(self) -> None:
        """Stop from any thread: a reader blocked on the stream returns at once."""
        self._closed.set()
        _shutdown(self._response)


class _AsyncSSEFollower(_FollowerCore[T]):
    """The async face of :class:`_FollowerCore`, on httpx's async client."""

    def __init__(self, transport: _AsyncTransport, route: _Route) -> None:
        super().__init__(transport.settings, route)
        self._t = transport
        self._closed = False
        self._lines: AsyncIterator[str] | None = None
        self._response: httpx.Response | None = None
        self._stream_cm: Any = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def _open(self) -> AsyncIterator[str]:
        self._stream_cm = self._t.client.stream("GET", self._route.path, **self._request())
        response = await self._stream_cm.__aenter__()
        if response.status_code >= 300:
            await response.aread()
            await self._drop()
            raise _error(response)
        self._response = response
        if self._closed:
            _shutdown(response)
        self._lines = response.aiter_lines()
        self._backoff.succeeded()
        return self._lines

    async def _drop(self) -> None:
        cm, self._stream_cm, self._response, self._lines = self._stream_cm, None, None, None
        if cm is not None:
            try:
                await cm.__aexit__(None, None, None)
            except (httpx.HTTPError, RuntimeError, OSError):
                pass

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` before a reconnect, cut short by close() from any thread (it
        shuts no socket here, so it is polled)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not self._closed and loop.time() < deadline:
            await asyncio.sleep(min(0.02, delay))

    async def next(self) -> T:
        """The next item; StopAsyncIteration at the server's end or after close()."""
        self._begin()
        while not self._closed:
            try:
                lines = self._lines if self._lines is not None else await self._open()
                async for line in lines:
                    if self._closed:
                        break
                    item = self._feed(line)
                    if item is _END:
                        await self._drop()
                        raise self._stop_error or StopAsyncIteration
                    if item is not None:
                        return item  # type: ignore[no-any-return]
                else:
                    await self._drop()
                    continue
            except httpx.HTTPError as exc:
                await self._drop()
                if self._closed:
                    break
                await self._sleep(self._failed(exc))
        await self._drop()
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop from any thread or task: a reader blocked on the stream returns at once."""
        self._closed = True
        _shutdown(self._response)


def _stream_params(watch: _WatchSpec) -> dict[str, Any]:
    params = _watch_params(
        watch.last_seq, watch.namespace, watch.prefix, watch.timeout, watch.backend
    )
    params["heartbeat"] = repr(float(watch.heartbeat))
    return params


class _WatchSpec:
    """What a watch asked for and where it stands (``last_seq``)."""

    def __init__(
        self,
        last_seq: int,
        namespace: str | None,
        prefix: str,
        timeout: float | None,
        backend: str | None,
        heartbeat: float,
    ) -> None:
        self.last_seq = last_seq
        self.namespace = namespace
        self.prefix = prefix
        self.timeout = timeout
        self.backend = backend
        self.heartbeat = heartbeat


def _start_watch(
    transport: _Transport,
    from_seq: Any,
    namespace: str | None,
    prefix: str,
    timeout: Any,
    backend: str | None,
) -> _WatchSpec:
    """Validate the watch on the server (from_seq, retention, backend) and resolve
    ``from_seq=None`` to the current end, as ``Store.watch`` does at construction."""
    batch = transport.call(_changes_call(from_seq, namespace, prefix, timeout, 0, backend))
    return _WatchSpec(
        batch.last_seq, namespace, prefix, timeout, backend, transport.settings.heartbeat
    )


def _on_change(spec: _WatchSpec) -> Callable[[str, str], Any]:
    def handle(kind: str, data: str) -> Any:
        if kind == "change":
            change = _dec_change_json.decode(data)
            spec.last_seq = change.seq
            return change
        if kind == "end":
            spec.last_seq = int(json.loads(data)["last_seq"])
            return _END
        return None

    return handle


def _on_event(spec: _SubSpec) -> Callable[[str, str], Any]:
    def handle(kind: str, data: str) -> Any:
        if kind == "event":
            recorded = _dec_event_json.decode(data)
            spec.position = recorded.position
            return recorded
        if kind == "end":
            spec.position = max(spec.position, int(json.loads(data)["position"]))
            return _END
        return None

    return handle


def _watch_route(spec: _WatchSpec) -> _Route:
    return _Route(
        "/v1/changes",
        lambda: _stream_params(spec),
        spec.heartbeat,
        _on_change(spec),
        "watch stream",
        "from_seq",
    )


def _sub_route(spec: _SubSpec) -> _Route:
    return _Route(
        "/v1/events/subscribe",
        spec.params,
        spec.heartbeat,
        _on_event(spec),
        "event subscription",
        "from_position",
    )


class _WatchFace:
    """What both watch faces share: where the watch stands, and ``poll()``'s pages
    (the faces only call the transport, blocking or awaited)."""

    _spec: _WatchSpec
    _follower: _SSEFollower[Change] | _AsyncSSEFollower[Change]

    @property
    def last_seq(self) -> int:
        return self._spec.last_seq

    def _page(self) -> _Call[ChangeBatch]:
        s = self._spec
        return _changes_call(s.last_seq, s.namespace, s.prefix, s.timeout, 1000, s.backend)

    def _took(self, batch: ChangeBatch, out: list[Change]) -> bool:
        """Advance past ``batch`` into ``out``; False once nothing more is available."""
        self._spec.last_seq = batch.last_seq
        out.extend(batch.changes)
        return bool(batch.changes)

    def close(self) -> None:
        self._follower.close()


class RemoteWatch(_WatchFace, Iterator[Change]):
    """Iterates changes over server-sent events; same contract as :class:`clawstate.Watch`.

    ``poll()`` reads available changes as batches; iteration holds one event stream
    open (reconnecting from ``last_seq`` if it drops) and ends when the server says
    the timeout passed, or when ``close()`` is called from another thread — a blocked
    ``next()`` then returns at once.
    """

    def __init__(self, transport: _Transport, spec: _WatchSpec) -> None:
        self._t = transport
        self._spec = spec
        self._sync_follower: _SSEFollower[Change] = _SSEFollower(transport, _watch_route(spec))
        self._follower = self._sync_follower

    def __iter__(self) -> RemoteWatch:
        return self

    def __next__(self) -> Change:
        return self._sync_follower.next()

    def poll(self) -> list[Change]:
        """Every change available now, without waiting."""
        out: list[Change] = []
        while self._took(self._t.call(self._page()), out):
            pass
        return out


class AsyncRemoteWatch(_WatchFace, AsyncIterator[Change]):
    """Async twin of :class:`RemoteWatch` (``async for change in watch``)."""

    def __init__(self, transport: _AsyncTransport, spec: _WatchSpec) -> None:
        self._t = transport
        self._spec = spec
        self._async_follower: _AsyncSSEFollower[Change] = _AsyncSSEFollower(
            transport, _watch_route(spec)
        )
        self._follower = self._async_follower

    def __aiter__(self) -> AsyncRemoteWatch:
        return self

    async def __anext__(self) -> Change:
        return await self._async_follower.next()

    async def poll(self) -> list[Change]:
        out: list[Change] = []
        while self._took(await self._t.call(self._page()), out):
            pass
        return out


class _SubFace:
    """What both subscription streams share: where the reader stands, and ``poll()``'s
    pages (the faces only call the transport, blocking or awaited)."""

    _spec: _SubSpec
    _limits: Limits
    _follower: _SSEFollower[RecordedEvent] | _AsyncSSEFollower[RecordedEvent]

    @property
    def position(self) -> int:
        return self._spec.position

    def _page(self) -> _Call[EventPage]:
        s = self._spec
        return _page_call(self._limits, s.position, 1000, s.filter)

    def _took(self, page: EventPage, out: list[RecordedEvent]) -> bool:
        """Advance past ``page`` into ``out``; False once nothing more is available."""
        self._spec.position = max(self._spec.position, page.end)
        out.extend(page.events)
        return bool(page.events)

    def close(self) -> None:
        self._follower.close()


class SubscriptionStream(_SubFace, Iterator[RecordedEvent]):
    """Catch-up-then-live over server-sent events (what :class:`RemoteSubscription`
    reads through); same contract as
    :class:`clawstate.events.Subscription` (``position``: the last event handed out,
    or scanned past).  Reconnects from ``position`` if the stream drops; ends when the
    server says ``timeout`` passed, or at once on ``close()`` from any thread."""

    def __init__(self, transport: _Transport, spec: _SubSpec, limits: Limits) -> None:
        self._t = transport
        self._spec = spec
        self._limits = limits
        self._sync_follower: _SSEFollower[RecordedEvent] = _SSEFollower(transport, _sub_route(spec))
        self._follower = self._sync_follower

    def __iter__(self) -> SubscriptionStream:
        return self

    def __enter__(self) -> SubscriptionStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __next__(self) -> RecordedEvent:
        return self._sync_follower.next()

    def poll(self) -> list[RecordedEvent]:
        """Every event available now, without waiting."""
        out: list[RecordedEvent] = []
        while self._took(self._t.call(self._page()), out):
            pass
        return out


class AsyncSubscriptionStream(_SubFace, AsyncIterator[RecordedEvent]):
    """Async twin of :class:`SubscriptionStream` (``async for event in sub``)."""

    def __init__(self, transport: _AsyncTransport, spec: _SubSpec, limits: Limits) -> None:
        self._t = transport
        self._spec = spec
        self._limits = limits
        self._async_follower: _AsyncSSEFollower[RecordedEvent] = _AsyncSSEFollower(
            transport, _sub_route(spec)
        )
        self._follower = self._async_follower

    def __aiter__(self) -> AsyncSubscriptionStream:
        return self

    async def __anext__(self) -> RecordedEvent:
        return await self._async_follower.next()

    async def poll(self) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        while self._took(await self._t.call(self._page()), out):
            pass
        return out
