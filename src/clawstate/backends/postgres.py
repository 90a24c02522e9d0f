"""The PostgreSQL backend: psycopg 3, a connection pool, LISTEN/NOTIFY.

Many ``clawstate`` processes share one database.  What that takes, and why the
code is shaped the way it is:

**Seq order is commit order.**  Watchers read ``changes(after_seq)`` and move
their position to the last seq they saw, so a change that commits *later* with a
*lower* seq than one already seen would be skipped for ever.  A PostgreSQL
sequence hands out numbers at ``nextval`` time, not at commit, so it cannot be
used.  Instead the schema has a one-row table ``head`` holding the last seq
handed out, and every write transaction begins by updating it
(``UPDATE head SET seq = seq + n RETURNING …``).  The row lock that takes is held
until COMMIT, so write transactions of one schema are serial; a transaction
that waited for it re-reads the *newest* head when the lock is granted (READ
COMMITTED re-checks an updated row), so its seqs follow the previous holder's,
and PostgreSQL releases row locks only after the commit is visible.  Hence the
log is gap-free in commit order, and the head (or ``MAX(seq)``) read in any
snapshot is a watermark: every lower seq is committed and visible.  A row lock
rather than ``pg_advisory_xact_lock`` + ``MAX(seq)``: the advisory lock would
have to be its own statement *before* the one reading ``MAX(seq)`` (a statement's
snapshot predates a lock it waits for), while the head update orders and numbers
in the same statement — so a plain put is *one* autocommit statement, saving the
``BEGIN``/lock/``COMMIT`` messages (~150 µs measured per put here).  The
serialisation costs little because of group commit: concurrent writers of a
process share one transaction, so one lock and one WAL flush serve a whole
batch.  CAS is correct across processes for the same reason: version checks run
while the head is held.

**Round trips.**  A batch of concurrent units is one transaction on one pooled
connection, its statements pipelined.  Two shapes:

* *plain puts* (no condition, no idempotency key — the hot path): one
  statement per batch (split only where a key repeats), run in autocommit —
  its own transaction: it advances the head, upserts the items with
  ``INSERT … ON CONFLICT DO UPDATE`` computing versions server-side (``unnest``
  of column arrays for several), appends their change-log rows and queues the
  NOTIFY.  **One round trip and one WAL flush per batch.**
* *everything else* (CAS, create-only, deletes, idempotency keys, key rotation):
  the first round trip locks the head and prefetches every row, namespace and
  idempotency record the batch names; :func:`~._apply.apply_unit` — the shared
  write semantics — then runs over :class:`_Rows`, a ``RowAccess`` that reads
  that snapshot (safe: nobody else can write while we hold the head) and stages
  each unit's changes.  A unit whose check fails has its staged changes undone
  and fails alone; it never reaches the server, so no ``SAVEPOINT`` (and no
  subtransaction, which past 64 per transaction degrade every snapshot in the
  cluster) is needed.  The survivors' net rows are written with a handful of
  multi-row statements plus ``COMMIT``: **two round trips per batch**, whatever
  its size.

A database error (never a failed check) aborts the batch; then each unit is
retried alone, as on SQLite, so one bad unit cannot fail its neighbours.

**Values.**  ``value bytea`` holds the codec's bytes, always.  When the bytes
are plain JSON (msgpack or json serializer, compressed or not — the backend
reads the codec header and decodes by itself, no key needed), ``doc jsonb``
holds the same value and :meth:`PostgresBackend.query` runs in SQL.  Encrypted
values, and the rare values jsonb cannot hold exactly (NaN/±Infinity, NUL in a
string, nested bytes) get ``doc`` NULL and an ``opaque`` mark; queries evaluate
those rows in Python with the facade's decoder and merge them with the SQL
rows, so a query answers the same on every backend.  ``?encrypted_query=refuse``
makes a query on a namespace holding encrypted values an error instead.

**Queries** compile the AST of :mod:`clawstate.query` to SQL with bound
parameters only (paths are ``text[]`` parameters under ``#>``), ordered by
``(jsonb_typeof rank, typed value)`` pairs and resumed with a keyset condition
decoded from the page token.  The page and its next token are then produced by
:func:`~clawstate.query.run_query` over the ``limit + 1`` rows SQL returned
(plus any opaque rows), so tokens are exactly the evaluator's and interchangeable
with every other backend's.  :meth:`PostgresBackend.ensure_index` creates
per-namespace expression indexes that those filters use.

**Watch** LISTENs on one dedicated connection per backend (a thread fans
notifications out through a condition variable); every write transaction sends
``NOTIFY`` with its last seq, delivered at commit.  If the listener connection
is lost, waiters poll every ``poll_interval`` until it is back.  (PostgreSQL
serialises the commits of notifying transactions cluster-wide; within a schema
ours are serial anyway, so only writers of *different* schemas feel it.)

**Events** (:mod:`clawstate.events._postgres`): the head row also holds ``pos``,
the last event position handed out.  Event appends take the general path: round
trip 1 locks the head (reading ``pos``) and prefetches the batch's stream versions,
stream metadata and event ids; positions are numbered client-side under the lock
and written with the new ``pos`` in round trip 2 — gap-free and in commit order
across processes, like seqs.  Such commits ``NOTIFY`` with ``"<seq> <pos>"``.

**Failures.**  psycopg and pool errors become :class:`BackendUnavailable` (a
violated constraint: :class:`IntegrityError`) at this module's edge.  A lost
connection is dropped by the pool, whose idle connections are then checked;
reads are retried once on a fresh connection, writes are not (their commit may
have happened) — an acknowledged write is one whose COMMIT returned.

**Durability** is the server's: a COMMIT returns once PostgreSQL has flushed
its WAL (``synchronous_commit`` as configured there; ``stats()`` shows it), so
``durability = "process"`` and ``"power"`` behave alike here.

URL: ``postgresql://user:pass@host:5432/db?schema=clawstate&pool_max=10``.
clawstate's own parameters are ``schema`` (default ``clawstate``),
``pool_min``/``pool_max`` (1/10), ``pool_timeout`` (seconds a caller waits for
a connection, 10), ``poll_interval`` (watch fallback, 1 s) and
``encrypted_query`` (``scan``/``refuse``); any other parameter is a libpq
connection option (``sslmode``, ``application_name``, ``connect_timeout``…).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..codec import HEADER_VERSION, Codec, CodecPolicy
from ..errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    IntegrityError,
    InvalidRequest,
)
from ..events import _postgres as _events
from ..query import MAX_PATH_SEGMENTS, And, Compare, Eq, Filter, In, Or, run_query
from ..types import Change
from ._apply import Row, apply_unit, idempotency_scope
from ._group_commit import GroupCommitter
from ._keyorder import prefix_upper_bound
from .base import (
    OP_APPEND,
    OP_EXPIRE,
    OP_NAMES,
    OP_PUT,
    OP_REWRAP,
    Capabilities,
    Decoder,
    Outcome,
    StoredItem,
    SweepResult,
    WriteUnit,
)

if TYPE_CHECKING:
    from ..config import Config, ParsedUrl
    from ..query import Query

__all__ = [
    "DEFAULT_SCHEMA",
    "OPAQUE_ENCRYPTED",
    "OPAQUE_NONE",
    "OPAQUE_PLAIN",
    "SCHEMA_VERSION",
    "PostgresBackend",
    "value_doc",
]

DEFAULT_SCHEMA: Final = "clawstate"
_SCHEMA_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: ``items.opaque``: 0 — ``doc`` holds the value (or the value is raw bytes, which
#: no path reaches); 1 — JSON-compatible but not exactly representable in jsonb;
#: 2 — encrypted.  Rows with ``opaque <> 0`` are queried in Python.
OPAQUE_NONE: Final = 0
OPAQUE_PLAIN: Final = 1
OPAQUE_ENCRYPTED: Final = 2

# The codec's stored-value header (see clawstate.codec): byte 0 the format
# version, byte 1 flags — bits 0-1 serializer, bit 2 zstd, bit 3 encrypted.
_SER_RAW: Final = 0
_SER_MSGPACK: Final = 1
_SER_JSON: Final = 2
_F_ZSTD: Final = 0b0100
_F_ENC: Final = 0b1000

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

# -- query compilation -------------------------------------------------------------------

#: Ascending rank of a jsonb node, as clawstate.query defines it (NULL: missing).
_RANK: Final = (
    "(CASE jsonb_typeof({x}) WHEN 'null' THEN 0 WHEN 'string' THEN 1 WHEN 'number' THEN 2 "
    "WHEN 'boolean' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 ELSE 6 END)"
)
#: The string of a string node (else NULL), compared by code point.
_STR: Final = "((CASE WHEN jsonb_typeof({x}) = 'string' THEN {x} #>> '{{}}' END) COLLATE \"C\")"
#: Number, boolean (0/1), array length or member count; NULL for the other kinds.
_NUM: Final = (
    "(CASE jsonb_typeof({x}) WHEN 'number' THEN ({x})::numeric "
    "WHEN 'boolean' THEN (CASE WHEN {x} = 'true'::jsonb THEN 1 ELSE 0 END)::numeric "
    "WHEN 'array' THEN jsonb_array_length({x})::numeric "
    "WHEN 'object' THEN (SELECT count(*) FROM jsonb_object_keys({x}))::numeric END)"
)
#: A path segment PostgreSQL's ``#>`` would read as an array index though it is not
#: ASCII digits (``-1``, ``+1``, `` 1``): such steps must only ever index objects.
_SIGNED_INDEX: Final = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
#: Numbers beyond this magnitude compare like it: stored numbers are 64-bit ints or
#: doubles (< 1.8e308), and ``str()`` of a huge int is capped at 4300 digits.
_NUM_CLAMP: Final = 10**400
_CMP_SQL: Final = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}


def _json_text(value: bool | int | float | str | None) -> str | None:
    """The scalar as jsonb input text; None when no jsonb document can hold it."""
    if isinstance(value, str) and "\x00" in value:
        return None  # jsonb cannot hold NUL: only opaque rows (evaluated in Python) can match
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _NUM_CLAMP:
        return None  # no stored number is that large
    return msgspec.json.encode(value).decode("utf-8")


def _numeric_text(value: int | float) -> str:
    if isinstance(value, int) and abs(value) > _NUM_CLAMP:
        return "1e401" if value > 0 else "-1e401"
    return repr(value) if isinstance(value, float) else str(value)


class _Compiler:
    """Builds one query's SQL with named, bound parameters."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._paths: dict[tuple[str, ...], str] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def path(self, path: tuple[str, ...]) -> str:
        """``doc #> path`` with the query module's path rules (NULL when missing)."""
        found = self._paths.get(path)
        if found is not None:
            return found
        if any("\x00" in seg for seg in path):
            expr = "NULL::jsonb"  # jsonb keys cannot contain NUL: missing in every doc
        else:
            guards = []
            for i, seg in enumerate(path):
                if _SIGNED_INDEX.fullmatch(seg) and not (seg.isascii() and seg.isdigit()):
                    parent = "doc" if i == 0 else f"(doc #> {self.bind(list(path[:i]))}::text[])"
                    guards.append(f"jsonb_typeof({parent}) = 'object'")
            expr = f"(doc #> {self.bind(list(path))}::text[])"
            if guards:
                expr = f"(CASE WHEN {' AND '.join(guards)} THEN {expr} END)"
        self._paths[path] = expr
        return expr

    def filter(self, f: Filter) -> str:
        if isinstance(f, Eq):
            text = _json_text(f.operand.value)
            if text is None:
                return "FALSE"
            return f"({self.path(f.path)} = {self.bind(text)}::jsonb)"
        if isinstance(f, In):
            texts = [t for t in (_json_text(s.value) for s in f.operands) if t is not None]
            if not texts:
                return "FALSE"
            return f"({self.path(f.path)} = ANY({self.bind(texts)}::jsonb[]))"
        if isinstance(f, Compare):
            return self._compare(f)
        glue = " AND " if isinstance(f, And) else " OR "
        assert isinstance(f, And | Or)
        return "(" + glue.join(self.filter(c) for c in f.clauses) + ")"

    def _compare(self, f: Compare) -> str:
        x = self.path(f.path)
        op = _CMP_SQL[f.op]
        value = f.operand.value
        if f.operand.kind == "string":
            assert isinstance(value, str)
            text = f"(({x} #>> '{{}}') COLLATE \"C\")"
            return f"(jsonb_typeof({x}) = 'string' AND {self._str_cmp(text, op, value)})"
        assert isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(value, int) and abs(value) > _NUM_CLAMP:
            above = value > 0  # the operand is beyond every stored number
            holds = (op in ("<", "<=")) == above
            return f"(jsonb_typeof({x}) = 'number')" if holds else "FALSE"
        # Typed, and bounded within the number range of jsonb's btree order (numbers
        # sort below booleans), so that an expression index on the path serves it.
        text = msgspec.json.encode(value).decode("ascii")
        bound = " AND " + f"{x} < 'false'::jsonb" if op in (">", ">=") else ""
        return f"(jsonb_typeof({x}) = 'number' AND {x} {op} {self.bind(text)}::jsonb{bound})"

    def _str_cmp(self, s: str, op: str, value: str) -> str:
        """``s op value`` for a string expression ``s`` that never contains NUL."""
        head, nul, _ = value.partition("\x00")
        if not nul:
            return f"{s} {op} {self.bind(value)}"
        # value = head + NUL + tail, and s has no NUL: s > value <=> s > head, and
        # s < value <=> s <= head (s can never equal value).
        if op in (">", ">="):
            return f"{s} > {self.bind(head)}"
        if op in ("<", "<="):
            return f"{s} <= {self.bind(head)}"
        return "FALSE"

    # -- sort & keyset ------------------------------------------------------------------

    def sort_parts(self, path: tuple[str, ...]) -> tuple[str, str, str]:
        x = self.path(path)
        return _RANK.format(x=x), _STR.format(x=x), _NUM.format(x=x)

    def position_eq(self, parts: tuple[str, str, str], rank: int, raw: Any) -> str:
        r, s, n = parts
        if rank in (0, 6):
            return f"{r} = {rank}"
        if rank == 1:
            if "\x00" in raw:
                return "FALSE"
            return f"({r} = 1 AND {s} = {self.bind(raw)})"
        return f"({r} = {rank} AND {n} = {self.bind(_numeric_text(raw))}::numeric)"

    def position_after(
        self, parts: tuple[str, str, str], rank: int, raw: Any, descending: bool
    ) -> str:
        r, s, n = parts
        op = "<" if descending else ">"
        if rank in (0, 6):
            return f"{r} {op} {rank}"
        if rank == 1:
            within = self._str_cmp(s, op, raw)
        else:
            within = f"{n} {op} {self.bind(_numeric_text(raw))}::numeric"
        return f"({r} {op} {rank} OR ({r} = {rank} AND {within}))"


def _token_positions(token: str) -> tuple[list[tuple[int, Any]], str]:
    """The sort positions and key a (validated) page token resumes after."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    doc = json.loads(raw.decode("ascii"))
    positions: list[tuple[int, Any]] = []
    for rank, value in doc[2]:
        if isinstance(value, dict):  # {"int": hex}: an integer past 64 bits
            value = int(value["int"], 16)
        positions.append((int(rank), value))
    return positions, str(doc[3])


# -- values → jsonb ----------------------------------------------------------------------

#: Byte pairs that a msgpack payload must contain to hold NaN/±Infinity (a float
#: marker before an all-ones exponent) or a bin value.  Absent (the usual case),
#: decoding and re-encoding as JSON is exact and needs no walk over the value.
_SUSPECT: Final = re.compile(rb"[\xca\xcb][\x7f\xff]|[\xc4-\xc6]")
_MSGPACK_DEC: Final = msgspec.msgpack.Decoder()
_JSON_ENC: Final = msgspec.json.Encoder()


def _jsonable(v: Any) -> bool:
    """No non-finite float, no bytes, only str keys: jsonb represents it exactly."""
    t = type(v)
    if t is dict:
        return all(type(k) is str and _jsonable(x) for k, x in v.items())
    if t is list:
        return all(_jsonable(x) for x in v)
    if t is float:
        return bool(v - v == 0.0)  # false for NaN and ±inf
    return t is str or t is int or t is bool or v is None


def value_doc(data: bytes, codec: Codec | None = None) -> tuple[str | None, int]:
    """``(jsonb text or None, opaque mark)`` for stored ``data`` (codec bytes).

    Reads the codec header: plain msgpack/json values (compressed ones too, decoded
    with ``codec``, which needs no key for them) become jsonb text; raw bytes get no
    document (no path reaches into them); encrypted values and values jsonb cannot
    hold exactly are opaque.
    """
    if len(data) < 2 or data[0] != HEADER_VERSION:
        return None, OPAQUE_PLAIN  # not codec bytes: check() reports it
    flags = data[1]
    if flags & _F_ENC:
        return None, OPAQUE_ENCRYPTED
    ser = flags & 0b11
    if ser == _SER_RAW:
        return None, OPAQUE_NONE
    try:
        if flags == _SER_JSON:
            if b"\\u0000" in data:
                return None, OPAQUE_PLAIN
            return data[2:].decode("utf-8"), OPAQUE_NONE
        if flags == _SER_MSGPACK:
            value = _MSGPACK_DEC.decode(data[2:])
            suspect = _SUSPECT.search(data) is not None
        else:
            value = (codec or _DOC_CODEC).decode("", "", data)
            suspect = True
        if suspect and not _jsonable(value):
            return None, OPAQUE_PLAIN
        text = _JSON_ENC.encode(value)
    except (ClawStateError, msgspec.DecodeError, UnicodeDecodeError, TypeError, ValueError):
        return None, OPAQUE_PLAIN
    if b"\\u0000" in text:
        return None, OPAQUE_PLAIN
    return text.decode("utf-8"), OPAQUE_NONE


_DOC_CODEC: Final = Codec(CodecPolicy())


# -- errors ------------------------------------------------------------------------------


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (or the server) went away."""
    if isinstance(exc, psycopg.InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate or ""
        return not state or state.startswith(("08", "57P"))
    return False


def _translate(exc: BaseException, what: str) -> ClawStateError:
    """A driver or pool error as the clawstate error tree (the backend's edge)."""
    if isinstance(exc, ClawStateError):
        return exc
    if isinstance(exc, PoolClosed):
        return BackendUnavailable(f"{what}: the store is closed")
    if isinstance(exc, PoolTimeout):
        return BackendUnavailable(
            f"{what}: no PostgreSQL connection became available in time "
            f"(server down, unreachable or out of connections): {exc}"
        )
    if isinstance(exc, psycopg.IntegrityError):
        return IntegrityError(f"{what}: PostgreSQL refused a row ({exc.sqlstate}): {exc}")
    # A connection that dies inside a pipeline surfaces as a secondary error ("cannot
    # exit pipeline mode while busy"); report the first error with a server code.
    cause: BaseException | None = exc
    while cause is not None and not getattr(cause, "sqlstate", None):
        cause = cause.__context__
    shown = cause if isinstance(cause, psycopg.Error) else exc
    state = f" ({shown.sqlstate})" if isinstance(shown, psycopg.Error) and shown.sqlstate else ""
    if _lost(exc) or (shown is not exc and _lost(shown)):
        return BackendUnavailable(
            f"{what}: lost the connection to PostgreSQL (server restarted, stopped or "
            f"unreachable){state}: {shown}"
        )
    if isinstance(exc, psycopg.Error):
        return BackendUnavailable(f"{what}: PostgreSQL error{state}: {shown}")
    return BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def _fetch_all(query: str, params: Sequence[Any]) -> Callable[[psycopg.Connection[Any]], Any]:
    return lambda conn: conn.execute(query, params, binary=True).fetchall()


# -- write jobs --------------------------------------------------------------------------


class _Job:
    """One caller's unit plus what the caller thread precomputed for it."""

    __slots__ = ("docs", "events_only", "plain", "unit")

    def __init__(self, unit: WriteUnit, docs: dict[int, tuple[str | None, int]]) -> None:
        self.unit = unit
        #: id(value bytes) -> (jsonb text, opaque): docs are computed before queueing,
        #: in the caller's thread, not in the batch leader's.
        self.docs = docs
        self.plain = (
            unit.idempotency_key is None
            and not unit.events  # event appends take their own path or the general one
            and all(
                w.op == OP_PUT and w.if_version is None and not w.if_absent and not w.keep_ttl
                for w in unit.writes
            )
        )
        #: appends only (no metadata, deletes, state writes or idempotency key): the
        #: one-statement event path can take it
        self.events_only = (
            bool(unit.events)
            and not unit.writes
            and unit.idempotency_key is None
            and all(ew.events and ew.meta is None and not ew.delete for ew in unit.events)
        )


#: A row as the general path keeps it: (version, seq, created_at, updated_at,
#: expires_at, value or None when unchanged, jsonb text, opaque).
_Full: TypeAlias = tuple[int, int, float, float, float | None, bytes | None, str | None, int]
_Key: TypeAlias = tuple[str, str]
_MISSING: Final = object()


class _Rows(_events.PostgresEventRows):
    """RowAccess (and EventRowAccess) for the general path: reads what was prefetched
    while holding the log head, stages writes, and undoes a failed unit's staged
    writes (see module doc)."""

    def __init__(
        self,
        backend: PostgresBackend,
        ns_ids: dict[str, int],
        rows: dict[_Key, _Full | None],
        seq: int,
        max_ns: int,
        idem: dict[str, tuple[bytes, bytes, float]],
        docs: dict[int, tuple[str | None, int]],
        conn: psycopg.Connection[Any],
        pos: int = 0,
        events: _events.EventPrefetch | None = None,
        floors: dict[str, int] | None = None,
    ) -> None:
        self.backend = backend
        #: version floors by namespace name: prefetched for the batch's namespaces,
        #: then raised by its deletes (written at flush)
        self.floors: dict[str, int] = floors if floors is not None else {}
        self.floors_new: dict[str, int] = {}
        self._s = backend._s
        self._ev_init(events if events is not None else _events.EventPrefetch(), pos)
        self.ns_ids = ns_ids
        self.rows = rows
        self.seq = seq
        self.max_ns = max_ns
        self.idem = idem
        self.docs = docs
        self.conn = conn
        self.dirty: set[_Key] = set()
        self.stored: set[_Key] = {k for k, r in rows.items() if r is not None}
        self.logs: list[tuple[int, str, str, int, int, float, bytes | None]] = []
        self.idem_new: dict[str, tuple[bytes, bytes, float]] = {}
        self.new_ns: dict[str, int] = {}
        self._journal: list[tuple[str, Any, Any, bool]] = []
        self._mark: tuple[int, int, int, dict[str, int]] = (seq, max_ns, 0, {})
        self._ev_marked = self._ev_mark()

    # -- units ---------------------------------------------------------------------------

    def begin_unit(self) -> None:
        self._journal = []
        self._mark = (self.seq, self.max_ns, len(self.logs), dict(self.new_ns))
        self._ev_marked = self._ev_mark()

    def undo_unit(self) -> None:
        for kind, key, before, was_dirty in reversed(self._journal):
            if kind == "row":
                if before is _MISSING:
                    self.rows.pop(key, None)
                else:
                    self.rows[key] = before
                if not was_dirty:
                    self.dirty.discard(key)
            elif kind == "floor":
                if before is _MISSING:
                    self.floors_new.pop(key, None)
                else:
                    self.floors_new[key] = before
            elif kind != "idem":
                self._ev_undo_entry(kind, key, before)
            elif before is _MISSING:
                self.idem_new.pop(key, None)
            else:
                self.idem_new[key] = before
        self._journal = []
        self.seq, self.max_ns, n_logs, self.new_ns = self._mark
        del self.logs[n_logs:]
        self._ev_undo(self._ev_marked)

    def _set(self, key: _Key, row: _Full | None) -> None:
        self._journal.append(("row", key, self.rows.get(key, _MISSING), key in self.dirty))
        self.rows[key] = row
        self.dirty.add(key)

    def _current(self, namespace: str, key: str) -> _Full | None:
        k = (namespace, key)
        if k in self.rows:
            return self.rows[k]
        # Not prefetched (cannot happen for a unit's own writes): read it; the head is held.
        found = self.backend._read_row(self.conn, self.ns_ids.get(namespace), key)
        self.rows[k] = found
        if found is not None:
            self.stored.add(k)
        return found

    def ns_id(self, name: str) -> int:
        nid = self.ns_ids.get(name) or self.new_ns.get(name)
        if nid is None:
            self.max_ns += 1  # ids are assigned while the head is held: no one else can
            nid = self.new_ns[name] = self.max_ns
        return nid

    def _doc(self, value: bytes) -> tuple[str | None, int]:
        found = self.docs.get(id(value))
        return found if found is not None else value_doc(value, self.backend._codec)

    # -- RowAccess -----------------------------------------------------------------------

    def read(self, namespace: str, key: str) -> Row | None:
        r = self._current(namespace, key)
        return None if r is None else Row(r[0], r[1], r[2], r[4])

    def upsert(
        self,
        namespace: str,
        key: str,
        value: bytes,
        version: int,
        seq: int,
        created_at: float,
        updated_at: float,
        expires_at: float | None,
        exists: bool,
    ) -> None:
        self.ns_id(namespace)
        doc, opaque = self._doc(value)
        self._set(
            (namespace, key), (version, seq, created_at, updated_at, expires_at, value, doc, opaque)
        )

    def put_unconditional(
        self,
        namespace: str,
        key: str,
        value: bytes,
        now: float,
        expires_at: float | None,
    ) -> tuple[int, float, int]:
        seq = self.next_seq()
        r = self._current(namespace, key)
        if r is None:
            version, created = self.version_floor(namespace) + 1, now
        elif r[4] is not None and r[4] <= now:
            version, created = r[0] + 1, now  # a new incarnation, never an old version
        else:
            version, created = r[0] + 1, r[2]
        self.upsert(namespace, key, value, version, seq, created, now, expires_at, r is not None)
        return version, created, seq

    def delete(self, namespace: str, key: str) -> None:
        self._set((namespace, key), None)

    def version_floor(self, namespace: str) -> int:
        staged = self.floors_new.get(namespace)
        if staged is not None:
            return staged
        found = self.floors.get(namespace)
        if found is None:
            # Not prefetched (cannot happen for a unit's own writes): read it; the head
            # is held, so this statement's snapshot is current.
            nid = self.ns_ids.get(namespace)
            r = (
                None
                if nid is None
                else self.conn.execute(
                    f"SELECT floor FROM {self._s}.version_floors WHERE ns = %s", (nid,)
                ).fetchone()
            )
            found = self.floors[namespace] = 0 if r is None else int(r[0])
        return found

    def raise_floor(self, namespace: str, version: int) -> None:
        if version > self.version_floor(namespace):
            self._journal.append(
                ("floor", namespace, self.floors_new.get(namespace, _MISSING), False)
            )
            self.floors_new[namespace] = version

    def rewrite(self, namespace: str, key: str, value: bytes) -> None:
        r = self._current(namespace, key)
        if r is not None:
            doc, opaque = self._doc(value)
            self._set((namespace, key), (*r[:5], value, doc, opaque))

    def log(
        self,
        seq: int,
        namespace: str,
        key: str,
        op: int,
        version: int,
        ts: float,
        value: bytes | None,
    ) -> None:
        self.ns_id(namespace)
        self.logs.append((seq, namespace, key, op, version, ts, value))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def idempotency_get(self, key: str) -> tuple[bytes, bytes, float] | None:
        return self.idem_new.get(key) or self.idem.get(key)

    def idempotency_put(self, key: str, fingerprint: bytes, result: bytes, expires: float) -> None:
        self._journal.append(("idem", key, self.idem_new.get(key, _MISSING), False))
        self.idem_new[key] = (fingerprint, result, expires)

    # -- flush ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Queue the net effect of every surviving unit (pipeline: no round trip)."""
        conn, q = self.conn, self.backend._sql
        ids = {**self.ns_ids, **self.new_ns}
        if self.new_ns:
            conn.execute(q["insert_ns"], (list(self.new_ns.values()), list(self.new_ns)))
        gone = [k for k in self.dirty if self.rows[k] is None and k in self.stored]
        if gone:
            conn.execute(q["delete_rows"], ([ids[n] for n, _ in gone], [k for _, k in gone]))
        kept = [(k, r) for k in self.dirty if (r := self.rows[k]) is not None]
        if kept:
            cols: list[list[Any]] = [[] for _ in range(10)]
            for (name, key), r in kept:
                value = r[5]
                assert value is not None
                for col, v in zip(
                    cols,
                    (ids[name], key, value, r[6], r[7], r[0], r[1], r[2], r[3], r[4]),
                    strict=True,
                ):
                    col.append(v)
            conn.execute(q["upsert_rows"], cols)
        if self.logs:
            lcols: list[list[Any]] = [[] for _ in range(7)]
            for seq, name, key, op, version, ts, value in self.logs:
                for col, v in zip(
                    lcols, (seq, ids[name], key, op, version, ts, value), strict=True
                ):
                    col.append(v)
            conn.execute(q["insert_changes"], lcols)
        if self.idem_new:
            icols: list[list[Any]] = [list(self.idem_new), [], [], []]
            for fp, result, expires in self.idem_new.values():
                icols[1].append(fp)
                icols[2].append(result)
                icols[3].append(expires)
            conn.execute(q["upsert_idem"], icols)
        if self.floors_new:
            conn.execute(
                q["raise_floors"],
                ([ids[n] for n in self.floors_new], list(self.floors_new.values())),
            )
            # Tells a one-statement put whose snapshot predates this commit that its
            # floors are stale (see _FIRST_VERSION).
            conn.execute(q["set_floor_seq"], (self.seq,))
        self.ev_flush(q)
        if self.ev_rows:
            conn.execute(
                q["ev_set_head"], (self.seq, self.pos, self.backend._channel), prepare=True
            )
        elif self.logs:
            conn.execute(q["set_head"], (self.seq,), prepare=True)
            conn.execute(_NOTIFY, (self.backend._channel, str(self.seq)))


# -- the backend -------------------------------------------------------------------------


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: no JIT.  Its compile time (10-20 ms) is pure loss on
    the short statements of a key/value store, and the planner's cost estimates on
    small or young tables are easily high enough to trigger it."""
    conn.execute("SET jit = off")


def _lock_key(schema: str, purpose: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``schema`` (same in every process)."""
    digest = hashlib.blake2b(f"clawstate:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _text_array_literal(segments: Sequence[str]) -> str:
    inner = ",".join('"' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"' for seg in segments)
    return "{" + inner + "}"


_OWN_PARAMS: Final = ("schema", "pool_min", "pool_max", "pool_timeout", "poll_interval")


def _param_number(params: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = params.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value != value or value == float("inf"):
        raise ConfigError("store.url", f"?{name}= must be a number >= {minimum:g}, got {raw!r}")
    return value


class PostgresBackend(_events.PostgresEventLog):
    """Backend over one PostgreSQL schema (see the module docstring)."""

    name = "postgresql"
    capabilities = Capabilities(durable=True, multi_process=True, native_query=True, events=True)

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout: float = 10.0,
        poll_interval: float = 1.0,
        encrypted_query: str = "scan",
        max_value_bytes: int = 16 * 1024 * 1024,
        max_batch: int = 512,
    ) -> None:
        if not _SCHEMA_RE.fullmatch(schema):
            raise ConfigError(
                "store.url",
                f"?schema= must be a PostgreSQL identifier (letters, digits, _; at most 63, "
                f"not starting with a digit), got {schema!r}",
            )
        if encrypted_query not in ("scan", "refuse"):
            raise ConfigError(
                "store.url",
                f'?encrypted_query= must be "scan" or "refuse", got {encrypted_query!r}',
            )
        if not 1 <= pool_min <= pool_max:
            raise ConfigError(
                "store.url", f"need 1 <= pool_min <= pool_max, got {pool_min} and {pool_max}"
            )
        self.schema = schema
        self.conninfo = conninfo
        self.encrypted_query = encrypted_query
        self._pool_timeout = pool_timeout
        self._poll = poll_interval
        self._codec = Codec(CodecPolicy(), max_value_bytes=max_value_bytes)
        self._ddl_key = _lock_key(schema, "ddl")
        self._channel = "clawstate_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
        quoted = sql.Identifier(schema).as_string(None)
        self._sql: dict[str, str] = {
            name: text.replace("{s}", quoted)
            for name, text in {
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
            }.items()
        }
        self._s = quoted
        self._ns_ids: dict[str, int] = {}
        self._ns_names: dict[int, str] = {}
        self._closed = False
        # watch: the newest seq known committed (local commits and notifications)
        self._cond = threading.Condition()
        self._known_seq = 0
        self._known_pos = 0
        self._waiters = 0
        #: one reusable binary cursor per pooled connection, for the hot statements
        self._cursors: weakref.WeakKeyDictionary[psycopg.Connection[Any], psycopg.Cursor[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._listening = False
        self._listen_gen = 0
        self._listen_ready = threading.Event()
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self.counters = {
            "bulk_batches": 0,
            "general_batches": 0,
            "retried_alone": 0,
            "event_fast_batches": 0,
            "event_fast_refused": 0,
            "event_fast_failed": 0,
        }
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            timeout=pool_timeout,
            kwargs={"autocommit": True},
            configure=_configure,
            name=f"clawstate-{schema}",
            num_workers=2,
            open=False,
        )
        self._committer: GroupCommitter[_Job, list[Outcome]] = GroupCommitter(
            self._run_batch, max_batch=max_batch
        )
        try:
            self._pool.open(wait=True, timeout=pool_timeout)
            self._migrate()
        except BaseException as exc:
            self._pool.close()
            if isinstance(exc, ClawStateError):
                raise
            if isinstance(exc, psycopg.Error | PoolTimeout):
                raise BackendUnavailable(
                    f"cannot open the PostgreSQL store (schema {schema!r}): {exc}"
                ) from exc
            raise

    @classmethod
    def from_url(cls, url: ParsedUrl, config: Config) -> PostgresBackend:
        """The backend for a parsed ``postgresql://`` URL under ``config``."""
        params = dict(url.params)
        schema = params.pop("schema", DEFAULT_SCHEMA)
        pool_min = int(_param_number(params, "pool_min", 1, 1))
        pool_max = int(_param_number(params, "pool_max", max(10, pool_min), 1))
        pool_timeout = _param_number(params, "pool_timeout", 10.0, 0.1)
        poll_interval = _param_number(params, "poll_interval", 1.0, 0.01)
        encrypted_query = params.pop("encrypted_query", "scan")
        params.setdefault("connect_timeout", "5")
        params.setdefault("application_name", f"clawstate:{schema}")
        libpq: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "dbname": url.database,
            "user": url.username,
            "password": url.password,
            **params,
        }
        try:
            conninfo = make_conninfo("", **{k: v for k, v in libpq.items() if v is not None})
        except psycopg.ProgrammingError as exc:
            known = ", ".join((*_OWN_PARAMS, "encrypted_query"))
            raise ConfigError(
                "store.url",
                f"bad PostgreSQL connection option: {exc} (clawstate's own: {known}; the rest "
                "go to libpq)",
            ) from None
        backend = cls(
            conninfo,
            schema=schema,
            pool_min=pool_min,
            pool_max=pool_max,
            pool_timeout=pool_timeout,
            poll_interval=poll_interval,
            encrypted_query=encrypted_query,
            max_value_bytes=config.limits.max_value_bytes,
        )
        try:
            backend._ensure_configured_indexes(url, config)
        except BaseException:
            backend.close()
            raise
        return backend

    def __repr__(self) -> str:
        return f"<PostgresBackend schema={self.schema!r}>"

    # -- connections & schema --------------------------------------------------------------

    def _connection(self) -> Any:
        if self._closed:
            raise BackendUnavailable("the store is closed")
        return self._pool.connection(timeout=self._pool_timeout)

    def _cursor(self, conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
        """The connection's reusable binary cursor (saves ~8 µs over ``conn.execute``)."""
        cur = self._cursors.get(conn)
        if cur is None:
            cur = self._cursors[conn] = conn.cursor(binary=True)
        return cur

    def _recover(self) -> None:
        """After a lost connection: drop the pool's dead idle connections now."""
        try:
            self._pool.check()
        except Exception:  # the pool keeps working on its own; this only speeds it up
            pass

    def _read(
        self, what: str, fn: Callable[[psycopg.Connection[Any]], Any], *, retry: bool = True
    ) -> Any:
        """Run ``fn`` on a pooled connection; one retry when the connection was lost
        (``retry=False`` for writes: their COMMIT may have happened)."""
        for attempt in (0, 1) if retry else (1,):
            try:
                with self._connection() as conn:
                    return fn(conn)
            except ClawStateError:
                raise
            except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
                if _lost(exc) and not isinstance(exc, PoolTimeout):
                    self._recover()
                    if attempt == 0:
                        continue
                raise _translate(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self) -> None:
        s = self._s
        with self._connection() as conn:
            try:
                row = conn.execute(
                    f"SELECT value FROM {s}.meta WHERE key = 'schema_version'"
                ).fetchone()
                if row is not None and int(row[0]) == SCHEMA_VERSION:
                    return  # the usual case: no DDL, no lock, no CREATE privilege needed
            except psycopg.errors.UndefinedTable:
                pass
            except psycopg.errors.InvalidSchemaName:
                pass
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._ddl_key,))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {s}.meta "
                    "(key text PRIMARY KEY, value text NOT NULL)"
                )
                row = conn.execute(
                    f"SELECT value FROM {s}.meta WHERE key = 'schema_version'"
                ).fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise ConfigError(
                        "store.url",
                        f"schema {self.schema!r} has clawstate schema version {current}; this "
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

    def _remember_ns(self, name: str, nid: int) -> None:
        self._ns_ids[name] = nid
        self._ns_names[nid] = name

    def _ns_id(self, name: str) -> int | None:
        nid = self._ns_ids.get(name)
        if nid is not None:
            return nid

        def look(conn: psycopg.Connection[Any]) -> int | None:
            row = conn.execute(
                f"SELECT id FROM {self._s}.namespaces WHERE name = %s", (name,)
            ).fetchone()
            return None if row is None else int(row[0])

        found: int | None = self._read("namespace", look)
        if found is not None:
            self._remember_ns(name, found)
        return found

    def _ns_name(self, nid: int, conn: psycopg.Connection[Any]) -> str:
        name = self._ns_names.get(nid)
        if name is None:
            for rid, rname in conn.execute(f"SELECT id, name FROM {self._s}.namespaces"):
                self._remember_ns(rname, rid)
            name = self._ns_names.get(nid, f"#{nid}")
        return name

    def _read_row(self, conn: psycopg.Connection[Any], nid: int | None, key: str) -> _Full | None:
        if nid is None:
            return None
        r = conn.execute(
            f"SELECT version, seq, created_at, updated_at, expires_at FROM {self._s}.items "
            "WHERE ns = %s AND key = %s",
            (nid, key),
        ).fetchone()
        return None if r is None else (r[0], r[1], r[2], r[3], r[4], None, None, 0)

    # -- writes ----------------------------------------------------------------------------

    def write(self, unit: WriteUnit) -> list[Outcome]:
        docs: dict[int, tuple[str | None, int]] = {}
        for w in unit.writes:
            if w.value is not None and (w.op == OP_PUT or w.op == OP_REWRAP):
                docs[id(w.value)] = value_doc(w.value, self._codec)
        if self._closed:
            raise BackendUnavailable("the store is closed")
        return self._committer.submit(_Job(unit, docs))

    def _run_batch(self, jobs: list[_Job]) -> list[list[Outcome] | BaseException]:
        """Commit ``jobs`` in one transaction; each job fails alone."""
        if self._closed:
            return [BackendUnavailable("the store is closed")] * len(jobs)
        try:
            conn = self._pool.getconn(timeout=self._pool_timeout)
        except (PoolTimeout, PoolClosed, psycopg.Error) as exc:
            return [_translate(exc, "write")] * len(jobs)
        failure: psycopg.Error | None = None
        try:
            bulk = all(j.plain for j in jobs) and all(
                w.namespace in self._ns_ids for j in jobs for w in j.unit.writes
            )
            if bulk:
                self.counters["bulk_batches"] += 1
                return list(self._bulk(conn, jobs))
            if all(j.events_only for j in jobs):
                fast = self._append_fast(conn, jobs)
                if fast is not None:
                    return fast
            self.counters["general_batches"] += 1
            return self._general(conn, jobs)
        except psycopg.Error as exc:
            self._rollback(conn)
            failure = exc
        finally:
            self._pool.putconn(conn)
        assert failure is not None
        if _lost(failure):
            self._recover()
            return [_translate(failure, "write")] * len(jobs)
        if len(jobs) > 1:
            # One unit may have broken the batch: give each its own transaction.
            self.counters["retried_alone"] += 1
            return [self._run_batch([job])[0] for job in jobs]
        return [_translate(failure, "write")]

    @staticmethod
    def _rollback(conn: psycopg.Connection[Any]) -> None:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a broken connection: the pool discards it

    def _committed(self, last_seq: int, new_ns: dict[str, int] | None = None) -> None:
        if new_ns:
            for name, nid in new_ns.items():
                self._remember_ns(name, nid)
        if last_seq > self._known_seq:
            self._known_seq = last_seq  # a racing lower value is harmless: still committed
            if self._waiters:
                with self._cond:
                    self._cond.notify_all()

    def _committed_pos(self, last_pos: int) -> None:
        if last_pos > self._known_pos:
            with self._cond:
                if last_pos > self._known_pos:
                    self._known_pos = last_pos
                    self._cond.notify_all()

    def _bulk(self, conn: psycopg.Connection[Any], jobs: list[_Job]) -> list[list[Outcome]]:
        """Plain puts: one statement per run of distinct keys — usually one statement
        in all, committed on its own (autocommit): one round trip, one WAL flush."""
        groups: list[list[tuple[int, int]]] = [[]]
        seen: set[_Key] = set()
        for ji, job in enumerate(jobs):
            for wi, w in enumerate(job.unit.writes):
                k = (w.namespace, w.key)
                if k in seen:
                    groups.append([])
                    seen = set()
                seen.add(k)
                groups[-1].append((ji, wi))
        groups = [g for g in groups if g]
        if len(groups) == 1 and len(groups[0]) == 1:  # the lone put: no bookkeeping
            ji, wi = groups[0][0]
            row = self._put_statement(conn, jobs, groups[0]).fetchone()
            assert row is not None
            job, w = jobs[ji], jobs[ji].unit.writes[wi]
            self._committed(row[1])
            outcome = Outcome(
                w.namespace, w.key, OP_PUT, True, row[2], row[1], row[3], job.unit.now, w.expires_at
            )
            return [[outcome] if j is job else [] for j in jobs]
        out: list[list[Outcome | None]] = [[None] * len(j.unit.writes) for j in jobs]
        if not groups:
            return [[] for _ in jobs]
        if len(groups) == 1:
            results = [self._put_statement(conn, jobs, groups[0]).fetchall()]
        else:  # a key repeats: several statements, one transaction
            with conn.pipeline():
                conn.execute("BEGIN")
                cursors = [self._put_statement(conn, jobs, g, pipelined=True) for g in groups]
                conn.execute("COMMIT")
            results = [cur.fetchall() for cur in cursors]
        last = 0
        for group, rows in zip(groups, results, strict=True):
            for row in rows:
                ordinal, seq, version, created = row[0], row[1], row[2], row[3]
                ji, wi = group[ordinal - 1]
                job = jobs[ji]
                w = job.unit.writes[wi]
                out[ji][wi] = Outcome(
                    w.namespace,
                    w.key,
                    OP_PUT,
                    True,
                    version,
                    seq,
                    created,
                    job.unit.now,
                    w.expires_at,
                )
                last = max(last, seq)
        self._committed(last)
        done: list[list[Outcome]] = []
        for outcomes in out:
            assert all(o is not None for o in outcomes), "a plain put got no outcome"
            done.append(outcomes)  # type: ignore[arg-type]
        return done

    def _append_fast(
        self, conn: psycopg.Connection[Any], jobs: list[_Job]
    ) -> list[list[Outcome] | BaseException] | None:
        """Event-only jobs as one autocommit statement (see ``APPEND_FAST``); None when
        the batch does not fit (a stream repeats), a check failed, or the statement
        was refused — nothing was written then, and the caller runs the batch the
        general way, which gives every job its exact outcome."""
        appends = [ew for job in jobs for ew in job.unit.events]
        streams = [ew.stream for ew in appends]
        if len(set(streams)) != len(streams):
            return None  # a later append's check depends on an earlier one's outcome
        if len(appends) == 1 and len(appends[0].events) == 1:
            e = appends[0].events[0]
            query = self._sql["ev_append_one"]
            params: dict[str, Any] = {
                "stream": streams[0],
                "expected": appends[0].expected,
                "id": e.id,
                "type": e.type,
                "sv": e.schema_version,
                "data": e.data,
                "metadata": e.metadata,
                "now": jobs[0].unit.now,
            }
            n = 1
        else:
            # Each event is recorded at its own unit's time, as the general path does.
            cols: list[list[Any]] = [[] for _ in range(8)]
            wi = 0
            for job in jobs:
                for ew in job.unit.events:
                    wi += 1
                    for k, e in enumerate(ew.events, 1):
                        row = (wi, k, e.id, e.type, e.schema_version, e.data, e.metadata)
                        for col, v in zip(cols, (*row, job.unit.now), strict=True):
                            col.append(v)
            query = self._sql["ev_append_fast"]
            n = len(cols[0])
            params = {
                "streams": streams,
                "expected": [ew.expected for ew in appends],
                "n": n,
                **dict(
                    zip(
                        ("wis", "ks", "ids", "types", "svs", "data", "metadata", "nows"),
                        cols,
                        strict=True,
                    )
                ),
            }
        params["chan"] = self._channel
        try:
            cur = self._cursor(conn)
            cur.execute(query, params, prepare=True)
            rows = cur.fetchall()
        except psycopg.Error as exc:
            if _lost(exc):
                raise
            self._rollback(conn)
            self.counters["event_fast_refused"] += 1
            return None
        if not rows or not rows[0][0]:
            self.counters["event_fast_failed"] += 1
            return None  # a check failed: nothing was written
        self.counters["event_fast_batches"] += 1
        pos = int(rows[0][2])
        position = pos - n
        results: list[list[Outcome] | BaseException] = []
        it = iter(zip(appends, rows, strict=True))
        for job in jobs:
            outcomes: list[Outcome] = []
            for _ in job.unit.events:
                ew, row = next(it)
                position += len(ew.events)
                outcomes.append(
                    Outcome(
                        "",
                        ew.stream,
                        OP_APPEND,
                        True,
                        int(row[1]) + len(ew.events),
                        position,
                        job.unit.now,
                        job.unit.now,
                        None,
                    )
                )
            results.append(outcomes)
        self._committed_pos(pos)
        return results

    def _put_statement(
        self,
        conn: psycopg.Connection[Any],
        jobs: list[_Job],
        group: list[tuple[int, int]],
        pipelined: bool = False,
    ) -> psycopg.Cursor[Any]:
        """Send the put statement for ``group`` (distinct keys) of ``jobs``' writes."""
        if len(group) == 1:
            ji, wi = group[0]
            job = jobs[ji]
            w = job.unit.writes[wi]
            assert w.value is not None
            doc, opaque = job.docs.get(id(w.value)) or value_doc(w.value, self._codec)
            params = {
                "ns": self._ns_ids[w.namespace],
                "key": w.key,
                "value": w.value,
                "doc": doc,
                "opaque": opaque,
                "now": job.unit.now,
                "exp": w.expires_at,
                "logv": w.log_value,
                "chan": self._channel,
            }
            return self._send(conn, self._sql["put_one"], params, pipelined)
        cols: list[list[Any]] = [[] for _ in range(8)]
        for ji, wi in group:
            job = jobs[ji]
            w = job.unit.writes[wi]
            assert w.value is not None
            doc, opaque = job.docs.get(id(w.value)) or value_doc(w.value, self._codec)
            row = (
                self._ns_ids[w.namespace],
                w.key,
                w.value,
                doc,
                opaque,
                job.unit.now,
                w.expires_at,
                w.log_value,
            )
            for col, v in zip(cols, row, strict=True):
                col.append(v)
        n = len(group)
        return self._send(conn, self._sql["put_many"], [*cols, n, n, self._channel], pipelined)

    def _send(
        self, conn: psycopg.Connection[Any], query: str, params: Any, pipelined: bool
    ) -> psycopg.Cursor[Any]:
        if pipelined:  # its result is read after the pipeline syncs: a cursor of its own
            return conn.execute(query, params, binary=True, prepare=True)
        cur = self._cursor(conn)
        cur.execute(query, params, prepare=True)
        return cur

    def _general(
        self, conn: psycopg.Connection[Any], jobs: list[_Job]
    ) -> list[list[Outcome] | BaseException]:
        """Lock the head and prefetch, apply_unit client-side, write the net rows."""
        q = self._sql
        names: list[str] = []
        pairs: dict[_Key, None] = {}
        idem_keys: list[str] = []
        docs: dict[int, tuple[str | None, int]] = {}
        streams: dict[str, None] = {}
        event_ids: list[str] = []
        for job in jobs:
            docs.update(job.docs)
            scoped = idempotency_scope(job.unit)
            if scoped is not None:
                idem_keys.append(scoped)
            for w in job.unit.writes:
                pairs[(w.namespace, w.key)] = None
            for ew in job.unit.events:
                streams[ew.stream] = None
                event_ids.extend(e.id for e in ew.events)
        names = list(dict.fromkeys(n for n, _ in pairs))
        results: list[list[Outcome] | BaseException] = []
        with conn.pipeline():
            conn.execute("BEGIN")
            c_head = conn.execute(q["lock_head"], prepare=True)
            # An event-only batch has no rows to read.
            c_ns = conn.execute(q["ns_by_names"], (names,), prepare=True) if pairs else None
            c_rows = (
                conn.execute(
                    q["prefetch_rows"],
                    ([n for n, _ in pairs], [k for _, k in pairs]),
                    prepare=True,
                )
                if pairs
                else None
            )
            c_idem = (
                conn.execute(q["prefetch_idem"], (idem_keys,), prepare=True) if idem_keys else None
            )
            c_floors = conn.execute(q["prefetch_floors"], (names,), prepare=True) if pairs else None
            ev_collect = (
                _events.prefetch_events(conn, q, list(streams), event_ids) if streams else None
            )
            head = c_head.fetchone()
            if head is None:
                raise psycopg.errors.NoDataFound(
                    f"{self._s}.head has no row: the schema is damaged"
                )
            max_seq, max_ns, max_pos = int(head[0]), int(head[1]), int(head[2])
            ns_ids = (
                {str(name): int(nid) for nid, name in c_ns.fetchall()} if c_ns is not None else {}
            )
            rows: dict[_Key, _Full | None] = dict.fromkeys(pairs)
            for name, key, version, seq, created, updated, expires in (
                c_rows.fetchall() if c_rows is not None else ()
            ):
                rows[(name, key)] = (version, seq, created, updated, expires, None, None, 0)
            idem: dict[str, tuple[bytes, bytes, float]] = {}
            if c_idem is not None:
                for key, fp, result, expires in c_idem.fetchall():
                    idem[key] = (bytes(fp), bytes(result), float(expires))
            prefetched = ev_collect() if ev_collect is not None else None
            floors = dict.fromkeys(names, 0)
            if c_floors is not None:
                for name, floor in c_floors.fetchall():
                    floors[str(name)] = int(floor)
            access = _Rows(
                self, ns_ids, rows, max_seq, max_ns, idem, docs, conn, max_pos, prefetched, floors
            )
            for job in jobs:
                access.begin_unit()
                try:
                    results.append(apply_unit(access, job.unit))
                except ClawStateError as exc:
                    access.undo_unit()
                    results.append(exc)
            access.flush()
            conn.execute("COMMIT")
        for name, nid in ns_ids.items():
            self._remember_ns(name, nid)
        self._committed(access.seq if access.logs else 0, access.new_ns)
        if access.ev_rows:
            self._committed_pos(access.pos)
        return results

    # -- reads -----------------------------------------------------------------------------

    @staticmethod
    def _item(namespace: str, r: Sequence[Any]) -> StoredItem:
        return StoredItem(namespace, r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    def get(self, namespace: str, key: str, now: float) -> StoredItem | None:
        nid = self._ns_ids.get(namespace)
        if nid is None:
            nid = self._ns_id(namespace)
            if nid is None:
                return None
        query = self._sql["get"]
        pool = self._pool
        try:  # the hot read: getconn/putconn, not the pool's context manager (~3 µs less)
            conn = pool.getconn(self._pool_timeout)
            try:
                cur = self._cursor(conn)
                cur.execute(query, (nid, key), prepare=True)
                r = cur.fetchone()
            finally:
                pool.putconn(conn)
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            if not _lost(exc) or isinstance(exc, PoolTimeout):
                raise _translate(exc, "get") from exc
            self._recover()
            r = self._read(
                "get",
                lambda conn: conn.execute(query, (nid, key), binary=True).fetchone(),
            )
        if r is None or (r[6] is not None and r[6] <= now):
            return None
        return StoredItem(namespace, r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    def get_many(self, namespace: str, keys: Sequence[str], now: float) -> list[StoredItem]:
        if not keys:
            return []
        nid = self._ns_id(namespace)
        if nid is None:
            return []
        unique = list(dict.fromkeys(keys))

        def run(conn: psycopg.Connection[Any]) -> list[StoredItem]:
            cur = conn.execute(self._sql["get_many"], (nid, unique, now), binary=True)
            return [self._item(namespace, r) for r in cur]

        out: list[StoredItem] = self._read("get_many", run)
        return out

    def scan(
        self, namespace: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[StoredItem]:
        nid = self._ns_id(namespace)
        if nid is None:
            return []
        lower = prefix if after is None or after < prefix else after
        op = ">" if after is not None and after >= prefix else ">="
        query = (
            f"SELECT {_ITEM_COLS} FROM {self._s}.items WHERE ns = %s AND key {op} %s AND {_LIVE}"
        )
        params: list[Any] = [nid, lower, now]
        upper = prefix_upper_bound(prefix) if prefix else None
        if upper is not None:
            query += " AND key < %s"
            params.append(upper)
        query += " ORDER BY key LIMIT %s"
        params.append(limit)

        def run(conn: psycopg.Connection[Any]) -> list[StoredItem]:
            return [self._item(namespace, r) for r in conn.execute(query, params, binary=True)]

        out: list[StoredItem] = self._read("scan", run)
        return out

    def _iter(self, namespace: str, live_at: float | None) -> Iterator[StoredItem]:
        nid = self._ns_id(namespace)
        if nid is None:
            return
        after = ""
        op = ">="
        while True:
            where = "" if live_at is None else f" AND {_LIVE}"
            query = (
                f"SELECT {_ITEM_COLS} FROM {self._s}.items WHERE ns = %s AND key {op} %s"
                f"{where} ORDER BY key LIMIT 1000"
            )
            params: tuple[Any, ...] = (nid, after) if live_at is None else (nid, after, live_at)
            batch: list[Any] = self._read("iter_items", _fetch_all(query, params))
            for r in batch:
                yield self._item(namespace, r)
            if len(batch) < 1000:
                return
            after, op = batch[-1][0], ">"

    def iter_items(self, namespace: str) -> Iterator[StoredItem]:
        return self._iter(namespace, None)

    def count(self, namespace: str, now: float) -> int:
        nid = self._ns_id(namespace)
        if nid is None:
            return 0
        query = f"SELECT count(*) FROM {self._s}.items WHERE ns = %s AND {_LIVE}"
        row = self._read("count", lambda conn: conn.execute(query, (nid, now)).fetchone())
        return int(row[0])

    # -- query -----------------------------------------------------------------------------

    def compile_query(self, nid: int, query: Query, now: float) -> tuple[str, dict[str, Any]]:
        """The SQL (and its parameters) selecting the next ``limit + 1`` rows of the
        namespace's document rows for ``query``, in the query's order."""
        c = _Compiler()
        where = [
            f"ns = {c.bind(nid)}::int",
            "opaque = 0",
            f"(expires_at IS NULL OR expires_at > {c.bind(now)}::float8)",
        ]
        if query.filter is not None:
            where.append(c.filter(query.filter))
        parts = [c.sort_parts(k.path) for k in query.sort]
        order: list[str] = []
        for p, k in zip(parts, query.sort, strict=True):
            direction = " DESC" if k.descending else ""
            order.extend(f"{expr}{direction}" for expr in p)
        order.append("key")
        if query.token:
            positions, last_key = _token_positions(query.token)
            alternatives: list[str] = []
            equal: list[str] = []
            for p, k, (rank, raw) in zip(parts, query.sort, positions, strict=True):
                alternatives.append(
                    " AND ".join([*equal, c.position_after(p, rank, raw, k.descending)])
                )
                equal.append(c.position_eq(p, rank, raw))
            if "\x00" not in last_key:
                alternatives.append(" AND ".join([*equal, f"key > {c.bind(last_key)}"]))
            else:  # keys never hold NUL; a forged token's key: resume after its prefix
                alternatives.append(
                    " AND ".join([*equal, f"key > {c.bind(last_key.partition(chr(0))[0])}"])
                )
            where.append("(" + " OR ".join(f"({a})" for a in alternatives) + ")")
        text = (
            f"SELECT {_ITEM_COLS} FROM {self._s}.items WHERE "
            + " AND ".join(where)
            + " ORDER BY "
            + ", ".join(order)
            + f" LIMIT {c.bind(query.limit + 1)}"
        )
        return text, c.params

    def query(
        self, namespace: str, query: Query, decode: Decoder, now: float
    ) -> tuple[list[StoredItem], str | None]:
        # run_query over no rows validates the token (InvalidRequest for a bad one).
        empty: tuple[list[StoredItem], str | None] = run_query(query, [])
        nid = self._ns_id(namespace)
        if nid is None:
            return empty
        text, params = self.compile_query(nid, query, now)
        opaque_sql = (
            f"SELECT {_ITEM_COLS}, opaque FROM {self._s}.items "
            f"WHERE ns = %s AND opaque <> 0 AND {_LIVE}"
        )

        def run(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[Any]]:
            with conn.pipeline():
                c1 = conn.execute(text, params, binary=True, prepare=False)
                c2 = conn.execute(opaque_sql, (nid, now), binary=True)
            return c1.fetchall(), c2.fetchall()

        rows, opaque = self._read("query", run)
        if self.encrypted_query == "refuse" and any(r[7] == OPAQUE_ENCRYPTED for r in opaque):
            raise InvalidRequest(
                "query",
                f"namespace {namespace!r} holds encrypted values: an encrypted or "
                "compressed namespace cannot be queried on this store "
                "(encrypted_query=refuse); read it by key or scan instead",
            )
        items = [self._item(namespace, r) for r in rows]
        items.extend(self._item(namespace, r) for r in opaque)
        return run_query(query, ((it.key, decode(it), it) for it in items))

    # -- indexes ---------------------------------------------------------------------------

    def ensure_index(self, namespace: str, path: str | Sequence[str]) -> str:
        """Create (if absent) the expression index serving query filters on ``path``
        (``"customer.id"`` or ``("customer", "id")``) in ``namespace``; return its name.

        A partial index ``ON items ((doc #> '{customer,id}')) WHERE ns = <id>``, built
        ``CONCURRENTLY`` (writers are not blocked) under the schema's DDL lock so that
        concurrent openers do not race.  EQ, IN and number ranges on that path use it.
        """
        segments = tuple(path.split(".")) if isinstance(path, str) else tuple(path)
        if not segments or any(not s or "\x00" in s for s in segments):
            raise InvalidRequest("indexes", f"not an indexable path: {path!r}")
        if len(segments) > MAX_PATH_SEGMENTS:
            raise InvalidRequest(
                "indexes",
                f"path has more than {MAX_PATH_SEGMENTS} segments",
                limit=MAX_PATH_SEGMENTS,
            )
        nid = self._create_namespace(namespace)
        digest = hashlib.blake2b("\x1f".join(segments).encode(), digest_size=8).hexdigest()
        name = f"items_q{nid}_{digest}"
        literal = sql.Literal(_text_array_literal(segments)).as_string(None)
        s = self._s

        def run(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_lock(%s)", (self._ddl_key,))
            try:
                row = conn.execute(
                    "SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s",
                    (self.schema, name),
                ).fetchone()
                if row is not None and row[0]:
                    return
                if row is not None:  # a failed concurrent build left it invalid
                    conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS {s}."{name}"')
                conn.execute(
                    f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON {s}.items '
                    f"((doc #> {literal}::text[])) WHERE ns = {int(nid)}"
                )
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._ddl_key,))

        self._read("ensure_index", run)
        return name

    def _create_namespace(self, name: str) -> int:
        nid = self._ns_id(name)
        if nid is not None:
            return nid
        s = self._s

        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                conn.execute(self._sql["lock_head"])
                row = conn.execute(
                    f"SELECT id FROM {s}.namespaces WHERE name = %s", (name,)
                ).fetchone()
                if row is not None:
                    return int(row[0])
                row = conn.execute(
                    f"INSERT INTO {s}.namespaces (id, name) "
                    f"SELECT COALESCE(MAX(id), 0) + 1, %s FROM {s}.namespaces RETURNING id",
                    (name,),
                ).fetchone()
                assert row is not None
                return int(row[0])

        created: int = self._read("ensure_index", run)
        self._remember_ns(name, created)
        return created

    def _ensure_configured_indexes(self, url: ParsedUrl, config: Config) -> None:
        """``indexes = [...]`` of the named namespaces this backend holds (config)."""
        from ..config import parse_url

        urls = config.backend_urls() if hasattr(config, "backend_urls") else {"default": config.url}
        for name, policy in config.namespaces.items():
            paths: tuple[str, ...] = tuple(getattr(policy, "indexes", ()) or ())
            if not paths:
                continue
            target = urls.get(getattr(policy, "backend", "default"))
            if target is None or parse_url(target) != url:
                continue
            for p in paths:
                self.ensure_index(name, p)

    # -- change log & watch ----------------------------------------------------------------

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        s = self._s
        if namespace is None:
            query = (
                f"SELECT seq, ns, key, op, version, ts FROM {s}.changes WHERE seq > %s "
                "ORDER BY seq LIMIT %s"
            )
            params: tuple[Any, ...] = (after_seq, limit)
        else:
            nid = self._ns_id(namespace)
            if nid is None:
                return []
            query = (
                f"SELECT seq, ns, key, op, version, ts FROM {s}.changes "
                "WHERE ns = %s AND seq > %s ORDER BY seq LIMIT %s"
            )
            params = (nid, after_seq, limit)

        def run(conn: psycopg.Connection[Any]) -> list[Change]:
            rows = conn.execute(query, params, binary=True).fetchall()
            return [
                Change(r[0], self._ns_name(r[1], conn), r[2], OP_NAMES[r[3]], r[4], r[5])  # type: ignore[arg-type]
                for r in rows
            ]

        out: list[Change] = self._read("changes", run)
        return out

    def last_seq(self) -> int:
        query = self._sql["last_seq"]
        row = self._read("last_seq", lambda conn: conn.execute(query, prepare=True).fetchone())
        seq = int(row[0])
        if seq > self._known_seq:
            with self._cond:
                self._known_seq = max(self._known_seq, seq)
        return seq

    def first_seq(self) -> int:
        query = f"SELECT MIN(seq), MAX(seq) FROM {self._s}.changes"
        row = self._read("first_seq", lambda conn: conn.execute(query).fetchone())
        if row[0] is None:
            return self.last_seq() + 1
        return int(row[0])

    def _ensure_listener(self) -> None:
        with self._listener_lock:
            if self._listener is None and not self._closed:
                self._listener = threading.Thread(
                    target=self._listen_loop, name=f"clawstate-listen-{self.schema}", daemon=True
                )
                self._listener.start()
        self._listen_ready.wait(timeout=min(self._pool_timeout, 5.0))

    def _listen_loop(self) -> None:
        """LISTEN on a dedicated connection; fan notifications out to waiters."""
        while not self._closed:
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True)
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                with self._cond:
                    self._listening = True
                    self._listen_gen += 1
                    self._cond.notify_all()
                self._listen_ready.set()
                while not self._closed:
                    for note in conn.notifies(timeout=1.0):
                        if self._closed:
                            break
                        try:
                            # "<seq>", or "<seq> <position>" from a commit appending events
                            seq_text, _, pos_text = note.payload.partition(" ")
                            seq = int(seq_text)
                            pos = int(pos_text) if pos_text else 0
                        except ValueError:
                            continue  # a wake-up (close) or a foreign payload
                        if seq > self._known_seq or pos > self._known_pos:
                            with self._cond:
                                self._known_seq = max(self._known_seq, seq)
                                self._known_pos = max(self._known_pos, pos)
                                self._cond.notify_all()
            except psycopg.Error:
                pass
            finally:
                with self._cond:
                    self._listening = False
                    self._cond.notify_all()
                self._listen_ready.set()
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
            with self._cond:  # back off before reconnecting (close() wakes us)
                if not self._closed:
                    self._cond.wait(self._poll)

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """Woken by NOTIFY (sent by every write transaction, delivered at commit);
        polls every ``poll_interval`` only while the listener connection is down."""
        deadline = time.monotonic() + timeout
        if self._known_seq > after_seq:
            return True
        self._ensure_listener()
        while True:
            with self._cond:
                gen, listening = self._listen_gen, self._listening
            # The listener was LISTENing before this read: a commit after it notifies.
            if self.last_seq() > after_seq:
                return True
            with self._cond:
                # Counted before the check below: a commit that raises _known_seq after
                # the check then sees a waiter and notifies (see _committed).
                self._waiters += 1
                try:
                    while True:
                        if self._known_seq > after_seq:
                            return True
                        remaining = deadline - time.monotonic()
                        if self._closed or remaining <= 0:
                            return False
                        if not listening:
                            self._cond.wait(min(remaining, self._poll))
                            break  # poll the database again
                        if self._listen_gen != gen or not self._listening:
                            break  # reconnected (notifications may have been missed) or lost
                        self._cond.wait(remaining)
                finally:
                    self._waiters -= 1

    # -- maintenance -----------------------------------------------------------------------

    def sweep(self, now: float, changelog_before: float) -> SweepResult:
        q = self._sql

        def run(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int, int]:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    head = conn.execute(q["lock_head"]).fetchone()
                    assert head is not None, "the log head row is missing"
                    c_exp = conn.execute(q["sweep_expire"], {"now": now, "base": int(head[0])})
                    c_idem = conn.execute(q["sweep_idem"], (now,))
                    c_trim = conn.execute(q["sweep_trim"], (changelog_before,))
                    conn.execute(q["notify_head"], (self._channel,))
                    conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
            row = c_exp.fetchone()
            assert row is not None
            # Hidden events go in a transaction of their own: deleting them needs no
            # head (appends only add versions above the ones deleted).
            try:
                with conn.transaction():
                    events = self.sweep_events(conn, self._s, now)
            except BaseException:
                self._rollback(conn)
                raise
            return int(row[0]), int(row[1]), c_idem.rowcount, c_trim.rowcount, events

        expired, last, idem, trimmed, events = self._read("sweep", run, retry=False)
        if expired:
            self._committed(last)
        return SweepResult(expired=expired, idempotency_keys=idem, changes=trimmed, events=events)

    def version_state(self, namespace: str, key: str) -> tuple[int | None, int]:
        """``(the stored row's version — live or expired, not yet swept — or None, the
        namespace's version floor)``: what a put of ``key`` goes on from (see _apply:
        no ABA).  The write-back cache predicts new versions from it."""
        s = self._s
        query = (
            f"SELECT (SELECT i.version FROM {s}.items i JOIN {s}.namespaces n "
            "ON n.id = i.ns WHERE n.name = %s AND i.key = %s), COALESCE((SELECT f.floor FROM "
            f"{s}.version_floors f JOIN {s}.namespaces n ON n.id = f.ns WHERE n.name = %s), 0)"
        )
        row = self._read(
            "version_state",
            lambda conn: conn.execute(query, (namespace, key, namespace)).fetchone(),
        )
        return (None if row[0] is None else int(row[0])), int(row[1])

    def namespaces(self) -> list[str]:
        query = f"SELECT name FROM {self._s}.namespaces ORDER BY name"
        rows = self._read("namespaces", lambda conn: conn.execute(query).fetchall())
        return [str(r[0]) for r in rows]

    # -- key ids (docs/configuration.md: the keyring belongs to the store) ------------

    def key_ids(self) -> set[str] | None:
        """The key ids recorded in ``meta`` (``kid:<id>`` rows); None when the record
        was never completed (a schema written before key ids were recorded)."""
        where = "key = 'kids' OR (key >= 'kid:' AND key < 'kid;')"
        query = f"SELECT key FROM {self._s}.meta WHERE {where}"
        rows = self._read("read the key ids", lambda conn: conn.execute(query).fetchall())
        keys = {str(r[0]) for r in rows}
        if "kids" not in keys:
            return None
        return {k[4:] for k in keys if k.startswith("kid:")}

    def record_key_ids(self, kids: Iterable[str]) -> None:
        """Add ``kids`` to ``meta`` and mark the record complete, committed before return
        (idempotent, so the one retry after a lost connection is safe)."""
        now = repr(time.time())
        rows = [("kid:" + kid, now) for kid in kids] + [("kids", "recorded")]
        query = f"INSERT INTO {self._s}.meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING"

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(query, rows)

        self._read("record the key ids", run)

    def stats(self) -> dict[str, Any]:
        s = self._s

        def run(conn: psycopg.Connection[Any]) -> dict[str, Any]:
            per_ns: dict[str, dict[str, int]] = {}
            for name, count, size in conn.execute(
                f"SELECT n.name, COUNT(i.key), COALESCE(SUM(octet_length(i.value)), 0) "
                f"FROM {s}.namespaces n LEFT JOIN {s}.items i ON i.ns = n.id "
                "GROUP BY n.id, n.name ORDER BY n.name"
            ):
                per_ns[name] = {"items": int(count), "bytes": int(size)}
            first, last, total = conn.execute(
                f"SELECT MIN(seq), MAX(seq), COUNT(*) FROM {s}.changes"
            ).fetchone() or (None, None, 0)
            version, sync, fsync = conn.execute(
                "SELECT current_setting('server_version'), "
                "current_setting('synchronous_commit'), current_setting('fsync')"
            ).fetchone() or ("?", "?", "?")
            tables = conn.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                (self.schema,),
            ).fetchone()
            return {
                "namespaces": per_ns,
                "changelog": {"first_seq": first or 0, "last_seq": last or 0, "rows": total},
                "server_version": version,
                "synchronous_commit": sync,
                "fsync": fsync,
                "schema_bytes": int(tables[0]) if tables else 0,
            }

        found: dict[str, Any] = self._read("stats", run)
        return {
            "backend": "postgresql",
            "schema": self.schema,
            "schema_version": SCHEMA_VERSION,
            "durability": "server (synchronous_commit = "
            f"{found.pop('synchronous_commit')}, fsync = {found.pop('fsync')})",
            **found,
            "pool": dict(self._pool.get_stats()),
            "group_commit": {**self._committer.stats(), **self.counters},
            "listening": self._listening,
            "events": self.event_stats(),
        }

    def _check_log(self, conn: psycopg.Connection[Any]) -> list[str]:
        """The change log on its own and against the items (the reverse direction).

        True whatever retention trimmed (a prefix) and expiry swept (each purge logs an
        ``expire``): the retained seqs are gap-free, every row names a namespace and a
        known op, and each key's newest retained row is what ``items`` holds — a put:
        the item at exactly that seq and version; a delete or expire: no item."""
        s = self._s
        problems: list[str] = []
        first, last, rows = conn.execute(
            f"SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0), count(*) FROM {s}.changes"
        ).fetchone() or (0, 0, 0)
        if rows and last - first + 1 != rows:
            problems.append(
                f"the change log misses {last - first + 1 - rows} seqs between its first "
                f"({first}) and last ({last}): retention trims only from the front"
            )
        ops = ", ".join(str(op) for op in OP_NAMES)
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE c.seq < 1 OR c.version < 1 OR c.op NOT IN ({ops})),"
            " count(*) FILTER (WHERE n.id IS NULL) "
            f"FROM {s}.changes c LEFT JOIN {s}.namespaces n ON n.id = c.ns"
        ).fetchone()
        bad, orphans = row if row is not None else (0, 0)
        if bad:
            problems.append(f"{bad} change-log rows have an impossible seq, version or op")
        if orphans:
            problems.append(f"{orphans} change-log rows belong to no namespace")
        wrong = conn.execute(
            f"SELECT c.ns, c.key, c.op, c.version, c.seq, i.seq, i.version FROM {s}.changes c "
            f"JOIN (SELECT max(seq) AS seq FROM {s}.changes GROUP BY ns, key) last "
            f"ON last.seq = c.seq LEFT JOIN {s}.items i ON i.ns = c.ns AND i.key = c.key "
            f"WHERE (c.op = {OP_PUT} AND (i.key IS NULL OR i.seq <> c.seq "
            f"OR i.version <> c.version)) OR (c.op <> {OP_PUT} AND i.key IS NOT NULL) "
            "ORDER BY c.seq"
        ).fetchall()

        def names(found: list[Any], detail: bool = False) -> str:
            shown = [
                f"{self._ns_name(r[0], conn)}/{r[1]}"
                + (f" (log: seq {r[4]} v{r[3]}, item: seq {r[5]} v{r[6]})" if detail else "")
                for r in found[:5]
            ]
            more = f" … and {len(found) - 5} more" if len(found) > 5 else ""
            return ", ".join(shown) + more

        gone = [r for r in wrong if r[2] == OP_PUT and r[5] is None]
        stale = [r for r in wrong if r[2] == OP_PUT and r[5] is not None]
        undead = [r for r in wrong if r[2] != OP_PUT]
        if gone:
            problems.append(
                f"{len(gone)} keys were last written by a put in the change log but have no "
                f"item (and no later delete or expire): {names(gone)}"
            )
        if stale:
            problems.append(
                f"{len(stale)} items differ from their newest change-log row (seq/version): "
                + names(stale, detail=True)
            )
        if undead:
            problems.append(
                f"{len(undead)} items exist although their newest change-log row is a delete "
                f"or expire: {names(undead)}"
            )
        return problems

    def check(self) -> tuple[list[str], dict[str, int]]:
        s = self._s

        def run(conn: psycopg.Connection[Any]) -> tuple[list[str], dict[str, int]]:
            problems: list[str] = []
            checked: dict[str, int] = {}

            def one(query: str, *params: Any) -> Any:
                row = conn.execute(query, params).fetchone()
                return None if row is None else row[0]

            version = one(f"SELECT value FROM {s}.meta WHERE key = 'schema_version'")
            if version is None or int(version) != SCHEMA_VERSION:
                problems.append(f"schema version is {version}, expected {SCHEMA_VERSION}")
            checked["items"] = int(one(f"SELECT count(*) FROM {s}.items"))
            checked["changes"] = int(one(f"SELECT count(*) FROM {s}.changes"))
            bad = one(
                f"SELECT count(*) FROM {s}.items "
                "WHERE version < 1 OR seq < 1 OR updated_at < created_at"
            )
            if bad:
                problems.append(f"{bad} items have impossible metadata (version/seq/timestamps)")
            orphans = one(
                f"SELECT count(*) FROM {s}.items i LEFT JOIN {s}.namespaces n ON n.id = i.ns "
                "WHERE n.id IS NULL"
            )
            if orphans:
                problems.append(f"{orphans} items belong to no namespace")
            first = one(f"SELECT COALESCE(MIN(seq), 0) FROM {s}.changes")
            mismatched = one(
                f"SELECT count(*) FROM {s}.items i LEFT JOIN {s}.changes c ON c.seq = i.seq "
                "WHERE i.seq >= %s AND (c.seq IS NULL OR c.ns <> i.ns OR c.key <> i.key "
                f"OR c.version <> i.version OR c.op <> {OP_PUT})",
                first,
            )
            if mismatched:
                problems.append(f"{mismatched} items have no matching change-log row")
            maxseq = one(f"SELECT COALESCE(MAX(seq), 0) FROM {s}.changes")
            head = one(f"SELECT seq FROM {s}.head")
            if head != maxseq:
                problems.append(
                    f"the log head is at seq {head} but the change log ends at {maxseq}"
                )
            ahead = one(f"SELECT count(*) FROM {s}.items WHERE seq > %s", maxseq)
            if ahead:
                problems.append(
                    f"{ahead} items carry a seq beyond the change log's last ({maxseq})"
                )
            problems += self._check_log(conn)
            flags = one(
                f"SELECT count(*) FROM {s}.items WHERE (doc IS NOT NULL AND opaque <> 0) "
                "OR opaque NOT IN (0, 1, 2)"
            )
            if flags:
                problems.append(f"{flags} items have a document and an opaque mark")
            # Every document must be the value it shadows: recompute from the bytes.
            docs = 0
            after = (-1, "")
            while True:
                batch = conn.execute(
                    f"SELECT ns, key, value FROM {s}.items WHERE (ns, key) > (%s, %s) "
                    "ORDER BY ns, key LIMIT 1000",
                    after,
                    binary=True,
                ).fetchall()
                if not batch:
                    break
                expected = [value_doc(bytes(r[2]), self._codec) for r in batch]
                wrong = conn.execute(
                    f"SELECT t.ns, t.key FROM unnest(%s::int[], %s::text[], %s::text[], "
                    f"%s::int2[]) AS t(ns, key, doc, opaque) JOIN {s}.items i "
                    "ON i.ns = t.ns AND i.key = t.key "
                    "WHERE i.doc IS DISTINCT FROM t.doc::jsonb OR i.opaque <> t.opaque",
                    (
                        [r[0] for r in batch],
                        [r[1] for r in batch],
                        [e[0] for e in expected],
                        [e[1] for e in expected],
                    ),
                ).fetchall()
                for nid, key in wrong[:5]:
                    problems.append(
                        f"{self._ns_name(nid, conn)}/{key}: its jsonb document does not match "
                        "its stored value"
                    )
                if len(wrong) > 5:
                    problems.append(f"... and {len(wrong) - 5} more mismatched documents")
                docs += len(batch)
                after = (batch[-1][0], batch[-1][1])
            checked["documents"] = docs
            event_problems, checked["events"] = self.check_events(conn, s)
            problems += event_problems
            return problems, checked

        out: tuple[list[str], dict[str, int]] = self._read("check", run)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        listener = self._listener
        if listener is not None and listener.is_alive():
            try:  # wake the listener out of its wait for notifications
                with self._pool.connection(timeout=1.0) as conn:
                    conn.execute(_NOTIFY, (self._channel, "close"))
            except Exception:
                pass  # it notices within its 1 s timeout anyway
            listener.join(timeout=3.0)
        self._pool.close(timeout=5.0)
