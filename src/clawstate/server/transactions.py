"""``POST /v1/transactions``: writes to several namespaces, and event appends,
committed atomically.

The route checks what the guard cannot (write scope on EVERY namespace and stream the
body names), then runs one facade transaction on the pool; what a transaction may
carry besides writes (``tx.events``) is :mod:`.event_tx`'s.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.types import ASGIApp

from .._wire import meta_of
from ..errors import InvalidRequest
from ..locks import fence_from_wire
from ..types import Item
from .event_tx import TxBody, TxReply, check_tx, run_event_tx, tx_allowed
from .guard import deny
from .http import batch_limit, convert, ctx_of, decode, limits_of, reply, state_of
from .locks import check_fences
from .openapi import IdemHeader, responses

__all__ = ["TX_ROUTES"]


@post(
    "/v1/transactions",
    opt={"auth": "token"},
    status_code=200,
    operation_id="transaction",
    summary="Commit writes to several namespaces atomically (needs write on each).",
    responses=responses(TxReply, 409, 413, 415),
    tags=["store"],
)
async def transaction(
    request: Request[Any, Any, Any], idempotency_key: IdemHeader = None
) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    body = convert(
        await decode(request, batch_limit(st, ctx.store), "transaction"), TxBody, "transaction"
    )
    p = ctx.principal
    for i, w in enumerate(body.writes):
        if not isinstance(w.namespace, str):
            raise InvalidRequest("namespace", f"must be a string, got {type(w.namespace).__name__}")
        w.check(i)  # no value/ttl/if_absent on a delete, a value on every put
    check_tx(body, limits_of(ctx.store).max_key_bytes)
    if not tx_allowed(p, body):
        await deny(st, request, p)
    fenced = [
        fence_from_wire(w.fence, f"writes[{i}].fence").name
        for i, w in enumerate(body.writes)
        if w.fence is not None
    ]
    if fenced:
        await check_fences(request, fenced)  # a fenced write also needs locks:<name>:read
    result, appended = await st.run(run_event_tx, ctx.store, body, idempotency_key)
    for w in body.writes:
        st.metrics.store_op(w.namespace, "tx_" + w.op)
    metas = [meta_of(r) if isinstance(r, Item) else r for r in result]
    return reply(request, TxReply(metas, appended))


TX_ROUTES: list[Any] = [transaction]
