"""Request and response helpers every route shares: the per-request context, content
negotiation (JSON or msgpack), bodies read under a limit, strict parameters, and the
raw ASGI answers that skip Litestar's response machinery.

``server/events.py`` and the resource modules import these by their public names; no
route module reaches into another's private helpers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import InternalServerException
from litestar.params import Parameter
from litestar.types import Receive, Scope, Send

from .._validate import check_key, is_integer_text
from .._wire import JSON, MSGPACK, MSGPACK_TYPES, PROBLEM_JSON, NotFound, decode_body, unquote_key
from ..config import Config, Limits
from ..errors import ClawStateError, InvalidRequest
from ..store import Store
from .problems import HTTPProblem, TooLarge, problem_response
from .settings import ServerSettings
from .state import Ctx, ServerState

__all__ = [
    "CLIENT_CLOSED",
    "HEARTBEAT_MAX",
    "HEARTBEAT_MIN",
    "ClientDisconnected",
    "Conn",
    "HeartbeatParam",
    "Raw",
    "RawStream",
    "batch_limit",
    "content_type",
    "convert",
    "ctx_of",
    "decode",
    "header",
    "heartbeat_seconds",
    "item_key",
    "json_encode",
    "limits_of",
    "msgpack_encode",
    "not_found",
    "problem",
    "read_body",
    "read_inline",
    "reply",
    "state_of",
    "strict_ints",
    "value_limit",
]

T = TypeVar("T")

json_encode = msgspec.json.Encoder().encode
msgpack_encode = msgspec.msgpack.Encoder().encode


# -- the per-request context (set by Edge and the guard) ---------------------------------


class Conn(Protocol):
    """What the helpers below and the guard read of a request: its ASGI scope and its
    path parameters.  A Litestar ``Request`` is one; so is the edge's ``EdgeConn``, for
    the route it answers itself (``edge.Edge``, the item GET)."""

    @property
    def scope(self) -> Any: ...

    @property
    def path_params(self) -> dict[str, Any]: ...


def state_of(conn: Conn) -> ServerState:
    """The server's shared state (Edge puts it in the ASGI scope)."""
    st: ServerState = conn.scope["cs_st"]
    return st


def ctx_of(conn: Conn) -> Ctx:
    """Who is asking, against which store (resolved by the guard, ``authorize``)."""
    ctx: Ctx = conn.scope["cs_ctx"]
    return ctx


def header(conn: Conn, name: str) -> str | None:
    """A request header the server reads (Edge copied them out of the scope once, so no
    route pays for Litestar's Headers object); ``name`` is lower case."""
    found: dict[str, str] = conn.scope["cs_h"]
    return found.get(name)


# -- answers ----------------------------------------------------------------------------

_CTYPES = {t: (b"content-type", t.encode("latin-1")) for t in (JSON, MSGPACK, PROBLEM_JSON)}


class Raw:
    """A finished response sent as two ASGI messages.

    Handlers return these instead of Litestar ``Response`` objects: Litestar hands an
    ASGI callable through untouched, skipping its per-response header and cookie
    machinery (measured: ~15 µs a request here).  The OpenAPI document still declares
    every status and body (``responses=`` on each route)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        media_type: str | None = JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        h: list[tuple[bytes, bytes]] = []
        if media_type is not None:
            ctype = _CTYPES.get(media_type)
            if ctype is None:
                ctype = (b"content-type", media_type.encode("latin-1"))
            h.append(ctype)
            h.append((b"content-length", b"%d" % len(body)))
        if headers:
            h.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        self.headers = h

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class RawStream:
    """A streamed response (server-sent events): headers, then each chunk the
    generator yields, until it ends or the client goes away."""

    __slots__ = ("chunks", "headers")

    def __init__(self, chunks: AsyncIterator[bytes], media_type: str, headers: dict[str, str]):
        self.chunks = chunks
        self.headers = [(b"content-type", media_type.encode("latin-1"))] + [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})

        async def pump() -> None:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watcher):
                task.cancel()
            for task in (streaming, watcher):
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        if not watcher.done() or watcher.cancelled():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def reply(
    request: Conn,
    obj: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Raw:
    """``obj`` encoded as the client's ``Accept`` asks: msgpack, else JSON."""
    accept = header(request, "accept")
    if accept is not None and "msgpack" in accept:
        return Raw(msgpack_encode(obj), status, MSGPACK, headers)
    return Raw(json_encode(obj), status, JSON, headers)


def not_found() -> HTTPProblem:
    return HTTPProblem(NotFound("no live item at this key"), 404)


def problem(exc: BaseException) -> Raw:
    """The problem answer for ``exc`` as a :class:`Raw`: the same document Litestar's
    exception handler sends (``problems.problem_response``), for the route the edge
    answers without Litestar."""
    resp = problem_response(exc)
    return Raw(resp.content, resp.status_code or 500, resp.media_type, resp.headers or None)


# -- bodies -----------------------------------------------------------------------------


def content_type(request: Request[Any, Any, Any]) -> str:
    """The body's media type: JSON (also ``+json``) or msgpack; anything else is 415."""
    raw = header(request, "content-type")
    if not raw:
        return JSON
    ctype = raw.split(";", 1)[0].strip().lower()
    if ctype in MSGPACK_TYPES:
        return ctype
    if ctype == JSON or ctype.endswith("+json"):
        return JSON
    raise HTTPProblem(
        InvalidRequest("content-type", f"must be {JSON} or {MSGPACK}, got {ctype!r}"), 415
    )


#: The status a request is counted under when its client disconnected before the
#: answer (nginx's convention): the client's doing, not a server error.
CLIENT_CLOSED = 499


class ClientDisconnected(ClawStateError):
    """The client closed the connection mid-request (e.g. mid-body).  Counted and
    logged as status 499, never as a 500: nothing on the server failed."""

    http_status = CLIENT_CLOSED


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` — by its
    Content-Length before reading anything, or while streaming a chunked body."""
    declared = header(request, "content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("content-length", "is not an integer") from None
        if size > limit:
            raise TooLarge("body", size, limit)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise TooLarge("body", None, limit)
            chunks.append(chunk)
    except InternalServerException:
        if request.scope.get("cs_gone"):  # set by Edge when http.disconnect arrived
            raise ClientDisconnected("the client went away before sending the whole body") from None
        raise
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def decode(request: Request[Any, Any, Any], limit: int, field: str) -> Any:
    """The body, read under ``limit`` and decoded; an empty body names ``field``."""
    ctype = content_type(request)
    data = await read_body(request, limit)
    if not data:
        raise InvalidRequest(field, "the request body is empty")
    return decode_body(data, ctype, field)


def convert(doc: Any, typ: type[T], field: str) -> T:
    """``doc`` as ``typ``; a mismatch is ``InvalidRequest`` naming the body's own field
    (``expected_version``, ``items[0]``, ``writes[1].op``) when msgspec says where it is,
    as the embedded API names its arguments, else ``field``."""
    try:
        return msgspec.convert(doc, typ)
    except msgspec.ValidationError as exc:
        text = str(exc)
        _, at, where = text.rpartition(" - at `$")
        if at and where.endswith("`") and len(where) > 2 and where[0] in ".[":
            field = where[1:-1] if where[0] == "." else where[:-1]
        raise InvalidRequest(field, f"the body does not have the expected shape: {text}") from None


async def body_as(request: Request[Any, Any, Any], typ: type[T], field: str, limit: int) -> T:
    """The body read under ``limit``, decoded and converted to ``typ``: the steps every
    route with a typed body takes, in one place so that each names its field once."""
    return convert(await decode(request, limit, field), typ, field)


class Configured(Protocol):
    """What the body limits read of a store: its configuration.  The ``Store`` is one,
    and so is the store an ``EventStore`` names (``es.store``), so an event route that
    holds only the event store bounds its body the same way."""

    @property
    def config(self) -> Config: ...


def limits_of(store: Configured) -> Limits:
    return store.config.limits


def value_limit(st: ServerState, store: Configured) -> int:
    """The most a one-value body may be.  Transport size is not stored size (JSON
    escapes, base64): allow headroom here and let the codec enforce max_value_bytes
    exactly on the encoded value."""
    return min(st.settings.max_body_bytes, 4 * limits_of(store).max_value_bytes + 65536)


def batch_limit(st: ServerState, store: Configured) -> int:
    """The most a many-values body (batch put, transaction, append) may be."""
    lim = limits_of(store)
    return min(st.settings.max_body_bytes, lim.max_batch * (4 * lim.max_value_bytes + 2048))


# -- parameters -------------------------------------------------------------------------


def strict_ints(request: Request[Any, Any, Any], *names: str) -> None:
    """Litestar reads an ``int`` query parameter leniently (``"1e3"`` is 1000); the
    store's rule is digits only (:func:`clawstate._validate.is_integer_text`), the same
    for a query parameter, a header and a CLI argument.  Handlers call this only when
    such a parameter was sent, so the common request pays nothing."""
    params = request.query_params
    for name in names:
        text = params.get(name)
        if text is not None and not is_integer_text(text):
            raise InvalidRequest(name, f"must be an integer (digits only), got {text[:40]!r}")


def item_key(key: str, store: Store) -> str:
    """The decoded key of a path segment, checked before any body is read."""
    k = unquote_key(key)
    check_key(k, limits_of(store).max_key_bytes)
    return k


#: Bounds of ``?heartbeat=`` on the SSE routes (seconds).  Below the floor a client
#: could make the server write keep-alives thousands of times a second.
HEARTBEAT_MIN = 1.0
HEARTBEAT_MAX = 3600.0

HeartbeatParam = Annotated[
    str | None,
    Parameter(
        query="heartbeat",
        required=False,
        description=f"SSE: seconds between keep-alive comments, {HEARTBEAT_MIN:g} to "
        f"{HEARTBEAT_MAX:g} (the server's own interval is the most it waits).",
    ),
]


def heartbeat_seconds(value: str | None, settings: ServerSettings) -> float:
    """The keep-alive interval of an SSE stream: the client's ``heartbeat`` within
    [HEARTBEAT_MIN, HEARTBEAT_MAX], never longer than the server's own setting.
    Anything else — not a number, NaN, infinite, out of range — is refused."""
    if value is None or value == "":
        return settings.heartbeat
    limits = f"between {HEARTBEAT_MIN:g} and {HEARTBEAT_MAX:g} seconds"
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidRequest("heartbeat", f"must be a number {limits}") from None
    if not HEARTBEAT_MIN <= seconds <= HEARTBEAT_MAX:  # also refuses NaN and inf
        raise InvalidRequest("heartbeat", f"must be {limits}, got {value[:40]!r}")
    return min(seconds, settings.heartbeat)


# -- running store calls ------------------------------------------------------------------


async def read_inline(st: ServerState, fn: Callable[..., T], *args: Any) -> T:
    """A point read: on the event loop where ``inline_reads`` says it is cheaper than
    the thread hand-off (SQLite in WAL mode, memory), else on the pool."""
    if st.inline_reads:
        return fn(*args)
    return await st.run(fn, *args)
