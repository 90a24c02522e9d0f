"""Operations routes: liveness, readiness, Prometheus metrics, and ``/v1/info``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get
from litestar.types import ASGIApp

from .. import __version__
from ..errors import BackendUnavailable, ClawStateError
from .http import Raw, ctx_of, reply, state_of
from .openapi import responses
from .problems import HTTPProblem

__all__ = ["OPS_ROUTES", "Health", "Info"]


class Health(msgspec.Struct):
    status: str


class Info(msgspec.Struct):
    server: str
    version: str
    limits: dict[str, Any]
    backends: list[str]
    token: str | None
    scopes: list[str]


@get(
    "/healthz",
    opt={"auth": "public"},
    sync_to_thread=False,
    operation_id="healthz",
    summary="Liveness: the process answers.",
    responses=responses(Health, authed=False),
    tags=["operations"],
)
def healthz(request: Request[Any, Any, Any]) -> ASGIApp:
    return reply(request, Health("ok"))


@get(
    "/readyz",
    opt={"auth": "public"},
    operation_id="readyz",
    summary="Readiness: the store answers and the server is not shutting down.",
    responses=responses(Health, 503, authed=False),
    tags=["operations"],
)
async def readyz(request: Request[Any, Any, Any]) -> ASGIApp:
    st = state_of(request)
    if st.stopping:
        raise HTTPProblem(BackendUnavailable("the server is shutting down"), 503)
    await st.run(st.store.backend.last_seq)
    return reply(request, Health("ready"))


@get(
    "/metrics",
    opt={"auth": "metrics"},
    operation_id="metrics",
    summary="Prometheus metrics (text exposition format).",
    responses=responses(str, ok_media="text/plain"),
    tags=["operations"],
)
async def metrics(request: Request[Any, Any, Any]) -> ASGIApp:
    st = state_of(request)
    st.metrics.sync_commits(st.store.backends)
    try:  # the head as the store has it now (any process may have moved it)
        st.metrics.set_audit_head(*await st.run(st.audit.load_head))
    except ClawStateError:
        pass  # metrics still answer when the store does not; the last head stays
    body, ctype = st.metrics.render()
    return Raw(body, 200, ctype)


@get(
    "/v1/info",
    opt={"auth": "token"},
    sync_to_thread=False,
    operation_id="info",
    summary="The server's version and limits, and the calling token's scopes.",
    responses=responses(Info),
    tags=["store"],
)
def info(request: Request[Any, Any, Any]) -> ASGIApp:
    ctx = ctx_of(request)
    p = ctx.principal
    return reply(
        request,
        Info(
            "clawstate",
            __version__,
            msgspec.to_builtins(ctx.store.config.limits),
            sorted(ctx.store.backends),
            None if p is None else p.id,
            [] if p is None else [str(s) for s in p.scopes],
        ),
    )


OPS_ROUTES: list[Any] = [healthz, readyz, metrics, info]
