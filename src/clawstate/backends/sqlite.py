"""The embedded backend: one SQLite file, the stdlib ``sqlite3`` module.

The discipline is DiskCache's: WAL journal so readers never wait for the
writer, ``BEGIN IMMEDIATE`` so a writer takes the write lock up front instead
of failing half-way with SQLITE_BUSY, and one connection per thread (sqlite3
connections must not be shared between threads mid-statement).  Writes go
through a :class:`GroupCommitter`: concurrent writers of this process share one
transaction and one WAL sync; other processes coordinate through SQLite's own
file lock (``busy_timeout``).

Durability modes: ``process`` runs ``synchronous=NORMAL`` — a commit is in the
WAL before it is acknowledged, so it survives a killed process but a power cut
may lose the last commits; ``power`` runs ``synchronous=FULL`` — the WAL is
fsynced on every commit (every *batch*, with group commit).

Each item row and its change-log row are written in the same transaction; the
change-log ``seq`` is assigned under the write lock, so it is gap-free and in
commit order for every reader.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, ClawStateError, ConfigError
from ..events import _sqlite as _events
from ..types import Change
from ._apply import Row, apply_unit
from ._group_commit import GroupCommitter
from ._keyorder import prefix_upper_bound
from .base import (
    OP_EXPIRE,
    OP_NAMES,
    Capabilities,
    Decoder,
    Outcome,
    StoredItem,
    SweepResult,
    WriteUnit,
)

if TYPE_CHECKING:
    from ..query import Query

__all__ = ["NETWORK_FILESYSTEMS", "SCHEMA_VERSION", "SQLiteBackend"]

#: Filesystems on which SQLite's POSIX locks (and so WAL) are unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "smb3",
        "9p",
        "fuse.sshfs",
        "sshfs",
        "afs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "fuse.s3fs",
        "fuse.rclone",
        "davfs",
        "fuse.davfs2",
    }
)

_ITEM_COLS = "key, value, version, seq, created_at, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_EXPIRED = "items.expires_at IS NOT NULL AND items.expires_at <= excluded.updated_at"
#: Insert, or overwrite bumping the version (restarting at 1 over an expired row).
_UPSERT = (
    "INSERT INTO items (ns, key, value, version, seq, created_at, updated_at, expires_at) "
    "VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (ns, key) DO UPDATE SET "
    "value = excluded.value, seq = excluded.seq, updated_at = excluded.updated_at, "
    "expires_at = excluded.expires_at, "
    f"version = CASE WHEN {_EXPIRED} THEN 1 ELSE items.version + 1 END, "
    f"created_at = CASE WHEN {_EXPIRED} THEN excluded.created_at ELSE items.created_at END "
    "RETURNING version, created_at, seq"
)
#: The same, taking the next seq inside the statement (first write of a batch).
_UPSERT_NEXT_SEQ = _UPSERT.replace(
    "VALUES (?, ?, ?, 1, ?,", "VALUES (?, ?, ?, 1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM changes),"
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
]
SCHEMA_VERSION = len(_MIGRATIONS)


def _mount_fstype(path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (Linux /proc/mounts)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[:3] for line in fh if line.strip()]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    target = str(path)
    for parts in mounts:
        if len(parts) < 3:
            continue
        mountpoint = parts[1].replace("\\040", " ")
        inside = target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")
        if inside and (best is None or len(mountpoint) > best[0]):
            best = (len(mountpoint), parts[2])
    return best[1] if best else None


def _translate(exc: sqlite3.Error, what: str) -> ClawStateError:
    """Turn a driver error into the clawstate tree (the backend's edge)."""
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in message:
        return BackendUnavailable(f"{what}: the database stayed locked by another writer")
    return BackendUnavailable(f"{what}: sqlite error: {message}")


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
        if exists:
            self.conn.execute(
                "UPDATE items SET value = ?, version = ?, seq = ?, created_at = ?, "
                "updated_at = ?, expires_at = ? WHERE ns = ? AND key = ?",
                (value, version, seq, created_at, updated_at, expires_at, nid, key),
            )
        else:
            self.conn.execute(
                "INSERT INTO items (ns, key, value, version, seq, created_at, updated_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (nid, key, value, version, seq, created_at, updated_at, expires_at),
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
        if self.seq is None:
            r = self.conn.execute(_UPSERT_NEXT_SEQ, (nid, key, value, now, now, expires_at))
        else:
            r = self.conn.execute(_UPSERT, (nid, key, value, self.seq + 1, now, now, expires_at))
        version, created, seq = r.fetchall()[0]
        self.seq = seq
        return version, created, seq

    def delete(self, namespace: str, key: str) -> None:
        self.conn.execute(
            "DELETE FROM items WHERE ns = ? AND key = ?", (self.ns_id(namespace), key)
        )

    def rewrite(self, namespace: str, key: str, value: bytes) -> None:
        self.conn.execute(
            "UPDATE items SET value = ? WHERE ns = ? AND key = ?",
            (value, self.ns_id(namespace), key),
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


class SQLiteBackend(_events.SQLiteEventLog):
    """Backend over one SQLite database file (see the module docstring)."""

    name = "sqlite"
    capabilities = Capabilities(durable=True, multi_process=True, native_query=False, events=True)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "process",
        busy_timeout: float = 60.0,
        poll_interval: float = 0.05,
        max_batch: int = 512,
    ) -> None:
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
        self._refuse_network_fs()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("store.url", f"cannot create {self.path.parent}: {exc}") from exc
        self._committer: GroupCommitter[WriteUnit | _SweepJob, Any] = GroupCommitter(
            self._run_batch, max_batch=max_batch
        )
        self._migrate()

    # -- connections -----------------------------------------------------------------

    def _refuse_network_fs(self) -> None:
        probe = self.path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        fstype = _mount_fstype(probe)
        if fstype is not None and fstype.lower() in NETWORK_FILESYSTEMS:
            raise ConfigError(
                "store.url",
                f"{self.path} is on a network filesystem ({fstype}); SQLite's file locks "
                "are unreliable there and concurrent writers could corrupt it — put the "
                "database on a local disk, or use a postgresql:// store",
            )

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
                str(self.path),
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
        except sqlite3.Error as exc:
            raise _translate(exc, f"open {self.path}") from exc
        self._local.conn = conn
        with self._conns_lock:
            self._all_conns.append((threading.current_thread(), conn))
        return conn

    def _migrate(self) -> None:
        conn = self._conn()
        try:
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
                        conn.execute(statement)
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

    # -- namespace ids ---------------------------------------------------------------

    def _remember_ns(self, name: str, nid: int) -> None:
        with self._ns_lock:
            self._ns_ids[name] = nid
            self._ns_names[nid] = name

    def _ns_id(self, name: str) -> int | None:
        """The id of an existing namespace; None if it was never written."""
        nid = self._ns_ids.get(name)
        if nid is None:
            row = self._conn().execute("SELECT id FROM namespaces WHERE name = ?", (name,))
            found = row.fetchone()
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
        result: list[Outcome] = self._committer.submit(unit)
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
                # A unit of one write (or one event append) fails its check before it
                # writes anything, so it needs no savepoint: two statements saved per
                # unit in a group-committed batch.
                guarded = (
                    len(job.writes) + len(job.events) > 1 if isinstance(job, WriteUnit) else multi
                )
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
            if live_at is None:
                cur = conn.execute(
                    f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key {op} ? "
                    "ORDER BY key LIMIT 1000",
                    (nid, after),
                )
            else:
                cur = conn.execute(
                    f"SELECT {_ITEM_COLS} FROM items WHERE ns = ? AND key {op} ? AND {_LIVE} "
                    "ORDER BY key LIMIT 1000",
                    (nid, after, live_at),
                )
            batch = cur.fetchall()
            for r in batch:
                yield self._item(namespace, r)
            if len(batch) < 1000:
                return
            after, op = batch[-1][0], ">"

    def iter_items(self, namespace: str) -> Iterator[StoredItem]:
        return self._iter(namespace, None)

    def query(
        self, namespace: str, query: Query, decode: Decoder, now: float
    ) -> tuple[list[StoredItem], str | None]:
        from ..query import run_query

        try:
            rows = ((it.key, decode(it), it) for it in self._iter(namespace, now))
            return run_query(query, rows)
        except sqlite3.Error as exc:
            raise _translate(exc, "query") from exc

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
            seq = rows.next_seq()
            conn.execute(
                "INSERT INTO changes (seq, ns, key, op, version, ts) VALUES (?,?,?,?,?,?)",
                (seq, nid, key, OP_EXPIRE, version, job.now),
            )
        idem = conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (job.now,)).rowcount
        # Changes are in seq order and (nearly) in ts order: trim from the front,
        # always keeping the newest row so seq numbers are never reused.
        trimmed = conn.execute(
            "DELETE FROM changes WHERE seq IN (SELECT seq FROM changes WHERE seq < "
            "(SELECT MAX(seq) FROM changes) AND ts < ? ORDER BY seq LIMIT 50000)",
            (job.changelog_before,),
        ).rowcount
        events = self.sweep_events(conn, job.now)
        return SweepResult(
            expired=len(expired), idempotency_keys=idem, changes=trimmed, events=events
        )

    def namespaces(self) -> list[str]:
        try:
            rows = self._conn().execute("SELECT name FROM namespaces ORDER BY name").fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "namespaces") from exc
        return [r[0] for r in rows]

    def stats(self) -> dict[str, Any]:
        conn = self._conn()
        per_ns: dict[str, dict[str, int]] = {}
        for name, count, size in conn.execute(
            "SELECT n.name, COUNT(i.key), COALESCE(SUM(LENGTH(i.value)), 0) "
            "FROM namespaces n LEFT JOIN items i ON i.ns = n.id GROUP BY n.id ORDER BY n.name"
        ):
            per_ns[name] = {"items": int(count), "bytes": int(size)}
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        first, last, total = conn.execute(
            "SELECT MIN(seq), MAX(seq), COUNT(*) FROM changes"
        ).fetchone()
        return {
            "backend": "sqlite",
            "path": str(self.path),
            "durability": self.durability,
            "schema_version": SCHEMA_VERSION,
            "file_bytes": int(page_size * pages),
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "namespaces": per_ns,
            "changelog": {"first_seq": first or 0, "last_seq": last or 0, "rows": total},
            "group_commit": self._committer.stats(),
            "events": self.event_stats(),
        }

    def check(self) -> tuple[list[str], dict[str, int]]:
        conn = self._conn()
        problems: list[str] = []
        checked: dict[str, int] = {}
        for (line,) in conn.execute("PRAGMA integrity_check"):
            if line != "ok":
                problems.append(f"sqlite integrity_check: {line}")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            problems.append(f"schema version is {row and row[0]}, expected {SCHEMA_VERSION}")
        checked["items"] = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        checked["changes"] = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
        event_problems, checked["events"] = self.check_events(conn)
        problems += event_problems
        for (bad,) in conn.execute(
            "SELECT COUNT(*) FROM items WHERE version < 1 OR seq < 1 OR updated_at < created_at"
        ):
            if bad:
                problems.append(f"{bad} items have impossible metadata (version/seq/timestamps)")
        orphans = conn.execute(
            "SELECT COUNT(*) FROM items i LEFT JOIN namespaces n ON n.id = i.ns WHERE n.id IS NULL"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} items belong to no namespace")
        # Every item's last write must be in the change log (unless trimmed away),
        # with the same version: item row and change row commit together.
        first = conn.execute("SELECT MIN(seq) FROM changes").fetchone()[0] or 0
        mismatched = conn.execute(
            "SELECT COUNT(*) FROM items i LEFT JOIN changes c ON c.seq = i.seq "
            "WHERE i.seq >= ? AND (c.seq IS NULL OR c.ns != i.ns OR c.key != i.key "
            "OR c.version != i.version OR c.op != 0)",
            (first,),
        ).fetchone()[0]
        if mismatched:
            problems.append(f"{mismatched} items have no matching change-log row")
        maxseq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        ahead = conn.execute("SELECT COUNT(*) FROM items WHERE seq > ?", (maxseq,)).fetchone()[0]
        if ahead:
            problems.append(f"{ahead} items carry a seq beyond the change log's last ({maxseq})")
        return problems, checked

    def close(self) -> None:
        self._closed = True
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
