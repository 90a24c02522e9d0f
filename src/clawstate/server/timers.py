"""Timer routes (``/v1/timers``): schedule, cancel, look up and list durable timers.

=========  =====================================================  =======================
PUT        schedule: ``{"handler", "at"|"after", "payload"}``      ``timers:<name>:write``
DELETE     cancel -> ``{"cancelled": bool}``                      ``timers:<name>:write``
GET        the scheduled timer, or 404                            ``timers:<name>:read``
GET list   ``/v1/timers?prefix=&limit=&cursor=``: the timers the   any token (filtered)
           token may read
=========  =====================================================  =======================

**Trust model.**  A timer's ``handler`` is only a name (``"module:function"``); the
server never imports it.  The worker (``clawstate worker``) does, and runs it with the
timer's payload.  So ``timers:<glob>:write`` lets its holder choose which importable
function the worker runs, with which arguments: grant it as you would grant running
code, and run the worker with ``--timer-handlers myapp.jobs`` (an allow-list of
modules) so a timer naming anything else fails at firing time with a clear error
(recorded in its ``last_error``, then parked).  Names starting with ``_`` (the
machines' timers) are the admin's.  Firing is not an HTTP route: it is the worker's.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, put
from litestar.params import Parameter
from litestar.types import ASGIApp

from .._validate import check_key
from .._wire import decode_body, unquote_key
from ..timers import TimerPage
from ..types import TimerInfo
from .http import (
    content_type,
    convert,
    ctx_of,
    not_found,
    read_body,
    reply,
    state_of,
    strict_ints,
)
from .openapi import responses

__all__ = ["TIMER_ROUTES"]

TIMER_PATH = "/v1/timers/{name:str}"


class ScheduleBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/timers/{name}``: what runs, when (one of ``at``/``after``), with what."""

    handler: Any
    at: Any = None
    after: Any = None
    payload: Any = None


class Cancelled(msgspec.Struct):
    cancelled: bool


def _name(name: str) -> str:
    key = unquote_key(name)
    check_key(key, field="name")
    return key


@put(
    TIMER_PATH,
    opt={"auth": ("timers", "write")},
    status_code=200,
    operation_id="scheduleTimer",
    summary="Schedule (or re-schedule) a durable timer; the worker runs its handler when due.",
    responses=responses(TimerInfo, 413, 415),
    tags=["timers"],
)
async def schedule_timer(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    timer = _name(name)
    raw = await read_body(request, state_of(request).settings.max_body_bytes)
    doc = decode_body(raw, content_type(request), "timer")
    body = convert(doc, ScheduleBody, "timer")
    info = await ctx.astore.timers.schedule(
        timer, handler=body.handler, at=body.at, after=body.after, payload=body.payload
    )
    return reply(request, info)


@delete(
    TIMER_PATH,
    opt={"auth": ("timers", "write")},
    status_code=200,
    operation_id="cancelTimer",
    summary="Cancel a timer; cancelled is false if it was not scheduled.",
    responses=responses(Cancelled),
    tags=["timers"],
)
async def cancel_timer(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    return reply(request, Cancelled(await ctx.astore.timers.cancel(_name(name))))


@get(
    TIMER_PATH,
    opt={"auth": ("timers", "read")},
    operation_id="getTimer",
    summary="A scheduled timer (due, handler, payload, attempts, last error), or 404.",
    responses=responses(TimerInfo, 404),
    tags=["timers"],
)
async def get_timer(request: Request[Any, Any, Any], name: str) -> ASGIApp:
    ctx = ctx_of(request)
    info = await ctx.astore.timers.get(_name(name))
    if info is None:
        raise not_found()
    return reply(request, info)


@get(
    "/v1/timers",
    opt={"auth": "token"},
    operation_id="listTimers",
    summary="Scheduled timers in name order, one page: those the token may read.",
    responses=responses(TimerPage),
    tags=["timers"],
)
async def list_timers(
    request: Request[Any, Any, Any],
    prefix: Annotated[str, Parameter(query="prefix", required=False)] = "",
    limit: Annotated[int, Parameter(query="limit", required=False, ge=1)] = 100,
    cursor: Annotated[str | None, Parameter(query="cursor", required=False)] = None,
) -> ASGIApp:
    ctx = ctx_of(request)
    strict_ints(request, "limit")
    page = await ctx.astore.timers.list(prefix, limit, cursor)
    p = ctx.principal
    # Filtered, not refused: a short page still carries the cursor to the next one.
    visible = [
        t
        for t in page.items
        if p is not None
        and (p.admin if t.name.startswith("_") else p.allows("timers", t.name, "read"))
    ]
    return reply(request, TimerPage(visible, page.cursor))


TIMER_ROUTES: list[Any] = [schedule_timer, cancel_timer, get_timer, list_timers]
