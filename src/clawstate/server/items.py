"""Item routes: one item (get, put, delete) and a namespace's items (scan, query,
batch get and put, count, policy), and the list of namespaces.

Each handler calls ONE facade method.  A namespace is always the one the operator's
policy makes (``store.namespace(name)``): nothing in a request changes it (a request
carrying the old options header was refused by the guard).  Puts go through the
AsyncStore, whose write batcher group-commits the plain ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._wire import (
    IDEMPOTENCY_KEY,
    BatchGet,
    BatchPut,
    ItemMeta,
    ItemsByKey,
    ItemsMeta,
    format_etag,
    meta_of,
    parse_etag,
    unquote_key,
)
from ..config.limits import SERVER_MAX_QUERY_SCAN
from ..errors import InvalidRequest, VersionConflict
from ..locks import fence_from_wire
from ..store import Namespace, Store
from ..types import Item, Page
from .http import (
    Conn,
    Raw,
    batch_limit,
    body_as,
    ctx_of,
    decode,
    header,
    item_key,
    limits_of,
    not_found,
    read_inline,
    reply,
    state_of,
    strict_ints,
    value_limit,
)
from .locks import check_fences, fence_of_params
from .openapi import ITEM_PATH, IdemHeader, KeyParam, NsParam, responses
from .problems import HTTPProblem
from .state import ServerState

__all__ = [
    "ITEM_READ",
    "ITEM_ROUTES",
    "Count",
    "Deleted",
    "NamespaceList",
    "PolicyDoc",
    "read_item",
]


class Count(msgspec.Struct):
    count: int


class Deleted(msgspec.Struct):
    deleted: bool


class NamespaceList(msgspec.Struct):
    namespaces: list[str]


class PolicyDoc(msgspec.Struct):
    namespace: str
    policy: dict[str, Any]


#: What reading one item needs (the edge checks it too: it answers this route itself).
ITEM_READ = ("ns", "read")

#: A fenced write (see ``server/locks.py``): the lock's name and the lease's token.
FenceParam = Annotated[
    str | None,
    Parameter(
        query="fence",
        required=False,
        description="Fenced write: the lock name (needs locks:<name>:read); with fence_token.",
    ),
]
FenceTokenParam = Annotated[
    str | None,
    Parameter(
        query="fence_token",
        required=False,
        description="Fenced write: the lease's fencing token; refused (409 FencingError) "
        "once a newer lease of the lock exists.",
    ),
]


def _namespace(
    request: Request[Any, Any, Any], namespace: str
) -> tuple[ServerState, Store, Namespace]:
    """What every namespace route starts from: the server's state, the caller's store
    and the namespace as the operator's policy makes it."""
    store = ctx_of(request).store
    return state_of(request), store, store.namespace(namespace)


def _counted(
    request: Request[Any, Any, Any],
    namespace: str,
    op: str,
    result: Any,
    n: int = 1,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Raw:
    """The reply to a namespace operation that ran, counted in the per-namespace metrics
    first: every item route ends this way, so none can forget the count."""
    state_of(request).metrics.store_op(namespace, op, n)
    return reply(request, result, status, headers)


@contextmanager
def _conflict_is_412(by_header: bool) -> Iterator[None]:
    """A version conflict on a write conditioned by a header (If-Match, If-None-Match)
    is 412 Precondition Failed; one on the ``if_version`` parameter stays the store's 409."""
    try:
        yield
    except VersionConflict as exc:
        if by_header:
            raise HTTPProblem(exc, 412) from None
        raise


@get(
    ITEM_PATH,
    opt={"auth": ITEM_READ},
    operation_id="getItem",
    summary="Read one item (ETag; If-None-Match answers 304).",
    responses=responses(Item, 304, 404),
    tags=["items"],
)
async def get_item(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    key: KeyParam,
) -> ASGIApp:
    return await read_item(request, namespace, key)


async def read_item(conn: Conn, namespace: str, key: str) -> Raw:
    """``GET`` one item, once the guard let the request in.  The hottest route: the
    edge calls this directly for a well-formed item path (``edge.Edge``), Litestar's
    handler above for everything else that routes here."""
    # Headers (If-None-Match) are read from Edge's copy and documented in
    # openapi.HEADERS: declaring them costs Litestar's extraction per request.
    st, ctx = state_of(conn), ctx_of(conn)
    if_none_match = header(conn, "if-none-match")
    ns = ctx.store.namespace(namespace)
    k = unquote_key(key)
    item = await read_inline(st, ns.get, k)
    st.metrics.store_op(namespace, "get")
    if item is None:
        raise not_found()
    etag = format_etag(item.etag)
    if if_none_match is not None:
        tags = parse_etag(if_none_match)
        if "*" in tags or item.etag in tags:
            return Raw(b"", 304, None, {"etag": etag})
    return reply(conn, item, headers={"etag": etag})


async def _precondition(
    st: ServerState, ns: Namespace, key: str, if_match: str | None, if_version: int | None
) -> int | None:
    """If-Match (by ETag) becomes a version check the store enforces atomically."""
    if if_match is None:
        return if_version
    tags = parse_etag(if_match)
    current = await st.run(ns.get, key)
    if current is None or ("*" not in tags and current.etag not in tags):
        raise HTTPProblem(
            VersionConflict(
                key,
                tags[0] if tags else None,
                None if current is None else current.version,
                namespace=ns.name,
            ),
            412,
        )
    if if_version is not None and if_version != current.version:
        raise HTTPProblem(VersionConflict(key, if_version, current.version, namespace=ns.name), 412)
    return current.version


@put(
    ITEM_PATH,
    opt={"auth": ("ns", "write")},
    status_code=200,
    operation_id="putItem",
    summary="Store a value (If-Match / If-None-Match: * / if_version; Idempotency-Key).",
    responses=responses(ItemMeta, 409, 412, 413, 415, extra_ok={201: (ItemMeta, "Created.")}),
    tags=["items"],
)
async def put_item(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    key: KeyParam,
    ttl: Annotated[
        float | None, Parameter(query="ttl", required=False, description="Seconds to live.")
    ] = None,
    if_version: Annotated[
        int | None,
        Parameter(query="if_version", required=False, description="Compare-and-set."),
    ] = None,
    keep_ttl: Annotated[
        bool,
        Parameter(
            query="keep_ttl",
            required=False,
            description="Keep the live item's expiry (a put without ttl drops it otherwise).",
        ),
    ] = False,
    fence: FenceParam = None,
    fence_token: FenceTokenParam = None,
) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    if_match = header(request, "if-match")
    if_none_match = header(request, "if-none-match")
    idempotency_key = header(request, IDEMPOTENCY_KEY)
    store = ctx.store
    ans = ctx.astore.namespace(namespace)
    k = item_key(key, store)
    if_absent = False
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise InvalidRequest("if-none-match", 'on a write only "*" (create-only) is supported')
        if_absent = True
    if if_version is not None:
        strict_ints(request, "if_version")
    lease = fence_of_params(fence, fence_token)
    if lease is not None:
        await check_fences(request, (lease.name,))
    value = await decode(request, value_limit(st, store), "value")
    header_condition = if_absent or if_match is not None
    if_version = await _precondition(st, ans.sync, k, if_match, if_version)
    with _conflict_is_412(header_condition):
        # Through the AsyncStore's write batcher: plain puts of this event-loop
        # iteration share one commit (clawstate._batch).
        item = await ans.put(
            k,
            value,
            ttl=ttl,
            if_version=if_version,
            if_absent=if_absent,
            idempotency_key=idempotency_key,
            keep_ttl=keep_ttl,
            fence=lease,
        )
    status = 201 if item.version == 1 else 200
    etag = {"etag": format_etag(item.etag)}
    return _counted(request, namespace, "put", meta_of(item), status=status, headers=etag)


@delete(
    ITEM_PATH,
    opt={"auth": ("ns", "write")},
    status_code=200,
    operation_id="deleteItem",
    summary="Delete a key; deleted is false when there was no live item.",
    responses=responses(Deleted, 409, 412),
    tags=["items"],
)
async def delete_item(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    key: KeyParam,
    if_version: Annotated[int | None, Parameter(query="if_version", required=False)] = None,
    if_match: Annotated[str | None, Parameter(header="if-match", required=False)] = None,
    idempotency_key: IdemHeader = None,
    fence: FenceParam = None,
    fence_token: FenceTokenParam = None,
) -> ASGIApp:
    st, store, ns = _namespace(request, namespace)
    k = item_key(key, store)
    if if_version is not None:
        strict_ints(request, "if_version")
    lease = fence_of_params(fence, fence_token)
    if lease is not None:
        await check_fences(request, (lease.name,))
    if_version = await _precondition(st, ns, k, if_match, if_version)
    with _conflict_is_412(if_match is not None):
        deleted = await st.run(
            ns.delete, k, if_version=if_version, idempotency_key=idempotency_key, fence=lease
        )
    return _counted(request, namespace, "delete", Deleted(deleted))


@get(
    "/v1/namespaces/{namespace:str}/items",
    opt={"auth": ("ns", "read")},
    operation_id="scanItems",
    summary="Live items in key order (UTF-8 bytes), one page; pass cursor for the next.",
    responses=responses(Page),
    tags=["items"],
)
async def scan_items(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    prefix: Annotated[str, Parameter(query="prefix", required=False)] = "",
    limit: Annotated[int, Parameter(query="limit", required=False, ge=1)] = 100,
    cursor: Annotated[str | None, Parameter(query="cursor", required=False)] = None,
) -> ASGIApp:
    st, _, ns = _namespace(request, namespace)
    strict_ints(request, "limit")
    return _counted(request, namespace, "scan", await st.run(ns.scan, prefix, limit, cursor))


@post(
    "/v1/namespaces/{namespace:str}/query",
    opt={"auth": ("ns", "read")},
    status_code=200,
    operation_id="queryItems",
    summary="Dapr state query (filter / sort / page) over the namespace's values.",
    responses=responses(Page, 413, 415),
    tags=["items"],
)
async def query_items(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    explain: Annotated[
        bool,
        Parameter(
            query="explain",
            required=False,
            description="Add the page's plan: index used, strategy, rows read.",
        ),
    ] = False,
) -> ASGIApp:
    st, store, ns = _namespace(request, namespace)
    query = await decode(request, min(st.settings.max_body_bytes, 1024 * 1024), "query")
    configured = store.config.limits.max_query_scan
    bound = SERVER_MAX_QUERY_SCAN if configured is None else configured
    page = await st.run(ns.query, query, explain=explain, max_scan=bound)
    return _counted(request, namespace, "query", page)


@post(
    "/v1/namespaces/{namespace:str}/batch/get",
    opt={"auth": ("ns", "read")},
    status_code=200,
    operation_id="getMany",
    summary="Read several keys; missing keys are left out.",
    responses=responses(ItemsByKey, 413, 415),
    tags=["items"],
)
async def get_many(
    request: Request[Any, Any, Any],
    namespace: NsParam,
) -> ASGIApp:
    st, store, ns = _namespace(request, namespace)
    limit = min(st.settings.max_body_bytes, limits_of(store).max_batch * 4200 + 1024)
    keys = (await body_as(request, BatchGet, "keys", limit)).keys
    return _counted(request, namespace, "get_many", ItemsByKey(await st.run(ns.get_many, keys)))


@post(
    "/v1/namespaces/{namespace:str}/batch/put",
    opt={"auth": ("ns", "write")},
    status_code=200,
    operation_id="putMany",
    summary="Write several items atomically: all or none (Idempotency-Key).",
    responses=responses(ItemsMeta, 409, 413, 415),
    tags=["items"],
)
async def put_many(
    request: Request[Any, Any, Any],
    namespace: NsParam,
    idempotency_key: IdemHeader = None,
) -> ASGIApp:
    st, store, ns = _namespace(request, namespace)
    body = await body_as(request, BatchPut, "items", batch_limit(st, store))
    lease = None if body.fence is None else fence_from_wire(body.fence)
    if lease is not None:
        await check_fences(request, (lease.name,))
    items = await st.run(
        ns.put_many, body.items, ttl=body.ttl, idempotency_key=idempotency_key, fence=lease
    )
    return _counted(request, namespace, "put", ItemsMeta([meta_of(i) for i in items]), len(items))


@get(
    "/v1/namespaces/{namespace:str}/count",
    opt={"auth": ("ns", "read")},
    operation_id="countItems",
    summary="How many live items the namespace holds.",
    responses=responses(Count),
    tags=["items"],
)
async def count_items(request: Request[Any, Any, Any], namespace: NsParam) -> ASGIApp:
    st, _, ns = _namespace(request, namespace)
    return _counted(request, namespace, "count", Count(await st.run(ns.count)))


@get(
    "/v1/namespaces/{namespace:str}/policy",
    opt={"auth": ("ns", "read")},
    sync_to_thread=False,
    operation_id="namespacePolicy",
    summary="The namespace's policy, as the server's configuration sets it.",
    responses=responses(PolicyDoc),
    tags=["items"],
)
def namespace_policy(
    request: Request[Any, Any, Any],
    namespace: NsParam,
) -> ASGIApp:
    ns = ctx_of(request).store.namespace(namespace)
    return reply(request, PolicyDoc(ns.name, msgspec.to_builtins(ns.policy)))


@get(
    "/v1/namespaces",
    opt={"auth": "token"},
    operation_id="listNamespaces",
    summary="Namespaces holding data that this token may read.",
    responses=responses(NamespaceList),
    tags=["store"],
)
async def list_namespaces(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    names = await st.run(ctx.store.namespaces)
    p = ctx.principal
    visible = [
        n for n in names if not n.startswith("_") and p is not None and p.allows("ns", n, "read")
    ]
    return reply(request, NamespaceList(visible))


ITEM_ROUTES: list[Any] = [
    get_item,
    put_item,
    delete_item,
    scan_items,
    query_items,
    get_many,
    put_many,
    count_items,
    namespace_policy,
    list_namespaces,
]
