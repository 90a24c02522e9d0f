"""Subscriptions: catch up on the global log, then follow it live.

A :class:`Subscription` is a :class:`clawstate._follow.Cursor` over the event log
(an :class:`~clawstate._follow.EventSource` with the subscription's filter): it
reads pages after its position until it reaches the end, then waits on the log's
shared waiter — one thread per event log, blocked in the backend's
``wait_for_events`` (SQLite: woken at once by commits of this process, by a 50 ms
poll for other processes; PostgreSQL: LISTEN/NOTIFY; memory: a condition
variable), however many subscriptions wait.  :meth:`Subscription.close` from
another thread wakes a blocked ``next()`` at once.  Because positions are
gap-free and in commit order, "every event after my position" is exact: nothing
that commits later can appear behind a reader.  A subscription that the log's
retention overtakes (its next events swept away before it read them) raises
:class:`~clawstate.errors.LogTrimmed` instead of skipping them.

Durable subscriptions (``subscribe(name="billing")``) keep their position as an
item of the ``_subscriptions`` namespace.  Delivery is at-least-once: an event
counts as processed when the consumer comes back for the next one (or calls
:meth:`Subscription.commit`); the checkpoint is saved every ``checkpoint_every``
processed events, whenever the subscription catches up and is about to wait,
and on :meth:`~Subscription.close`.  A consumer killed in between resumes after
the last saved checkpoint and sees the events since then again — never fewer.

One consumer per durable name at a time, enforced by a **lease** kept in the
same item: opening a durable subscription takes the lease for ``lease`` seconds
(:data:`LEASE`, 30 by default), every checkpoint renews it, an idle subscription
renews it every ``lease / 3`` seconds while it waits, and ``close()`` releases it.
A second consumer of a leased name is refused at once with a
:class:`~clawstate.errors.VersionConflict` naming the subscription and when the
lease runs out; a consumer that crashed holds the name only until its lease
expires.  A consumer that stops iterating for longer than its lease (a handler
stuck in one event) may find the name taken when it comes back: its next
checkpoint then raises VersionConflict instead of overwriting the new owner's.
Lease times are the store's clock (``open(clock=...)``).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from .._follow import Cursor, EventSource
from .._validate import (
    INT64_MAX,
    check_event_filter,
    check_int,
    check_key,
    check_position,
    check_timeout,
    shown,
)
from ..errors import InvalidRequest, VersionConflict
from ..types import RecordedEvent
from ._common import SUBSCRIPTIONS_NS, EventFilter

if TYPE_CHECKING:
    from ._host import HostEvents, HostNamespace

__all__ = ["LEASE", "Subscription", "reset_subscription", "subscription_status"]

#: Seconds a durable subscription's lease lasts without a renewal.
LEASE: Final = 30.0
#: Attempts at taking or renewing a lease against concurrent writers of the item.
_LEASE_TRIES: Final = 5


class Subscription(Iterator[RecordedEvent]):
    """Events after a position, then new ones as they commit (``store.events.subscribe``).

    Iteration ends when ``timeout`` seconds pass without a new event (``None``:
    never) or when :meth:`close` is called, from any thread.  ``position`` is the
    position processed so far — what a durable subscription saves and resumes after.
    """

    def __init__(
        self,
        events: HostEvents,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
        lease: float = LEASE,
    ) -> None:
        check_event_filter(filter)
        if timeout is not None:
            check_timeout(timeout)
        check_int(batch, "batch", 1)  # a SQL LIMIT: past 64 bits the driver overflows
        check_int(checkpoint_every, "checkpoint_every", 1)
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < 1e9:
            raise InvalidRequest(
                "lease", f"must be a number of seconds above 0 and below 1e9, got {shown(lease)}"
            )
        if from_position == "end":
            start = events.last_position
        elif isinstance(from_position, str):
            raise InvalidRequest(
                "from_position",
                f'must be "end" or an integer from 0 to {INT64_MAX}, got {shown(from_position)}',
            )
        else:
            start = check_position(from_position, "from_position")
        self._events = events
        self.name = name
        self._ns: HostNamespace | None = None
        self._clock = events.store._clock
        self._lease = float(lease)
        #: this consumer's identity in the lease
        self._owner = uuid.uuid4().hex
        #: the subscription item's version after our last write (None: not durable)
        self._version: int | None = None
        self._renew_at = 0.0
        self._released = False
        if name is not None:
            check_key(name, 256, field="name")
            self._ns = events.store._system_namespace(SUBSCRIPTIONS_NS)
            start = self._acquire(start)
        source = EventSource(
            events._log,
            events._decode,
            stream_prefix=filter.stream_prefix if filter is not None else "",
            types=filter.types if filter is not None else (),
        )
        try:
            self._cursor: Cursor[RecordedEvent] = Cursor(
                source, start, limit=batch, field="from_position"
            )
        except BaseException:  # LogTrimmed at the start: do not keep the name leased
            if self._ns is not None:
                self._release_quietly(start)
            raise
        self._filter = filter
        self._timeout = timeout
        self._every = checkpoint_every
        self._buffer: deque[RecordedEvent] = deque()
        #: the last event handed out, processed once the consumer comes back
        self._handed: int | None = None
        self.position = start
        self._saved = start
        self._unsaved = 0

    @property
    def durable(self) -> bool:
        return self._ns is not None

    @property
    def cursor(self) -> Cursor[RecordedEvent]:
        """The log cursor under this subscription (scanned position, hub, async wait)."""
        return self._cursor

    @property
    def closed(self) -> bool:
        return self._cursor.closed

    def __iter__(self) -> Subscription:
        return self

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __next__(self) -> RecordedEvent:
        self._came_back()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        cursor = self._cursor
        while True:
            event = self._ready()
            if event is not None:
                return event
            if cursor.closed:
                raise StopIteration
            wait = self._renew_in()
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StopIteration
                wait = remaining if wait is None else min(wait, remaining)
            cursor.wait(wait)
            self._renew_if_due()

    # -- the steps of next(), shared with the async face (events/aio.py) ------------------

    def _came_back(self) -> None:
        """The consumer asks for the next event: the one handed out last is processed."""
        if self._handed is not None:
            self._processed(self._handed)
            self._handed = None
            if self._ns is not None and self._unsaved >= self._every:
                self._save()

    def _ready(self) -> RecordedEvent | None:
        """The next event without waiting, or None when caught up (or closed).

        Caught up, every match up to the scanned position has been handed out and
        processed, so the position moves past filtered-out events too and a durable
        subscription saves its checkpoint before it waits."""
        while not self._cursor.closed:
            if self._buffer:
                event = self._buffer.popleft()
                self._handed = event.position
                return event
            if self._fill():
                continue
            scanned = self._cursor.position
            if scanned > self.position:
                self.position = scanned
            if self._ns is not None and self.position > self._saved:
                self._save()
            return None
        return None

    def _renew_in(self) -> float | None:
        """Seconds until the lease needs renewing (None: not durable)."""
        if self._ns is None:
            return None
        return max(0.0, self._renew_at - self._clock())

    def _renew_if_due(self) -> None:
        if self._ns is not None and not self._cursor.closed and self._clock() >= self._renew_at:
            self._save()

    def _processed(self, position: int) -> None:
        if position > self.position:
            self.position = position
            self._unsaved += 1

    def _fill(self) -> bool:
        events = self._cursor.read()
        self._buffer.extend(events)
        return bool(events)

    def poll(self) -> list[RecordedEvent]:
        """Every event available now, without waiting (they count as processed)."""
        out: list[RecordedEvent] = []
        while True:
            out.extend(self._buffer)
            self._buffer.clear()
            if not self._fill():
                break
        if out:
            self._processed(out[-1].position)
        self._handed = None
        scanned = self._cursor.position
        if scanned > self.position:
            self.position = scanned
        return out

    def commit(self) -> None:
        """Mark the event handed out last as processed and save the checkpoint now."""
        if self._handed is not None:
            self._processed(self._handed)
            self._handed = None
        if self._ns is not None and self.position > self._saved:
            self._save()

    # -- the durable checkpoint and its lease ---------------------------------------------

    def _record(self, position: int, *, held: bool) -> dict[str, Any]:
        now = self._clock()
        return {
            "position": position,
            "updated_at": time.time(),
            "owner": self._owner if held else None,
            "lease_until": now + self._lease if held else None,
        }

    def _busy(self, value: dict[str, Any]) -> VersionConflict | None:
        """The error for a record whose lease another live consumer holds, else None."""
        owner, until = value.get("owner"), value.get("lease_until")
        if owner is None or owner == self._owner or until is None or until <= self._clock():
            return None
        left = until - self._clock()
        return VersionConflict(
            str(self.name),
            None,
            None,
            namespace=SUBSCRIPTIONS_NS,
            message=f"subscription {self.name!r} is being consumed by another consumer "
            f"(its lease runs {left:.1f} more seconds and is renewed while it runs): "
            "one consumer per durable subscription name; close the other one, or use "
            "another name",
        )

    def _acquire(self, start: int) -> int:
        """Take the lease; the position to resume after (the saved one, else ``start``)."""
        assert self._ns is not None and self.name is not None
        for _ in range(_LEASE_TRIES):
            saved = self._ns.get(self.name)
            if saved is not None:
                busy = self._busy(saved.value)
                if busy is not None:
                    raise busy
                start = int(saved.value["position"])
            try:
                if saved is None:
                    item = self._ns.put(self.name, self._record(start, held=True), if_absent=True)
                else:
                    item = self._ns.put(
                        self.name, self._record(start, held=True), if_version=saved.version
                    )
            except VersionConflict:
                continue  # another consumer wrote it meanwhile: look again
            self._version = item.version
            self._renew_at = self._clock() + self._lease / 3
            return start
        raise VersionConflict(
            self.name,
            None,
            None,
            namespace=SUBSCRIPTIONS_NS,
            message=f"subscription {self.name!r}: could not take its lease "
            f"({_LEASE_TRIES} concurrent attempts); another consumer is opening it",
        )

    def _save(self, *, release: bool = False) -> None:
        """Write the checkpoint (renewing the lease, or releasing it) if we still hold it."""
        assert self._ns is not None and self.name is not None
        position = self.position
        # Once closed, every write releases: a late checkpoint from the consumer's
        # thread must not take the lease back after close() let it go.
        held = not release and not self._cursor.closed
        try:
            item = self._ns.put(
                self.name, self._record(position, held=held), if_version=self._version
            )
        except VersionConflict:
            found = self._ns.get(self.name)
            raise VersionConflict(
                self.name,
                self._version,
                None if found is None else found.version,
                namespace=SUBSCRIPTIONS_NS,
                message=f"subscription {self.name!r} lost its lease: another consumer took "
                "the name after this one stopped renewing it (it did not iterate for longer "
                f"than its {self._lease:g} s lease); checkpoint {position} was not saved",
            ) from None
        self._version = item.version
        self._saved = position
        self._unsaved = 0
        self._renew_at = self._clock() + self._lease / 3

    def _release_quietly(self, position: int) -> None:
        assert self._ns is not None and self.name is not None
        try:
            self._ns.put(self.name, self._record(position, held=False), if_version=self._version)
        except Exception:  # the lease then expires by itself
            pass

    def close(self) -> None:
        """Stop iterating (from any thread: a blocked ``next()`` returns at once); a
        durable subscription saves the position of what was processed — not the event
        handed out last, unless :meth:`commit` said so — and releases its lease."""
        self._cursor.close()
        self._close_durable()

    def _close_durable(self) -> None:
        """The durable part of :meth:`close`: the last checkpoint and the lease, once."""
        if self._ns is None or self._released:
            return
        self._released = True
        try:
            self._save(release=True)
        except Exception:  # closing must not fail: the events come again instead
            pass


def reset_subscription(events: HostEvents, name: str, position: int) -> None:
    """Set the durable subscription ``name``'s checkpoint to ``position`` (the way on
    after :class:`~clawstate.errors.LogTrimmed`: rebuild what the consumer derives
    from the log, then resume from ``first_available - 1``).  Refused with
    VersionConflict while a consumer holds the name."""
    check_key(name, 256, field="name")
    position = check_position(position, "position")
    ns = events.store._system_namespace(SUBSCRIPTIONS_NS)
    saved = ns.get(name)
    if saved is not None:
        owner, until = saved.value.get("owner"), saved.value.get("lease_until")
        if owner is not None and until is not None and until > events.store._clock():
            raise VersionConflict(
                name,
                None,
                None,
                namespace=SUBSCRIPTIONS_NS,
                message=f"subscription {name!r} is being consumed; close it before resetting",
            )
    record = {"position": position, "updated_at": time.time(), "owner": None, "lease_until": None}
    if saved is None:
        ns.put(name, record, if_absent=True)
    else:
        ns.put(name, record, if_version=saved.version)


def subscription_status(events: HostEvents) -> dict[str, dict[str, Any]]:
    """Every durable subscription's saved position, how many events it is behind,
    and whether a consumer holds it now (``consumer_active``, ``lease_until``)."""
    ns = events.store._system_namespace(SUBSCRIPTIONS_NS)
    last = events.last_position
    now = events.store._clock()
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        for item in page.items:
            position = int(item.value.get("position", 0))
            until = item.value.get("lease_until")
            out[item.key] = {
                "position": position,
                "lag_events": max(0, last - position),
                "updated_at": item.value.get("updated_at"),
                "consumer_active": item.value.get("owner") is not None
                and until is not None
                and until > now,
                "lease_until": until,
            }
        cursor = page.cursor
        if cursor is None:
            return out
