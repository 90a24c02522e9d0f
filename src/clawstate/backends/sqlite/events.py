"""The event store on SQLite: schema, row access inside the write transaction, reads.

Part of :class:`~.backend.SQLiteBackend` (:class:`SQLiteEventLog`, the
:class:`~clawstate.backends.base.EventLog` reads) and of its row-access object
(:class:`SQLiteEventRows`), so the event tables share
the backend's connections, its group-committed write transaction and its
change-notification condition — one writer, one lock, one wake-up path.

Positions: ``events.position`` is the table's ``INTEGER PRIMARY KEY`` and inserts
leave it NULL, so SQLite gives each new row ``max(position) + 1`` — decided inside
the ``BEGIN IMMEDIATE`` transaction, i.e. under the database write lock that
every writer of every process takes.  Positions are therefore gap-free and in
commit order: no reader can ever see position *p + 1* committed while *p* is
not.  A savepoint rolled back for a failed unit takes its rows with it, and the
next insert reuses nothing that was ever visible.  The sweep never deletes the
newest event (it keeps every stream's last one), so a position once handed out
is never handed out again — just as the change log keeps its newest row.

Data is stored as JSON text, so ``json_extract(data, '$.total')`` works in ad-hoc
SQL and the audit trail is readable with the ``sqlite3`` shell.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailable
from .._keyorder import prefix_upper_bound
from ..base import EventRecord, EventRow, StreamMeta, StreamRow, visible_from
from .errors import translate as _translate

__all__ = ["MIGRATION", "SQLiteEventLog", "SQLiteEventRows"]

#: Schema migration adding the event store (appended to the backend's migrations).
MIGRATION: list[str] = [
    """CREATE TABLE events (
        position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
        id TEXT NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL,
        data TEXT NOT NULL, metadata TEXT, recorded_at REAL NOT NULL)""",
    "CREATE UNIQUE INDEX events_stream_version ON events (stream, version)",
    "CREATE UNIQUE INDEX events_id ON events (id)",
    """CREATE TABLE event_streams (
        stream TEXT PRIMARY KEY, max_age REAL, max_count INTEGER,
        truncate_before INTEGER) WITHOUT ROWID""",
]

_COLS = "position, stream, version, id, type, schema_version, data, metadata, recorded_at"
_INSERT_HEAD = (
    "INSERT INTO events (stream, version, id, type, schema_version, data, metadata, "
    "recorded_at) VALUES "
)
_INSERT_ONE = _INSERT_HEAD + "(?,?,?,?,?,?,?,?)"
#: One event, only if the stream's version is the expected one (``IS NULL``: no events).
_INSERT_IF = (
    "INSERT INTO events (stream, version, id, type, schema_version, data, metadata, "
    "recorded_at) SELECT ?,?,?,?,?,?,?,? "
    "WHERE (SELECT MAX(version) FROM events WHERE stream = ?) IS ?"
)
#: Rows per INSERT statement: 8 parameters each, well under SQLite's 32,766.
_CHUNK = 2000


def _insert_sql(n: int) -> str:
    return _INSERT_HEAD + ",".join(["(?,?,?,?,?,?,?,?)"] * n)


def _meta(r: tuple[Any, ...] | None) -> StreamMeta | None:
    return None if r is None else StreamMeta(r[0], r[1], r[2])


def _hidden_bounds(
    conn: sqlite3.Connection, stream: str, meta: StreamMeta, now: float
) -> tuple[int, int]:
    """``(last version, lowest visible version)`` of a stream that has metadata."""
    last = conn.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,)).fetchone()[0]
    aged = 0
    if meta.max_age is not None:
        aged = (
            conn.execute(
                "SELECT MAX(version) FROM events WHERE stream = ? AND recorded_at <= ?",
                (stream, now - meta.max_age),
            ).fetchone()[0]
            or 0
        )
    return last or 0, visible_from(meta, last or 0, aged)


class SQLiteEventRows:
    """``EventRowAccess`` over the write transaction's connection (a ``_Rows`` mixin)."""

    __slots__ = ()
    conn: sqlite3.Connection

    def stream_version(self, stream: str) -> int:
        r = self.conn.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,))
        return r.fetchone()[0] or 0

    def events_insert(
        self, stream: str, version: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        conn = self.conn
        try:
            if len(events) == 1:
                e = events[0]
                cur = conn.execute(
                    _INSERT_ONE,
                    (
                        stream,
                        version,
                        e.id,
                        e.type,
                        e.schema_version,
                        e.data,
                        e.metadata,
                        recorded_at,
                    ),
                )
                return cur.lastrowid
            # One statement per chunk: a duplicate id fails the statement as a whole.
            # With several chunks, a failing later chunk would leave the earlier ones
            # behind in an unguarded unit, so the ids are checked up front instead.
            if len(events) > _CHUNK and not self._ids_free([e.id for e in events]):
                return None
            first: int | None = None
            for start in range(0, len(events), _CHUNK):
                chunk = events[start : start + _CHUNK]
                params: list[Any] = []
                for i, e in enumerate(chunk, version + start):
                    params += (stream, i, e.id, e.type, e.schema_version, e.data, e.metadata)
                    params.append(recorded_at)
                cur = conn.execute(_insert_sql(len(chunk)), params)
                if first is None:
                    first = int(cur.lastrowid or 0) - len(chunk) + 1
            return first
        except sqlite3.IntegrityError as exc:
            if "events.id" in str(exc):
                return None
            raise

    def append_if(
        self, stream: str, expected: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        if len(events) != 1:
            if self.stream_version(stream) != expected:
                return None
            return self.events_insert(stream, expected + 1, events, recorded_at)
        e = events[0]
        try:
            cur = self.conn.execute(
                _INSERT_IF,
                (
                    stream,
                    expected + 1,
                    e.id,
                    e.type,
                    e.schema_version,
                    e.data,
                    e.metadata,
                    recorded_at,
                    stream,
                    expected or None,
                ),
            )
        except sqlite3.IntegrityError as exc:
            if "events.id" in str(exc):
                return None
            raise
        return cur.lastrowid if cur.rowcount == 1 else None

    def _ids_free(self, ids: list[str]) -> bool:
        if len(set(ids)) != len(ids):
            return False
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            if self.conn.execute(f"SELECT 1 FROM events WHERE id IN ({marks})", chunk).fetchone():
                return False
        return True

    def event_find(self, event_id: str) -> EventRow | None:
        r = self.conn.execute(f"SELECT {_COLS} FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if r is None else (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])

    def stream_meta_get(self, stream: str) -> StreamMeta | None:
        return _meta(
            self.conn.execute(
                "SELECT max_age, max_count, truncate_before FROM event_streams WHERE stream = ?",
                (stream,),
            ).fetchone()
        )

    def stream_meta_put(self, stream: str, meta: StreamMeta) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO event_streams (stream, max_age, max_count, truncate_before) "
            "VALUES (?, ?, ?, ?)",
            (stream, meta.max_age, meta.max_count, meta.truncate_before),
        )


class SQLiteEventLog:
    """:class:`~clawstate.backends.base.EventLog` for the SQLite backend."""

    _poll: float
    _closed: bool
    _waiters: int
    _change_cond: threading.Condition

    if TYPE_CHECKING:

        def _conn(self) -> sqlite3.Connection: ...

    def read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int, now: float
    ) -> list[EventRow]:
        conn = self._conn()
        try:
            meta = _meta(
                conn.execute(
                    "SELECT max_age, max_count, truncate_before FROM event_streams "
                    "WHERE stream = ?",
                    (stream,),
                ).fetchone()
            )
            low = 1 if meta is None else _hidden_bounds(conn, stream, meta, now)[1]
            sql = f"SELECT {_COLS} FROM events WHERE stream = ? AND version >= ?"
            params: list[Any] = [stream, low]
            if backwards:
                if from_version is not None:
                    sql += " AND version <= ?"
                    params.append(from_version)
            elif from_version is not None and from_version > low:
                params[1] = from_version
            sql += " ORDER BY version DESC LIMIT ?" if backwards else " ORDER BY version LIMIT ?"
            params.append(limit)
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "read stream") from exc

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[EventRow], int]:
        conn = self._conn()
        try:
            if not stream_prefix and not types:
                rows: list[EventRow] = conn.execute(
                    f"SELECT {_COLS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                    (after, limit),
                ).fetchall()
                return rows, rows[-1][0] if rows else after
            # The watermark is read first: every position up to it is committed, so
            # once the filtered rows below it are read, the reader may move past it.
            end = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
            sql = f"SELECT {_COLS} FROM events WHERE position > ? AND position <= ?"
            params: list[Any] = [after, end]
            if stream_prefix:
                sql += " AND stream >= ?"
                params.append(stream_prefix)
                upper = prefix_upper_bound(stream_prefix)
                if upper is not None:
                    sql += " AND stream < ?"
                    params.append(upper)
            if types:
                sql += f" AND type IN ({','.join('?' * len(types))})"
                params += types
            sql += " ORDER BY position LIMIT ?"
            params.append(limit)
            rows = conn.execute(sql, params).fetchall()
            if len(rows) >= limit:
                return rows, rows[-1][0]
            return rows, max(end, after)
        except sqlite3.Error as exc:
            raise _translate(exc, "read all") from exc

    def last_position(self) -> int:
        if self._closed:
            raise BackendUnavailable("the store is closed")
        try:
            r = self._conn().execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, "last position") from exc
        return int(r[0])

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Local commits wake waiters at once (the backend notifies after each batch it
        commits while someone waits); other processes' commits are seen by polling
        every ``poll_interval`` (50 ms by default).

        The loop runs under the backend's change condition, which ``close()`` takes
        before it closes the connections: a waiter woken by its poll can therefore
        never be querying a connection that another thread is closing — it sees
        ``_closed`` first and raises :class:`BackendUnavailable`.
        """
        deadline = time.monotonic() + timeout
        with self._change_cond:
            while True:
                if self.last_position() > after:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._waiters += 1
                try:
                    self._change_cond.wait(min(remaining, self._poll))
                finally:
                    self._waiters -= 1

    def stream_state(self, stream: str) -> tuple[int, StreamMeta | None]:
        conn = self._conn()
        version = conn.execute(
            "SELECT MAX(version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()[0]
        meta = _meta(
            conn.execute(
                "SELECT max_age, max_count, truncate_before FROM event_streams WHERE stream = ?",
                (stream,),
            ).fetchone()
        )
        return version or 0, meta

    def streams(self, prefix: str, after: str | None, limit: int) -> list[StreamRow]:
        """One ``GROUP BY`` over the ``(stream, version)`` index from ``after``/``prefix``
        (``TEXT`` compares with ``memcmp``: UTF-8 byte order)."""
        sql = "SELECT stream, MAX(version), MAX(position) FROM events WHERE stream >= ?"
        params: list[Any] = [prefix]
        if after is not None and after >= prefix:
            sql += " AND stream > ?"
            params.append(after)
        upper = prefix_upper_bound(prefix) if prefix else None
        if upper is not None:
            sql += " AND stream < ?"
            params.append(upper)
        sql += " GROUP BY stream ORDER BY stream LIMIT ?"
        params.append(limit)
        try:
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "list streams") from exc
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def event_stats(self) -> dict[str, Any]:
        """Counts without a pass over the events: two B-tree edge reads (a lone MIN()
        and a lone MAX() each read one edge; together in one SELECT they scan) and the
        sweep's removal counter (``events = last position − removed``)."""
        conn = self._conn()
        first, last, removed = conn.execute(
            "SELECT (SELECT MIN(position) FROM events), (SELECT MAX(position) FROM events), "
            "(SELECT value FROM meta WHERE key = 'events_removed')"
        ).fetchone()
        meta = conn.execute("SELECT COUNT(*) FROM event_streams").fetchone()[0]
        return {
            "first_position": first or 0,
            "last_position": last or 0,
            "events": (last or 0) - int(removed or 0),
            "streams_with_metadata": meta,
        }

    # -- called by the backend's sweep and check --------------------------------------

    @staticmethod
    def sweep_events(conn: sqlite3.Connection, now: float, budget: int = 50_000) -> int:
        """Delete events their stream's metadata hides, keeping each stream's last."""
        removed = 0
        for stream, max_age, max_count, truncate_before in conn.execute(
            "SELECT stream, max_age, max_count, truncate_before FROM event_streams"
        ).fetchall():
            if removed >= budget:
                break
            meta = StreamMeta(max_age, max_count, truncate_before)
            last, low = _hidden_bounds(conn, stream, meta, now)
            if last and low > 1:
                removed += conn.execute(
                    "DELETE FROM events WHERE stream = ? AND version < ? AND version < ?",
                    (stream, low, last),
                ).rowcount
        if removed:  # the counter stats() derives the event count from (same transaction)
            conn.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'events_removed'", (removed,)
            )
        return removed

    @staticmethod
    def check_events(conn: sqlite3.Connection) -> tuple[list[str], int]:
        """Problems in the event tables, and how many events were checked."""
        problems: list[str] = []
        count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        bad = conn.execute(
            "SELECT COUNT(*) FROM events WHERE position < 1 OR version < 1 OR schema_version < 1 "
            "OR json_valid(data) = 0 OR (metadata IS NOT NULL AND json_valid(metadata) = 0)"
        ).fetchone()[0]
        if bad:
            problems.append(f"{bad} events have impossible metadata or invalid JSON")
        holes = conn.execute(
            "SELECT COUNT(*) FROM (SELECT stream FROM events GROUP BY stream "
            "HAVING MAX(version) - MIN(version) + 1 != COUNT(*))"
        ).fetchone()[0]
        if holes:
            problems.append(f"{holes} streams have holes in their versions")
        disorder = conn.execute(
            "SELECT COUNT(*) FROM events a JOIN events b "
            "ON b.stream = a.stream AND b.version = a.version + 1 WHERE b.position <= a.position"
        ).fetchone()[0]
        if disorder:
            problems.append(f"{disorder} events have a higher version but a lower position")
        last, removed = conn.execute(
            "SELECT (SELECT COALESCE(MAX(position), 0) FROM events), "
            "(SELECT value FROM meta WHERE key = 'events_removed')"
        ).fetchone()
        if removed is None or int(last) - int(removed) != count:
            problems.append(
                f"the events removal counter says {int(last) - int(removed or 0)} events are "
                f"stored, but {count} are (stats() reports the counter)"
            )
        return problems, count
