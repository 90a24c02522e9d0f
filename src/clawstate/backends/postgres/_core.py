"""What every part of the PostgreSQL backend shares: the state the backend holds
(declared on :class:`PostgresCore`, set by ``PostgresBackend.__init__``), pooled
connections with the one-retry read helper, the namespace-id cache, the commit
watermarks that wake waiters, and the driver-error translation at the edge.

The backend class is assembled from one mixin per job over this core —
:mod:`.writes`, :mod:`.query`, :mod:`.listen`, :mod:`.events` — each typed
against these declarations, so no part reaches into another's private state.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ...errors import BackendUnavailable, ClawStateError, IntegrityError
from ..base import StoredItem

if TYPE_CHECKING:
    from ...codec import Codec
    from .._group_commit import GroupCommitter
    from ..base import Outcome

__all__ = ["Full", "Key", "PostgresCore", "configure", "fetch_all", "lock_key", "lost", "translate"]

#: A row as the general path keeps it: (version, seq, created_at, updated_at,
#: expires_at, value or None when unchanged, jsonb text, opaque).
Full: TypeAlias = tuple[int, int, float, float, float | None, bytes | None, str | None, int]
Key: TypeAlias = tuple[str, str]


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (or the server) went away."""
    if isinstance(exc, psycopg.InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate or ""
        return not state or state.startswith(("08", "57P"))
    return False


def translate(exc: BaseException, what: str) -> ClawStateError:
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
    if lost(exc) or (shown is not exc and lost(shown)):
        return BackendUnavailable(
            f"{what}: lost the connection to PostgreSQL (server restarted, stopped or "
            f"unreachable){state}: {shown}"
        )
    if isinstance(exc, psycopg.Error):
        return BackendUnavailable(f"{what}: PostgreSQL error{state}: {shown}")
    return BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def fetch_all(query: str, params: Sequence[Any]) -> Callable[[psycopg.Connection[Any]], Any]:
    return lambda conn: conn.execute(query, params, binary=True).fetchall()


def configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: no JIT.  Its compile time (10-20 ms) is pure loss on
    the short statements of a key/value store, and the planner's cost estimates on
    small or young tables are easily high enough to trigger it."""
    conn.execute("SET jit = off")


def lock_key(schema: str, purpose: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``schema`` (same in every process)."""
    digest = hashlib.blake2b(f"clawstate:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresCore:
    """The state and plumbing every part of :class:`~.backend.PostgresBackend` uses."""

    schema: str
    conninfo: str
    encrypted_query: str
    counters: dict[str, int]
    _pool_timeout: float
    _poll: float
    _codec: Codec
    _ddl_key: int
    _channel: str
    _sql: dict[str, str]
    _s: str
    _ns_ids: dict[str, int]
    _ns_names: dict[int, str]
    _closed: bool
    # watch: the newest seq / event position known committed (local commits and
    # notifications), and the condition their waiters sleep on
    _cond: threading.Condition
    _known_seq: int
    _known_pos: int
    _waiters: int
    _cursors: weakref.WeakKeyDictionary[psycopg.Connection[Any], psycopg.Cursor[Any]]
    _listening: bool
    _listen_gen: int
    _listen_ready: threading.Event
    _listener: threading.Thread | None
    _listener_lock: threading.Lock
    _pool: ConnectionPool[psycopg.Connection[Any]]
    _committer: GroupCommitter[Any, list[Outcome]]

    # -- connections & schema --------------------------------------------------------------

    @staticmethod
    def _item(namespace: str, r: Sequence[Any]) -> StoredItem:
        return StoredItem(namespace, r[0], r[1], r[2], r[3], r[4], r[5], r[6])

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
                if lost(exc) and not isinstance(exc, PoolTimeout):
                    self._recover()
                    if attempt == 0:
                        continue
                raise translate(exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

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

    def _read_row(self, conn: psycopg.Connection[Any], nid: int | None, key: str) -> Full | None:
        if nid is None:
            return None
        r = conn.execute(
            f"SELECT version, seq, created_at, updated_at, expires_at FROM {self._s}.items "
            "WHERE ns = %s AND key = %s",
            (nid, key),
        ).fetchone()
        return None if r is None else (r[0], r[1], r[2], r[3], r[4], None, None, 0)

    # -- writes ----------------------------------------------------------------------------

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
