"""The SQLite backend class (see the package docstring for the design)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ...errors import BackendUnavailable, ClawStateError, ConfigError
from ...types import Change
from .._apply import Row, apply_unit, checks_first
from .._group_commit import GroupCommitter
from .._keyorder import prefix_upper_bound
from ..base import (
    OP_EXPIRE,
    OP_NAMES,
    OP_PUT,
    BackendOptions,
    Capabilities,
    Outcome,
    StoredItem,
    SweepResult,
    WriteUnit,
)
from . import events as _events
from . import queries as _queries
from . import stats as _counters
from .errors import is_busy as _is_busy
from .errors import translate as _translate
from .files import make_file, no_store, refuse_network_fs
from .schema import (
    _ITEM_COLS,
    _KEY_IDS,
    _LIVE,
    _MIGRATIONS,
    _RAISE_FLOOR,
    _UPSERT,
    _UPSERT_NEXT_SEQ,
    SCHEMA_VERSION,
)

if TYPE_CHECKING:
    from ...config import ParsedUrl

__all__ = ["SQLiteBackend"]

#: How many keys a problem line of ``check()`` names before "… and N more".
_SHOWN = 5
#: WAL frames (4 KiB pages) before a commit checkpoints, instead of SQLite's 1,000.
#: A write into a namespace with a declared index on a spread-out field (``user``)
#: dirties about one index leaf page per item, so a ``put_many`` of 1,000 alone
#: wrote > 1,000 frames and every commit paid a checkpoint (page copies into the
#: database file and, at ``process`` durability, its fsync).  At 10,000 the
#: checkpoint runs every ~10 such batches and copies each repeatedly dirtied leaf
#: once.  Measured (200k items, 2 indexes, put_many of 1,000): the upsert statements
#: 7.5k -> 12.8k rows/s.  Cost: the WAL grows to ~40 MiB before it is reused, and
#: reopening after a crash replays up to that much.  Durability is unchanged: a
#: commit's own sync (``synchronous``) does not depend on when checkpoints run.
_WAL_AUTOCHECKPOINT_PAGES = 10_000


class _SweepJob:
    __slots__ = ("changelog_before", "now")

    def __init__(self, now: float, changelog_before: float) -> None:
        self.now = now
        self.changelog_before = changelog_before


class _Rows(_events.SQLiteEventRows):
    """RowAccess (and EventRowAccess) over one connection inside an open write transaction."""

    __slots__ = ("backend", "conn", "new_ns", "seq")

    def __init__(self, backend: SQLiteBackend, conn: sqlite3.Connection) -> None:
        self.backend = backend
        self.conn = conn
        #: the last seq taken in this transaction; None until the first is taken
        self.seq: int | None = None
        self.new_ns: dict[str, int] = {}

    def ns_id(self, name: str, create: bool = True) -> int:
        """The namespace's id, created in this transaction if new (0: absent, not created)."""
        nid = self.backend._ns_ids.get(name) or self.new_ns.get(name)
        if nid is not None:
            return nid
        row = self.conn.execute("SELECT id FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            if not create:
                return 0
            cur = self.conn.execute("INSERT INTO namespaces (name) VALUES (?)", (name,))
            nid = int(cur.lastrowid or 0)
            self.new_ns[name] = nid
        else:
            nid = int(row[0])
            self.backend._remember_ns(name, nid)
        return nid

    def read(self, namespace: str, key: str) -> Row | None:
        nid = self.ns_id(namespace, create=False)
        if not nid:
            return None
        r = self.conn.execute(
            "SELECT version, seq, created_at, expires_at FROM items WHERE ns = ? AND key = ?",
            (nid, key),
        ).fetchone()
        return None if r is None else Row(r[0], r[1], r[2], r[3])

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
        nid = self.ns_id(namespace)
        doc, opaque = self.backend._doc_of(value)
        if exists:
            self.conn.execute(
                "UPDATE items SET value = ?, doc = ?, opaque = ?, version = ?, seq = ?, "
                "created_at = ?, updated_at = ?, expires_at = ? WHERE ns = ? AND key = ?",
                (value, doc, opaque, version, seq, created_at, updated_at, expires_at, nid, key),
            )
        else:
            self.conn.execute(
                "INSERT INTO items (ns, key, value, doc, opaque, version, seq, created_at, "
                "updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (nid, key, value, doc, opaque, version, seq, created_at, updated_at, expires_at),
            )

    def put_unconditional(
        self,
        namespace: str,
        key: str,
        value: bytes,
        now: float,
        expires_at: float | None,
    ) -> tuple[int, float, int]:
        nid = self.ns_id(namespace)
        doc, opaque = self.backend._doc_of(value)
        if self.seq is None:
            r = self.conn.execute(
                _UPSERT_NEXT_SEQ, (nid, key, value, doc, opaque, nid, now, now, expires_at)
            )
        else:
            r = self.conn.execute(
                _UPSERT, (nid, key, value, doc, opaque, nid, self.seq + 1, now, now, expires_at)
            )
        version, created, seq = r.fetchall()[0]
        self.seq = seq
        return version, created, seq

    def delete(self, namespace: str, key: str) -> None:
        self.conn.execute(
            "DELETE FROM items WHERE ns = ? AND key = ?", (self.ns_id(namespace), key)
        )

    def version_floor(self, namespace: str) -> int:
        nid = self.ns_id(namespace, create=False)
        if not nid:
            return 0
        r = self.conn.execute("SELECT floor FROM version_floors WHERE ns = ?", (nid,)).fetchone()
        return 0 if r is None else int(r[0])

    def raise_floor(self, namespace: str, version: int) -> None:
        self.conn.execute(_RAISE_FLOOR, (self.ns_id(namespace), version))

    def rewrite(self, namespace: str, key: str, value: bytes) -> None:
        doc, opaque = self.backend._doc_of(value)
        self.conn.execute(
            "UPDATE items SET value = ?, doc = ?, opaque = ? WHERE ns = ? AND key = ?",
            (value, doc, opaque, self.ns_id(namespace), key),
        )

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
        self.conn.execute(
            "INSERT INTO changes (seq, ns, key, op, version, ts, value) VALUES (?,?,?,?,?,?,?)",
            (seq, self.ns_id(namespace), key, op, version, ts, value),
        )

    def next_seq(self) -> int:
        if self.seq is None:
            self.seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        self.seq += 1
        return self.seq

    def idempotency_get(self, key: str) -> tuple[bytes, bytes, float] | None:
        r = self.conn.execute(
            "SELECT fingerprint, result, expires_at FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        return None if r is None else (bytes(r[0]), bytes(r[1]), float(r[2]))

    def idempotency_put(self, key: str, fingerprint: bytes, result: bytes, expires: float) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO idempotency (key, fingerprint, result, expires_at) "
            "VALUES (?, ?, ?, ?)",
            (key, fingerprint, result, expires),
        )


class SQLiteBackend(_queries.SQLiteQueries, _events.SQLiteEventLog):
    """Backend over one SQLite database file (see the package docstring)."""

    name = "sqlite"
    capabilities = Capabilities(
        durable=True, multi_process=True, native_query=True, events=True, documents=True
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "process",
        busy_timeout: float = 60.0,
        poll_interval: float = 0.05,
        max_batch: int = 512,
        create: bool = True,
    ) -> None:
        """``create=False`` opens an existing store only: a missing file (or one that
        holds no clawstate store) is a :class:`ConfigError` saying "no store at …", and
        nothing is created — no directory, no file (read commands open this way)."""
        if durability not in ("process", "power"):
            raise ConfigError(
                "store.durability", f'must be "process" or "power", got {durability!r}'
            )
        self.path = Path(path).expanduser().resolve()
        self.durability = durability
        self._synchronous = "NORMAL" if durability == "process" else "FULL"
        self._busy_ms = int(busy_timeout * 1000)
        self._poll = poll_interval
        self._local = threading.local()
        #: every connection opened, with the thread that owns it
        self._all_conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._ns_ids: dict[str, int] = {}
        self._ns_names: dict[int, str] = {}
        self._ns_lock = threading.Lock()
        self._change_cond = threading.Condition()
        self._waiters = 0
        self._closed = False
        self._create = create
        #: Every connection opens the file read-write, never creating it: a store file
        #: deleted under a running store is an error, not a new empty store.
        self._uri = f"file:{quote(str(self.path))}?mode=rw"
        refuse_network_fs(self.path)
        if create:
            make_file(self.path)
        elif not self.path.is_file():
            raise no_store(self.path)
        self._committer: GroupCommitter[WriteUnit | _SweepJob, Any] = GroupCommitter(
            self._run_batch, max_batch=max_batch
        )
        self._migrate()
        self._init_maintenance()

    @classmethod
    def from_url(cls, url: ParsedUrl, options: BackendOptions) -> SQLiteBackend:
        """The store a parsed ``sqlite:///path`` URL names, under ``options``
        (``durability``, ``create``, ``max_batch``)."""
        if url.path is None:
            raise ConfigError("store.url", "a sqlite:/// URL must name a database file")
        return cls(
            url.path,
            durability=options.durability,
            create=options.create,
            max_batch=options.max_batch,
        )

    # -- connections -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        if self._closed:
            if conn is not None:  # close() left it to us: we are the thread using it
                self._local.conn = None
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            raise BackendUnavailable("the store is closed")
        try:
            conn = sqlite3.connect(
                self._uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_ms / 1000,
                cached_statements=256,
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA mmap_size = 268435456")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            raise _translate(exc, f"open {self.path}") from exc
        self._local.conn = conn
        with self._conns_lock:
            self._all_conns.append((threading.current_thread(), conn))
        return conn

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            if not self._create:
                self._require_store(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    "store.url", f"{self.path}: SQLite refused WAL mode (got {mode!r})"
                )
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID"
                )
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise ConfigError(
                        "store.url",
                        f"{self.path} has schema version {current}; this clawstate "
                        f"understands up to {SCHEMA_VERSION} — upgrade clawstate",
                    )
                for version in range(current, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[version]:
                        try:
                            conn.execute(statement)
                        except sqlite3.OperationalError as exc:
                            # ADD COLUMN has no IF NOT EXISTS: a replayed migration
                            # (a store set back by hand, as a test does) finds it.
                            if "duplicate column name" not in str(exc):
                                raise
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (SCHEMA_VERSION,),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, f"open {self.path}") from exc

    def _require_store(self, conn: sqlite3.Connection) -> None:
        """Refuse (creating nothing) a file that holds no clawstate store."""
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            row = None
        if row is None:
            self.close()
            raise no_store(self.path, "the file holds no clawstate store")

    # -- namespace ids ---------------------------------------------------------------

    def _remember_ns(self, name: str, nid: int) -> None:
        with self._ns_lock:
            self._ns_ids[name] = nid
            self._ns_names[nid] = name

    def _ns_id(self, name: str) -> int | None:
        """The id of an existing namespace; None if it was never written."""
        nid = self._ns_ids.get(name)
        if nid is None:
            found = self._row("SELECT id FROM namespaces WHERE name = ?", (name,))
            if found is None:
                return None
            nid = int(found[0])
            self._remember_ns(name, nid)
        return nid

    def _ns_name(self, nid: int) -> str:
        name = self._ns_names.get(nid)
        if name is None:
            for rid, rname in self._conn().execute("SELECT id, name FROM namespaces"):
                self._remember_ns(rname, rid)
            name = self._ns_names.get(nid, f"#{nid}")
        return name

    # -- writes ----------------------------------------------------------------------

    def write(self, unit: WriteUnit) -> list[Outcome]:
        # The JSON copies are made here, in the caller's thread, from the documents
        # the codec handed over (Write.doc), not in the batch leader's.
        ids = self._stage_docs(unit)
        try:
            result: list[Outcome] = self._committer.submit(unit)
        finally:
            self._unstage_docs(ids)
        return result

    def _run_batch(self, jobs: list[WriteUnit | _SweepJob]) -> list[Any]:
        """Commit ``jobs`` in one transaction; each job fails alone."""
        try:
            conn = self._conn()
        except ClawStateError as exc:
            return [exc] * len(jobs)
        results: list[Any] = []
        multi = len(jobs) > 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = _Rows(self, conn)
            for job in jobs:
                # A unit whose checks all run before its first change (one write, one
                # append, a lease's acquire or release) fails before it writes anything,
                # so it needs no savepoint: two statements saved per unit.
                guarded = not checks_first(job) if isinstance(job, WriteUnit) else multi
                seq_before = rows.seq
                ns_before = dict(rows.new_ns) if guarded else rows.new_ns
                if guarded:
                    conn.execute("SAVEPOINT unit")
                try:
                    if isinstance(job, _SweepJob):
                        results.append(self._sweep_in(rows, job))
                    else:
                        results.append(apply_unit(rows, job))
                except ClawStateError as exc:
                    if guarded:
                        conn.execute("ROLLBACK TO unit")
                    rows.seq, rows.new_ns = seq_before, ns_before
                    results.append(exc)
                if guarded:
                    conn.execute("RELEASE unit")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            if multi:
                # One job may have broken the batch: give each its own transaction.
                return [self._run_alone(job) for job in jobs]
            return [_translate(exc, "write")]
        except BaseException:
            self._rollback(conn)
            raise
        if rows.new_ns:
            for name, nid in rows.new_ns.items():
                self._remember_ns(name, nid)
        if self._waiters:
            with self._change_cond:
                self._change_cond.notify_all()
        return results

    def _run_alone(self, job: WriteUnit | _SweepJob) -> Any:
        return self._run_batch([job])[0]

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # -- reads -----------------------------------------------------------------------

    def _item(self, namespace: str, r: tuple[Any, ...]) -> StoredItem:
        return StoredItem(namespace, r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    def get(self, namespace: str, key: str, now: float) -> StoredItem | None:
        nid = self._ns_ids.get(namespace)
        if nid is None:
            nid = self._ns_id(namespace)
            if nid is None:
                return None
        try:
            r = (
                self._conn()
                .execute(f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key = ?", (nid, key))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise _translate(exc, "get") from exc
        if r is None or (r[6] is not None and r[6] <= now):
            return None
        return StoredItem(namespace, r[0], r[1], r[2], r[3], r[4], r[5], r[6])

    def get_many(self, namespace: str, keys: Sequence[str], now: float) -> list[StoredItem]:
        nid = self._ns_id(namespace)
        if nid is None or not keys:
            return []
        out: list[StoredItem] = []
        conn = self._conn()
        unique = list(dict.fromkeys(keys))
        try:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                cur = conn.execute(
                    f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key IN ({marks}) AND {_LIVE}",
                    (nid, *chunk, now),
                )
                out.extend(self._item(namespace, r) for r in cur)
        except sqlite3.Error as exc:
            raise _translate(exc, "get_many") from exc
        return out

    def scan(
        self, namespace: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[StoredItem]:
        nid = self._ns_id(namespace)
        if nid is None:
            return []
        lower = prefix if after is None or after < prefix else after
        op = ">" if after is not None and after >= prefix else ">="
        sql = f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key {op} ? AND {_LIVE}"
        params: list[Any] = [nid, lower, now]
        upper = prefix_upper_bound(prefix) if prefix else None
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        sql += " ORDER BY key LIMIT ?"
        params.append(limit)
        try:
            return [self._item(namespace, r) for r in self._conn().execute(sql, params)]
        except sqlite3.Error as exc:
            raise _translate(exc, "scan") from exc

    def _iter(self, namespace: str, live_at: float | None) -> Iterator[StoredItem]:
        nid = self._ns_id(namespace)
        if nid is None:
            return
        after = ""
        op = ">="
        conn = self._conn()
        while True:
            try:
                if live_at is None:
                    cur = conn.execute(
                        f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key {op} ? "
                        "ORDER BY key LIMIT 1000",
                        (nid, after),
                    )
                else:
                    cur = conn.execute(
                        f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key {op} ? "
                        f"AND {_LIVE} ORDER BY key LIMIT 1000",
                        (nid, after, live_at),
                    )
                batch = cur.fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, f"read {namespace!r}") from exc
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
        return int(self._row(f"SELECT COUNT(*) FROM items WHERE ns = ? AND {_LIVE}", (nid, now))[0])

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        """One row of a small read, with driver errors translated at this edge."""
        try:
            row: tuple[Any, ...] = self._conn().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, "read") from exc
        return row

    # -- change log ------------------------------------------------------------------

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        conn = self._conn()
        try:
            if namespace is None:
                cur = conn.execute(
                    "SELECT seq, ns, key, op, version, ts FROM changes WHERE seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
            else:
                nid = self._ns_id(namespace)
                if nid is None:
                    return []
                cur = conn.execute(
                    "SELECT seq, ns, key, op, version, ts FROM changes WHERE seq > ? AND ns = ? "
                    "ORDER BY seq LIMIT ?",
                    (after_seq, nid, limit),
                )
            return [
                Change(r[0], self._ns_name(r[1]), r[2], OP_NAMES[r[3]], r[4], r[5])  # type: ignore[arg-type]
                for r in cur
            ]
        except sqlite3.Error as exc:
            raise _translate(exc, "changes") from exc

    def last_seq(self) -> int:
        return int(self._row("SELECT COALESCE(MAX(seq), 0) FROM changes")[0])

    def first_seq(self) -> int:
        first, last = self._row("SELECT MIN(seq), COALESCE(MAX(seq), 0) FROM changes")
        return int(last) + 1 if first is None else int(first)

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """Local commits wake waiters at once; other processes' are seen by polling."""
        deadline = time.monotonic() + timeout
        while True:
            if self.last_seq() > after_seq:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return False
            with self._change_cond:
                self._waiters += 1
                try:
                    self._change_cond.wait(min(remaining, self._poll))
                finally:
                    self._waiters -= 1

    # -- maintenance -----------------------------------------------------------------

    def sweep(self, now: float, changelog_before: float) -> SweepResult:
        result: SweepResult = self._committer.submit(_SweepJob(now, changelog_before))
        return result

    def _sweep_in(self, rows: _Rows, job: _SweepJob) -> SweepResult:
        conn = rows.conn
        expired = conn.execute(
            "SELECT ns, key, version FROM items WHERE expires_at IS NOT NULL AND expires_at <= ? "
            "LIMIT 10000",
            (job.now,),
        ).fetchall()
        for nid, key, version in expired:
            conn.execute("DELETE FROM items WHERE ns = ? AND key = ?", (nid, key))
            conn.execute(_RAISE_FLOOR, (nid, version))
            seq = rows.next_seq()
            conn.execute(
                "INSERT INTO changes (seq, ns, key, op, version, ts) VALUES (?,?,?,?,?,?)",
                (seq, nid, key, OP_EXPIRE, version, job.now),
            )
        idem = conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (job.now,)).rowcount
        # Changes are in seq order and only nearly in ts order (clocks of several
        # processes, a clock stepped back): trim the prefix before the first row young
        # enough to keep, so the retained log stays gap-free (followers and check()
        # rely on it), always keeping the newest row so seq numbers are never reused.
        trimmed = conn.execute(
            "DELETE FROM changes WHERE seq < MIN("
            "COALESCE((SELECT seq FROM changes WHERE ts >= ? ORDER BY seq LIMIT 1), "
            "(SELECT MAX(seq) FROM changes)), (SELECT MAX(seq) FROM changes), "
            "(SELECT MIN(seq) FROM changes) + 50000)",
            (job.changelog_before,),
        ).rowcount
        events = self.sweep_events(conn, job.now)
        return SweepResult(
            expired=len(expired), idempotency_keys=idem, changes=trimmed, events=events
        )

    def version_state(self, namespace: str, key: str) -> tuple[int | None, int]:
        """``(the stored row's version — live or expired, not yet swept — or None, the
        namespace's version floor)``: what a put of ``key`` goes on from (see _apply:
        no ABA).  The write-back cache predicts new versions from it."""
        row = self._row(
            "SELECT (SELECT i.version FROM items i JOIN namespaces n ON n.id = i.ns "
            "WHERE n.name = ? AND i.key = ?), COALESCE((SELECT f.floor FROM version_floors f "
            "JOIN namespaces n ON n.id = f.ns WHERE n.name = ?), 0)",
            (namespace, key, namespace),
        )
        return (None if row[0] is None else int(row[0])), int(row[1])

    def namespaces(self) -> list[str]:
        try:
            rows = self._conn().execute("SELECT name FROM namespaces ORDER BY name").fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "namespaces") from exc
        return [r[0] for r in rows]

    # -- key ids (docs/configuration.md: the keyring belongs to the store) ------------

    def key_ids(self) -> set[str] | None:
        """The key ids recorded in ``meta`` (``kid:<id>`` rows); None when the record
        was never completed (a store written before key ids were recorded)."""
        try:
            rows = self._conn().execute(_KEY_IDS).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "read the key ids") from exc
        keys = {str(r[0]) for r in rows}
        if "kids" not in keys:
            return None
        return {k[4:] for k in keys if k.startswith("kid:")}

    def record_key_ids(self, kids: Iterable[str]) -> None:
        """Add ``kids`` to ``meta`` and mark the record complete, committed before return."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = repr(time.time())
                conn.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("kid:" + kid, now) for kid in kids] + [("kids", "recorded")],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, "record the key ids") from exc

    def stats(self) -> dict[str, Any]:
        try:
            return self._stats()
        except sqlite3.Error as exc:
            raise _translate(exc, "stats") from exc

    def _stats(self) -> dict[str, Any]:
        conn = self._conn()
        # Counters and log bounds, never a pass over the rows (see stats.py).
        per_ns = _counters.namespace_counts(conn)
        first, last, total = _counters.changelog_bounds(conn)
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        return {
            "backend": "sqlite",
            "path": str(self.path),
            "durability": self.durability,
            "schema_version": SCHEMA_VERSION,
            "file_bytes": int(page_size * pages),
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "namespaces": per_ns,
            "changelog": {"first_seq": first, "last_seq": last, "rows": total},
            "group_commit": self._committer.stats(),
            "events": self.event_stats(),
        }

    def check(self) -> tuple[list[str], dict[str, int]]:
        """Every invariant of the file, in both directions between items and change log.

        What holds however retention trimmed the log and expiry swept items (so a
        sound store reports nothing): the retained log is a gap-free run of seqs (the
        sweep trims a prefix only); an item whose seq is in that run is the put row
        at its seq; and for every key with a retained row, the key's newest row says
        what the items table holds — a put: the item at exactly that seq and version;
        a delete or expire: no item.  Damage the driver raises (a malformed page, a
        missing table) is reported as a problem of the step that met it, so a corrupt
        file gives a report, never a traceback; only a busy or locked database
        raises (:class:`BackendUnavailable`: the check could not run).
        """
        conn = self._conn()
        problems: list[str] = []
        checked: dict[str, int] = {}
        steps: list[tuple[str, Callable[[sqlite3.Connection], list[str]]]] = [
            ("the file's integrity", self._check_integrity),
            ("the schema version", self._check_schema),
            ("the items", lambda c: self._check_items(c, checked)),
            ("the change log", lambda c: self._check_log(c, checked)),
            ("the item counters", _counters.check_counters),
            ("items against the change log", self._check_items_logged),
            ("the change log against items", self._check_log_items),
            ("the events", lambda c: self._check_events_step(c, checked)),
        ]
        for what, step in steps:
            try:
                problems += step(conn)
            except sqlite3.Error as exc:
                if _is_busy(exc):
                    raise _translate(exc, "check") from exc
                problems.append(f"could not check {what}: sqlite error: {exc}")
        return problems, checked

    @staticmethod
    def _check_integrity(conn: sqlite3.Connection) -> list[str]:
        return [
            f"sqlite integrity_check: {line}"
            for (line,) in conn.execute("PRAGMA integrity_check")
            if line != "ok"
        ]

    @staticmethod
    def _check_schema(conn: sqlite3.Connection) -> list[str]:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or str(row[0]) != str(SCHEMA_VERSION):
            return [f"schema version is {row and row[0]}, expected {SCHEMA_VERSION}"]
        return []

    def _check_items(self, conn: sqlite3.Connection, checked: dict[str, int]) -> list[str]:
        problems: list[str] = []
        checked["items"] = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        bad = conn.execute(
            "SELECT COUNT(*) FROM items WHERE version < 1 OR seq < 1 OR updated_at < created_at"
        ).fetchone()[0]
        if bad:
            problems.append(f"{bad} items have impossible metadata (version/seq/timestamps)")
        orphans = conn.execute(
            "SELECT COUNT(*) FROM items i LEFT JOIN namespaces n ON n.id = i.ns WHERE n.id IS NULL"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} items belong to no namespace")
        return problems

    def _check_log(self, conn: sqlite3.Connection, checked: dict[str, int]) -> list[str]:
        problems: list[str] = []
        first, last, rows = conn.execute(
            "SELECT MIN(seq), MAX(seq), COUNT(*) FROM changes"
        ).fetchone()
        checked["changes"] = rows
        if rows and last - first + 1 != rows:
            problems.append(
                f"the change log misses {last - first + 1 - rows} seqs between its first "
                f"({first}) and last ({last}): retention trims only from the front"
            )
        ops = ", ".join(str(op) for op in OP_NAMES)
        bad = conn.execute(
            f"SELECT COUNT(*) FROM changes WHERE seq < 1 OR version < 1 OR op NOT IN ({ops})"
        ).fetchone()[0]
        if bad:
            problems.append(f"{bad} change-log rows have an impossible seq, version or op")
        orphans = conn.execute(
            "SELECT COUNT(*) FROM changes c LEFT JOIN namespaces n ON n.id = c.ns "
            "WHERE n.id IS NULL"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} change-log rows belong to no namespace")
        return problems

    def _check_items_logged(self, conn: sqlite3.Connection) -> list[str]:
        """Forward: an item row and its change row commit together."""
        problems: list[str] = []
        first = conn.execute("SELECT MIN(seq) FROM changes").fetchone()[0] or 0
        rows = conn.execute(
            "SELECT i.ns, i.key FROM items i LEFT JOIN changes c ON c.seq = i.seq "
            "WHERE i.seq >= ? AND (c.seq IS NULL OR c.ns != i.ns OR c.key != i.key "
            f"OR c.version != i.version OR c.op != {OP_PUT}) ORDER BY i.ns, i.key",
            (first,),
        ).fetchall()
        if rows:
            problems.append(
                f"{len(rows)} items have no matching change-log row: {self._names(conn, rows)}"
            )
        maxseq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        ahead = conn.execute(
            "SELECT ns, key FROM items WHERE seq > ? ORDER BY ns, key", (maxseq,)
        ).fetchall()
        if ahead:
            problems.append(
                f"{len(ahead)} items carry a seq beyond the change log's last ({maxseq}): "
                f"{self._names(conn, ahead)}"
            )
        return problems

    def _check_log_items(self, conn: sqlite3.Connection) -> list[str]:
        """Reverse: each key's newest retained change row is what the items table holds."""
        rows = conn.execute(
            "SELECT c.ns, c.key, c.op, c.version, c.seq, i.seq, i.version FROM changes c "
            "JOIN (SELECT MAX(seq) AS seq FROM changes GROUP BY ns, key) last "
            "ON last.seq = c.seq LEFT JOIN items i ON i.ns = c.ns AND i.key = c.key "
            f"WHERE (c.op = {OP_PUT} AND (i.key IS NULL OR i.seq != c.seq "
            "OR i.version != c.version)) OR (c.op != ? AND i.key IS NOT NULL) "
            "ORDER BY c.seq",
            (OP_PUT,),
        ).fetchall()
        gone = [r for r in rows if r[2] == OP_PUT and r[5] is None]
        stale = [r for r in rows if r[2] == OP_PUT and r[5] is not None]
        undead = [r for r in rows if r[2] != OP_PUT]
        problems: list[str] = []
        if gone:
            problems.append(
                f"{len(gone)} keys were last written by a put in the change log but have no "
                f"item (and no later delete or expire): {self._names(conn, gone)}"
            )
        if stale:
            problems.append(
                f"{len(stale)} items differ from their newest change-log row (seq/version): "
                + self._names(
                    conn, stale, lambda r: f" (log: seq {r[4]} v{r[3]}, item: seq {r[5]} v{r[6]})"
                )
            )
        if undead:
            problems.append(
                f"{len(undead)} items exist although their newest change-log row is a delete "
                f"or expire: {self._names(conn, undead)}"
            )
        return problems

    def _check_events_step(self, conn: sqlite3.Connection, checked: dict[str, int]) -> list[str]:
        problems, checked["events"] = self.check_events(conn)
        return problems

    def _names(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[tuple[Any, ...]],
        detail: Callable[[tuple[Any, ...]], str] | None = None,
    ) -> str:
        """``ns/key`` of the first few rows (``(ns id, key, …)``), for a problem line."""
        names = dict(conn.execute("SELECT id, name FROM namespaces").fetchall())
        shown = [
            f"{names.get(r[0], f'#{r[0]}')}/{r[1]}{detail(r) if detail else ''}"
            for r in rows[:_SHOWN]
        ]
        more = f" … and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
        return ", ".join(shown) + more

    def close(self) -> None:
        self._closed = True
        self._stop_maintenance()
        with self._change_cond:
            self._change_cond.notify_all()
        # Close the connections of this thread and of threads that have ended.  A
        # connection another live thread may be using right now is left to that
        # thread (its next _conn() closes it) or to garbage collection: closing a
        # sqlite3 connection under a running statement crashes the driver.
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        me = threading.current_thread()
        for owner, conn in conns:
            if owner is me or not owner.is_alive():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._local.conn = None
