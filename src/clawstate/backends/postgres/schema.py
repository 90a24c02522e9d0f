"""The PostgreSQL backend's schema: migrations, the probe for an existing store,
and every SQL statement of the write and maintenance paths (``{s}`` stands for the
quoted schema name and is replaced once, at start-up: :func:`statements`).

Why the statements look as they do (the log head, one-statement puts, the version
floor) is told in the package docstring, :mod:`clawstate.backends.postgres`.
"""

from __future__ import annotations

import re
from typing import Any, Final

import psycopg

from ...errors import ConfigError
from ..base import OP_EXPIRE, OP_PUT
from . import events as _events
from . import stats as _stats

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "migrate", "statements", "store_exists"]

DEFAULT_SCHEMA: Final = "clawstate"
_SCHEMA_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_ITEM_COLS: Final = "key, value, version, seq, created_at, updated_at, expires_at"
_LIVE: Final = "(expires_at IS NULL OR expires_at > %s)"

#: Schema migrations: entry N brings the schema from version N to N+1.  ``{s}``
#: is the quoted schema name.
_MIGRATIONS: Final[list[list[str]]] = [
    [
        """CREATE TABLE {s}.namespaces (
            id integer PRIMARY KEY,
            name text COLLATE "C" NOT NULL UNIQUE)""",
        # toast_tuple_target: rows carry the value twice (bytea + jsonb); keep rows
        # up to a page inline and uncompressed instead of TOASTing every ~1 KiB value.
        """CREATE TABLE {s}.items (
            ns integer NOT NULL,
            key text COLLATE "C" NOT NULL,
            value bytea NOT NULL,
            doc jsonb,
            opaque smallint NOT NULL DEFAULT 0,
            version bigint NOT NULL,
            seq bigint NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            expires_at double precision,
            PRIMARY KEY (ns, key)
        ) WITH (fillfactor = 90, toast_tuple_target = 8160)""",
        "CREATE INDEX items_expiry ON {s}.items (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE INDEX items_opaque ON {s}.items (ns, key) WHERE opaque <> 0",
        """CREATE TABLE {s}.changes (
            seq bigint PRIMARY KEY,
            ns integer NOT NULL,
            key text COLLATE "C" NOT NULL,
            op smallint NOT NULL,
            version bigint NOT NULL,
            ts double precision NOT NULL,
            value bytea)""",
        "CREATE INDEX changes_ns ON {s}.changes (ns, seq)",
        """CREATE TABLE {s}.idempotency (
            key text PRIMARY KEY,
            fingerprint bytea NOT NULL,
            result bytea NOT NULL,
            expires_at double precision NOT NULL)""",
        "CREATE INDEX idempotency_expiry ON {s}.idempotency (expires_at)",
        # The log head: the last seq handed out.  Its row lock orders write transactions.
        """CREATE TABLE {s}.head (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            seq bigint NOT NULL)""",
        "INSERT INTO {s}.head (seq) VALUES (0)",
        # Statistics from the start: a never-analysed table is estimated at ~2000 rows,
        # which would make the put statements' plans look huge.
        "ANALYZE {s}.head",
    ],
    _events.MIGRATION,
    [
        # Per namespace, the highest version a removed key had (no ABA, see _apply);
        # started from what the retained change log remembers of deletes and expiries.
        """CREATE TABLE IF NOT EXISTS {s}.version_floors (
            ns integer PRIMARY KEY,
            floor bigint NOT NULL)""",
        # The seq of the last commit that raised a floor (see _FIRST_VERSION).
        "ALTER TABLE {s}.head ADD COLUMN IF NOT EXISTS floor_seq bigint NOT NULL DEFAULT 0",
        "INSERT INTO {s}.version_floors AS f (ns, floor) "
        "SELECT ns, MAX(version) FROM {s}.changes WHERE op IN (1, 2) GROUP BY ns "
        "ON CONFLICT (ns) DO UPDATE SET floor = GREATEST(f.floor, excluded.floor)",
    ],
    # Per-namespace item and byte counters kept by triggers (stats() flat in N).
    _stats.MIGRATION,
    # The same for events: positions are gap-free, so the stored events are the head
    # position minus what the sweep removed, which it counts here (see events.py).
    [
        "INSERT INTO {s}.meta (key, value) "
        "SELECT 'events_removed', (COALESCE(MAX(position), 0) - COUNT(*))::text "
        "FROM {s}.events ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ],
]
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# -- SQL (``{s}`` is replaced by the quoted schema at start-up) ---------------------------

_EXPIRED: Final = "i.expires_at IS NOT NULL AND i.expires_at <= excluded.updated_at"
#: An overwrite bumps the version — over an expired row too (a new incarnation:
#: ``created_at`` restarts, the version goes on), so versions never repeat (no ABA).
_ON_CONFLICT: Final = f"""
    ON CONFLICT (ns, key) DO UPDATE SET
        value = excluded.value, doc = excluded.doc, opaque = excluded.opaque,
        seq = excluded.seq, updated_at = excluded.updated_at,
        expires_at = excluded.expires_at,
        version = i.version + 1,
        created_at = CASE WHEN {_EXPIRED} THEN excluded.created_at ELSE i.created_at END
    RETURNING i.seq, i.version, i.created_at"""
#: The version a key gets where no row is stored: its namespace's version floor + 1
#: (the highest version a removed key had; see _apply).  The floor is read in the
#: statement's snapshot, taken *before* it waited for the head's row lock, so a
#: delete committed meanwhile may have raised it unseen.  The head, re-read after
#: the wait, says so: ``floor_seq`` (the seq of the last commit that raised a floor)
#: is then beyond the head the snapshot saw.  In that (rare) case the key starts at
#: its own seq instead — above every version ever given out, since a version never
#: exceeds the seq of the write that set it.  ``{row_seq}`` and ``{ns}`` are SQL.
_FIRST_VERSION: Final = """CASE WHEN h.floor_seq > (SELECT seq FROM {{s}}.head) THEN {row_seq}
    ELSE COALESCE((SELECT f.floor FROM {{s}}.version_floors f WHERE f.ns = {ns}), 0) + 1 END"""

#: One plain put as one autocommit statement: take the log head (the row lock that
#: orders every write transaction of the schema; after waiting for it, READ COMMITTED
#: re-reads the newest head, so the seq follows the previous holder's), upsert the
#: item — version restarting at 1 over an expired row, exactly as apply_unit's
#: put_unconditional — append its change-log row, and queue the NOTIFY that COMMIT
#: delivers.  Named parameters: ns, key, value, doc, opaque, now, exp, logv, chan.
_PUT_ONE: Final = f"""
WITH h AS (UPDATE {{s}}.head SET seq = seq + 1 WHERE one RETURNING seq, floor_seq),
up AS (
    INSERT INTO {{s}}.items AS i
        (ns, key, value, doc, opaque, version, seq, created_at, updated_at, expires_at)
    SELECT %(ns)b::int, %(key)b::text, %(value)b::bytea, %(doc)b::text::jsonb,
           %(opaque)b::int2, {_FIRST_VERSION.format(row_seq="h.seq", ns="%(ns)b::int")},
           h.seq, %(now)b::float8, %(now)b::float8, %(exp)b::float8
    FROM h{_ON_CONFLICT}
), lg AS (
    INSERT INTO {{s}}.changes (seq, ns, key, op, version, ts, value)
    SELECT seq, %(ns)b::int, %(key)b::text, {OP_PUT}, version, %(now)b::float8,
           CASE WHEN %(logv)b::bool THEN %(value)b::bytea END
    FROM up
)
SELECT 1, up.seq, up.version, up.created_at, (SELECT pg_notify(%(chan)b, h.seq::text) FROM h)
FROM up
"""
#: The same for many puts with distinct keys (``unnest`` of column arrays; seq =
#: the old head + the row's position).  Parameters: the eight column arrays, their
#: length, the channel.
_PUT_MANY: Final = f"""
WITH t AS (
    SELECT * FROM unnest(%b::int[], %b::text[], %b::bytea[], %b::text[], %b::int2[],
                         %b::float8[], %b::float8[], %b::bool[])
        WITH ORDINALITY AS t(ns, key, value, doc, opaque, now, expires_at, log_value, ord)
), h AS (
    UPDATE {{s}}.head SET seq = seq + %b::int8 WHERE one
    RETURNING seq - %b::int8 AS base, seq, floor_seq
),
up AS (
    INSERT INTO {{s}}.items AS i
        (ns, key, value, doc, opaque, version, seq, created_at, updated_at, expires_at)
    SELECT t.ns, t.key, t.value, t.doc::jsonb, t.opaque,
           {_FIRST_VERSION.format(row_seq="h.base + t.ord", ns="t.ns")},
           h.base + t.ord, t.now, t.now, t.expires_at
    FROM t CROSS JOIN h{_ON_CONFLICT}
), lg AS (
    INSERT INTO {{s}}.changes (seq, ns, key, op, version, ts, value)
    SELECT up.seq, t.ns, t.key, {OP_PUT}, up.version, t.now,
           CASE WHEN t.log_value THEN t.value END
    FROM up CROSS JOIN h JOIN t ON t.ord = up.seq - h.base
)
SELECT up.seq - h.base, up.seq, up.version, up.created_at,
       (SELECT pg_notify(%b, h2.seq::text) FROM h AS h2)
FROM up CROSS JOIN h
"""

#: The first statement of every other write transaction: lock the head (so nobody
#: else writes until COMMIT) and read the counters the transaction continues from.
_LOCK_HEAD: Final = (
    "UPDATE {s}.head SET seq = seq WHERE one RETURNING seq, "
    "(SELECT COALESCE(MAX(id), 0) FROM {s}.namespaces), pos"
)
_SET_HEAD: Final = "UPDATE {s}.head SET seq = %b WHERE one"
_NOTIFY: Final = "SELECT pg_notify(%s, %s)"
_LAST_SEQ: Final = "SELECT seq FROM {s}.head WHERE one"
_NOTIFY_HEAD: Final = "SELECT pg_notify(%s, (SELECT seq FROM {s}.head WHERE one)::text)"
_NS_BY_NAMES: Final = "SELECT id, name FROM {s}.namespaces WHERE name = ANY(%b::text[])"
_PREFETCH_ROWS: Final = """
SELECT n.name, i.key, i.version, i.seq, i.created_at, i.updated_at, i.expires_at
FROM unnest(%b::text[], %b::text[]) AS t(name, key)
JOIN {s}.namespaces n ON n.name = t.name
JOIN {s}.items i ON i.ns = n.id AND i.key = t.key
"""
_PREFETCH_FLOORS: Final = """
SELECT n.name, f.floor FROM {s}.namespaces n JOIN {s}.version_floors f ON f.ns = n.id
WHERE n.name = ANY(%b::text[])
"""
_RAISE_FLOORS: Final = """
INSERT INTO {s}.version_floors AS f (ns, floor)
SELECT * FROM unnest(%b::int[], %b::int8[])
ON CONFLICT (ns) DO UPDATE SET floor = GREATEST(f.floor, excluded.floor)
"""
_SET_FLOOR_SEQ: Final = "UPDATE {s}.head SET floor_seq = %b WHERE one"
_PREFETCH_IDEM: Final = (
    "SELECT key, fingerprint, result, expires_at FROM {s}.idempotency WHERE key = ANY(%b::text[])"
)
_INSERT_NS: Final = (
    "INSERT INTO {s}.namespaces (id, name) SELECT * FROM unnest(%b::int[], %b::text[])"
)
_DELETE_ROWS: Final = """
DELETE FROM {s}.items i USING unnest(%b::int[], %b::text[]) AS t(ns, key)
WHERE i.ns = t.ns AND i.key = t.key
"""
_UPSERT_ROWS: Final = """
INSERT INTO {s}.items
    (ns, key, value, doc, opaque, version, seq, created_at, updated_at, expires_at)
SELECT ns, key, value, doc::jsonb, opaque, version, seq, created_at, updated_at, expires_at
FROM unnest(%b::int[], %b::text[], %b::bytea[], %b::text[], %b::int2[], %b::int8[],
            %b::int8[], %b::float8[], %b::float8[], %b::float8[])
    AS t(ns, key, value, doc, opaque, version, seq, created_at, updated_at, expires_at)
ON CONFLICT (ns, key) DO UPDATE SET
    value = excluded.value, doc = excluded.doc, opaque = excluded.opaque,
    version = excluded.version, seq = excluded.seq, created_at = excluded.created_at,
    updated_at = excluded.updated_at, expires_at = excluded.expires_at
"""
_INSERT_CHANGES: Final = """
INSERT INTO {s}.changes (seq, ns, key, op, version, ts, value)
SELECT * FROM unnest(%b::int8[], %b::int[], %b::text[], %b::int2[], %b::int8[],
                     %b::float8[], %b::bytea[])
"""
_UPSERT_IDEM: Final = """
INSERT INTO {s}.idempotency (key, fingerprint, result, expires_at)
SELECT * FROM unnest(%b::text[], %b::bytea[], %b::bytea[], %b::float8[])
ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
    result = excluded.result, expires_at = excluded.expires_at
"""
_GET: Final = f"SELECT {_ITEM_COLS} FROM {{s}}.items WHERE ns = %s AND key = %s"
_GET_MANY: Final = (
    f"SELECT {_ITEM_COLS} FROM {{s}}.items WHERE ns = %s AND key = ANY(%s::text[]) AND {_LIVE}"
)
_SWEEP_EXPIRE: Final = f"""
WITH victims AS (
    SELECT ns, key FROM {{s}}.items
    WHERE expires_at IS NOT NULL AND expires_at <= %(now)s
    ORDER BY ns, key LIMIT 10000
), gone AS (
    DELETE FROM {{s}}.items i USING victims v WHERE i.ns = v.ns AND i.key = v.key
    RETURNING i.ns, i.key, i.version
), numbered AS (
    SELECT ns, key, version, row_number() OVER (ORDER BY ns, key) AS n FROM gone
), logged AS (
    INSERT INTO {{s}}.changes (seq, ns, key, op, version, ts)
    SELECT %(base)s + n, ns, key, {OP_EXPIRE}, version, %(now)s FROM numbered
    RETURNING seq
), floors AS (
    INSERT INTO {{s}}.version_floors AS f (ns, floor)
    SELECT ns, MAX(version) FROM gone GROUP BY ns
    ON CONFLICT (ns) DO UPDATE SET floor = GREATEST(f.floor, excluded.floor)
), h AS (
    UPDATE {{s}}.head SET seq = %(base)s + (SELECT count(*) FROM numbered),
        floor_seq = CASE WHEN EXISTS (SELECT 1 FROM gone)
                         THEN %(base)s + (SELECT count(*) FROM numbered) ELSE floor_seq END
    WHERE one
    RETURNING seq
)
SELECT (SELECT count(*) FROM logged), (SELECT seq FROM h)
"""
_SWEEP_IDEM: Final = "DELETE FROM {s}.idempotency WHERE expires_at <= %s"
# Changes are in seq order and only nearly in ts order (clocks of several processes):
# trim the prefix before the first row young enough to keep, so the retained log stays
# gap-free (followers and check() rely on it), always keeping the newest row so that
# MAX(seq) — and so seq numbering — never goes back.  LEAST skips the NULLs of an
# empty log.
_SWEEP_TRIM: Final = """
DELETE FROM {s}.changes WHERE seq < LEAST(
    (SELECT seq FROM {s}.changes WHERE ts >= %s ORDER BY seq LIMIT 1),
    (SELECT MAX(seq) FROM {s}.changes),
    (SELECT MIN(seq) FROM {s}.changes) + 50000)
"""

#: The statements :func:`statements` prepares (name -> text with ``{s}``).
_STATEMENTS: Final[dict[str, str]] = {
    "put_one": _PUT_ONE,
    "put_many": _PUT_MANY,
    "lock_head": _LOCK_HEAD,
    "set_head": _SET_HEAD,
    "notify_head": _NOTIFY_HEAD,
    "last_seq": _LAST_SEQ,
    "ns_by_names": _NS_BY_NAMES,
    "prefetch_rows": _PREFETCH_ROWS,
    "prefetch_idem": _PREFETCH_IDEM,
    "prefetch_floors": _PREFETCH_FLOORS,
    "raise_floors": _RAISE_FLOORS,
    "set_floor_seq": _SET_FLOOR_SEQ,
    "insert_ns": _INSERT_NS,
    "delete_rows": _DELETE_ROWS,
    "upsert_rows": _UPSERT_ROWS,
    "insert_changes": _INSERT_CHANGES,
    "upsert_idem": _UPSERT_IDEM,
    "get": _GET,
    "get_many": _GET_MANY,
    "sweep_expire": _SWEEP_EXPIRE,
    "sweep_idem": _SWEEP_IDEM,
    "sweep_trim": _SWEEP_TRIM,
    **_events.SQL,
}


def statements(quoted: str) -> dict[str, str]:
    """Every statement with ``{s}`` replaced by the quoted schema name."""
    return {name: text.replace("{s}", quoted) for name, text in _STATEMENTS.items()}


def check_schema_name(schema: str) -> None:
    """Refuse a ``?schema=`` that is not a plain PostgreSQL identifier."""
    if not _SCHEMA_RE.fullmatch(schema):
        raise ConfigError(
            "store.url",
            f"?schema= must be a PostgreSQL identifier (letters, digits, _; at most 63, "
            f"not starting with a digit), got {schema!r}",
        )


def store_exists(conn: psycopg.Connection[Any], quoted: str) -> bool:
    """Whether the schema holds a clawstate store (its ``meta`` table has a schema
    version).  ``to_regclass`` answers NULL for a missing schema or table instead of
    failing, so this reads the catalog only: no DDL, no lock, nothing written — the
    probe ``create=False`` opens with, before any migration."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{quoted}.meta",)).fetchone()
    if row is None or row[0] is None:
        return False
    found = conn.execute(f"SELECT 1 FROM {quoted}.meta WHERE key = 'schema_version'").fetchone()
    return found is not None


def migrate(conn: psycopg.Connection[Any], quoted: str, schema: str, ddl_key: int) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (creating it if need be), under the
    schema's DDL advisory lock so that concurrent openers do not race."""
    s = quoted
    try:
        row = conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) == SCHEMA_VERSION:
            return  # the usual case: no DDL, no lock, no CREATE privilege needed
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        pass
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ddl_key,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        row = conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise ConfigError(
                "store.url",
                f"schema {schema!r} has clawstate schema version {current}; this "
                f"clawstate reads up to {SCHEMA_VERSION} — upgrade clawstate",
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement.replace("{s}", s))
        conn.execute(
            f"INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
