"""The event-store endpoints: thin handlers over ``store.events`` (issue 5 / events).

=========================================  ===========================  ==============
``POST /v1/streams/{stream}/events``       ``append(stream, events,     events write
                                           expected_version=…)`` →
                                           AppendResult (409
                                           WrongExpectedVersion)
``GET  /v1/streams/{stream}/events``       ``read(stream, …)``          events read
``GET  /v1/events?from_position=&limit=``  ``read_all(…)``              events:*:read
``GET  /v1/events/subscribe``              ``subscribe(from_position)``  events:*:read
(or ``/v1/events`` with Accept: SSE)       (``id:`` = position,
                                           Last-Event-ID resumes)
=========================================  ===========================  ==============

Like every route of :mod:`.app`, each calls ONE facade method on the store's thread
pool: validation, limits, idempotency by event id and the expected-version check are
the facade's, so the store answers the same over HTTP as in-process.  The SSE loop
follows ``app.py``'s change stream: non-blocking reads on the pool, one shared
notifier thread per event log that parks every open stream, a heartbeat, and
``metrics.subscriptions``.

The global-log routes need ``events:*:read`` (or admin): a stream glob cannot bound
what a ``stream_prefix`` filter would reveal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._validate import check_key, parse_int
from .._wire import SSE, AppendEvents, AppendResult, EventPage, StreamEvents, unquote_key
from ..errors import Forbidden
from ..events.store import EventFilter, EventStore, _check_filter, _check_limit
from ..store import Store
from ..types import RecordedEvent
from .app import (
    HeartbeatParam,
    RawStream,
    ServerState,
    _audit_denial,
    _batch_limit,
    _convert,
    _ctx,
    _decode,
    _hdr,
    _limits,
    _reply,
    _responses,
    _state,
    _strict_ints,
    heartbeat_seconds,
)

__all__ = ["EVENT_ROUTES"]

_json_encode = msgspec.json.Encoder().encode

_STREAM = "/v1/streams/{stream:str}/events"


def _stream_name(stream: str, store: Store) -> str:
    name = unquote_key(stream)
    check_key(name, _limits(store).max_key_bytes, field="stream")  # before any body is read
    return name


def _events_of(store: Store) -> EventStore:
    return store.events


async def _require_all_read(request: Request[Any, Any, Any]) -> None:
    st, ctx = _state(request), _ctx(request)
    p = ctx.principal
    assert p is not None
    if not p.allows_all("events", "read"):
        st.metrics.denied.labels("403").inc()
        await _audit_denial(st, request, 403, "scope", p)
        raise Forbidden("this token's scopes do not allow this request")


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
    st, ctx = _state(request), _ctx(request)
    name = _stream_name(stream, ctx.store)
    doc = await _decode(request, _batch_limit(st, ctx.store), "events")
    body = _convert(doc, AppendEvents, "events")
    es = _events_of(ctx.store)
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
    st, ctx = _state(request), _ctx(request)
    name = _stream_name(stream, ctx.store)
    es = _events_of(ctx.store)
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
    sse: bool,
) -> ASGIApp:
    await _require_all_read(request)
    st, ctx = _state(request), _ctx(request)
    beat = heartbeat_seconds(heartbeat, st.settings)  # bounded: a floor and a ceiling
    es = _events_of(ctx.store)
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
        return _reply(request, EventPage(events, end))
    return RawStream(
        _stream(st, es, after, flt, timeout, beat),
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
    limit: Annotated[int, Parameter(query="limit", required=False, ge=1, le=10000)] = 1000,
    stream_prefix: StreamPrefix = "",
    types: Types = None,
    timeout: Timeout = None,
    heartbeat: Heartbeat = None,
    last_event_id: LastEventId = None,
) -> ASGIApp:
    sse = SSE in (_hdr(request, "accept") or "")
    return await _global(
        request,
        from_position,
        limit,
        stream_prefix,
        types,
        timeout,
        heartbeat,
        last_event_id if sse else None,
        sse,
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
    limit: Annotated[int, Parameter(query="limit", required=False, ge=1, le=10000)] = 1000,
    stream_prefix: StreamPrefix = "",
    types: Types = None,
    timeout: Timeout = None,
    heartbeat: Heartbeat = None,
    last_event_id: LastEventId = None,
) -> ASGIApp:
    sse = SSE in (_hdr(request, "accept") or "")
    return await _global(
        request,
        from_position,
        limit,
        stream_prefix,
        types,
        timeout,
        heartbeat,
        last_event_id if sse else None,
        sse,
    )


def _page(
    es: EventStore, after: int, limit: int, flt: EventFilter | None
) -> tuple[list[RecordedEvent], int]:
    """``read_all``'s checks, then its page and the position it scanned through."""
    _check_limit(limit, es.store.config.limits.max_query_limit)
    _check_filter(flt)
    return es._read_rows(after, limit, flt)


def _sse_event(e: RecordedEvent) -> bytes:
    return b"id: %d\nevent: event\ndata: %s\n\n" % (e.position, _json_encode(e))


async def _stream(
    st: ServerState,
    es: EventStore,
    after: int,
    flt: EventFilter | None,
    timeout: float | None,
    beat: float,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    notifier = st.event_notifier(es._log)
    st.metrics.subscriptions.inc()
    try:
        yield b"retry: 1000\n\n"
        deadline = None if timeout is None else loop.time() + timeout
        next_beat = loop.time() + beat
        while not st.stopping:
            events, end = await st.run(es._read_rows, after, 256, flt)
            after = max(after, end)
            if events:
                yield b"".join(_sse_event(e) for e in events)
                now = loop.time()
                deadline = None if timeout is None else now + timeout
                next_beat = now + beat
                continue
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if now >= next_beat:
                yield b": keep-alive\n\n"
                next_beat = now + beat
            wait = next_beat - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            await notifier.wait(after, max(wait, 0.0))
        yield b"event: end\ndata: %s\n\n" % _json_encode({"position": after})
    finally:
        st.metrics.subscriptions.dec()


#: Route handlers for the event store (``create_app`` includes them).
EVENT_ROUTES: list[Any] = [append_events, read_stream, read_all, subscribe_events]
