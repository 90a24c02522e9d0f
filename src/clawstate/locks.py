"""Leases and locks with fencing tokens: ``store.lock(name)`` and ``store.locks``.

A lease is two rows, written together in ONE unit by the acquire:

* ``_locks/<name>`` = ``{"owner", "expires_at", "ttl", "id"}``, stored **with a TTL of
  the lease's ttl**.  Holding the lock means this row is live.  The acquire is a
  create-only put (``if_absent``): the backend counts an expired row as absent, so
  the same single write takes a free lock *and* takes over an expired lease — no read
  first, one round trip whether the lock was free, released or abandoned.
* ``_fences/<name>`` = ``{"id"}``, no TTL, written unconditionally by every acquire:
  its version is the lease's **fencing token**.  Row versions never repeat or go back
  (the version floors of ``backends/_apply.py``), so tokens strictly increase per name
  on every backend, across processes and servers.  ``id`` (random per acquire, also
  in the lock row) lets :meth:`Locks.get` tell that the two rows it read belong to
  the same lease.

A write made under a lease carries ``fence=lease`` (see :mod:`clawstate._fence`): the
storage refuses it with :class:`~clawstate.FencingError` unless the fence row's
version is the lease's token, i.e. once a newer lease exists (or for a token never
granted).  :meth:`Locks.release`
and :meth:`Locks.renew` are themselves fenced writes of the lock row, so a holder
whose lease was taken over can neither free nor extend the new holder's lease.

Time: a lease's expiry is its acquirer's clock (``store._clock()``) plus the ttl, and
whoever acquires next judges "expired" by its own clock, so processes sharing a lock
need clocks that agree to well within the ttl (NTP).  Safety does not depend on it:
a holder that outlives its lease (a pause, a skewed clock) has its fenced writes
refused by the storage.  Waiting (``wait=``) is measured on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from ._fence import FENCES, check_fence, fence_write
from ._namespace import NamespaceHost
from ._validate import INT64_MAX, check_key, shown
from .backends.base import OP_DELETE, Write, WriteUnit
from .config.units import parse_duration
from .errors import (
    ClawStateError,
    ConfigError,
    FencingError,
    InvalidRequest,
    LockTimeout,
    VersionConflict,
)
from .types import Lease

if TYPE_CHECKING:
    from ._awaitable import RunsSync as _Runner
    from ._namespace import Namespace


class Store(NamespaceHost, Protocol):
    """What the locks need of their store (:class:`clawstate.Store` satisfies it): a
    Protocol, not the class, so ``store.py`` (which builds :class:`Locks`) and this
    module do not import each other."""

    def _system_namespace(self, name: str, *, indexes: tuple[str, ...] = ()) -> Namespace: ...


__all__ = [
    "LOCKS",
    "AsyncLockContext",
    "AsyncLocks",
    "LockContext",
    "Locks",
    "check_lock_name",
    "check_owner",
    "check_ttl",
    "check_wait",
    "default_owner",
    "fence_from_wire",
    "fence_to_wire",
]

#: The system namespace holding one row per held lock (live while the lease is).
LOCKS: Final = "_locks"
#: A lease lasts at most a day: longer leases are renewed (``renew=True``).
MAX_TTL: Final = 86400.0
#: ``wait`` is at most a day too (``None`` waits forever).
MAX_WAIT: Final = 86400.0
#: Lock names are keys of the lock namespaces.
MAX_NAME_BYTES: Final = 1024
MAX_OWNER_BYTES: Final = 256
#: Waiting for a held lock: first retry after this, growing to ``_MAX_BACKOFF``.
_FIRST_BACKOFF: Final = 0.005
_MAX_BACKOFF: Final = 0.1

#: Distinguishes this process from an earlier one that had the same pid.
_PROCESS_NONCE: Final = secrets.token_hex(4)
_HOST: Final = socket.gethostname()[:64] or "host"


def default_owner() -> str:
    """``host/pid/thread/nonce``: unique per process and thread, and readable in
    ``clawstate locks get`` (who holds it).  The owner names a holder; it grants
    nothing — the fencing token does."""
    return f"{_HOST}/{os.getpid()}/{threading.get_ident()}/{_PROCESS_NONCE}"


def check_lock_name(name: Any, field: str = "name") -> str:
    check_key(name, MAX_NAME_BYTES, field=field)
    return str(name)


def check_owner(owner: Any, field: str = "owner") -> str:
    check_key(owner, MAX_OWNER_BYTES, field=field)
    return str(owner)


def _seconds(value: Any, field: str, maximum: float, what: str) -> float:
    """A positive number of seconds or a duration string (``"30s"``), at most ``maximum``."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value, field=field)
        except ConfigError as exc:
            raise InvalidRequest(field, str(exc).partition(": ")[2] or str(exc)) from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(
            field, f'must be {what} (a number, or a duration such as "30s"), got {shown(value)}'
        )
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequest(field, f"must be a finite number of seconds >= 0, got {shown(value)}")
    if seconds > maximum:
        raise InvalidRequest(
            field, f"is {shown(value)}; the limit is {maximum:g} seconds", limit=maximum
        )
    return seconds


def check_ttl(ttl: Any, field: str = "ttl") -> float:
    """A lease's duration: > 0 and at most :data:`MAX_TTL` (a day)."""
    seconds = _seconds(ttl, field, MAX_TTL, "the lease's duration in seconds")
    if seconds <= 0:
        raise InvalidRequest(field, f"must be > 0 seconds, got {shown(ttl)}")
    return seconds


def check_wait(wait: Any, field: str = "wait") -> float | None:
    """How long to wait for a held lock: None (forever), 0 (not at all) or seconds."""
    if wait is None:
        return None
    if isinstance(wait, float) and math.isinf(wait) and wait > 0:
        raise InvalidRequest(field, "is infinite; pass wait=None to wait forever")
    return _seconds(wait, field, MAX_WAIT, "seconds to wait, or None for ever")


def fence_from_wire(doc: Any, field: str = "fence") -> Lease:
    """A fence as it travels in a request body, ``{"name": str, "token": int}``, checked
    as hostile input: exactly those two fields, a lock name, a token from 1 to 2**63-1
    (not a bool, a float, NaN or a numeral string).  Returned as a :class:`Lease`
    (owner and expiry unknown) for the facade's ``fence=``."""
    if type(doc) is not dict:
        raise InvalidRequest(field, f'must be {{"name": <lock>, "token": <int>}}, got {shown(doc)}')
    extra = sorted(str(k)[:40] for k in doc if k not in ("name", "token"))
    if extra:
        raise InvalidRequest(f"{field}.{extra[0]}", "is not a field of a fence (name, token)")
    for part in ("name", "token"):
        if part not in doc:
            raise InvalidRequest(
                f"{field}.{part}", "is required: a fence is a lock name and a token"
            )
    name, token = check_lock_name(doc["name"], f"{field}.name"), doc["token"]
    if type(token) is not int or not 1 <= token <= INT64_MAX:
        raise InvalidRequest(
            f"{field}.token",
            f"must be an integer from 1 to {INT64_MAX}, got {shown(token)}",
            limit=INT64_MAX,
        )
    return Lease(name, "", token, 0.0)


def fence_to_wire(fence: Any) -> dict[str, Any]:
    """``fence=`` (a :class:`Lease`) as a request body carries it (see :func:`fence_from_wire`)."""
    name, token = check_fence(fence)
    return {"name": name, "token": token}


def _new_id() -> str:
    return secrets.token_hex(8)


class _Retry:
    """The backoff between attempts at a held lock: grows, jittered, and never sleeps
    past the deadline nor (much) past the moment the holder's lease expires."""

    __slots__ = ("deadline", "delay", "start")

    def __init__(self, wait: float | None) -> None:
        self.start = time.monotonic()
        self.deadline = None if wait is None else self.start + wait
        self.delay = _FIRST_BACKOFF

    def waited(self) -> float:
        return time.monotonic() - self.start

    def next_sleep(self, holder_left: float | None) -> float | None:
        """Seconds to sleep before the next attempt, None when the wait is over."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return None
        sleep = self.delay * (0.5 + random.random())
        self.delay = min(self.delay * 2, _MAX_BACKOFF)
        if holder_left is not None and holder_left >= 0:
            sleep = min(sleep, holder_left + 0.001)
        if self.deadline is not None:
            sleep = min(sleep, self.deadline - now)
        return max(sleep, 0.0)


class Locks:
    """``store.locks``: acquire, renew, release and look up leases (see the module
    docstring).  ``store.lock(name)`` is the context manager over these."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._locks = self._own_namespace(LOCKS)
        self._fences = self._own_namespace(FENCES)
        if self._locks._backend is not self._fences._backend:
            raise ConfigError(
                f"namespaces.{LOCKS}.backend",
                f"{LOCKS} and {FENCES} must live on the same backend: a lease's two rows are "
                "written in one transaction",
            )
        self._backend = self._locks._backend

    def _own_namespace(self, name: str) -> Namespace:
        """The system namespace ``name``, never with a default TTL (a fence row must
        outlive every lease; a lock row's TTL is its lease's)."""
        ns = self._store._system_namespace(name)
        if ns.policy.default_ttl is not None:
            from ._namespace import Namespace

            policy = msgspec.structs.replace(ns.policy, default_ttl=None)
            ns = Namespace(self._store, name, policy)
        return ns

    # -- the operations ------------------------------------------------------------

    def try_acquire(self, name: str, ttl: float, owner: str) -> Lease | None:
        """One attempt, arguments already checked: the lease, or None while another
        holder's lease is live.  ONE unit: a create-only put of the lock row (an
        expired lease counts as absent, so this also takes it over) and an
        unconditional put of the fence row, whose new version is the token."""
        now = self._store._clock()
        lid = _new_id()
        expires = now + ttl
        row = {"owner": owner, "expires_at": expires, "ttl": ttl, "id": lid}
        lock_w = self._locks._put_write(name, row, ttl, None, True, now)
        fence_w = self._fences._put_write(name, {"id": lid}, None, None, False, now)
        try:
            out = self._backend.write(WriteUnit([lock_w, fence_w], now))
        except VersionConflict:
            return None  # the lock row is live: held by someone
        return Lease(name, owner, out[1].version, expires)

    def holder_left(self, name: str) -> float | None:
        """Seconds until the current holder's lease expires (None: not held now)."""
        item = self._locks.get(name)
        if item is None or item.expires_at is None:
            return None
        return item.expires_at - self._store._clock()

    def acquire(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = 0,
        owner: str | None = None,
    ) -> Lease:
        """The lease on ``name`` for ``ttl`` seconds, waiting up to ``wait`` seconds
        (``0``: not at all, ``None``: for ever) while someone else holds it, then
        :class:`LockTimeout`.  Not re-entrant: a second acquire by the same owner
        waits like anyone else's."""
        name = check_lock_name(name)
        seconds = check_ttl(ttl)
        budget = check_wait(wait)
        who = default_owner() if owner is None else check_owner(owner)
        retry = _Retry(budget)
        while True:
            lease = self.try_acquire(name, seconds, who)
            if lease is not None:
                return lease
            sleep = retry.next_sleep(None if budget == 0 else self.holder_left(name))
            if sleep is None:
                raise LockTimeout(name, round(retry.waited(), 3))
            time.sleep(sleep)

    def renew(self, lease: Lease, *, ttl: float | str | None = None) -> Lease:
        """Extend ``lease`` to ``ttl`` seconds from now (None: its own ttl again),
        keeping its token.  :class:`FencingError` when the lease is lost — taken over,
        released, or expired — and nothing is written: acquire again."""
        name, token = check_fence(lease, "lease")
        seconds = None if ttl is None else check_ttl(ttl)
        for _ in range(8):
            item = self._locks.get(name)
            if item is None or type(item.value) is not dict:
                raise self._lost(name, token)
            row = dict(item.value)
            if seconds is None:
                seconds = float(row.get("ttl") or 30.0)
            now = self._store._clock()
            row["expires_at"] = now + seconds
            row["ttl"] = seconds
            put = self._locks._put_write(name, row, seconds, item.version, False, now)
            try:
                self._backend.write(WriteUnit([fence_write(lease, "lease"), put], now))
            except VersionConflict:
                continue  # renewed (or expired and taken) meanwhile: look again
            return Lease(
                name, str(row.get("owner", getattr(lease, "owner", ""))), token, now + seconds
            )
        raise self._lost(name, token)

    def _lost(self, name: str, token: int) -> FencingError:
        fence = self._fences.get(name)
        return FencingError(name, token, None if fence is None else fence.version)

    def release(self, lease: Lease) -> bool:
        """Free ``lease``: True if it was live and is now released; False if it had
        expired, was released already, or was taken over (then the new holder's lease
        is untouched: the release is fenced by this lease's token).  One unit."""
        name, _ = check_fence(lease, "lease")
        now = self._store._clock()
        unit = WriteUnit(
            [fence_write(lease, "lease"), Write(LOCKS, name, OP_DELETE, None, None, None)], now
        )
        try:
            out = self._backend.write(unit)
        except FencingError:
            return False
        return out[-1].applied

    def get(self, name: str) -> Lease | None:
        """The live lease on ``name``, or None.  Reads the lock row and the fence row;
        their shared ``id`` proves they belong to one lease (else one was granted in
        between, and they are read again)."""
        name = check_lock_name(name)
        for _ in range(8):
            item = self._locks.get(name)
            if item is None:
                return None
            fence = self._fences.get(name)
            row = item.value
            if (
                fence is not None
                and type(row) is dict
                and type(fence.value) is dict
                and fence.value.get("id") == row.get("id")
            ):
                expires = item.expires_at if item.expires_at is not None else row["expires_at"]
                return Lease(name, str(row.get("owner", "")), fence.version, expires)
        raise ClawStateError(f"lock {name!r} changed hands 8 times while it was being read")


# -- the context managers: the same for the embedded store and the HTTP client -----------


class LockOps(Protocol):
    """What :class:`LockContext` needs: :class:`Locks` or the HTTP client's locks."""

    def acquire(
        self,
        name: str,
        *,
        ttl: float | str = ...,
        wait: float | str | None = ...,
        owner: str | None = ...,
    ) -> Lease: ...

    def renew(self, lease: Lease, *, ttl: float | str | None = ...) -> Lease: ...

    def release(self, lease: Lease) -> bool: ...


class LockContext:
    """``with store.lock(name, ttl=30, wait=None, renew=False) as lease:``.

    Acquires on entry (waiting up to ``wait``; :class:`LockTimeout` after it),
    releases on exit — also when the block raises.  ``renew=True`` runs a background
    thread renewing the lease every ttl/3 until the block ends; if the lease is lost
    anyway (the process stalled past the ttl), :attr:`lost` is set and fenced writes
    made under it are refused by the storage."""

    def __init__(
        self,
        ops: LockOps,
        name: str,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> None:
        check_lock_name(name)
        self._ttl = check_ttl(ttl)
        check_wait(wait)
        if renew is not True and renew is not False:
            raise InvalidRequest("renew", f"must be true or false, got {shown(renew)}")
        if owner is not None:
            check_owner(owner)
        self._ops = ops
        self._name = name
        self._wait = wait
        self._renew = renew
        self._owner = owner
        self.lease: Lease | None = None
        #: set when the background renewer found the lease taken over or expired
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        lease = self._ops.acquire(self._name, ttl=self._ttl, wait=self._wait, owner=self._owner)
        self.lease = lease
        if self._renew:
            self._thread = threading.Thread(
                target=self._renewing, name=f"clawstate-lock-{self._name[:32]}", daemon=True
            )
            self._thread.start()
        return lease

    def _renewing(self) -> None:
        period = self._ttl / 3
        while not self._stop.wait(period):
            lease = self.lease
            assert lease is not None
            try:
                self.lease = self._ops.renew(lease, ttl=self._ttl)
            except FencingError:
                self.lost = True
                return
            except ClawStateError:
                continue  # unreachable for now: the next period retries within the ttl

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lease = self.lease
        if lease is not None and not self.lost:
            self._ops.release(lease)


# -- async ---------------------------------------------------------------------------------


class AsyncLockOps(Protocol):
    async def acquire(
        self,
        name: str,
        *,
        ttl: float | str = ...,
        wait: float | str | None = ...,
        owner: str | None = ...,
    ) -> Lease: ...

    async def renew(self, lease: Lease, *, ttl: float | str | None = ...) -> Lease: ...

    async def release(self, lease: Lease) -> bool: ...


class AsyncLocks:
    """``astore.locks``: :class:`Locks` awaitable.  Each attempt runs on the store's
    pool; waiting for a held lock sleeps on the event loop, holding no pool thread."""

    def __init__(self, locks: Locks, run: _Runner) -> None:
        self.sync = locks
        self._run = run

    async def acquire(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = 0,
        owner: str | None = None,
    ) -> Lease:
        name = check_lock_name(name)
        seconds = check_ttl(ttl)
        budget = check_wait(wait)
        who = default_owner() if owner is None else check_owner(owner)
        retry = _Retry(budget)
        while True:
            lease = await self._run(self.sync.try_acquire, name, seconds, who)
            if lease is not None:
                return lease
            left = None if budget == 0 else await self._run(self.sync.holder_left, name)
            sleep = retry.next_sleep(left)
            if sleep is None:
                raise LockTimeout(name, round(retry.waited(), 3))
            await asyncio.sleep(sleep)

    async def renew(self, lease: Lease, *, ttl: float | str | None = None) -> Lease:
        return await self._run(self.sync.renew, lease, ttl=ttl)

    async def release(self, lease: Lease) -> bool:
        return await self._run(self.sync.release, lease)

    async def get(self, name: str) -> Lease | None:
        return await self._run(self.sync.get, name)


class AsyncLockContext:
    """``async with astore.lock(name, ...) as lease:`` — :class:`LockContext` on the
    event loop (the renewer is a task)."""

    def __init__(
        self,
        ops: AsyncLockOps,
        name: str,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> None:
        check_lock_name(name)
        self._ttl = check_ttl(ttl)
        check_wait(wait)
        if renew is not True and renew is not False:
            raise InvalidRequest("renew", f"must be true or false, got {shown(renew)}")
        if owner is not None:
            check_owner(owner)
        self._ops = ops
        self._name = name
        self._wait = wait
        self._renew = renew
        self._owner = owner
        self.lease: Lease | None = None
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lease:
        lease = await self._ops.acquire(
            self._name, ttl=self._ttl, wait=self._wait, owner=self._owner
        )
        self.lease = lease
        if self._renew:
            self._task = asyncio.get_running_loop().create_task(self._renewing())
        return lease

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            lease = self.lease
            assert lease is not None
            try:
                self.lease = await self._ops.renew(lease, ttl=self._ttl)
            except FencingError:
                self.lost = True
                return
            except ClawStateError:
                continue

    async def __aexit__(self, *exc: Any) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        lease = self.lease
        if lease is not None and not self.lost:
            await self._ops.release(lease)
