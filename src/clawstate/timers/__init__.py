"""Durable timers: "at 10:00 (or in 30 minutes) run this handler with this payload".

A timer is one row of the system namespace ``_timers``: its key is the timer's
name, its value a :class:`TimerRow`.  ``due`` is a declared index of that namespace
(``backends`` build it like any configured index: an expression index on SQLite and
PostgreSQL, a sorted set on Redis), so "the timers due now, oldest first" is an
index range read whatever the number of timers scheduled later.

Scheduling, re-scheduling and cancelling are plain writes of that row, so they take
part in transactions: ``store.timers.schedule(..., tx=tx)`` commits the timer with
the rest of ``tx`` — how a state machine arms its timeouts in the transition that
enters a state, and cancels them in the one that leaves it.

Firing (``clawstate worker``) is the second half of this module: each due timer's
handler runs with a transaction, and the timer row's removal (conditional on the
version that was read) commits in that same transaction, so a timer fires
**exactly once in effect** — across worker crashes, several workers and a clock
that jumps back — for everything the handler writes through that transaction.
Effects outside the store (an e-mail) are at least once: they carry the firing's
``idempotency_key``, the same on every retry.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._validate import check_key, shown
from ..config.units import parse_duration
from ..errors import ConfigError, InvalidRequest, VersionConflict
from ..types import TimerInfo

if TYPE_CHECKING:
    from .._namespace import Namespace
    from .._transaction import Transaction
    from ..store import Store

__all__ = [
    "TIMERS",
    "AsyncTimers",
    "Firing",
    "TimerJob",
    "TimerPage",
    "TimerRow",
    "Timers",
    "check_handler",
]

_log = logging.getLogger("clawstate.timers")

#: The system namespace holding one row per scheduled timer.
TIMERS: Final = "_timers"
#: The index the due-timer reads use (see the module docstring).
DUE_INDEX: Final = ("due",)
#: ``"package.module:function"`` (the function may be a dotted attribute path).
_HANDLER_RE: Final = re.compile(
    r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*"
)
_MAX_HANDLER: Final = 512
#: ``at`` is Unix seconds: refuse what no clock reaches (year ~2286 is 1e10).
_MAX_AT: Final = 1e11
_MAX_AFTER: Final = 100 * 365 * 86400.0
#: A parked timer's ``due``: past every ``at`` accepted, so the due-index read never
#: returns it again; its original due time is kept in ``parked_due``.
PARKED_DUE: Final = 1e12
#: Defaults of :meth:`Timers.fire_due`.
MAX_ATTEMPTS: Final = 5
CLAIM_SECONDS: Final = 30.0
_BACKOFF_BASE: Final = 1.0
_BACKOFF_CAP: Final = 300.0
_MAX_LIMIT: Final = 10_000


class TimerRow(msgspec.Struct, omit_defaults=True):
    """A timer as stored (the value of its ``_timers`` row).

    ``id`` is fixed when the timer is scheduled: the firing's idempotency key is built
    from it, so every retry of one scheduled firing carries the same key while a
    re-scheduled timer (a new ``id``) gets a new one.  ``claimed_until`` / ``owner``
    mark a worker's claim (other workers skip the row until the claim lapses).
    """

    due: float
    handler: str
    id: str
    created_at: float
    payload: Any = None
    attempts: int = 0
    last_error: str | None = None
    claimed_until: float | None = None
    owner: str | None = None
    parked_due: float | None = None


class TimerPage(msgspec.Struct, frozen=True, gc=False):
    """One page of :meth:`Timers.list`; ``cursor`` is ``None`` on the last page."""

    items: list[TimerInfo]
    cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def check_handler(handler: Any, field: str = "handler") -> str:
    """``"package.module:function"``: what the worker imports to fire the timer."""
    if type(handler) is not str:
        raise InvalidRequest(
            field, f'must be a string "package.module:function", got {type(handler).__name__}'
        )
    if len(handler) > _MAX_HANDLER:
        raise InvalidRequest(
            field, f"is {len(handler)} characters; the limit is {_MAX_HANDLER}", limit=_MAX_HANDLER
        )
    if not _HANDLER_RE.fullmatch(handler):
        raise InvalidRequest(
            field, f'must look like "package.module:function", got {shown(handler)}'
        )
    return handler


def due_time(now: float, at: Any, after: Any) -> float:
    """The Unix time a timer is due: exactly one of ``at`` (Unix seconds) and ``after``
    (seconds or a duration such as ``"30m"``) is given."""
    if (at is None) == (after is None):
        raise InvalidRequest("at", "give exactly one of at= (Unix seconds) and after= (a delay)")
    if after is not None:
        try:
            delay = parse_duration(after, field="after")
        except ConfigError as exc:
            raise InvalidRequest("after", str(exc).partition(": ")[2]) from None
        if delay > _MAX_AFTER:
            raise InvalidRequest(
                "after", f"is {shown(after)}; the limit is 100 years", limit=_MAX_AFTER
            )
        return now + delay
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise InvalidRequest("at", f"must be Unix seconds (a number), got {type(at).__name__}")
    try:
        when = float(at)
    except OverflowError:
        when = math.inf
    if not math.isfinite(when) or not 0 <= when <= _MAX_AT:
        raise InvalidRequest(
            "at", f"must be Unix seconds between 0 and {_MAX_AT:g}, got {shown(at)}"
        )
    return when


def _info(name: str, row: TimerRow) -> TimerInfo:
    due = row.due if row.parked_due is None else row.parked_due
    return TimerInfo(
        name, due, row.handler, row.payload, row.created_at, row.attempts, row.last_error
    )


class Firing:
    """What a handler receives: ``handler(firing)``.

    ``tx`` is an open transaction; everything the handler writes through it commits
    together with the timer row's removal, or not at all (exactly once in effect).
    ``idempotency_key`` is the same on every attempt of one scheduled firing and
    different after a re-schedule: effects outside the store carry it (at least once).
    """

    __slots__ = ("attempt", "due", "idempotency_key", "name", "payload", "store", "tx")

    def __init__(
        self,
        name: str,
        payload: Any,
        due: float,
        attempt: int,
        idempotency_key: str,
        store: Store,
        tx: Transaction,
    ) -> None:
        self.name = name
        self.payload = payload
        self.due = due
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.store = store
        self.tx = tx

    def __repr__(self) -> str:
        return f"Firing({self.name!r}, due={self.due}, attempt={self.attempt})"


Handler = Callable[[Firing], Any]
_Rows = list[tuple[str, TimerRow, int]]


def _backoff(attempts: int) -> float:
    """Seconds before retry ``attempts`` (1, 2, 4 … capped at five minutes)."""
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** min(attempts - 1, 30)))


def check_allowed(modules: Iterable[str] | None) -> tuple[str, ...] | None:
    """The handler allow-list: module names (``"myapp.jobs"``) whose functions — or
    whose submodules' functions — may run as handlers; ``None`` allows every module."""
    if modules is None:
        return None
    if isinstance(modules, str):
        raise ConfigError("timers.handlers", "must be a list of module names, got a string")
    out = []
    for m in modules:
        if type(m) is not str or not _MODULE_RE.fullmatch(m):
            raise ConfigError("timers.handlers", f"{shown(m)} is not a module name")
        out.append(m)
    return tuple(out)


_MODULE_RE: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class _Resolver:
    """Imports ``"module:function"`` handlers once each (the cache) and refuses a
    module outside the allow-list before importing it."""

    def __init__(self, allowed: tuple[str, ...] | None) -> None:
        self.allowed = allowed
        self._cache: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def __call__(self, spec: str) -> Handler:
        fn = self._cache.get(spec)
        if fn is not None:
            return fn
        module, _, attr = spec.partition(":")
        if self.allowed is not None and not any(
            module == a or module.startswith(a + ".") for a in self.allowed
        ):
            raise ConfigError(
                "handler",
                f"timer handler {spec!r}: module {module!r} is not in the worker's "
                f"allow-list [timers] handlers = {list(self.allowed)!r}",
            )
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise ConfigError("handler", f"timer handler {spec!r} is not callable")
        with self._lock:
            self._cache[spec] = obj
        return obj  # type: ignore[no-any-return]


_decode_row = msgspec.convert


class Timers:
    """``store.timers``: schedule, cancel and look up durable timers (see the module
    docstring); the worker fires them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ns_cache: Namespace | None = None
        self._resolver = _Resolver(None)
        #: Fire lags (fired_at - due, seconds) of the latest firings, for metrics.
        self.lags: deque[float] = deque(maxlen=10_000)
        self.fired = 0
        self.failed = 0
        self.parked = 0
        self._owner = uuid.uuid4().hex

    def allow_handlers(self, modules: Iterable[str] | None) -> None:
        """Restrict the handlers :meth:`fire_due` runs to functions of these modules
        (and their submodules); ``None`` lifts the restriction.  A timer naming another
        module fails at firing time with a clear error (retried, then parked)."""
        self._resolver = _Resolver(check_allowed(modules))

    @property
    def _ns(self) -> Namespace:
        ns = self._ns_cache
        if ns is None:
            ns = self._ns_cache = self._store._system_namespace(TIMERS, indexes=DUE_INDEX)
        return ns

    def schedule(
        self,
        name: str,
        *,
        handler: str,
        at: float | None = None,
        after: float | str | None = None,
        payload: Any = None,
        tx: Transaction | None = None,
    ) -> TimerInfo:
        """Schedule (or re-schedule: a timer of the same name is replaced) the timer
        ``name`` to run ``handler`` with ``payload`` at ``at`` or ``after`` from now.

        With ``tx`` the timer is written in that transaction and exists only if it
        commits."""
        check_key(name, field="name")
        handler = check_handler(handler)
        now = self._store._clock()
        due = due_time(now, at, after)
        row = TimerRow(due, handler, uuid.uuid4().hex, now, payload)
        value = msgspec.to_builtins(row)
        if tx is None:
            self._ns.put(name, value)
        else:
            tx._system_namespace(TIMERS).put(name, value)
        return _info(name, row)

    def cancel(self, name: str, *, tx: Transaction | None = None) -> bool:
        """Remove the timer ``name``; True if it was scheduled (with ``tx``: buffered,
        and True — whether it existed is known only at commit)."""
        check_key(name, field="name")
        if tx is not None:
            tx._system_namespace(TIMERS).delete(name)
            return True
        return self._ns.delete(name)

    def get(self, name: str) -> TimerInfo | None:
        """The scheduled timer ``name``, or None (never scheduled, fired or cancelled)."""
        check_key(name, field="name")
        item = self._ns.get(name)
        return None if item is None else _info(name, _decode_row(item.value, TimerRow))

    def list(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> TimerPage:
        """Scheduled timers whose name starts with ``prefix``, in name order."""
        page = self._ns.scan(prefix, limit, cursor)
        return TimerPage(
            [_info(it.key, _decode_row(it.value, TimerRow)) for it in page.items], page.cursor
        )

    # -- firing --------------------------------------------------------------------

    def _due_rows(self, now: float, limit: int) -> _Rows:
        """Rows due at ``now`` not claimed by another live claim: one range read of the
        ``due`` index (parked rows sit past every due time).  No sort: a sorted query
        is left to the database's planner, which (statistics taken on an empty
        namespace) scanned every timer on SQLite and PostgreSQL; the unsorted range is
        served by the index (checked with ``explain=True``).  So a batch is in key
        order, not due order — every due row is read before the worker sleeps."""
        page = self._ns.query({"filter": {"LTE": {"due": now}}, "page": {"limit": limit}})
        out = []
        for it in page.items:
            row = _decode_row(it.value, TimerRow)
            if row.claimed_until is not None and row.claimed_until > now:
                continue
            out.append((it.key, row, it.version))
        return out

    def _claim(self, rows: _Rows, now: float, claim_for: float) -> _Rows:
        """Mark ``rows`` as ours until ``now + claim_for`` with conditional puts: all in
        one transaction, and one by one when another worker got some of them first."""
        if not rows:
            return []

        def put_all(batch: _Rows) -> _Rows:
            with self._store.transaction() as tx:
                ns = tx._system_namespace(TIMERS)
                claimed = []
                for name, row, version in batch:
                    row = msgspec.structs.replace(
                        row, claimed_until=now + claim_for, owner=self._owner
                    )
                    ns.put(name, msgspec.to_builtins(row), if_version=version)
                    claimed.append((name, row))
            return [(n, r, it.version) for (n, r), it in zip(claimed, tx.result, strict=True)]  # type: ignore[union-attr]

        try:
            return put_all(rows)
        except VersionConflict:
            pass
        out: _Rows = []
        for one in rows:
            try:
                out.extend(put_all([one]))
            except VersionConflict:
                continue
        return out

    def fire_due(
        self,
        now: float | None = None,
        *,
        limit: int = 100,
        max_attempts: int = MAX_ATTEMPTS,
        claim_for: float = CLAIM_SECONDS,
    ) -> int:
        """Fire the timers due at ``now`` (the store's clock by default), at most
        ``limit`` of them; returns how many fired (their handler's transaction
        committed with the timer's removal).

        A batch is claimed first (conditional writes, one transaction) so concurrent
        workers do not run the same handler; a claim lapses after ``claim_for``
        seconds (a killed worker's timers are taken over).  A handler that raises
        is retried later with backoff (1 s, 2 s, 4 s … 5 min), with ``attempts`` and
        ``last_error`` recorded; after ``max_attempts`` the timer is *parked*: its row
        stays (``get``/``list`` show it with its error) but it is no longer due;
        re-scheduling it retries."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise InvalidRequest(
                "limit", f"must be an integer from 1 to {_MAX_LIMIT}", limit=_MAX_LIMIT
            )
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts <= 1000
        ):
            raise InvalidRequest("max_attempts", "must be an integer from 1 to 1000", limit=1000)
        if now is None:
            now = self._store._clock()
        elif isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise InvalidRequest(
                "now", f"must be a finite number of Unix seconds, got {shown(now)}"
            )
        claimed = self._claim(self._due_rows(float(now), limit), float(now), claim_for)
        fired = 0
        for name, row, version in claimed:
            if self._fire_one(name, row, version, max_attempts):
                fired += 1
        return fired

    def _fire_one(self, name: str, row: TimerRow, version: int, max_attempts: int) -> bool:
        store = self._store
        tx = store.transaction()
        firing = Firing(
            name, row.payload, row.due, row.attempts + 1, f"timer:{name}:{row.id}", store, tx
        )
        try:
            handler = self._resolver(row.handler)
            handler(firing)
            tx._system_namespace(TIMERS).delete(name, if_version=version)
            tx.commit()
        except VersionConflict:
            # Cancelled, re-scheduled or fired by someone else since our claim: our
            # effects are dropped with the transaction.
            tx.rollback()
            return False
        except Exception as exc:  # a handler's failure of any kind is recorded
            tx.rollback()
            self._failed(name, row, version, exc, max_attempts)
            return False
        self.fired += 1
        self.lags.append(max(0.0, store._clock() - row.due))
        return True

    def _failed(
        self, name: str, row: TimerRow, version: int, exc: BaseException, max_attempts: int
    ) -> None:
        attempts = row.attempts + 1
        error = f"{type(exc).__name__}: {exc}"[:1000]
        now = self._store._clock()
        if attempts >= max_attempts:
            new = msgspec.structs.replace(
                row,
                attempts=attempts,
                last_error=error,
                claimed_until=None,
                owner=None,
                due=PARKED_DUE,
                parked_due=row.due,
            )
            self.parked += 1
        else:
            new = msgspec.structs.replace(
                row,
                attempts=attempts,
                last_error=error,
                claimed_until=None,
                owner=None,
                due=now + _backoff(attempts),
            )
        self.failed += 1
        try:
            self._ns.put(name, msgspec.to_builtins(new), if_version=version)
        except VersionConflict:
            pass  # re-scheduled or cancelled meanwhile: that write wins

    def next_due(self, within: float | None = None) -> float | None:
        """The earliest time a scheduled (not parked) timer is due (or its claim
        lapses), or None.  ``within`` (seconds, what the worker passes): look only up
        to ``now + within`` — an index range read of at most 1,000 rows; when more are
        there, ``now`` (they are dense: fire again at once).  Without it, a sorted
        query over every timer."""
        if within is None:
            page = self._ns.query(
                {
                    "filter": {"LT": {"due": PARKED_DUE}},
                    "sort": [{"key": "due"}],
                    "page": {"limit": 1},
                }
            )
        else:
            now = self._store._clock()
            page = self._ns.query(
                {"filter": {"LTE": {"due": now + within}}, "page": {"limit": 1000}}
            )
            if page.cursor is not None:
                return now
        if not page.items:
            return None
        best: float | None = None
        for it in page.items:
            row = _decode_row(it.value, TimerRow)
            when = row.due if row.claimed_until is None else max(row.due, row.claimed_until)
            best = when if best is None else min(best, when)
        return best

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """``pending`` (every timer row, parked included: the namespace's count),
        ``overdue`` (due and not fired, counted up to 1,000) and the oldest overdue due
        time among those: an index range read, not a scan."""
        now = self._store._clock() if now is None else now
        page = self._ns.query({"filter": {"LTE": {"due": now}}, "page": {"limit": 1000}})
        dues = [_decode_row(it.value, TimerRow).due for it in page.items]
        oldest = min(dues) if dues else None
        return {
            "pending": self._ns.count(),
            "overdue": len(page.items),
            "oldest_overdue": oldest,
            "oldest_overdue_age": None if oldest is None else max(0.0, now - oldest),
        }

    def lag_p99(self) -> float | None:
        """p99 of the recent fire lags (seconds), None before the first firing."""
        lags = sorted(self.lags)
        return lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else None


from ._aio import AsyncTimers  # noqa: E402  (the sync classes above come first)
from ._job import TimerJob  # noqa: E402
