"""Leases over HTTP: ``store.locks`` and ``store.lock(...)`` of the remote client.

Each operation is one ``_Call`` (``/v1/locks/{name}``, see ``server/locks.py``), run by
the sync or the async transport.  Waiting longer than one request may is the
client's: it repeats the acquire with ``wait`` of at most :data:`CHUNK` seconds until
the lock is granted or its own ``wait`` runs out (then :class:`LockTimeout` with the
whole time waited).  The context managers are the embedded store's
(:class:`clawstate.locks.LockContext`), over these methods.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from .._fence import check_fence
from .._wire import quote_key
from ..errors import LockTimeout
from ..locks import check_lock_name, check_owner, check_ttl, check_wait, default_owner
from ..types import Lease
from ._calls import _NO_BODY, _Call

if TYPE_CHECKING:
    from ._transport import _AsyncTransport, _Transport

__all__ = ["CHUNK", "AsyncRemoteLocks", "RemoteLocks"]

#: The longest wait one acquire request asks the server for (the client repeats it).
CHUNK = 10.0

_dec_lease = msgspec.msgpack.Decoder(Lease)
_dec_any = msgspec.msgpack.Decoder()


def _path(name: str) -> str:
    return f"/v1/locks/{quote_key(name)}"


def _acquire_call(name: str, ttl: float, wait: float, owner: str) -> _Call[Lease]:
    # Not idempotent: a lost answer may have granted a lease (it expires after ttl).
    return _Call(
        "POST",
        _path(name),
        None,
        {"ttl": ttl, "wait": wait, "owner": owner},
        None,
        False,
        lambda s, d: _dec_lease.decode(d),
        "lock",
    )


def _renew_call(lease: Any, ttl: Any) -> _Call[Lease]:
    name, token = check_fence(lease, "lease")
    seconds = None if ttl is None else check_ttl(ttl)
    return _Call(
        "PUT",
        _path(name),
        None,
        {"token": token, "ttl": seconds},
        None,
        True,  # renewing twice is renewing
        lambda s, d: _dec_lease.decode(d),
        "lock",
    )


def _release_call(lease: Any) -> _Call[bool]:
    name, token = check_fence(lease, "lease")
    return _Call(
        "DELETE",
        _path(name),
        {"token": str(token)},
        _NO_BODY,
        None,
        True,  # a second release answers False and changes nothing
        lambda s, d: bool(_dec_any.decode(d)["released"]),
    )


def _get_call(name: Any) -> _Call[Lease | None]:
    name = check_lock_name(name)

    def parse(status: int, data: Any) -> Lease | None:
        return None if status == 404 else _dec_lease.decode(data)

    return _Call("GET", _path(name), None, _NO_BODY, None, True, parse)


class _Waiting:
    """The client side of a long wait: the chunks it asks the server for."""

    def __init__(self, name: Any, ttl: Any, wait: Any, owner: Any) -> None:
        self.name = check_lock_name(name)
        self.ttl = check_ttl(ttl)
        self.wait = check_wait(wait)
        self.owner = default_owner() if owner is None else check_owner(owner)
        self.start = time.monotonic()

    def chunk(self) -> float | None:
        """The next request's ``wait``; None when the wait is over."""
        if self.wait is None:
            return CHUNK
        left = self.wait - (time.monotonic() - self.start)
        if left <= 0 and self.wait > 0:
            return None
        return min(max(left, 0.0), CHUNK)

    def timeout(self) -> LockTimeout:
        return LockTimeout(self.name, round(time.monotonic() - self.start, 3))


class RemoteLocks:
    """``RemoteStore.locks``: :class:`clawstate.locks.Locks` over HTTP."""

    def __init__(self, t: _Transport) -> None:
        self._t = t

    def acquire(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = 0,
        owner: str | None = None,
    ) -> Lease:
        w = _Waiting(name, ttl, wait, owner)
        first = True
        while True:
            chunk = w.chunk()
            if chunk is None or (chunk == 0 and not first):
                raise w.timeout()
            first = False
            try:
                return self._t.call(_acquire_call(w.name, w.ttl, chunk, w.owner))
            except LockTimeout:
                if w.wait == 0:
                    raise w.timeout() from None

    def renew(self, lease: Lease, *, ttl: float | str | None = None) -> Lease:
        return self._t.call(_renew_call(lease, ttl))

    def release(self, lease: Lease) -> bool:
        return self._t.call(_release_call(lease))

    def get(self, name: str) -> Lease | None:
        return self._t.call(_get_call(name))


class AsyncRemoteLocks:
    """``AsyncRemoteStore.locks``: :class:`RemoteLocks`, awaitable."""

    def __init__(self, t: _AsyncTransport) -> None:
        self._t = t

    async def acquire(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = 0,
        owner: str | None = None,
    ) -> Lease:
        w = _Waiting(name, ttl, wait, owner)
        first = True
        while True:
            chunk = w.chunk()
            if chunk is None or (chunk == 0 and not first):
                raise w.timeout()
            first = False
            try:
                return await self._t.call(_acquire_call(w.name, w.ttl, chunk, w.owner))
            except LockTimeout:
                if w.wait == 0:
                    raise w.timeout() from None

    async def renew(self, lease: Lease, *, ttl: float | str | None = None) -> Lease:
        return await self._t.call(_renew_call(lease, ttl))

    async def release(self, lease: Lease) -> bool:
        return await self._t.call(_release_call(lease))

    async def get(self, name: str) -> Lease | None:
        return await self._t.call(_get_call(name))
