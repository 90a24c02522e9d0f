"""The event-store endpoints: thin handlers over ``store.events`` (issue 5 / events).

==============================================  ==============================  ================
``POST /v1/streams/{stream}/events``            ``append`` (409                 events write
                                                WrongExpectedVersion)
``GET  /v1/streams/{stream}/events``            ``read``                        events read
``POST /v1/events/batch``                       ``append_many`` (atomic)        write, every
                                                                                stream
``GET|PUT /v1/streams/{stream}/metadata``       ``stream_metadata`` /           read / write
                                                ``set_stream_metadata``
``DELETE /v1/streams/{stream}``                 ``delete_stream``               events write
``GET /v1/streams?prefix=&limit=&cursor=``      ``streams`` (a page)            events:*:read
``GET|PUT|DELETE /v1/streams/{stream}/snapshot``  ``snapshots.load|save|delete``  read / write
``GET  /v1/events?from_position=&limit=&wait=``  ``read_all`` (``wait``: a long  events:*:read
                                                poll for the next event)
``GET  /v1/events/subscribe``                   ``subscribe`` as SSE (``id:`` =  events:*:read
(or ``/v1/events`` with Accept: SSE)            position, Last-Event-ID)
``GET  /v1/events/position``, ``…/stats``       ``last_position``, ``stats()``  events:*:read
``GET /v1/subscriptions[/{name}]``, ``PUT``     durable subscriptions'          events:*:read
                                                checkpoints
``GET /v1/projections[/{name}]``, ``DELETE``    projection status, checkpoints  events:*:read
==============================================  ==============================  ================

Like every route of the server, each calls ONE facade method on the store's thread
pool: validation, limits, idempotency by event id and the expected-version check are
the facade's, so the store answers the same over HTTP as in-process.  The SSE stream
(:func:`.notify.sse_follow`: reads shared by every stream of one filter) and the long
poll wait on the event log's one hub (no thread per stream), with a heartbeat and
``metrics.subscriptions``; a trimmed start is a 410 problem, a stream overtaken by
retention ends with an ``error`` event.

The global-log routes need ``events:*:read`` (or admin): a stream glob cannot bound
what a ``stream_prefix`` filter would reveal.  So do the checkpoints of durable
subscriptions and projections: they are the bookmarks of readers of the whole log,
and moving one changes what that reader sees again, never the log.  ``tx.events``
(appends in ``POST /v1/transactions``) lives in :mod:`.event_tx`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._follow import Cursor, EventSource
from .._validate import check_event_filter, check_key, check_limit, check_position, parse_int
from .._wire import SSE, AppendEvents, AppendResult, EventPage, StreamEvents, unquote_key
from ..errors import ClawStateError, InvalidRequest
from ..events.projections import ProjectionStatus
from ..events.snapshots import Snapshot
from ..events.store import (
    PROJECTIONS_NS,
    SUBSCRIPTIONS_NS,
    EventFilter,
    EventStore,
    StreamMetadata,
    StreamPage,
)
from ..events.subscriptions import reset_subscription, subscription_status
from ..store import Namespace, Store
from ..types import Event, Item, RecordedEvent
from .guard import audit_admin as _audit_admin
from .guard import deny as _deny
from .http import HeartbeatParam, RawStream, heartbeat_seconds
from .http import batch_limit as _batch_limit
from .http import body_as as _body_as
from .http import ctx_of as _ctx
from .http import decode as _decode
from .http import header as _hdr
from .http import limits_of as _limits
from .http import reply as _reply
from .http import state_of as _state
from .http import strict_ints as _strict_ints
from .http import value_limit as _value_limit
from .notify import Feed, PrefetchedSource, sse_follow
from .openapi import responses as _responses
from .state import ServerState

__all__ = ["EVENT_ROUTES"]

_json_encode = msgspec.json.Encoder().encode

_STREAM = "/v1/streams/{stream:str}/events"
#: the longest long poll (``wait``), in seconds: well under any proxy's idle timeout
MAX_WAIT = 60.0


def _stream_name(stream: str, store: Store) -> str:
    name = unquote_key(stream)
    check_key(name, _limits(store).max_key_bytes, field="stream")  # before any body is read
    return name


def _events_of(store: Store) -> EventStore:
    return store.events


def _on_stream(request: Request[Any, Any, Any], stream: str) -> tuple[ServerState, EventStore, str]:
    """What every per-stream route starts from: the server's state, the event store and
    the stream's name, checked before any body is read."""
    store = _ctx(request).store
    return _state(request), _events_of(store), _stream_name(stream, store)


async def _whole_log(request: Request[Any, Any, Any]) -> tuple[ServerState, Store]:
    """What every route over the whole log starts from: ``events:*:read`` (or admin; a
    stream glob cannot bound what the log reveals), else 403; then the server's state
    and the caller's store."""
    st, ctx = _state(request), _ctx(request)
    p = ctx.principal
    assert p is not None
    if not p.allows_all("events", "read"):
        await _deny(st, request, p)
    return st, ctx.store


def _position(value: str | None, es: EventStore, field: str = "from_position") -> int:
    if value is None or value == "":
        return 0
    if value == "end":
        return es.last_position
    return parse_int(value, field)  # 0 to 2**63-1, as every position


def _filter(stream_prefix: str, types: list[str] | None) -> EventFilter | None:
    if not stream_prefix and not types:
        return None
    return EventFilter(stream_prefix, tuple(types or ()))


# -- streams ---------------------------------------------------------------------------


@post(
    _STREAM,
    opt={"auth": ("events", "write")},
    operation_id="appendEvents",
    summary="Append events to a stream atomically if its version is expected_version "
    "(409 WrongExpectedVersion otherwise; the same event ids again return the first result).",
    responses=_responses(AppendResult, 409, 413, 415),
    status_code=200,
    tags=["events"],
)
async def append_events(request: Request[Any, Any, Any], stream: str) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    body = await _body_as(request, AppendEvents, "events", _batch_limit(st, es.store))
    expected: Any = body.expected_version  # the facade checks it (a str must be a constant)
    result = await st.run(es.append, name, body.events, expected_version=expected)
    return _reply(request, result)


@get(
    _STREAM,
    opt={"auth": ("events", "read")},
    operation_id="readStream",
    summary="A stream's events from from_version (backwards: down from it), at most limit.",
    responses=_responses(StreamEvents),
    tags=["events"],
)
async def read_stream(
    request: Request[Any, Any, Any],
    stream: str,
    from_version: Annotated[
        int | None,
        Parameter(
            query="from_version",
            required=False,
            ge=0,
            description="Omit: the first (backwards: the last) event.",
        ),
    ] = None,
    backwards: Annotated[bool, Parameter(query="backwards", required=False)] = False,
    limit: Annotated[
        int | None, Parameter(query="limit", required=False, ge=1, description="Omit: all.")
    ] = None,
) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    _strict_ints(request, "from_version", "limit")
    events = await st.run(es.read, name, from_version, backwards=backwards, limit=limit)
    return _reply(request, StreamEvents(events))


# -- the global log ----------------------------------------------------------------------

FromPosition = Annotated[
    str | None,
    Parameter(
        query="from_position",
        required=False,
        description='Read after this position (exclusive; 0: from the start; "end": only '
        "new events).",
    ),
]
StreamPrefix = Annotated[
    str, Parameter(query="stream_prefix", required=False, description="Only these streams.")
]
Types = Annotated[
    list[str] | None,
    Parameter(query="type", required=False, description="Only these event types (repeat)."),
]
Timeout = Annotated[
    float | None,
    Parameter(
        query="timeout",
        required=False,
        ge=0,
        description="SSE: end after this many seconds without an event (omit: never).",
    ),
]
Heartbeat = HeartbeatParam
Wait = Annotated[
    float | None,
    Parameter(
        query="wait",
        required=False,
        ge=0,
        le=MAX_WAIT,
        description="JSON page only: when nothing is there yet, wait up to this many "
        "seconds for the next event before answering (a long poll; omit: answer at once).",
    ),
]
PageLimit = Annotated[int, Parameter(query="limit", required=False, ge=1, le=10000)]
LastEventId = Annotated[str | None, Parameter(header="last-event-id", required=False)]


async def _global(
    request: Request[Any, Any, Any],
    from_position: str | None,
    limit: int,
    stream_prefix: str,
    types: list[str] | None,
    timeout: float | None,
    heartbeat: str | None,
    last_event_id: str | None,
    wait: float | None = None,
) -> ASGIApp:
    """``read_all`` and ``subscribe_events``: one JSON page (after a long poll of up to
    ``wait`` seconds when nothing is there yet), or with Accept: text/event-stream a
    live SSE stream that ``Last-Event-ID`` resumes (read only for a stream)."""
    st, store = await _whole_log(request)
    sse = SSE in (_hdr(request, "accept") or "")
    if not sse:
        last_event_id = None
    beat = heartbeat_seconds(heartbeat, st.settings)  # bounded: a floor and a ceiling
    es = _events_of(store)
    flt = _filter(stream_prefix, types)
    _strict_ints(request, "limit")
    if last_event_id:
        # Checked before the stream starts: a position past 64 bits used to fail inside
        # the stream, which then closed without its ``end`` event.
        after = parse_int(last_event_id, "last-event-id")
    else:
        after = await st.run(_position, from_position, es)
    if not sse:
        events, end = await st.run(_page, es, after, limit, flt)
        if not events and end <= after and wait:
            events, end = await _page_after_wait(st, es, after, limit, flt, wait)
        return _reply(request, EventPage(events, end))
    return RawStream(
        await _open_stream(st, es, after, flt, timeout, beat),
        SSE,
        {"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@get(
    "/v1/events",
    opt={"auth": "token"},
    operation_id="readAll",
    summary="The global log after from_position, in commit order: a JSON page, or a live "
    "SSE stream with Accept: text/event-stream (id: = position, Last-Event-ID resumes).",
    responses=_responses(EventPage),
    tags=["events"],
)
async def read_all(
    request: Request[Any, Any, Any],
    from_position: FromPosition = None,
    limit: PageLimit = 1000,
    stream_prefix: StreamPrefix = "",
    types: Types = None,
    timeout: Timeout = None,
    heartbeat: Heartbeat = None,
    last_event_id: LastEventId = None,
    wait: Wait = None,
) -> ASGIApp:
    return await _global(
        request, from_position, limit, stream_prefix, types, timeout, heartbeat, last_event_id, wait
    )


@get(
    "/v1/events/subscribe",
    opt={"auth": "token"},
    operation_id="subscribeEvents",
    summary="Past events after from_position, then new ones as they commit, as server-sent "
    "events (Accept: text/event-stream; id: = position, Last-Event-ID resumes); without "
    "that Accept, one JSON page like GET /v1/events.",
    responses=_responses(EventPage),
    tags=["events"],
)
async def subscribe_events(
    request: Request[Any, Any, Any],
    from_position: FromPosition = None,
    limit: PageLimit = 1000,
    stream_prefix: StreamPrefix = "",
    types: Types = None,
    timeout: Timeout = None,
    heartbeat: Heartbeat = None,
    last_event_id: LastEventId = None,
) -> ASGIApp:
    return await _global(
        request, from_position, limit, stream_prefix, types, timeout, heartbeat, last_event_id
    )


def _page(
    es: EventStore, after: int, limit: int, flt: EventFilter | None
) -> tuple[list[RecordedEvent], int]:
    """``read_all``'s checks, then its page and the position it scanned through."""
    check_limit(limit, es.store.config.limits.max_query_limit)
    check_event_filter(flt)
    return es._read_rows(after, limit, flt)


async def _page_after_wait(
    st: ServerState,
    es: EventStore,
    after: int,
    limit: int,
    flt: EventFilter | None,
    wait: float,
) -> tuple[list[RecordedEvent], int]:
    """``_page`` again once the log moves past ``after`` or ``wait`` seconds pass: the
    long poll a remote ``wait_for_events`` (a projection runner's idle wait) rides on,
    awaiting the log's hub like an SSE stream (:meth:`Cursor.wait_async`), so it holds
    no thread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    # A cursor at 0 does no I/O when made: it is only this poll's place on the hub.
    waiter: Cursor[Any] = Cursor(EventSource(es._log, list), 0, strict=False)
    events: list[RecordedEvent] = []
    end = after
    st.feeds.track(waiter)
    try:
        while not st.stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                woke = await waiter.wait_async(remaining, after=after)
            except ClawStateError:
                woke = False
                await asyncio.sleep(min(remaining, 1.0))  # the hub retries; so do we
            if waiter.closed:
                break
            events, end = await st.run(_page, es, after, limit, flt)
            if events or end > after:
                break
            if woke:  # the log's end is ahead of its readable rows: do not spin
                await asyncio.sleep(0.01)
    finally:
        st.feeds.untrack(waiter)
        waiter.close()
    return events, end


def _sse_event(e: RecordedEvent) -> bytes:
    return b"id: %d\nevent: event\ndata: %s\n\n" % (e.position, _json_encode(e))


def _stream_cursor(feed: Feed[RecordedEvent], after: int) -> Cursor[RecordedEvent]:
    """A stream's cursor on ``feed`` (on the pool: a start past 0 is checked against
    the log's retention here, and a trimmed one is the 410 problem)."""
    return Cursor(PrefetchedSource(feed), after, limit=256, field="from_position")


async def _open_stream(
    st: ServerState,
    es: EventStore,
    after: int,
    flt: EventFilter | None,
    timeout: float | None,
    beat: float,
) -> AsyncIterator[bytes]:
    """The subscription as SSE: :func:`.notify.sse_follow` over a feed shared by every
    stream of the same filter; a final ``end`` event with the position reached."""
    prefix, types = ("", ()) if flt is None else (flt.stream_prefix, tuple(flt.types))
    feed: Feed[RecordedEvent] = st.feeds.feed(
        (es._log, prefix, types, "events"),
        lambda: Feed(
            EventSource(es._log, es._decode, stream_prefix=prefix, types=types),
            _sse_event,
            st.run,
        ),
    )
    try:
        cursor = await st.run(_stream_cursor, feed, after)
    except BaseException:
        st.feeds.release(feed)
        raise
    return _stream(st, feed, cursor, timeout, beat)


async def _stream(
    st: ServerState,
    feed: Feed[RecordedEvent],
    cursor: Cursor[RecordedEvent],
    timeout: float | None,
    beat: float,
) -> AsyncIterator[bytes]:
    def end(position: int, last: RecordedEvent | None) -> bytes:
        return b"event: end\ndata: %s\n\n" % _json_encode({"position": position})

    st.metrics.subscriptions.inc()
    try:
        async for chunk in sse_follow(
            st.feeds, feed, cursor, keep=None, timeout=timeout, beat=beat, end=end
        ):
            yield chunk
    finally:
        st.metrics.subscriptions.dec()


# -- streams: several appends, metadata, soft delete, snapshots --------------------------


class StreamAppend(msgspec.Struct, forbid_unknown_fields=True):
    """One append of ``POST /v1/events/batch``: ``append_many``'s triple, named."""

    stream: Any
    events: list[Event]
    expected_version: Any = "any"


class AppendMany(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/events/batch`` body: ``EventStore.append_many``'s appends."""

    appends: list[StreamAppend]


class AppendResults(msgspec.Struct):
    """One :class:`~clawstate.AppendResult` per append, in order."""

    results: list[AppendResult]


class SnapshotReply(msgspec.Struct):
    """``GET /v1/streams/{stream}/snapshot``: the latest snapshot, or null."""

    snapshot: Snapshot | None


class SnapshotBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/streams/{stream}/snapshot`` body: ``snapshots.save``'s arguments."""

    version: Any
    state: Any
    schema: Any = 1


class Deleted(msgspec.Struct):
    deleted: bool


class Position(msgspec.Struct):
    position: int


class ItemReply(msgspec.Struct):
    """A checkpoint item (value, version, times), or null when there is none."""

    item: Item | None


class CheckpointBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/subscriptions/{name}`` body: the position processed so far."""

    position: Any


async def _require_stream(request: Request[Any, Any, Any], streams: list[str], action: str) -> None:
    """Every stream of a multi-stream request allowed, or 403 for the whole request —
    the same refusal whichever stream is not, so it tells nothing about the others."""
    st, ctx = _state(request), _ctx(request)
    p = ctx.principal
    assert p is not None
    for name in streams:
        if (name.startswith("_") and not p.admin) or not p.allows("events", name, action):
            await _deny(st, request, p)


@post(
    "/v1/events/batch",
    opt={"auth": "token"},
    operation_id="appendMany",
    summary="Several appends, to one or more streams, committed atomically (needs events "
    "write on every stream; 409 WrongExpectedVersion and nothing written if one fails).",
    responses=_responses(AppendResults, 409, 413, 415),
    status_code=200,
    tags=["events"],
)
async def append_many(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = _state(request), _ctx(request)
    body = await _body_as(request, AppendMany, "appends", _batch_limit(st, ctx.store))
    es = _events_of(ctx.store)
    limit = _limits(ctx.store).max_key_bytes
    for i, a in enumerate(body.appends):
        check_key(a.stream, limit, field=f"appends[{i}].stream")
    await _require_stream(request, [a.stream for a in body.appends], "write")
    triples = [(a.stream, a.events, a.expected_version) for a in body.appends]
    results = await st.run(es.append_many, triples)
    return _reply(request, AppendResults(results))


@get(
    "/v1/streams",
    opt={"auth": "token"},
    operation_id="listStreams",
    summary="Streams whose name starts with prefix, in name order (UTF-8 bytes), with "
    "version and last position, at most limit per page; cursor resumes.  Needs "
    "events:*:read (a page's cursor names the last stream it scanned).",
    responses=_responses(StreamPage),
    tags=["events"],
)
async def list_streams(
    request: Request[Any, Any, Any],
    prefix: Annotated[str, Parameter(query="prefix", required=False)] = "",
    limit: Annotated[int, Parameter(query="limit", required=False, ge=1)] = 100,
    cursor: Annotated[str | None, Parameter(query="cursor", required=False)] = None,
) -> ASGIApp:
    st, store = await _whole_log(request)
    _strict_ints(request, "limit")
    es = _events_of(store)
    page = await st.run(functools.partial(es.streams, prefix, limit=limit, cursor=cursor))
    return _reply(request, page)


_META = "/v1/streams/{stream:str}/metadata"
#: ``set_stream_metadata``'s keyword arguments; a key left out is not passed at all
_META_FIELDS = ("max_age", "max_count", "truncate_before", "expected_version")


@get(
    _META,
    opt={"auth": ("events", "read")},
    operation_id="streamMetadata",
    summary="A stream's version and retention settings.",
    responses=_responses(StreamMetadata),
    tags=["events"],
)
async def stream_metadata(request: Request[Any, Any, Any], stream: str) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    return _reply(request, await st.run(es.stream_metadata, name))


@put(
    _META,
    opt={"auth": ("events", "write")},
    operation_id="setStreamMetadata",
    summary="Set a stream's retention settings (max_age, max_count, truncate_before; "
    "expected_version guards it like an append).",
    responses=_responses(StreamMetadata, 409, 413, 415),
    status_code=200,
    tags=["events"],
)
async def set_stream_metadata(request: Request[Any, Any, Any], stream: str) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    doc = await _decode(request, _value_limit(st, es.store), "metadata")
    if not isinstance(doc, dict):
        raise InvalidRequest("metadata", f"must be an object with {', '.join(_META_FIELDS)}")
    for key in doc:
        if key not in _META_FIELDS:
            raise InvalidRequest(
                str(key)[:64], f"is not a stream setting (they are {', '.join(_META_FIELDS)})"
            )
    meta = await st.run(functools.partial(es.set_stream_metadata, name, **doc))
    return _reply(request, meta)


@delete(
    "/v1/streams/{stream:str}",
    opt={"auth": ("events", "write")},
    operation_id="deleteStream",
    summary="Soft-delete a stream: a $deleted tombstone is appended and its events are "
    "hidden, then swept (409 WrongExpectedVersion if expected_version does not hold).",
    responses=_responses(AppendResult, 409),
    status_code=200,
    tags=["events"],
)
async def delete_stream(
    request: Request[Any, Any, Any],
    stream: str,
    expected_version: Annotated[
        str | None,
        Parameter(
            query="expected_version",
            required=False,
            description='A version, or "any" (default), "no_stream", "stream_exists".',
        ),
    ] = None,
) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    expected = _expected(expected_version)
    result = await st.run(functools.partial(es.delete_stream, name, expected_version=expected))
    return _reply(request, result)


def _expected(text: str | None) -> Any:
    """An ``expected_version`` query parameter: a number is a version (bounded like every
    64-bit number), anything else goes to the facade as the constant's name."""
    if text is None:
        return "any"
    if text[:1].isdigit() or text[:1] == "-":
        return parse_int(text, "expected_version")
    return text


_SNAPSHOT = "/v1/streams/{stream:str}/snapshot"


@get(
    _SNAPSHOT,
    opt={"auth": ("events", "read")},
    operation_id="loadSnapshot",
    summary="The stream's latest snapshot, or null.",
    responses=_responses(SnapshotReply),
    tags=["events"],
)
async def load_snapshot(request: Request[Any, Any, Any], stream: str) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    snap = await st.run(es.snapshots.load, name)
    return _reply(request, SnapshotReply(snap))


@put(
    _SNAPSHOT,
    opt={"auth": ("events", "write")},
    operation_id="saveSnapshot",
    summary="Store the stream's state after event `version` as its latest snapshot.",
    responses=_responses(Snapshot, 413, 415),
    status_code=200,
    tags=["events"],
)
async def save_snapshot(request: Request[Any, Any, Any], stream: str) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    body = await _body_as(request, SnapshotBody, "snapshot", _value_limit(st, es.store))
    snaps = es.snapshots
    snap = await st.run(
        functools.partial(snaps.save, name, body.version, body.state, schema=body.schema)
    )
    return _reply(request, snap)


@delete(
    _SNAPSHOT,
    opt={"auth": ("events", "write")},
    operation_id="deleteSnapshot",
    summary="Forget the stream's snapshot (its events stay).",
    responses=_responses(Deleted),
    status_code=200,
    tags=["events"],
)
async def delete_snapshot(request: Request[Any, Any, Any], stream: str) -> ASGIApp:
    st, es, name = _on_stream(request, stream)
    deleted = await st.run(es.snapshots.delete, name)
    return _reply(request, Deleted(deleted))


# -- the log as a whole: its end and its statistics ----------------------------------------


@get(
    "/v1/events/position",
    opt={"auth": "token"},
    operation_id="lastPosition",
    summary="The newest committed global position (0: no events yet); needs events:*:read.",
    responses=_responses(Position),
    tags=["events"],
)
async def last_position(request: Request[Any, Any, Any]) -> ASGIApp:
    st, store = await _whole_log(request)
    es = _events_of(store)
    return _reply(request, Position(await st.run(_last_position, es)))


def _last_position(es: EventStore) -> int:
    return es.last_position


@get(
    "/v1/events/stats",
    opt={"auth": "token"},
    operation_id="eventStats",
    summary="The log's positions and size, and every projection's and durable "
    "subscription's position and lag; needs events:*:read.",
    tags=["events"],
    responses=_responses(dict[str, Any]),
)
async def event_stats(request: Request[Any, Any, Any]) -> ASGIApp:
    st, store = await _whole_log(request)
    return _reply(request, await st.run(_events_of(store).stats))


# -- checkpoints: durable subscriptions and projections run by clients ---------------------
#
# A durable subscription or a projection over HTTP keeps its checkpoint on the server,
# in the same system namespace (``_subscriptions``, ``_projections``) as an in-process
# one, so `clawstate projections status` and `events.stats()` show both alike.  Both
# read the whole log, so every route here needs ``events:*:read``: a checkpoint is the
# bookmark of a reader of everything, and moving it changes what that reader sees
# again, never the log.  Read models are ordinary namespaces, written with ``ns:``
# scopes through ``POST /v1/transactions``.

CheckpointName = Annotated[str, Parameter(description="The subscription's or projection's name.")]


def _checkpoint_name(name: str) -> str:
    text = unquote_key(name)
    check_key(text, 256, field="name")
    return text


def _checkpoints(store: Store, kind: str) -> Namespace:
    return store._system_namespace(kind)


async def _checkpoint_reply(request: Request[Any, Any, Any], name: str, kind: str) -> ASGIApp:
    """GET of one checkpoint (a durable subscription's or a projection's): its item or
    null, for readers of the whole log only."""
    st, store = await _whole_log(request)
    item = await st.run(_checkpoints(store, kind).get, _checkpoint_name(name))
    return _reply(request, ItemReply(item))


def _reset_subscription(store: Store, name: str, position: Any) -> Item | None:
    """``reset_subscription``: set a durable subscription's checkpoint (refused while a
    consumer holds its lease), at most the log's end."""
    es = _events_of(store)
    check_position(position, "position")
    last = es.last_position
    if position > last:
        raise InvalidRequest(
            "position", f"is past the end of the log ({last}); a checkpoint is a position read"
        )
    reset_subscription(es, name, position)
    return _checkpoints(store, SUBSCRIPTIONS_NS).get(name)


@get(
    "/v1/subscriptions",
    opt={"auth": "token"},
    operation_id="subscriptionStatus",
    summary="Every durable subscription's saved position and lag.",
    responses=_responses(dict[str, Any]),
    tags=["events"],
)
async def list_subscriptions(request: Request[Any, Any, Any]) -> ASGIApp:
    st, store = await _whole_log(request)
    return _reply(request, await st.run(subscription_status, _events_of(store)))


@get(
    "/v1/subscriptions/{name:str}",
    opt={"auth": "token"},
    operation_id="subscriptionCheckpoint",
    summary="A durable subscription's saved checkpoint ({position, updated_at}), or null.",
    responses=_responses(ItemReply),
    tags=["events"],
)
async def get_subscription(request: Request[Any, Any, Any], name: CheckpointName) -> ASGIApp:
    return await _checkpoint_reply(request, name, SUBSCRIPTIONS_NS)


@put(
    "/v1/subscriptions/{name:str}",
    opt={"auth": "token"},
    operation_id="saveSubscriptionCheckpoint",
    summary="Reset a durable subscription's checkpoint to a position (409 while a "
    "consumer holds its lease), as reset_subscription does.",
    responses=_responses(ItemReply, 409, 415),
    status_code=200,
    tags=["events"],
)
async def put_subscription(request: Request[Any, Any, Any], name: CheckpointName) -> ASGIApp:
    st, store = await _whole_log(request)
    key = _checkpoint_name(name)
    body = await _body_as(request, CheckpointBody, "checkpoint", 4096)
    item = await st.run(_reset_subscription, store, key, body.position)
    # An operator's action on another reader's bookmark: audited like admin actions.
    await _audit_admin(request, "subscription.reset", name=key[:256], position=body.position)
    return _reply(request, ItemReply(item))


@get(
    "/v1/projections",
    opt={"auth": "token"},
    operation_id="projectionStatus",
    summary="Every projection that has a checkpoint, with its lag.",
    responses=_responses(list[ProjectionStatus]),
    tags=["events"],
)
async def list_projections(request: Request[Any, Any, Any]) -> ASGIApp:
    st, store = await _whole_log(request)
    return _reply(request, await st.run(_events_of(store).projection_status))


@get(
    "/v1/projections/{name:str}",
    opt={"auth": "token"},
    operation_id="projectionCheckpoint",
    summary="A projection's checkpoint item, or null.",
    responses=_responses(ItemReply),
    tags=["events"],
)
async def get_projection(request: Request[Any, Any, Any], name: CheckpointName) -> ASGIApp:
    return await _checkpoint_reply(request, name, PROJECTIONS_NS)


@delete(
    "/v1/projections/{name:str}",
    opt={"auth": "token"},
    operation_id="deleteProjectionCheckpoint",
    summary="Forget a projection's checkpoint (if_version: only that version), as "
    "`projections reset` does before it empties the read model.",
    responses=_responses(Deleted, 409),
    status_code=200,
    tags=["events"],
)
async def delete_projection(
    request: Request[Any, Any, Any],
    name: CheckpointName,
    if_version: Annotated[int | None, Parameter(query="if_version", required=False, ge=1)] = None,
) -> ASGIApp:
    st, store = await _whole_log(request)
    _strict_ints(request, "if_version")
    key = _checkpoint_name(name)
    ns = _checkpoints(store, PROJECTIONS_NS)
    deleted = await st.run(functools.partial(ns.delete, key, if_version=if_version))
    await _audit_admin(request, "projection.reset", name=key[:256], deleted=deleted)
    return _reply(request, Deleted(deleted))


#: Route handlers for the event store (``create_app`` includes them).
EVENT_ROUTES: list[Any] = [
    append_events,
    read_stream,
    read_all,
    subscribe_events,
    append_many,
    list_streams,
    stream_metadata,
    set_stream_metadata,
    delete_stream,
    load_snapshot,
    save_snapshot,
    delete_snapshot,
    last_position,
    event_stats,
    list_subscriptions,
    get_subscription,
    put_subscription,
    list_projections,
    get_projection,
    delete_projection,
]
