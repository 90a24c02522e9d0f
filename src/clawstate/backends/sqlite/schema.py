"""The SQLite store's schema: migrations and the statements of the write path."""

from __future__ import annotations

from ..base import OP_DELETE, OP_EXPIRE
from . import events as _events
from . import stats as _stats

__all__ = ["SCHEMA_VERSION"]

_ITEM_COLS = "key, value, version, seq, created_at, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_EXPIRED = "items.expires_at IS NOT NULL AND items.expires_at <= excluded.updated_at"
#: A new key's first version: its namespace's version floor + 1 (no ABA, see _apply).
_FIRST_VERSION = "COALESCE((SELECT floor FROM version_floors WHERE ns = ?), 0) + 1"
#: Insert at the floor + 1, or overwrite bumping the version — continuing over an
#: expired row too (a new incarnation: ``created_at`` restarts).  Parameters: ns, key,
#: value, doc, opaque, ns (for the floor), seq, created_at, updated_at, expires_at.
_UPSERT = (
    "INSERT INTO items (ns, key, value, doc, opaque, version, seq, created_at, updated_at, "
    f"expires_at) VALUES (?, ?, ?, ?, ?, {_FIRST_VERSION}, ?, ?, ?, ?) "
    "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, doc = excluded.doc, "
    "opaque = excluded.opaque, seq = excluded.seq, updated_at = excluded.updated_at, "
    "expires_at = excluded.expires_at, version = items.version + 1, "
    f"created_at = CASE WHEN {_EXPIRED} THEN excluded.created_at ELSE items.created_at END "
    "RETURNING version, created_at, seq"
)
#: The same, taking the next seq inside the statement (first write of a batch).
_UPSERT_NEXT_SEQ = _UPSERT.replace(
    f"{_FIRST_VERSION}, ?,",
    f"{_FIRST_VERSION}, (SELECT COALESCE(MAX(seq), 0) + 1 FROM changes),",
)
#: Raise a namespace's version floor to at least the removed version.
_RAISE_FLOOR = (
    "INSERT INTO version_floors (ns, floor) VALUES (?, ?) "
    "ON CONFLICT (ns) DO UPDATE SET floor = MAX(floor, excluded.floor)"
)

#: Schema migrations: entry N brings the database from version N to N+1.
_MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
        "CREATE TABLE namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """CREATE TABLE items (
            ns INTEGER NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
            version INTEGER NOT NULL, seq INTEGER NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL,
            PRIMARY KEY (ns, key))""",
        "CREATE INDEX items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE changes (
            seq INTEGER PRIMARY KEY, ns INTEGER NOT NULL, key TEXT NOT NULL,
            op INTEGER NOT NULL, version INTEGER NOT NULL, ts REAL NOT NULL, value BLOB)""",
        """CREATE TABLE idempotency (
            key TEXT PRIMARY KEY, fingerprint BLOB NOT NULL, result BLOB NOT NULL,
            expires_at REAL NOT NULL) WITHOUT ROWID""",
    ],
    _events.MIGRATION,
    [
        # Per namespace, the highest version a removed key had (no ABA, see _apply);
        # started from what the retained change log remembers of deletes and expiries.
        """CREATE TABLE IF NOT EXISTS version_floors (
            ns INTEGER PRIMARY KEY, floor INTEGER NOT NULL)""",
        "INSERT INTO version_floors (ns, floor) SELECT ns, MAX(version) FROM changes "
        f"WHERE op IN ({OP_DELETE}, {OP_EXPIRE}) GROUP BY ns "
        "ON CONFLICT (ns) DO UPDATE SET floor = MAX(floor, excluded.floor)",
    ],
    # Per-namespace item and byte counters kept by triggers (stats() flat in N).
    _stats.MIGRATION,
    # Queries in SQL (issue 12, docs/backends.md "SQLite queries"): the JSON copy of
    # each plaintext value and its state (see docs.py).  Both columns are added without
    # rewriting a row (NULL default): existing rows are backfilled online, in chunks,
    # by the backend (opaque IS NULL marks the rows still to do, and the partial index
    # finds them — and the encrypted rows the query path evaluates in Python — without
    # a scan).  query_indexes records declared expression indexes and whether each is
    # complete ("ready"): only ready ones serve queries.
    [
        "ALTER TABLE items ADD COLUMN doc TEXT",
        "ALTER TABLE items ADD COLUMN opaque INTEGER",
        "CREATE INDEX IF NOT EXISTS items_python ON items (ns, key) WHERE opaque IS NOT 0",
        "CREATE INDEX IF NOT EXISTS items_undocumented ON items (ns, key) WHERE opaque IS NULL",
        """CREATE TABLE IF NOT EXISTS query_indexes (
            ns INTEGER NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY (ns, path)) WITHOUT ROWID""",
    ],
    # stats() flat in N for events too: positions are handed out gap-free, so the
    # number of stored events is the last position minus what the sweep removed,
    # which the sweep counts here in its own transaction (see events.py).
    [
        "INSERT OR REPLACE INTO meta (key, value) "
        "SELECT 'events_removed', COALESCE(MAX(position), 0) - COUNT(*) FROM events",
    ],
]
SCHEMA_VERSION = len(_MIGRATIONS)
#: The key-id record in ``meta``: ``kid:<id>`` rows, and ``kids`` once it is complete.
_KEY_IDS = "SELECT key FROM meta WHERE key = 'kids' OR (key >= 'kid:' AND key < 'kid;')"
