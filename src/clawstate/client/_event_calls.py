"""The event store's operations as ``_Call`` s (see :mod:`._calls`): the facade's own
argument checks first, so a bad call fails before it is sent, with the same error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from .._validate import (
    check_collection,
    check_flag,
    check_int,
    check_key,
    check_position,
    check_timeout,
    check_version,
)
from .._validate import check_event_filter as _check_filter
from .._validate import check_event_json as _json_text
from .._validate import check_limit as _check_limit
from .._validate import check_position as _check_position
from .._validate import is_utf8 as _is_utf8
from .._wire import (
    EventPage,
    StreamEvents,
    quote_key,
)
from ..config import Limits
from ..errors import InvalidRequest
from ..events.projections import ProjectionStatus
from ..events.snapshots import Snapshot
from ..events.store import (
    KEEP,
    EventFilter,
    StreamMetadata,
    StreamPage,
    expected_code,
)
from ..types import (
    AppendResult,
    Event,
    Item,
    RecordedEvent,
)
from ._calls import (
    _NO_BODY,
    _Call,
    _dec_any,
)

#: the longest long poll the server holds (its ``wait`` bound), in seconds
MAX_WAIT = 60.0

# -- the event store -----------------------------------------------------------------

_dec_append = msgspec.msgpack.Decoder(AppendResult)
_dec_stream_events = msgspec.msgpack.Decoder(StreamEvents)
_dec_event_page = msgspec.msgpack.Decoder(EventPage)
_dec_event_json = msgspec.json.Decoder(RecordedEvent)
_dec_meta = msgspec.msgpack.Decoder(StreamMetadata)
_dec_streams = msgspec.msgpack.Decoder(StreamPage)


class _Results(msgspec.Struct):
    results: list[AppendResult]


class _SnapshotReply(msgspec.Struct):
    snapshot: Snapshot | None


class _ItemReply(msgspec.Struct):
    item: Item | None


_dec_results = msgspec.msgpack.Decoder(_Results)
_dec_snapshot = msgspec.msgpack.Decoder(_SnapshotReply)
_dec_snapshot_doc = msgspec.msgpack.Decoder(Snapshot)
_dec_item_reply = msgspec.msgpack.Decoder(_ItemReply)
_dec_status = msgspec.msgpack.Decoder(list[ProjectionStatus])


def _stream_path(stream: Any, limits: Limits) -> str:
    check_key(stream, limits.max_key_bytes, field="stream")
    return f"/v1/streams/{quote_key(stream)}/events"


def _check_events(events: Any, expected_version: Any) -> list[Event]:
    """``append``'s own argument checks (the rest is the server's facade): ``events`` a
    list of :class:`~clawstate.Event`, ``expected_version`` one the facade takes."""
    if type(events) is not list:
        if isinstance(events, Event | str | bytes | dict) or not isinstance(events, Iterable):
            raise InvalidRequest(
                "events", f"must be a list of clawstate.Event, got {type(events).__name__}"
            )
        events = list(events)
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise InvalidRequest(
                f"events[{i}]", f"must be a clawstate.Event, got {type(ev).__name__}"
            )
        # What msgpack would carry but JSON (the log's format) cannot: sets, int keys,
        # lone surrogates, arbitrary objects — refused naming the event's own field.
        _json_text(i, "data", ev.data)
        if ev.metadata is not None:
            _json_text(i, "metadata", ev.metadata)
    expected_code(expected_version)
    checked: list[Event] = events
    return checked


def _append_call(
    limits: Limits, stream: Any, events: Any, expected_version: Any
) -> _Call[AppendResult]:
    """``EventStore.append`` as a request: the facade's own argument checks first, so a
    bad call fails before it is sent, with the same error."""
    path = _stream_path(stream, limits)
    events = _check_events(events, expected_version)
    body = {"events": events, "expected_version": expected_version}
    # Appends are idempotent by event id: a retry returns the first append's result.
    return _Call("POST", path, None, body, None, True, lambda s, d: _dec_append.decode(d), "events")


def _append_many_call(limits: Limits, appends: Any) -> _Call[list[AppendResult]] | None:
    """``EventStore.append_many``; None when there is nothing to append (no request)."""
    check_collection(appends, "appends", "a list of (stream, events, expected_version)")
    body: list[dict[str, Any]] = []
    for i, item in enumerate(appends):
        if not isinstance(item, tuple) or len(item) != 3:
            raise InvalidRequest(
                f"appends[{i}]", "must be a (stream, events, expected_version) tuple"
            )
        stream, events, expected = item
        check_key(stream, limits.max_key_bytes, field="stream")
        body.append(
            {
                "stream": stream,
                "events": _check_events(events, expected),
                "expected_version": expected,
            }
        )
        if len(body) > limits.max_batch:
            raise InvalidRequest(
                "appends", f"more than {limits.max_batch} appends", limit=limits.max_batch
            )
    if not body:
        return None
    return _Call(
        "POST",
        "/v1/events/batch",
        None,
        {"appends": body},
        None,
        True,  # idempotent by event id, like a single append
        lambda s, d: _dec_results.decode(d).results,
        "appends",
    )


def _streams_call(limits: Limits, prefix: Any, limit: Any, cursor: Any) -> _Call[StreamPage]:
    """``EventStore.streams``: what a query string could not carry faithfully is
    refused here, naming the argument (the rest is the server's facade)."""
    if not isinstance(prefix, str):
        raise InvalidRequest("prefix", f"must be a string, got {type(prefix).__name__}")
    if not _is_utf8(prefix) or "\x00" in prefix:
        raise InvalidRequest("prefix", "must be a valid Unicode string without NUL")
    _check_limit(limit, limits.max_query_limit)
    if cursor is not None and (not isinstance(cursor, str) or not cursor or not _is_utf8(cursor)):
        raise InvalidRequest("cursor", "must be the cursor of a previous streams() page")
    params: dict[str, Any] = {"limit": str(limit)}
    if prefix:
        params["prefix"] = prefix
    if cursor is not None:
        params["cursor"] = cursor
    return _Call(
        "GET", "/v1/streams", params, _NO_BODY, None, True, lambda s, d: _dec_streams.decode(d)
    )


def _stream_meta_call(limits: Limits, stream: Any) -> _Call[StreamMetadata]:
    path = _base_path(stream, limits) + "/metadata"
    return _Call("GET", path, None, _NO_BODY, None, True, lambda s, d: _dec_meta.decode(d))


def _set_stream_meta_call(
    limits: Limits, stream: Any, settings: dict[str, Any]
) -> _Call[StreamMetadata]:
    """Only the settings given travel (``KEEP``, the default, is not sent): the server
    calls ``set_stream_metadata`` with exactly those keywords, so an omitted setting
    keeps its value there as in-process, and ``None`` (sent as null) clears it."""
    path = _base_path(stream, limits) + "/metadata"
    body = {k: v for k, v in settings.items() if v is not KEEP}
    if "expected_version" in body:
        expected_code(body["expected_version"])
    for key in ("max_count", "truncate_before"):
        if type(body.get(key)) is int:
            check_int(body[key], key, 1)  # past 64 bits msgpack could not carry it
    guarded = body.get("expected_version", "any") != "any"
    return _Call(
        "PUT", path, None, body, None, guarded, lambda s, d: _dec_meta.decode(d), "metadata"
    )


def _delete_stream_call(limits: Limits, stream: Any, expected_version: Any) -> _Call[AppendResult]:
    path = _base_path(stream, limits)
    expected_code(expected_version)
    params = {"expected_version": str(expected_version)}
    # Not retried: a second tombstone would be a second delete.
    return _Call("DELETE", path, params, _NO_BODY, None, False, lambda s, d: _dec_append.decode(d))


def _snapshot_path(stream: Any, max_stream: int) -> str:
    check_key(stream, max_stream, field="stream")
    return f"/v1/streams/{quote_key(stream)}/snapshot"


def _load_snapshot_call(limits: Limits, stream: Any) -> _Call[Snapshot | None]:
    path = _snapshot_path(stream, limits.max_key_bytes)
    return _Call(
        "GET", path, None, _NO_BODY, None, True, lambda s, d: _dec_snapshot.decode(d).snapshot
    )


def _check_snapshot(version: Any, schema: Any) -> None:
    """As ``Snapshots.save`` checks them, bounded to 64 bits (msgpack carries no more)."""
    if type(version) is not int or version < 1:
        raise InvalidRequest("version", f"must be an integer >= 1, got {version!r}")
    if type(schema) is not int or schema < 1:
        raise InvalidRequest("schema", f"must be an integer >= 1, got {schema!r}")
    check_int(version, "version", 1)
    check_int(schema, "schema", 1)


def _save_snapshot_call(
    limits: Limits, stream: Any, version: Any, state: Any, schema: Any
) -> _Call[Snapshot]:
    path = _snapshot_path(stream, limits.max_key_bytes)
    _check_snapshot(version, schema)
    body = {"version": version, "state": state, "schema": schema}
    # A save replaces the snapshot with the same one: safe to send again.
    return _Call(
        "PUT", path, None, body, None, True, lambda s, d: _dec_snapshot_doc.decode(d), "state"
    )


def _delete_snapshot_call(limits: Limits, stream: Any) -> _Call[bool]:
    path = _snapshot_path(stream, limits.max_key_bytes)
    return _Call(
        "DELETE", path, None, _NO_BODY, None, True, lambda s, d: bool(_dec_any.decode(d)["deleted"])
    )


def _position_call() -> _Call[int]:
    return _Call(
        "GET",
        "/v1/events/position",
        None,
        _NO_BODY,
        None,
        True,
        lambda s, d: int(_dec_any.decode(d)["position"]),
    )


def _event_stats_call() -> _Call[dict[str, Any]]:
    return _Call(
        "GET", "/v1/events/stats", None, _NO_BODY, None, True, lambda s, d: dict(_dec_any.decode(d))
    )


def _checkpoint_path(kind: str, name: Any) -> str:
    check_key(name, 256, field="name")
    return f"/v1/{kind}/{quote_key(name)}"


def _get_checkpoint_call(kind: str, name: Any) -> _Call[Item | None]:
    """A durable subscription's (``kind="subscriptions"``) or projection's checkpoint."""
    return _Call(
        "GET",
        _checkpoint_path(kind, name),
        None,
        _NO_BODY,
        None,
        True,
        lambda s, d: _dec_item_reply.decode(d).item,
    )


def _delete_projection_call(name: Any, if_version: Any) -> _Call[bool]:
    if if_version is not None:
        check_version(if_version)
    params = None if if_version is None else {"if_version": str(if_version)}
    return _Call(
        "DELETE",
        _checkpoint_path("projections", name),
        params,
        _NO_BODY,
        None,
        if_version is not None,
        lambda s, d: bool(_dec_any.decode(d)["deleted"]),
    )


def _projection_status_call() -> _Call[list[ProjectionStatus]]:
    return _Call(
        "GET", "/v1/projections", None, _NO_BODY, None, True, lambda s, d: _dec_status.decode(d)
    )


def _base_path(stream: Any, limits: Limits) -> str:
    check_key(stream, limits.max_key_bytes, field="stream")
    return f"/v1/streams/{quote_key(stream)}"


def _read_call(
    limits: Limits, stream: Any, from_version: Any, backwards: Any, limit: Any
) -> _Call[list[RecordedEvent]]:
    path = _stream_path(stream, limits)
    if from_version is not None:
        check_position(from_version, "from_version")
    if limit is not None:
        check_int(limit, "limit", 1)
    check_flag(backwards, "backwards")
    params: dict[str, Any] = {"backwards": "true" if backwards else "false"}
    if from_version is not None:
        params["from_version"] = str(from_version)
    if limit is not None:
        params["limit"] = str(limit)
    return _Call(
        "GET", path, params, _NO_BODY, None, True, lambda s, d: _dec_stream_events.decode(d).events
    )


def _filter_params(flt: Any) -> dict[str, Any]:
    _check_filter(flt)
    params: dict[str, Any] = {}
    if flt is not None:
        if not _is_utf8(flt.stream_prefix):
            raise InvalidRequest("filter.stream_prefix", "must be a valid Unicode string")
        if flt.stream_prefix:
            params["stream_prefix"] = flt.stream_prefix
        if flt.types:
            params["type"] = list(flt.types)
    return params


def _page_call(
    limits: Limits,
    from_position: Any,
    limit: Any,
    flt: Any,
    *,
    allow_end: bool = False,
    wait: float | None = None,
) -> _Call[EventPage]:
    """A page of the global log; with ``wait``, the server holds an empty answer up to
    that many seconds for the next event (a long poll)."""
    if not (allow_end and from_position == "end"):
        _check_position(from_position, "from_position")
    _check_limit(limit, limits.max_query_limit)
    params = _filter_params(flt)
    params["from_position"] = str(from_position)
    params["limit"] = str(limit)
    if wait is not None and wait > 0:
        params["wait"] = repr(min(float(wait), MAX_WAIT))
    return _Call(
        "GET", "/v1/events", params, _NO_BODY, None, True, lambda s, d: _dec_event_page.decode(d)
    )


class _SubSpec:
    """What a subscription asked for and where it stands (``position``)."""

    def __init__(
        self, position: int, flt: EventFilter | None, timeout: float | None, heartbeat: float
    ) -> None:
        self.position = position
        self.filter = flt
        self.timeout = timeout
        self.heartbeat = heartbeat

    def params(self) -> dict[str, Any]:
        params = _filter_params(self.filter)
        params["from_position"] = str(self.position)
        params["heartbeat"] = repr(float(self.heartbeat))
        if self.timeout is not None:
            params["timeout"] = repr(float(self.timeout))
        return params


def _sub_args(
    limits: Limits, from_position: Any, filter: Any, name: Any, timeout: Any
) -> _Call[EventPage] | None:
    """Check ``subscribe``'s arguments; the call resolving ``"end"``, if needed."""
    if name is not None:
        check_key(name, 256, field="name")
    if timeout is not None:
        check_timeout(timeout)
    if from_position == "end":
        return _page_call(limits, "end", 1, None, allow_end=True)
    _check_position(from_position, "from_position")
    _filter_params(filter)
    return None


def _start_position(page: EventPage) -> int:
    return page.events[0].position - 1 if page.events else page.end
