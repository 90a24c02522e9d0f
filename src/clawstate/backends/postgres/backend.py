"""The PostgreSQL backend class: construction, reads, sweep, check, stats, close.

:class:`PostgresBackend` is assembled from one part per job (see the package
docstring for the design): :mod:`.writes` (the write path), :mod:`.query` (the
query compiler and indexes), :mod:`.listen` (change log and LISTEN) and
:mod:`.events` (the event store), each over :class:`~._core.PostgresCore`; the
schema and its SQL are :mod:`.schema`, the ``jsonb`` copy :mod:`.values`.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ...codec import Codec, CodecPolicy
from ...errors import BackendUnavailable, ClawStateError, ConfigError
from .._group_commit import GroupCommitter
from .._keyorder import prefix_upper_bound
from ..base import (
    OP_NAMES,
    OP_PUT,
    BackendOptions,
    Capabilities,
    Outcome,
    StoredItem,
    SweepResult,
)
from . import stats as _counters
from ._core import configure, fetch_all, lock_key, lost, translate
from .events import PostgresEventLog
from .query import PostgresQueries
from .schema import (
    _ITEM_COLS,
    _LIVE,
    _NOTIFY,
    DEFAULT_SCHEMA,
    SCHEMA_VERSION,
    check_schema_name,
    migrate,
    statements,
    store_exists,
)
from .values import value_doc
from .writes import Job, PostgresWrites

if TYPE_CHECKING:
    from ...config import ParsedUrl

__all__ = ["PostgresBackend"]

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


class PostgresBackend(PostgresWrites, PostgresQueries, PostgresEventLog):
    """Backend over one PostgreSQL schema (see the package docstring)."""

    name = "postgresql"
    capabilities = Capabilities(
        durable=True, multi_process=True, native_query=True, events=True, documents=True
    )

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
        create: bool = True,
    ) -> None:
        """``create=False`` opens only a schema that holds a clawstate store: one that
        does not is a :class:`ConfigError` "no store at …", found by reading the
        catalog (``to_regclass``) before any DDL — nothing is created or written."""
        check_schema_name(schema)
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
        self._ddl_key = lock_key(schema, "ddl")
        self._channel = "clawstate_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
        quoted = sql.Identifier(schema).as_string(None)
        self._sql = statements(quoted)
        self._s = quoted
        self._ns_ids: dict[str, int] = {}
        self._ns_names: dict[int, str] = {}
        # per namespace id, the paths whose expression index is built and valid
        self._indexed: dict[int, frozenset[tuple[str, ...]]] = {}
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
        self._pool = ConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            timeout=pool_timeout,
            kwargs={"autocommit": True},
            configure=configure,
            name=f"clawstate-{schema}",
            num_workers=2,
            open=False,
        )
        self._committer: GroupCommitter[Job, list[Outcome]] = GroupCommitter(
            self._run_batch, max_batch=max_batch
        )
        try:
            self._pool.open(wait=True, timeout=pool_timeout)
            with self._connection() as conn:
                if not create and not store_exists(conn, quoted):
                    raise ConfigError(
                        "store.url",
                        f"no store at PostgreSQL schema {schema!r} (no clawstate tables there); "
                        "a command that writes (put, serve…) creates it",
                    )
                migrate(conn, quoted, schema, self._ddl_key)
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
    def from_url(cls, url: ParsedUrl, options: BackendOptions) -> PostgresBackend:
        """The backend for a parsed ``postgresql://`` URL under ``options``."""
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
        return cls(
            conninfo,
            schema=schema,
            pool_min=pool_min,
            pool_max=pool_max,
            pool_timeout=pool_timeout,
            poll_interval=poll_interval,
            encrypted_query=encrypted_query,
            max_value_bytes=options.max_value_bytes,
            max_batch=options.max_batch,
            create=options.create,
        )

    def __repr__(self) -> str:
        return f"<PostgresBackend schema={self.schema!r}>"

    # -- reads -----------------------------------------------------------------------------

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
            if not lost(exc) or isinstance(exc, PoolTimeout):
                raise translate(exc, "get") from exc
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
            batch: list[Any] = self._read("iter_items", fetch_all(query, params))
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
            # Counters and log bounds, never a pass over the rows (see stats.py).
            per_ns = _counters.namespace_counts(conn, s)
            first, last, total = _counters.changelog_bounds(conn, s)
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
                "changelog": {"first_seq": first, "last_seq": last, "rows": total},
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
            problems += _counters.check_counters(conn, s, self.schema)
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

    def start_background(self) -> None:
        """No background work of its own (see :meth:`Backend.start_background`)."""

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
