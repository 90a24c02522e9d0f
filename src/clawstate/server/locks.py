"""Lock routes (``/v1/locks/{name}``) and the fence carried by fenced writes.

=========  ====================================================  ======================
POST       acquire: ``{"ttl", "wait", "owner"}`` -> Lease         ``locks:<name>:write``
PUT        renew: ``{"token", "ttl"}`` -> Lease                   ``locks:<name>:write``
DELETE     release: ``?token=`` -> ``{"released": bool}``          ``locks:<name>:write``
GET        the live lease, or 404                                 ``locks:<name>:read``
=========  ====================================================  ======================

Each route calls one method of ``AsyncStore.locks``: waiting for a held lock sleeps
on the event loop between attempts (no pool thread is held), for at most
:data:`SERVER_MAX_WAIT` seconds per request — the client repeats the request to wait
longer, so no request outlives an HTTP timeout.

**Fenced writes.**  A write made under a lease names the lock and the token: the item
``PUT``/``DELETE`` routes take ``?fence=<lock name>&fence_token=<token>``; a batch put
and each write of a transaction take ``"fence": {"name": ..., "token": ...}`` in the
body.  Besides the write's own scope, a fenced write needs ``locks:<name>:read``:
otherwise whether the write is refused (``409 FencingError``, naming the newest token)
would tell a caller about a lock it may not see.  The scope check comes before the
store is touched, so a refusal (403) says nothing about the lock.  Lock names that
start with ``_`` are the admin's, as for namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._validate import INT64_MAX, parse_int
from .._wire import decode_body, unquote_key
from ..errors import InvalidRequest
from ..locks import check_lock_name, check_wait
from ..types import Lease
from .auth import Principal
from .guard import deny
from .http import content_type, convert, ctx_of, decode, not_found, read_body, reply, state_of
from .openapi import responses

__all__ = [
    "LOCK_ROUTES",
    "SERVER_MAX_WAIT",
    "check_fences",
    "fence_of_params",
    "locks_allowed",
]

#: The longest one acquire request waits for a held lock (seconds): under the remote
#: client's default 30 s timeout, so no waiting request is cut off by it.
SERVER_MAX_WAIT = 20.0
#: Lock bodies are a few small fields.
_BODY_LIMIT = 8192
LOCK_PATH = "/v1/locks/{name:str}"


class AcquireBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/locks/{name}``: the lease's ttl, how long to wait, who holds it."""

    ttl: Any = 30
    wait: Any = 0
    owner: Any = None


class RenewBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/locks/{name}``: the lease's token and the new ttl (default: its own)."""

    token: Any
    ttl: Any = None


class Released(msgspec.Struct):
    released: bool


def locks_allowed(p: Principal | None, name: str, action: str) -> bool:
    """May ``p`` do ``action`` on the lock ``name``?  ``_`` names are the admin's."""
    if p is None:
        return False
    if name.startswith("_"):
        return p.admin
    return p.allows("locks", name, action)


async def check_fences(request: Any, names: Iterable[str]) -> None:
    """403 (audited) unless the caller may read every lock its fenced writes name."""
    p = ctx_of(request).principal
    if not all(locks_allowed(p, n, "read") for n in names):
        await deny(state_of(request), request, p)


def fence_of_params(name: str | None, token: str | None) -> Lease | None:
    """The fence of an item route, ``?fence=<name>&fence_token=<token>`` (both or
    neither), checked as hostile input."""
    if name is None and token is None:
        return None
    if name is None:
        raise InvalidRequest("fence", "is required with fence_token (the lock's name)")
    if token is None:
        raise InvalidRequest("fence_token", "is required with fence (the lease's token)")
    return Lease(
        check_lock_name(name, "fence"), "", parse_int(token, "fence_token", 1, INT64_MAX), 0.0
    )


def _lock_name(name: str) -> str:
    return check_lock_name(unquote_key(name))


def _token(doc: Any, field: str) -> int:
    if type(doc) is not int or not 1 <= doc <= INT64_MAX:
        raise InvalidRequest(field, f"must be an integer from 1 to {INT64_MAX}", limit=INT64_MAX)
    return doc


@post(
    LOCK_PATH,
    opt={"auth": ("locks", "write")},
    status_code=200,
    operation_id="acquireLock",
    summary="Acquire a lease (fencing token); waits up to wait seconds, then 409 LockTimeout.",
    responses=responses(Lease, 409, 413, 415),
    tags=["locks"],
)
async def acquire_lock(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    lock = _lock_name(name)
    raw = await read_body(request, _BODY_LIMIT)  # empty: every default
    doc = decode_body(raw, content_type(request), "lock") if raw else {}
    body = convert(doc, AcquireBody, "lock")
    if body.wait is None:
        raise InvalidRequest(
            "wait",
            f"over HTTP a request waits at most {SERVER_MAX_WAIT:g} seconds; the client "
            "repeats it to wait longer",
            limit=SERVER_MAX_WAIT,
        )
    wait = check_wait(body.wait)
    if wait is not None and wait > SERVER_MAX_WAIT:
        raise InvalidRequest(
            "wait",
            f"is {wait:g} seconds; one request waits at most {SERVER_MAX_WAIT:g} (the "
            "client repeats it to wait longer)",
            limit=SERVER_MAX_WAIT,
        )
    lease = await ctx.astore.locks.acquire(lock, ttl=body.ttl, wait=wait, owner=body.owner)
    return reply(request, lease)


@put(
    LOCK_PATH,
    opt={"auth": ("locks", "write")},
    status_code=200,
    operation_id="renewLock",
    summary="Renew a lease, keeping its token; 409 FencingError once it is lost.",
    responses=responses(Lease, 409, 413, 415),
    tags=["locks"],
)
async def renew_lock(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    lock = _lock_name(name)
    body = convert(await decode(request, _BODY_LIMIT, "lock"), RenewBody, "lock")
    lease = Lease(lock, "", _token(body.token, "token"), 0.0)
    renewed = await ctx.astore.locks.renew(lease, ttl=body.ttl)
    return reply(request, renewed)


@delete(
    LOCK_PATH,
    opt={"auth": ("locks", "write")},
    status_code=200,
    operation_id="releaseLock",
    summary="Release a lease; released is false if it was lost or already released.",
    responses=responses(Released),
    tags=["locks"],
)
async def release_lock(
    request: Request[Any, Any, Any],
    name: str,
    token: Annotated[
        str | None, Parameter(query="token", required=False, description="The lease's token.")
    ] = None,
) -> ASGIApp:
    ctx = ctx_of(request)
    lock = _lock_name(name)
    if token is None:
        raise InvalidRequest("token", "is required: the token of the lease to release")
    lease = Lease(lock, "", parse_int(token, "token", 1, INT64_MAX), 0.0)
    return reply(request, Released(await ctx.astore.locks.release(lease)))


@get(
    LOCK_PATH,
    opt={"auth": ("locks", "read")},
    operation_id="getLock",
    summary="The live lease on a lock (owner, token, expiry), or 404.",
    responses=responses(Lease, 404),
    tags=["locks"],
)
async def get_lock(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    lease = await ctx.astore.locks.get(_lock_name(name))
    if lease is None:
        raise not_found()
    return reply(request, lease)


LOCK_ROUTES: list[Any] = [acquire_lock, renew_lock, release_lock, get_lock]
