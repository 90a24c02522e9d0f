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

import math
import re
import uuid
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ._validate import check_key, shown
from .config.units import parse_duration
from .errors import ConfigError, InvalidRequest
from .types import TimerInfo

if TYPE_CHECKING:
    from ._namespace import Namespace
    from ._transaction import Transaction
    from .store import Store

__all__ = ["TIMERS", "TimerPage", "TimerRow", "Timers", "check_handler"]

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
    return TimerInfo(
        name, row.due, row.handler, row.payload, row.created_at, row.attempts, row.last_error
    )


_decode_row = msgspec.convert


class Timers:
    """``store.timers``: schedule, cancel and look up durable timers (see the module
    docstring); the worker fires them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ns_cache: Namespace | None = None

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
