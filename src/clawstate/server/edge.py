"""The edge: the raw ASGI wrapper in front of Litestar (raw paths, the headers the
routes read, request ids, timing and the access log)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from litestar.types import ASGIApp, Receive, Send

from .._wire import NAMESPACE_OPTIONS, PROBLEM_JSON, problem_doc
from ..errors import ClawStateError, InvalidRequest
from .control import TEST_CLOCK_HEADER, TEST_STORE_HEADER
from .guard import check
from .http import CLIENT_CLOSED, Raw, json_encode, problem
from .items import ITEM_READ, read_item
from .logs import request_id_var
from .state import ServerState

__all__ = ["ITEM_TEMPLATE", "SINGLE_HEADERS", "WANTED_HEADERS", "Edge", "EdgeConn"]

access_log = logging.getLogger("clawstate.server.access")

#: The request headers the server reads; Edge copies them out of the ASGI scope once,
#: so no route pays for Litestar's Headers object (``http.header`` reads the copy).
WANTED_HEADERS = frozenset(
    {
        b"authorization",
        b"accept",
        b"content-type",
        b"content-length",
        b"if-match",
        b"if-none-match",
        b"idempotency-key",
        b"last-event-id",
        b"x-request-id",
        NAMESPACE_OPTIONS.encode(),
        TEST_STORE_HEADER.encode(),
        TEST_CLOCK_HEADER.encode(),
    }
)

#: Headers a request may carry once only: a second ``Authorization`` (or condition, or
#: idempotency key, or body framing) is refused, never resolved by "the last one wins".
SINGLE_HEADERS = frozenset(
    {
        b"authorization",
        b"content-type",
        b"content-length",
        b"if-match",
        b"if-none-match",
        b"idempotency-key",
        NAMESPACE_OPTIONS.encode(),
        TEST_STORE_HEADER.encode(),
        TEST_CLOCK_HEADER.encode(),
    }
)

#: A well-formed one-item path (one non-empty segment each); the edge answers its GET.
_ITEM_PATH = re.compile(r"/v1/namespaces/([^/]+)/items/([^/]+)")
#: The route template Litestar would give it (metrics and audit records use it).
ITEM_TEMPLATE = "/v1/namespaces/{namespace}/items/{key}"


class EdgeConn:
    """A request the edge answers itself, as the guard and the route helpers read one
    (``http.Conn``): its scope and its path parameters."""

    __slots__ = ("path_params", "scope")

    def __init__(self, scope: Any, path_params: dict[str, Any]) -> None:
        self.scope = scope
        self.path_params = path_params


class Edge:
    """Raw ASGI wrapper around Litestar.

    * routes on the RAW path: keys travel percent-encoded as one segment, and letting
      the server decode ``%2F`` first would split them (Litestar also collapses ``//``);
      handlers decode the key segment themselves (:func:`clawstate._wire.unquote_key`);
    * gives every request an id (``X-Request-Id``: the client's if sane, else a new one),
      visible to every log line of the request;
    * times the request and counts it by route template and status;
    * answers ``GET`` of one item itself (``fast_reads``), the hottest route: the same
      guard (:func:`~.guard.check`) and the same handler body
      (:func:`~.items.read_item`) as through Litestar, without Litestar's routing,
      parameter parsing and middleware, which cost more than the read itself (measured
      in-process: ~38 → ~24 µs a GET, against ~18 µs for Litestar's empty handler).
      Anything else about the path (an empty segment, an extra one, another method)
      goes to Litestar as before.  Off when tracing wraps the app, so every request
      still gets its span.
    """

    def __init__(self, app: ASGIApp, st: ServerState, *, fast_reads: bool = True) -> None:
        self.app = app
        self.st = st
        self.fast_reads = fast_reads
        #: the server's shared state (run.py and tests reach it as ``app.state``)
        self.state = st
        self._pid = f"{os.getpid():x}"
        self._n = itertools.count(1)

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        if raw:
            # ASGI's raw_path holds no query string, but some servers and test clients
            # (Litestar's TestClient) leave it on: a '?' cannot be in a path, so cut it.
            raw = raw.partition(b"?")[0]
            try:
                scope["path"] = raw.decode("ascii")
            except UnicodeDecodeError:
                await _send_problem(
                    send, 400, InvalidRequest("path", "must be ASCII (percent-encode it)")
                )
                return
        found: dict[str, str] = {}
        wanted = WANTED_HEADERS
        for name, value in scope["headers"]:
            if name in wanted:
                text = name.decode("latin-1")
                if text in found and name in SINGLE_HEADERS:
                    # Two credentials (or two conditions) in one request: which one a
                    # proxy, a framework and this server each read would differ.
                    await _send_problem(
                        send,
                        400,
                        InvalidRequest(f"headers.{text}", "is given more than once; send it once"),
                    )
                    return
                found[text] = value.decode("latin-1")
        scope["cs_h"] = found
        scope["cs_st"] = self.st
        rid = found.get("x-request-id")
        # isascii first: str.isalnum() also takes "é", "²" or "١", which the ASCII echo
        # below could not encode (an exception out of the app: found by the fuzz pass).
        if rid is not None and not (
            0 < len(rid) <= 64
            and rid.isascii()
            and rid.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            rid = None
        if rid is None:
            rid = f"{self._pid}-{next(self._n):x}"
        rid_bytes = rid.encode("ascii")
        start = time.perf_counter()
        status = 500

        async def receive_wrapper() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope["cs_gone"] = True  # _read_body turns the cut body into a 499
            return message

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid_bytes)]
            await send(message)

        token = request_id_var.set(rid)
        try:
            item = _ITEM_PATH.fullmatch(scope["path"]) if self.fast_reads else None
            if item is not None and scope["method"] == "GET":
                await self._get_item(scope, item[1], item[2], send_wrapper)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", "?"))
            if scope.get("cs_gone") and status >= 500:
                status = CLIENT_CLOSED  # it failed because the client left
            self.st.metrics.observe_request(route, method, status, elapsed)
            if status == CLIENT_CLOSED:
                access_log.info("client disconnected", extra={"method": method, "route": route})
            elif self.st.settings.access_log or status >= 500:
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                    },
                )
            request_id_var.reset(token)

    async def _get_item(self, scope: Any, namespace: str, key: str, send: Send) -> None:
        scope["path_template"] = ITEM_TEMPLATE
        conn = EdgeConn(scope, {"namespace": namespace, "key": key})
        answer: Raw
        try:
            await check(conn, ITEM_READ)
            answer = await read_item(conn, namespace, key)
        except Exception as exc:  # answered as Litestar's exception handler would
            answer = problem(exc)
        await answer(scope, _no_body, send)


async def _no_body() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send_problem(send: Any, status: int, exc: ClawStateError) -> None:
    body = json_encode(problem_doc(exc, status))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
