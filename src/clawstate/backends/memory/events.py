"""The event store in memory: the reference the SQLite adapter is tested against.

:class:`MemoryEvents` holds the committed log; :class:`MemoryEventRows` (mixed into
the memory backend's per-unit overlay) stages one unit's appends in
:class:`EventStage`, which the backend folds in only if the whole unit succeeds;
:class:`MemoryEventLog` (mixed into the backend) answers reads under the
backend's lock.  Positions come from one counter advanced under that lock, so
they are gap-free and in commit order by construction.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

from ...errors import BackendUnavailable
from ..base import EventRecord, EventRow, StreamMeta, StreamRow, visible_from

__all__ = ["EventStage", "MemoryEventLog", "MemoryEventRows", "MemoryEvents"]


class MemoryEvents:
    """The committed event log: rows in position order, indexed by stream and id."""

    def __init__(self) -> None:
        self.rows: list[EventRow] = []
        self.positions: list[int] = []
        self.streams: dict[str, list[EventRow]] = {}
        self.ids: dict[str, EventRow] = {}
        self.meta: dict[str, StreamMeta] = {}
        self.last = 0

    def commit(self, stage: EventStage) -> None:
        for row in stage.rows:
            self.rows.append(row)
            self.positions.append(row[0])
            self.streams.setdefault(row[1], []).append(row)
            self.ids[row[3]] = row
        self.meta.update(stage.meta)
        self.last = stage.last

    def visible(self, stream: str, now: float) -> list[EventRow]:
        rows = self.streams.get(stream, [])
        meta = self.meta.get(stream)
        if meta is None or not rows:
            return rows
        aged = 0
        if meta.max_age is not None:
            cutoff = now - meta.max_age
            aged = max((r[2] for r in rows if r[8] <= cutoff), default=0)
        low = visible_from(meta, rows[-1][2], aged)
        return [r for r in rows if r[2] >= low]

    def sweep(self, now: float) -> int:
        removed: set[int] = set()
        for stream in self.meta:
            rows = self.streams.get(stream)
            if not rows:
                continue
            keep = self.visible(stream, now)
            first_kept = keep[0][2] if keep else rows[-1][2]  # always keep the last event
            gone = [r for r in rows if r[2] < first_kept]
            if gone:
                self.streams[stream] = [r for r in rows if r[2] >= first_kept]
                for r in gone:
                    removed.add(r[0])
                    del self.ids[r[3]]
        if removed:
            self.rows = [r for r in self.rows if r[0] not in removed]
            self.positions = [r[0] for r in self.rows]
        return len(removed)

    def check(self) -> list[str]:
        problems: list[str] = []
        if self.positions != sorted(set(self.positions)):
            problems.append("event positions are not strictly increasing")
        if self.rows and self.rows[-1][0] != self.last:
            problems.append("the newest event does not hold the last position")
        for stream, rows in self.streams.items():
            versions = [r[2] for r in rows]
            if versions != list(range(versions[0], versions[0] + len(versions))):
                problems.append(f"stream {stream!r} has holes in its versions")
            positions = [r[0] for r in rows]
            if positions != sorted(positions):
                problems.append(f"stream {stream!r} has versions out of position order")
        if len(self.ids) != len(self.rows):
            problems.append("event id index out of step with the log")
        return problems


class EventStage:
    """One unit's staged appends and metadata over the committed log."""

    def __init__(self, events: MemoryEvents) -> None:
        self.events = events
        self.rows: list[EventRow] = []
        self.ids: dict[str, EventRow] = {}
        self.versions: dict[str, int] = {}
        self.meta: dict[str, StreamMeta] = {}
        self.last = events.last


class MemoryEventRows:
    """``EventRowAccess`` for the memory backend's overlay (a mixin)."""

    #: the backend's committed log, which a unit's stage overlays
    committed_events: MemoryEvents
    event_stage: EventStage | None

    def _stage(self) -> EventStage:
        stage = self.event_stage
        if stage is None:
            stage = self.event_stage = EventStage(self.committed_events)
        return stage

    def stream_version(self, stream: str) -> int:
        stage = self._stage()
        staged = stage.versions.get(stream)
        if staged is not None:
            return staged
        rows = stage.events.streams.get(stream)
        return rows[-1][2] if rows else 0

    def events_insert(
        self, stream: str, version: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        stage = self._stage()
        committed = stage.events.ids
        seen: set[str] = set()
        for e in events:
            if e.id in committed or e.id in stage.ids or e.id in seen:
                return None
            seen.add(e.id)
        first = stage.last + 1
        for i, e in enumerate(events):
            row: EventRow = (
                first + i,
                stream,
                version + i,
                e.id,
                e.type,
                e.schema_version,
                e.data,
                e.metadata,
                recorded_at,
            )
            stage.rows.append(row)
            stage.ids[e.id] = row
        stage.last = first + len(events) - 1
        stage.versions[stream] = version + len(events) - 1
        return first

    def append_if(
        self, stream: str, expected: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        if self.stream_version(stream) != expected:
            return None
        return self.events_insert(stream, expected + 1, events, recorded_at)

    def event_find(self, event_id: str) -> EventRow | None:
        stage = self._stage()
        return stage.ids.get(event_id) or stage.events.ids.get(event_id)

    def stream_meta_get(self, stream: str) -> StreamMeta | None:
        stage = self._stage()
        return stage.meta.get(stream) or stage.events.meta.get(stream)

    def stream_meta_put(self, stream: str, meta: StreamMeta) -> None:
        self._stage().meta[stream] = meta


class MemoryEventLog:
    """:class:`~clawstate.backends.base.EventLog` for the memory backend (a mixin)."""

    _lock: threading.RLock
    _cond: threading.Condition
    _closed: bool
    _events: MemoryEvents

    def read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int, now: float
    ) -> list[EventRow]:
        with self._lock:
            rows = self._events.visible(stream, now)
            if backwards:
                if from_version is not None:
                    rows = [r for r in rows if r[2] <= from_version]
                return rows[::-1][:limit]
            if from_version is not None:
                rows = [r for r in rows if r[2] >= from_version]
            return rows[:limit]

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[EventRow], int]:
        with self._lock:
            ev = self._events
            i = bisect.bisect_right(ev.positions, after)
            if not stream_prefix and not types:
                rows = ev.rows[i : i + limit]
                return rows, rows[-1][0] if rows else after
            wanted = set(types)
            out: list[EventRow] = []
            for row in ev.rows[i:]:
                if (not stream_prefix or row[1].startswith(stream_prefix)) and (
                    not wanted or row[4] in wanted
                ):
                    out.append(row)
                    if len(out) >= limit:
                        return out, row[0]
            return out, max(ev.last, after)

    def last_position(self) -> int:
        return self._events.last

    def wait_for_events(self, after: int, timeout: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._events.last > after or self._closed, timeout)
            if self._events.last > after:
                return True
            if self._closed:
                raise BackendUnavailable("the store is closed")
            return False

    def stream_state(self, stream: str) -> tuple[int, StreamMeta | None]:
        with self._lock:
            rows = self._events.streams.get(stream)
            return (rows[-1][2] if rows else 0), self._events.meta.get(stream)

    def streams(self, prefix: str, after: str | None, limit: int) -> list[StreamRow]:
        with self._lock:
            names = sorted(
                name
                for name, rows in self._events.streams.items()
                if rows and name.startswith(prefix) and (after is None or name > after)
            )[:limit]
            return [
                (name, self._events.streams[name][-1][2], self._events.streams[name][-1][0])
                for name in names
            ]

    def event_stats(self) -> dict[str, Any]:
        with self._lock:
            ev = self._events
            return {
                "first_position": ev.rows[0][0] if ev.rows else 0,
                "last_position": ev.last,
                "events": len(ev.rows),
                "streams_with_metadata": len(ev.meta),
            }
