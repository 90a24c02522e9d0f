"""The event store on PostgreSQL: schema, row access inside the write transaction, reads.

Part of :class:`~.backend.PostgresBackend` (:class:`PostgresEventLog`, the
:class:`~clawstate.backends.base.EventLog` reads) and of its general-path row access
:class:`~.rows.Rows` (:class:`PostgresEventRows`), so event appends ride the
backend's group-committed two-round-trip transaction unchanged.

Positions: the ``head`` row that orders every write transaction of the schema
also holds ``pos``, the last event position handed out.  A batch carrying event
appends reads it in round trip 1 with the same ``UPDATE … RETURNING`` that locks
the head, numbers its events client-side from there while the lock is held, and
writes the new ``pos`` in round trip 2 before ``COMMIT``.  The row lock is held
until the commit is visible, and a transaction that waited for it re-reads the
newest head, so positions are gap-free and in commit order across processes,
exactly like the change log's seqs — and ``head.pos`` read in any snapshot is a
watermark: every lower position is committed.  A unit whose check fails is
undone client-side and never reaches the server, so no position is ever burnt.

Round trip 1 also prefetches, for the batch's appends, each stream's version and
metadata and every event id it names (for idempotent replays); ``apply_unit``
then runs against that snapshot — safe, since nobody else can write while the
head is held.  Data and metadata are stored as the exact JSON text (``text``), so
a read returns the bytes that were appended; ``data::jsonb`` works in ad-hoc SQL.

Batches that only append (no metadata, deletes, state writes or idempotency keys)
take a shorter way: one autocommit statement (:data:`APPEND_FAST`) that checks,
numbers, inserts and notifies — one round trip and one WAL flush per batch; what it
cannot decide exactly goes to the path above.

Commits that append events ``NOTIFY`` with ``"<seq> <pos>"``; the backend's
listener wakes :meth:`PostgresEventLog.wait_for_events` from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import psycopg

from ...errors import BackendUnavailable
from .._keyorder import prefix_upper_bound
from ..base import EventRecord, EventRow, StreamMeta, StreamRow, visible_from
from .listen import PostgresListen

__all__ = ["APPEND_FAST", "APPEND_ONE", "MIGRATION", "SQL", "PostgresEventLog", "PostgresEventRows"]

#: Schema migration adding the event store (appended to the backend's migrations).
MIGRATION: Final[list[str]] = [
    # The last event position handed out, under the same row lock as the seq.
    "ALTER TABLE {s}.head ADD COLUMN pos bigint NOT NULL DEFAULT 0",
    """CREATE TABLE {s}.events (
        position bigint PRIMARY KEY,
        stream text COLLATE "C" NOT NULL,
        version bigint NOT NULL,
        id text NOT NULL,
        type text COLLATE "C" NOT NULL,
        schema_version integer NOT NULL,
        data text NOT NULL,
        metadata text,
        recorded_at double precision NOT NULL)""",
    "CREATE UNIQUE INDEX events_stream_version ON {s}.events (stream, version)",
    "CREATE UNIQUE INDEX events_id ON {s}.events (id)",
    """CREATE TABLE {s}.event_streams (
        stream text COLLATE "C" PRIMARY KEY,
        max_age double precision,
        max_count bigint,
        truncate_before bigint)""",
]

#: Event-only batches (appends to distinct streams, no metadata, no deletes, no state
#: writes, no idempotency keys) as ONE autocommit statement: one round trip, one WAL
#: flush.  All or nothing: the events are inserted only if every append passes its
#: expected-version check and no id is taken; they are numbered after the head's
#: ``pos`` in batch order, under the head's row lock (an ``UPDATE`` that waited for
#: the lock re-reads the newest head, so positions stay gap-free and in commit order).
#: A batch that fails a check writes nothing, locks nothing, and the caller re-runs it
#: on the general path, which gives each job its exact outcome (an append, a
#: ``WrongExpectedVersion``, an idempotent replay).  The checks read the statement's
#: snapshot, taken before it waits for the lock: if a writer in another process
#: committed to the same stream (or id) meanwhile, the check can pass on stale data —
#: and the unique ``(stream, version)`` / ``id`` indexes then refuse the insert, the
#: statement fails whole, and the batch re-runs on the general path, which reads under
#: the lock.  Per append: stream, expected-version code; per event: its append's
#: ordinal, its index in that append (1, 2, …), id, type, schema version, data,
#: metadata, recorded_at (its unit's time); then the event count, the channel.
#: Returns a row per append: (all passed, the stream's version before, the head's new
#: ``pos``).
APPEND_FAST: Final = """
WITH w AS (
    SELECT * FROM unnest(%(streams)b::text[], %(expected)b::int8[])
        WITH ORDINALITY AS w(stream, expected, wi)
), chk AS (
    SELECT w.wi, w.stream, w.expected, COALESCE(
        (SELECT MAX(x.version) FROM {s}.events x WHERE x.stream = w.stream), 0) AS current
    FROM w
), ok AS (
    SELECT bool_and(expected = -1 OR (expected = -2 AND current > 0) OR expected = current)
           AND NOT EXISTS (SELECT 1 FROM {s}.events x WHERE x.id = ANY(%(ids)b::text[])) AS ok
    FROM chk
), h AS (
    UPDATE {s}.head SET pos = pos + %(n)b::int8 WHERE one AND (SELECT ok FROM ok)
    RETURNING pos - %(n)b::int8 AS base, pos, seq
), put AS (
    INSERT INTO {s}.events (position, stream, version, id, type, schema_version, data,
                            metadata, recorded_at)
    SELECT h.base + e.ord, chk.stream, chk.current + e.k, e.id, e.type, e.sv, e.data,
           e.metadata, e.recorded_at
    FROM unnest(%(wis)b::int8[], %(ks)b::int8[], %(ids)b::text[], %(types)b::text[],
                %(svs)b::int4[], %(data)b::text[], %(metadata)b::text[], %(nows)b::float8[])
             WITH ORDINALITY AS e(wi, k, id, type, sv, data, metadata, recorded_at, ord)
         JOIN chk ON chk.wi = e.wi CROSS JOIN h
), note AS (
    SELECT pg_notify(%(chan)b, h.seq::text || ' ' || h.pos::text) AS sent FROM h
)
SELECT ok.ok, chk.current, h.pos, (SELECT count(*) FROM note)
FROM chk CROSS JOIN ok LEFT JOIN h ON true
ORDER BY chk.wi
"""


#: The commonest batch — one append of one event — as ``APPEND_FAST`` does it, with
#: scalars instead of arrays and a plan of two index probes.  Same contract and
#: result rows.  Named parameters: stream, expected, id, type, sv, data, metadata,
#: now, chan.
APPEND_ONE: Final = """
WITH c AS (
    SELECT COALESCE((SELECT MAX(version) FROM {s}.events WHERE stream = %(stream)b::text), 0)
               AS current,
           EXISTS (SELECT 1 FROM {s}.events WHERE id = %(id)b::text) AS taken
), ok AS (
    SELECT current, NOT taken AND (%(expected)b::int8 = -1
        OR (%(expected)b::int8 = -2 AND current > 0) OR %(expected)b::int8 = current) AS ok
    FROM c
), h AS (
    UPDATE {s}.head SET pos = pos + 1 WHERE one AND (SELECT ok FROM ok) RETURNING pos, seq
), put AS (
    INSERT INTO {s}.events (position, stream, version, id, type, schema_version, data,
                            metadata, recorded_at)
    SELECT h.pos, %(stream)b::text, ok.current + 1, %(id)b::text, %(type)b::text,
           %(sv)b::int4, %(data)b::text, %(metadata)b::text, %(now)b::float8
    FROM h, ok
), note AS (
    SELECT pg_notify(%(chan)b, h.seq::text || ' ' || h.pos::text) AS sent FROM h
)
SELECT ok.ok, ok.current, h.pos, (SELECT count(*) FROM note) FROM ok LEFT JOIN h ON true
"""

_COLS: Final = "position, stream, version, id, type, schema_version, data, metadata, recorded_at"

#: Statements (``{s}``: the quoted schema), merged into the backend's SQL table.
SQL: Final[dict[str, str]] = {
    "ev_prefetch_versions": (
        "SELECT stream, MAX(version) FROM {s}.events WHERE stream = ANY(%b::text[]) GROUP BY stream"
    ),
    "ev_prefetch_meta": (
        "SELECT stream, max_age, max_count, truncate_before FROM {s}.event_streams "
        "WHERE stream = ANY(%b::text[])"
    ),
    # Content too: a retried append is recognised by its events' content.
    "ev_prefetch_ids": f"SELECT {_COLS} FROM {{s}}.events WHERE id = ANY(%b::text[])",
    "ev_insert": """
INSERT INTO {s}.events (position, stream, version, id, type, schema_version, data,
                        metadata, recorded_at)
SELECT * FROM unnest(%b::int8[], %b::text[], %b::int8[], %b::text[], %b::text[],
                     %b::int4[], %b::text[], %b::text[], %b::float8[])
""",
    "ev_upsert_meta": """
INSERT INTO {s}.event_streams (stream, max_age, max_count, truncate_before)
SELECT * FROM unnest(%b::text[], %b::float8[], %b::int8[], %b::int8[])
ON CONFLICT (stream) DO UPDATE SET max_age = excluded.max_age,
    max_count = excluded.max_count, truncate_before = excluded.truncate_before
""",
    # The new counters, and the NOTIFY that COMMIT delivers, in one statement.
    "ev_set_head": (
        "WITH h AS (UPDATE {s}.head SET seq = %b, pos = %b WHERE one RETURNING seq, pos) "
        "SELECT pg_notify(%b, h.seq::text || ' ' || h.pos::text) FROM h"
    ),
    "ev_last_pos": "SELECT pos FROM {s}.head WHERE one",
    "ev_version": "SELECT MAX(version) FROM {s}.events WHERE stream = %s",
    "ev_meta": (
        "SELECT max_age, max_count, truncate_before FROM {s}.event_streams WHERE stream = %s"
    ),
    "ev_find": f"SELECT {_COLS} FROM {{s}}.events WHERE id = %s",
    "ev_append_fast": APPEND_FAST,
    "ev_append_one": APPEND_ONE,
    "ev_read_all": (
        f"SELECT {_COLS} FROM {{s}}.events WHERE position > %s ORDER BY position LIMIT %s"
    ),
}


def _meta(r: Any) -> StreamMeta | None:
    if r is None:
        return None
    return StreamMeta(
        None if r[0] is None else float(r[0]),
        None if r[1] is None else int(r[1]),
        None if r[2] is None else int(r[2]),
    )


def _row(r: Any) -> EventRow:
    return (
        int(r[0]),
        r[1],
        int(r[2]),
        r[3],
        r[4],
        int(r[5]),
        r[6],
        r[7],
        float(r[8]),
    )


def _hidden_bounds(
    conn: psycopg.Connection[Any], s: str, stream: str, meta: StreamMeta, now: float
) -> tuple[int, int]:
    """``(last version, lowest visible version)`` of a stream that has metadata."""
    row = conn.execute(f"SELECT MAX(version) FROM {s}.events WHERE stream = %s", (stream,))
    found = row.fetchone()
    last = int(found[0]) if found is not None and found[0] is not None else 0
    aged = 0
    if meta.max_age is not None:
        got = conn.execute(
            f"SELECT MAX(version) FROM {s}.events WHERE stream = %s AND recorded_at <= %s",
            (stream, now - meta.max_age),
        ).fetchone()
        aged = int(got[0]) if got is not None and got[0] is not None else 0
    return last, visible_from(meta, last, aged)


class EventPrefetch:
    """What round trip 1 read for a batch's appends (while holding the head)."""

    __slots__ = ("ids", "meta", "versions")

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.meta: dict[str, StreamMeta | None] = {}
        #: every id the batch names: its stored event, or None (checked: not in the log)
        self.ids: dict[str, EventRow | None] = {}


class PostgresEventRows:
    """``EventRowAccess`` for the general path's ``_Rows`` (a mixin): reads the
    prefetched snapshot, stages appends and metadata; ``_journal`` undoes them."""

    if TYPE_CHECKING:
        conn: psycopg.Connection[Any]
        _journal: list[tuple[str, Any, Any, bool]]
        _s: str

    ev: EventPrefetch
    pos: int
    ev_rows: list[EventRow]
    ev_meta_new: dict[str, StreamMeta]

    def _ev_init(self, prefetch: EventPrefetch, pos: int) -> None:
        self.ev = prefetch
        self.pos = pos
        self.ev_rows = []
        self.ev_meta_new = {}

    def _ev_mark(self) -> tuple[int, int]:
        return self.pos, len(self.ev_rows)

    def _ev_undo(self, mark: tuple[int, int]) -> None:
        self.pos, n = mark
        del self.ev_rows[n:]

    def _ev_undo_entry(self, kind: str, key: Any, before: Any) -> None:
        table: dict[Any, Any]
        if kind == "ev_ver":
            table = self.ev.versions
        elif kind == "ev_id":
            table = self.ev.ids
        else:
            table = self.ev_meta_new
        if before is _ABSENT:
            table.pop(key, None)
        else:
            table[key] = before

    def _ev_set(self, kind: str, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._journal.append((kind, key, table.get(key, _ABSENT), False))
        table[key] = value

    def stream_version(self, stream: str) -> int:
        versions = self.ev.versions
        found = versions.get(stream)
        if found is not None:
            return found
        # Not prefetched (cannot happen for a unit's own streams): read it; the head is held.
        r = self.conn.execute(
            f"SELECT MAX(version) FROM {self._s}.events WHERE stream = %s", (stream,)
        ).fetchone()
        version = int(r[0]) if r is not None and r[0] is not None else 0
        versions[stream] = version
        return version

    def events_insert(
        self, stream: str, version: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        ids = self.ev.ids
        seen: set[str] = set()
        for e in events:
            if e.id in seen or self.event_find(e.id) is not None:
                return None
            seen.add(e.id)
        first = self.pos + 1
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
            self.ev_rows.append(row)
            self._ev_set("ev_id", ids, e.id, row)
        self.pos = first + len(events) - 1
        self._ev_set("ev_ver", self.ev.versions, stream, version + len(events) - 1)
        return first

    def append_if(
        self, stream: str, expected: int, events: list[EventRecord], recorded_at: float
    ) -> int | None:
        if self.stream_version(stream) != expected:
            return None
        return self.events_insert(stream, expected + 1, events, recorded_at)

    def event_find(self, event_id: str) -> EventRow | None:
        ids = self.ev.ids
        if event_id in ids:
            return ids[event_id]
        r = self.conn.execute(
            f"SELECT {_COLS} FROM {self._s}.events WHERE id = %s", (event_id,)
        ).fetchone()
        found = None if r is None else _row(r)
        if found is not None:
            ids[event_id] = found
        return found

    def stream_meta_get(self, stream: str) -> StreamMeta | None:
        if stream in self.ev_meta_new:
            return self.ev_meta_new[stream]
        if stream in self.ev.meta:
            return self.ev.meta[stream]
        found = _meta(
            self.conn.execute(
                f"SELECT max_age, max_count, truncate_before FROM {self._s}.event_streams "
                "WHERE stream = %s",
                (stream,),
            ).fetchone()
        )
        self.ev.meta[stream] = found
        return found

    def stream_meta_put(self, stream: str, meta: StreamMeta) -> None:
        self._ev_set("ev_meta", self.ev_meta_new, stream, meta)

    def ev_flush(self, q: dict[str, str]) -> None:
        """Queue the staged events and metadata (pipeline: no round trip)."""
        conn = self.conn
        if self.ev_rows:
            cols: list[list[Any]] = [[] for _ in range(9)]
            for row in self.ev_rows:
                for col, v in zip(cols, row, strict=True):
                    col.append(v)
            conn.execute(q["ev_insert"], cols)
        if self.ev_meta_new:
            mcols: list[list[Any]] = [list(self.ev_meta_new), [], [], []]
            for m in self.ev_meta_new.values():
                mcols[1].append(m.max_age)
                mcols[2].append(m.max_count)
                mcols[3].append(m.truncate_before)
            conn.execute(q["ev_upsert_meta"], mcols)


_ABSENT: Final = object()


def prefetch_events(
    conn: psycopg.Connection[Any], q: dict[str, str], streams: list[str], ids: list[str]
) -> Callable[[], EventPrefetch]:
    """Queue round trip 1's event reads; the returned function collects them."""
    c_ver = conn.execute(q["ev_prefetch_versions"], (streams,), prepare=True)
    c_meta = conn.execute(q["ev_prefetch_meta"], (streams,), prepare=True)
    c_ids = conn.execute(q["ev_prefetch_ids"], (ids,), prepare=True) if ids else None

    def collect() -> EventPrefetch:
        out = EventPrefetch()
        out.versions = dict.fromkeys(streams, 0)
        for stream, version in c_ver.fetchall():
            out.versions[str(stream)] = int(version)
        out.meta = dict.fromkeys(streams)
        for r in c_meta.fetchall():
            out.meta[str(r[0])] = _meta(r[1:])
        if c_ids is not None:
            out.ids = dict.fromkeys(ids)
            for r in c_ids.fetchall():
                out.ids[str(r[3])] = _row(r)
        return out

    return collect


class PostgresEventLog(PostgresListen):
    """:class:`~clawstate.backends.base.EventLog` for the PostgreSQL backend: woken by
    the same LISTEN thread as the change log (:class:`~.listen.PostgresListen`)."""

    def read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int, now: float
    ) -> list[EventRow]:
        s, q = self._s, self._sql

        def select(low: int) -> tuple[str, list[Any]]:
            """The read, for a stream whose events below version ``low`` are hidden."""
            query = f"SELECT {_COLS} FROM {s}.events WHERE stream = %s AND version >= %s"
            params: list[Any] = [stream, low]
            if backwards:
                if from_version is not None:
                    query += " AND version <= %s"
                    params.append(from_version)
            elif from_version is not None and from_version > low:
                params[1] = from_version
            query += (
                " ORDER BY version DESC LIMIT %s" if backwards else " ORDER BY version LIMIT %s"
            )
            params.append(limit)
            return query, params

        def run(conn: psycopg.Connection[Any]) -> list[EventRow]:
            # One round trip for the common case: the read as if nothing were hidden,
            # pipelined with the stream's metadata — which, when there is some,
            # decides the lower bound and the read runs again with it.
            with conn.pipeline():
                c_meta = conn.execute(q["ev_meta"], (stream,), prepare=True)
                c_rows = conn.execute(*select(1), prepare=True)
            meta = _meta(c_meta.fetchone())
            low = 1 if meta is None else _hidden_bounds(conn, s, stream, meta, now)[1]
            if low <= 1:
                return [_row(r) for r in c_rows.fetchall()]
            return [_row(r) for r in conn.execute(*select(low)).fetchall()]

        out: list[EventRow] = self._read("read stream", run)
        return out

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[EventRow], int]:
        s, q = self._s, self._sql

        def run(conn: psycopg.Connection[Any]) -> tuple[list[EventRow], int]:
            if not stream_prefix and not types:
                rows = [_row(r) for r in conn.execute(q["ev_read_all"], (after, limit)).fetchall()]
                return rows, rows[-1][0] if rows else after
            # The watermark is read first: every position up to it is committed, so
            # once the filtered rows below it are read, the reader may move past it.
            got = conn.execute(q["ev_last_pos"]).fetchone()
            end = int(got[0]) if got is not None else 0
            query = f"SELECT {_COLS} FROM {s}.events WHERE position > %s AND position <= %s"
            params: list[Any] = [after, end]
            if stream_prefix:
                query += " AND stream >= %s"
                params.append(stream_prefix)
                upper = prefix_upper_bound(stream_prefix)
                if upper is not None:
                    query += " AND stream < %s"
                    params.append(upper)
            if types:
                query += " AND type = ANY(%s::text[])"
                params.append(list(types))
            query += " ORDER BY position LIMIT %s"
            params.append(limit)
            rows = [_row(r) for r in conn.execute(query, params).fetchall()]
            if len(rows) >= limit:
                return rows, rows[-1][0]
            return rows, max(end, after)

        out: tuple[list[EventRow], int] = self._read("read all", run)
        return out

    def last_position(self) -> int:
        if self._closed:
            raise BackendUnavailable("the store is closed")
        query = self._sql["ev_last_pos"]
        row = self._read("last position", lambda conn: conn.execute(query).fetchone())
        pos = int(row[0]) if row is not None else 0
        if pos > self._known_pos:
            with self._cond:
                self._known_pos = max(self._known_pos, pos)
        return pos

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Woken by NOTIFY (every commit appending events sends its last position);
        polls every ``poll_interval`` only while the listener connection is down."""
        deadline = time.monotonic() + timeout
        if self._known_pos > after:
            return True
        if self._closed:
            raise BackendUnavailable("the store is closed")
        self._ensure_listener()
        while True:
            with self._cond:
                gen, listening = self._listen_gen, self._listening
            # The listener was LISTENing before this read: a commit after it notifies.
            if self.last_position() > after:
                return True
            with self._cond:
                self._waiters += 1
                try:
                    while True:
                        if self._known_pos > after:
                            return True
                        if self._closed:
                            raise BackendUnavailable("the store is closed")
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        if not listening:
                            self._cond.wait(min(remaining, self._poll))
                            break
                        if self._listen_gen != gen or not self._listening:
                            break
                        self._cond.wait(remaining)
                finally:
                    self._waiters -= 1

    def stream_state(self, stream: str) -> tuple[int, StreamMeta | None]:
        q = self._sql

        def run(conn: psycopg.Connection[Any]) -> tuple[int, StreamMeta | None]:
            r = conn.execute(q["ev_version"], (stream,)).fetchone()
            version = int(r[0]) if r is not None and r[0] is not None else 0
            return version, _meta(conn.execute(q["ev_meta"], (stream,)).fetchone())

        out: tuple[int, StreamMeta | None] = self._read("stream state", run)
        return out

    def streams(self, prefix: str, after: str | None, limit: int) -> list[StreamRow]:
        """One ``GROUP BY`` over the ``(stream, version)`` index, from ``after``/``prefix``."""
        s = self._s
        query = f"SELECT stream, MAX(version), MAX(position) FROM {s}.events WHERE stream >= %s"
        params: list[Any] = [prefix]
        if after is not None and after >= prefix:
            query += " AND stream > %s"
            params.append(after)
        upper = prefix_upper_bound(prefix) if prefix else None
        if upper is not None:
            query += " AND stream < %s"
            params.append(upper)
        query += " GROUP BY stream ORDER BY stream LIMIT %s"
        params.append(limit)

        def run(conn: psycopg.Connection[Any]) -> list[StreamRow]:
            rows = conn.execute(query, params).fetchall()
            return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

        out: list[StreamRow] = self._read("list streams", run)
        return out

    def event_stats(self) -> dict[str, Any]:
        s = self._s

        def run(conn: psycopg.Connection[Any]) -> dict[str, Any]:
            # No pass over the events: index edges, the head, the sweep's counter.
            r = conn.execute(
                f"SELECT (SELECT MIN(position) FROM {s}.events), "
                f"(SELECT MAX(position) FROM {s}.events), "
                f"(SELECT value FROM {s}.meta WHERE key = 'events_removed')"
            ).fetchone()
            m = conn.execute(f"SELECT COUNT(*) FROM {s}.event_streams").fetchone()
            head = conn.execute(f"SELECT pos FROM {s}.head WHERE one").fetchone()
            assert r is not None and m is not None
            last = int(r[1] or 0)
            return {
                "first_position": int(r[0] or 0),
                "last_position": int(head[0]) if head is not None else last,
                "events": last - int(r[2] or 0),
                "streams_with_metadata": int(m[0]),
            }

        out: dict[str, Any] = self._read("event stats", run)
        return out

    # -- called by the backend's sweep and check --------------------------------------

    @staticmethod
    def sweep_events(
        conn: psycopg.Connection[Any], s: str, now: float, budget: int = 50_000
    ) -> int:
        """Delete events their stream's metadata hides, keeping each stream's last."""
        removed = 0
        for stream, max_age, max_count, truncate_before in conn.execute(
            f"SELECT stream, max_age, max_count, truncate_before FROM {s}.event_streams"
        ).fetchall():
            if removed >= budget:
                break
            meta = _meta((max_age, max_count, truncate_before))
            assert meta is not None
            last, low = _hidden_bounds(conn, s, stream, meta, now)
            if last and low > 1:
                cur = conn.execute(
                    f"DELETE FROM {s}.events WHERE stream = %s AND version < %s AND version < %s",
                    (stream, low, last),
                )
                removed += max(cur.rowcount, 0)
        if removed:  # the counter stats() derives the event count from (same transaction)
            conn.execute(
                f"UPDATE {s}.meta SET value = (value::bigint + %s)::text "
                "WHERE key = 'events_removed'",
                (removed,),
            )
        return removed

    @staticmethod
    def check_events(conn: psycopg.Connection[Any], s: str) -> tuple[list[str], int]:
        """Problems in the event tables, and how many events were checked."""

        def one(query: str) -> int:
            r = conn.execute(query).fetchone()
            return 0 if r is None or r[0] is None else int(r[0])

        problems: list[str] = []
        count = one(f"SELECT COUNT(*) FROM {s}.events")
        bad = one(
            f"SELECT COUNT(*) FROM {s}.events "
            "WHERE position < 1 OR version < 1 OR schema_version < 1"
        )
        if bad:
            problems.append(f"{bad} events have impossible metadata")
        holes = one(
            f"SELECT COUNT(*) FROM (SELECT stream FROM {s}.events GROUP BY stream "
            "HAVING MAX(version) - MIN(version) + 1 <> COUNT(*)) AS h"
        )
        if holes:
            problems.append(f"{holes} streams have holes in their versions")
        disorder = one(
            f"SELECT COUNT(*) FROM {s}.events a JOIN {s}.events b "
            "ON b.stream = a.stream AND b.version = a.version + 1 WHERE b.position <= a.position"
        )
        if disorder:
            problems.append(f"{disorder} events have a higher version but a lower position")
        maxpos = one(f"SELECT COALESCE(MAX(position), 0) FROM {s}.events")
        head = one(f"SELECT pos FROM {s}.head WHERE one")
        if maxpos > head:
            problems.append(
                f"the event head is at position {head} but the log holds position {maxpos}"
            )
        r = conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'events_removed'").fetchone()
        removed = None if r is None else int(r[0])
        if removed is None or maxpos - removed != count:
            problems.append(
                f"the events removal counter says {maxpos - (removed or 0)} events are stored, "
                f"but {count} are (stats() reports the counter)"
            )
        return problems, count
