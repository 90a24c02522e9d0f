"""Durable timers over HTTP: ``store.timers`` of the remote client.

Each operation is one ``_Call`` on ``/v1/timers`` (see ``server/timers.py``) run by the
sync or the async transport.  ``after=`` is measured on the server's clock.  Firing is
the worker's (next to the store), not the client's: there is no remote ``fire_due``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .._validate import check_key
from .._wire import quote_key
from ..timers import TimerPage, check_handler, due_time
from ..types import TimerInfo
from ._calls import _NO_BODY, _Call

if TYPE_CHECKING:
    from ._transport import _AsyncTransport, _Transport

__all__ = ["AsyncRemoteTimers", "RemoteTimers"]

_dec_info = msgspec.msgpack.Decoder(TimerInfo)
_dec_page = msgspec.msgpack.Decoder(TimerPage)
_dec_any = msgspec.msgpack.Decoder()


def _path(name: Any) -> str:
    check_key(name, field="name")
    return f"/v1/timers/{quote_key(name)}"


def _schedule_call(name: Any, handler: Any, at: Any, after: Any, payload: Any) -> _Call[TimerInfo]:
    body: dict[str, Any] = {"handler": check_handler(handler), "payload": payload}
    due_time(0.0, at, after)  # the same checks as the server's, before sending
    if at is not None:
        body["at"] = at
    if after is not None:
        body["after"] = after
    # Not idempotent: a lost answer may have scheduled it, and a timer that fired in
    # between would be scheduled (and fire) again.
    return _Call(
        "PUT", _path(name), None, body, None, False, lambda s, d: _dec_info.decode(d), "payload"
    )


def _cancel_call(name: Any) -> _Call[bool]:
    return _Call(
        "DELETE",
        _path(name),
        None,
        _NO_BODY,
        None,
        True,  # a second cancel answers False and changes nothing
        lambda s, d: bool(_dec_any.decode(d)["cancelled"]),
    )


def _get_call(name: Any) -> _Call[TimerInfo | None]:
    def parse(status: int, data: Any) -> TimerInfo | None:
        return None if status == 404 else _dec_info.decode(data)

    return _Call("GET", _path(name), None, _NO_BODY, None, True, parse)


def _list_call(prefix: Any, limit: Any, cursor: Any) -> _Call[TimerPage]:
    params: dict[str, Any] = {"prefix": prefix, "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    return _Call(
        "GET", "/v1/timers", params, _NO_BODY, None, True, lambda s, d: _dec_page.decode(d)
    )


class RemoteTimers:
    """``RemoteStore.timers``: :class:`clawstate.timers.Timers` over HTTP (no ``tx=``:
    schedule in a remote transaction is not offered; no firing)."""

    def __init__(self, t: _Transport) -> None:
        self._t = t

    def schedule(
        self,
        name: str,
        *,
        handler: str,
        at: float | None = None,
        after: float | str | None = None,
        payload: Any = None,
    ) -> TimerInfo:
        return self._t.call(_schedule_call(name, handler, at, after, payload))

    def cancel(self, name: str) -> bool:
        return self._t.call(_cancel_call(name))

    def get(self, name: str) -> TimerInfo | None:
        return self._t.call(_get_call(name))

    def list(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> TimerPage:
        return self._t.call(_list_call(prefix, limit, cursor))


class AsyncRemoteTimers:
    """``AsyncRemoteStore.timers``: :class:`RemoteTimers`, awaitable."""

    def __init__(self, t: _AsyncTransport) -> None:
        self._t = t

    async def schedule(
        self,
        name: str,
        *,
        handler: str,
        at: float | None = None,
        after: float | str | None = None,
        payload: Any = None,
    ) -> TimerInfo:
        return await self._t.call(_schedule_call(name, handler, at, after, payload))

    async def cancel(self, name: str) -> bool:
        return await self._t.call(_cancel_call(name))

    async def get(self, name: str) -> TimerInfo | None:
        return await self._t.call(_get_call(name))

    async def list(
        self, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> TimerPage:
        return await self._t.call(_list_call(prefix, limit, cursor))
