"""Subscriptions: catch up on the global log, then follow it live.

A :class:`Subscription` reads pages of ``read_all`` after its position until it
reaches the end, then blocks in the backend's ``wait_for_events`` (SQLite: woken
at once by commits of this process, by a 50 ms poll for other processes;
memory: a condition variable).  Because positions are gap-free and in commit
order, "every event after my position" is exact: nothing that commits later
can appear behind a reader.

Durable subscriptions (``subscribe(name="billing")``) keep their position as an
item of the ``_subscriptions`` namespace.  Delivery is at-least-once: an event
counts as processed when the consumer comes back for the next one (or calls
:meth:`Subscription.commit`); the checkpoint is saved every ``checkpoint_every``
processed events, whenever the subscription catches up and is about to wait,
and on :meth:`~Subscription.close`.  A consumer killed in between resumes after
the last saved checkpoint and sees the events since then again — never fewer.
Give each durable name one consumer at a time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._validate import INT64_MAX, check_int, check_key, check_position, check_timeout, shown
from ..errors import InvalidRequest
from ..types import RecordedEvent
from .store import SUBSCRIPTIONS_NS, EventFilter, _check_filter

if TYPE_CHECKING:
    from ..store import Namespace
    from .store import EventStore

__all__ = ["Subscription", "subscription_status"]


class Subscription(Iterator[RecordedEvent]):
    """Events after a position, then new ones as they commit (``store.events.subscribe``).

    Iteration ends when ``timeout`` seconds pass without a new event (``None``:
    never) or when :meth:`close` is called, from any thread.  ``position`` is the
    position processed so far — what a durable subscription saves and resumes after.
    """

    def __init__(
        self,
        events: EventStore,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
    ) -> None:
        _check_filter(filter)
        if timeout is not None:
            check_timeout(timeout)
        check_int(batch, "batch", 1)  # a SQL LIMIT: past 64 bits the driver overflows
        check_int(checkpoint_every, "checkpoint_every", 1)
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
        self._log = events._log
        self.name = name
        self._ns: Namespace | None = None
        if name is not None:
            check_key(name, 256, field="name")
            self._ns = events.store._system_namespace(SUBSCRIPTIONS_NS)
            saved = self._ns.get(name)
            if saved is not None:
                start = int(saved.value["position"])
        self._filter = filter
        self._timeout = timeout
        self._batch = batch
        self._every = checkpoint_every
        self._buffer: deque[RecordedEvent] = deque()
        #: every matching event at or below it was read into the buffer
        self._scanned = start
        #: the last event handed out, processed once the consumer comes back
        self._handed: int | None = None
        self.position = start
        self._saved = start
        self._unsaved = 0
        self._closed = threading.Event()

    @property
    def durable(self) -> bool:
        return self._ns is not None

    def __iter__(self) -> Subscription:
        return self

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __next__(self) -> RecordedEvent:
        if self._handed is not None:
            self._processed(self._handed)
            self._handed = None
            if self._ns is not None and self._unsaved >= self._every:
                self._save()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            if self._buffer:
                event = self._buffer.popleft()
                self._handed = event.position
                return event
            if self._closed.is_set():
                raise StopIteration
            if self._fill():
                continue
            # Caught up: every match up to the scanned position has been handed out
            # and processed, so the position may move past filtered-out events too.
            if self._scanned > self.position:
                self.position = self._scanned
            if self._ns is not None and self.position > self._saved:
                self._save()
            while not self._closed.is_set():
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    raise StopIteration
                if self._log.wait_for_events(self._scanned, wait):
                    break

    def _processed(self, position: int) -> None:
        if position > self.position:
            self.position = position
            self._unsaved += 1

    def _fill(self) -> bool:
        events, end = self._events._read_rows(self._scanned, self._batch, self._filter)
        self._scanned = max(self._scanned, end)
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
        if self._scanned > self.position:
            self.position = self._scanned
        return out

    def commit(self) -> None:
        """Mark the event handed out last as processed and save the checkpoint now."""
        if self._handed is not None:
            self._processed(self._handed)
            self._handed = None
        if self._ns is not None and self.position > self._saved:
            self._save()

    def _save(self) -> None:
        assert self._ns is not None and self.name is not None
        self._ns.put(self.name, {"position": self.position, "updated_at": time.time()})
        self._saved = self.position
        self._unsaved = 0

    def close(self) -> None:
        """Stop iterating (from any thread); a durable subscription saves the position
        of what was processed — not the event handed out last, unless :meth:`commit`
        said so."""
        self._closed.set()
        if self._ns is not None and self.position > self._saved:
            try:
                self._save()
            except Exception:  # closing must not fail: the events come again instead
                pass


def subscription_status(events: EventStore) -> dict[str, dict[str, Any]]:
    """Every durable subscription's saved position and how many events it is behind."""
    ns = events.store._system_namespace(SUBSCRIPTIONS_NS)
    last = events.last_position
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        for item in page.items:
            position = int(item.value.get("position", 0))
            out[item.key] = {
                "position": position,
                "lag_events": max(0, last - position),
                "updated_at": item.value.get("updated_at"),
            }
        cursor = page.cursor
        if cursor is None:
            return out
