"""The guard: authentication, rate limits and scopes on every route, deny by default;
and the audit records of denials and admin actions.

``authorize`` runs before every handler (Litestar's ``before_request``).  A route
declares what it needs in ``opt={"auth": ...}``: ``"public"``, ``"token"`` (any valid
token), ``"admin"``, ``"metrics"``, or ``(kind, action)`` checked against the path's
namespace or stream.  A route that declares nothing is closed.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from litestar import Request

from .._wire import NAMESPACE_OPTIONS, unquote_key
from ..errors import Forbidden, InvalidRequest, RateLimited, Unauthorized
from .auth import Principal
from .control import TEST_CLOCK_HEADER, TEST_STORE_HEADER, apply_test_headers
from .http import Conn, ctx_of, header, state_of
from .logs import request_id_var
from .state import Ctx, ServerState

__all__ = ["audit_admin", "audit_denial", "authorize", "check", "client_addr", "deny"]

log = logging.getLogger("clawstate.server")


def client_addr(conn: Conn) -> str:
    client = conn.scope.get("client")
    return str(client[0]) if client else "?"


async def authorize(conn: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook for every route (a hook, not a guard: Litestar
    copies the handler object for each guard call, ~10 µs a request): :func:`check`
    against what the route declares in ``opt={"auth": ...}``."""
    await check(conn, conn.scope["route_handler"].opt.get("auth"))


async def check(conn: Conn, need: Any) -> None:
    """Authenticate, rate-limit and authorize one request needing ``need``; on success
    the request's :class:`Ctx` is in its scope (``http.ctx_of``)."""
    st = state_of(conn)
    if need == "public" or (need == "metrics" and st.settings.public_metrics):
        # no token, so no test header is read either: these routes use the server's store
        conn.scope["cs_ctx"] = Ctx(None, st.astore)
        return
    auth = header(conn, "authorization")
    result = st.tokens.verify_cached(auth)
    if result is None:
        result = await st.run(st.tokens.verify, auth)
    if not isinstance(result, Principal):
        st.metrics.denied.labels("401").inc()
        remote = client_addr(conn)
        # Counted, not written one by one: one audit record per address per interval.
        st.audit.note_failure(remote, str(result))
        wait = st.limiter.take(
            "addr:" + remote,
            st.settings.auth_failure_rate,
            2 * st.settings.auth_failure_rate,
        )
        if wait:
            raise RateLimited(wait)
        raise Unauthorized("a valid bearer token is required")
    principal = result
    # Only now, with the caller authenticated, is any test header looked at: before
    # this, a guess at a test store's id or a bad clock answered differently from 401.
    astore = st.astore
    if st.settings.test_control:
        astore = apply_test_headers(st, conn)
    elif header(conn, TEST_CLOCK_HEADER) is not None or header(conn, TEST_STORE_HEADER) is not None:
        raise InvalidRequest(
            "clock",
            "this server takes no client clock or test store (a test-only feature); "
            "open the store without clock=",
        )
    if header(conn, NAMESPACE_OPTIONS) is not None:
        # Namespace policy is the operator's (DESIGN.md, "Where policy lives"): this
        # header once reached store.namespace(name, **options), so any token could turn
        # encryption off, point cache_l2 at any host or switch write-back on.  Refused,
        # not ignored, so a client that still sends it learns why nothing changes.
        raise InvalidRequest(
            NAMESPACE_OPTIONS,
            "namespace policy is set in the server's configuration (the "
            "[namespaces.<name>] tables of its clawstate.toml), never by a request; "
            "remove this header",
        )
    rate = principal.rate or st.settings.rate_limit
    if rate:
        burst = st.settings.rate_burst or 2 * rate
        wait = st.limiter.take(principal.id, rate, burst)
        if wait:
            st.metrics.denied.labels("429").inc()
            raise RateLimited(wait)
    if not _allowed(principal, need, conn):
        await deny(st, conn, principal)
    conn.scope["cs_ctx"] = Ctx(principal, astore)


def _allowed(principal: Principal, need: Any, conn: Conn) -> bool:
    if need == "token":
        return True
    if need == "admin":
        return principal.admin
    if need == "metrics":
        return principal.has("metrics")
    if isinstance(need, tuple) and len(need) == 2:
        kind, action = need
        # ns routes name {namespace}, event routes {stream}, the others {name}
        param = "namespace" if kind == "ns" else "stream" if kind == "events" else "name"
        name = conn.path_params.get(param)
        if kind != "ns" and isinstance(name, str):
            name = unquote_key(name)  # streams and lock names travel percent-encoded, like keys
        if not isinstance(name, str) or name.startswith("_"):
            return principal.admin
        return principal.allows(kind, name, action)
    return False  # a route that declares nothing is closed


async def deny(st: ServerState, conn: Conn, principal: Principal | None) -> NoReturn:
    """Count, audit and refuse (403) a request the token's scopes do not cover — for
    the checks a route makes itself, beyond its declared need (a transaction's
    namespaces, a watch's filter)."""
    st.metrics.denied.labels("403").inc()
    await audit_denial(st, conn, 403, "scope", principal)
    raise Forbidden("this token's scopes do not allow this request")


async def audit_denial(
    st: ServerState,
    conn: Conn,
    status: int,
    reason: str,
    principal: Principal | None,
) -> None:
    """One audit record (and a log line) for a refused request."""
    route = conn.scope.get("path_template") or "?"
    entry: dict[str, Any] = {
        "action": "denied",
        "status": status,
        "reason": reason,
        "actor": None if principal is None else principal.id,
        "method": conn.scope.get("method", "?"),
        "route": route,
        "request_id": request_id_var.get(),
        "remote": client_addr(conn),
    }
    ns = conn.path_params.get("namespace")
    if isinstance(ns, str):
        entry["namespace"] = ns[:200]
    await st.audit.record(entry)
    log.info("denied", extra={"status": status, "route": route, "reason": reason})


async def audit_admin(request: Request[Any, Any, Any], action: str, **detail: Any) -> None:
    """The audit record of an admin action, written before the answer goes out."""
    ctx = ctx_of(request)
    entry: dict[str, Any] = {
        "action": action,
        "status": 200,
        "actor": None if ctx.principal is None else ctx.principal.id,
        "method": request.method,
        "route": request.scope.get("path_template") or "?",
        "request_id": request_id_var.get(),
        "remote": client_addr(request),
    }
    if detail:
        entry["detail"] = detail
    await state_of(request).audit.record(entry, wait=True)
