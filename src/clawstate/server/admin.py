"""Admin routes: store statistics, integrity check, sweep, tokens, and the audit
chain's verification.  Every one needs an admin token and leaves an audit record
(``guard.audit_admin``) before it answers."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post
from litestar.params import Parameter
from litestar.types import ASGIApp

from ..types import CheckReport
from .guard import audit_admin
from .http import convert, ctx_of, decode, reply, state_of
from .openapi import responses

__all__ = ["ADMIN_ROUTES", "AuditVerify", "TokenCreate", "TokenCreated", "TokenList"]


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    scopes: list[str]
    ttl: float | str | None = None
    note: str = ""
    rate: float | None = None


class TokenCreated(msgspec.Struct):
    id: str
    token: str
    scopes: list[str]
    expires_at: float | None


class TokenList(msgspec.Struct):
    tokens: list[Any]


class Revoked(msgspec.Struct):
    revoked: bool


class AuditVerify(msgspec.Struct):
    """``audit.AuditReport`` as the OpenAPI document declares it."""

    ok: bool
    records: int
    head: str
    problems: list[str]
    seq: int = 0
    first_bad: int | None = None
    checkpoint: int | None = None
    legacy_records: int = 0
    keyed: bool = False


@get(
    "/v1/admin/stats",
    opt={"auth": "admin"},
    operation_id="stats",
    summary="Namespaces with counts, bytes and policy; each backend's statistics.",
    responses=responses(dict[str, Any]),
    tags=["admin"],
)
async def admin_stats(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    data = await st.run(ctx.store.stats)
    await audit_admin(request, "stats")
    return reply(request, data)


@get(
    "/v1/admin/check",
    opt={"auth": "admin"},
    operation_id="check",
    summary="Verify the store's integrity (deep: decode every value).",
    responses=responses(CheckReport),
    tags=["admin"],
)
async def admin_check(
    request: Request[Any, Any, Any],
    deep: Annotated[bool, Parameter(query="deep", required=False)] = False,
) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    report = await st.run(ctx.store.check, deep=deep)
    await audit_admin(request, "check", deep=deep, ok=report.ok)
    return reply(request, {"problems": report.problems, "checked": report.checked, "ok": report.ok})


@post(
    "/v1/admin/sweep",
    opt={"auth": "admin"},
    status_code=200,
    operation_id="sweep",
    summary="Purge expired items, forgotten idempotency keys and old change-log rows.",
    responses=responses(dict[str, int]),
    tags=["admin"],
)
async def admin_sweep(request: Request[Any, Any, Any]) -> ASGIApp:
    st, ctx = state_of(request), ctx_of(request)
    totals = await st.run(ctx.store.sweep)
    await audit_admin(request, "sweep", **totals)
    return reply(request, totals)


@post(
    "/v1/admin/tokens",
    opt={"auth": "admin"},
    status_code=201,
    operation_id="createToken",
    summary="Create a token; its secret is in this answer only.",
    responses=responses(TokenCreated, 413, 415, ok_status=201),
    tags=["admin"],
)
async def create_token(request: Request[Any, Any, Any]) -> ASGIApp:
    st = state_of(request)
    body = convert(await decode(request, 65536, "token"), TokenCreate, "token")
    plaintext, rec = await st.run(
        st.tokens.create, body.scopes, ttl=body.ttl, note=body.note, rate=body.rate
    )
    await audit_admin(request, "token.create", id=rec.id, scopes=rec.scopes)
    return reply(request, TokenCreated(rec.id, plaintext, rec.scopes, rec.expires_at), 201)


@get(
    "/v1/admin/tokens",
    opt={"auth": "admin"},
    operation_id="listTokens",
    summary="Every token (ids, scopes, expiry, revocation; never secrets or hashes).",
    responses=responses(TokenList),
    tags=["admin"],
)
async def list_tokens(request: Request[Any, Any, Any]) -> ASGIApp:
    st = state_of(request)
    tokens = await st.run(st.tokens.list)
    await audit_admin(request, "token.list")
    return reply(request, TokenList(list(tokens)))


@delete(
    "/v1/admin/tokens/{token_id:str}",
    opt={"auth": "admin"},
    status_code=200,
    operation_id="revokeToken",
    summary="Revoke a token (kept, marked revoked, for the audit trail).",
    responses=responses(Revoked),
    tags=["admin"],
)
async def revoke_token(request: Request[Any, Any, Any], token_id: str) -> ASGIApp:
    st = state_of(request)
    revoked = await st.run(st.tokens.revoke, token_id)
    await audit_admin(request, "token.revoke", id=token_id[:64], revoked=revoked)
    return reply(request, Revoked(revoked))


@get(
    "/v1/admin/audit/verify",
    opt={"auth": "admin"},
    operation_id="verifyAudit",
    summary="Walk the audit log's hash chain.",
    responses=responses(AuditVerify),
    tags=["admin"],
)
async def verify_audit(request: Request[Any, Any, Any]) -> ASGIApp:
    from .audit import verify

    st = state_of(request)
    await st.audit.flush()
    report = await st.run(verify, st.store)
    await audit_admin(request, "audit.verify", ok=report.ok)
    return reply(request, report)


ADMIN_ROUTES: list[Any] = [
    admin_stats,
    admin_check,
    admin_sweep,
    create_token,
    list_tokens,
    revoke_token,
    verify_audit,
]
