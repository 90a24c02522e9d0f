"""Queries, the JSON-copy backfill and declared indexes of :class:`~.backend.SQLiteBackend`.

The compiler is :mod:`.query`; this mixin runs it: one statement for the page's
``limit + 1`` document rows (in the query's order, after the token), plus the rows SQL
cannot evaluate (``opaque IS NOT 0``: encrypted or not exactly representable, found
through a partial index that is empty in the usual store), all handed to
:func:`~clawstate.query.run_query` so tokens and ties are the evaluator's.

The Python scan (today's path, with early exit) answers instead when the namespace
still holds rows written before the JSON copy existed (the backfill has not reached
them) or when the query cannot be compiled exactly (:class:`.query.Unsupported`); the
plan's ``detail`` says which.

Maintenance runs on one daemon thread per open backend, started only when there is
something to do: the backfill of ``doc`` for rows an older clawstate wrote (chunks of
``_CHUNK`` rows, one short write transaction each, resumable anywhere: ``opaque IS
NULL`` is the to-do list), then any declared index whose build a killed process left
unfinished.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ...errors import ClawStateError, InvalidRequest
from ...query import MAX_PATH_SEGMENTS, And, Eq, Filter, run_query
from ...query.indexable import serving_path
from ...query.run import resume_key, scan_refused
from ...types import QueryPlan
from ..base import (
    OP_PUT,
    OP_REWRAP,
    Decoder,
    Progress,
    QueryResult,
    StoredItem,
    WriteUnit,
    compiled_plan,
)
from .docs import Doc, value_doc, write_doc
from .errors import translate as _translate
from .query import (
    KEYED_SUFFIX,
    PROBE,
    Unsupported,
    compile_page,
    index_columns,
    index_name,
    inlinable,
)
from .schema import _ITEM_COLS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ...query import Query

__all__ = ["SQLiteQueries"]

#: Rows per backfill transaction: ~20 ms of write lock at the measured rate.
_CHUNK: Final = 2000


def _keyed_eq(flt: Filter | None, path: tuple[str, ...]) -> bool:
    """Whether ``flt`` requires an ``EQ`` on ``path`` that the keyed index on ``path``
    looks up by value (a string or a number: ``null`` and booleans compile to a
    ``json_type`` test the index does not hold).  Such an index yields that value's
    rows in key order — the order of a query without a sort — so it reads the page's
    ``limit + 1`` matches and stops: never more rows than the key-ordered scan, which
    passes the same rows in the same order among the others.  No probe is needed."""
    if isinstance(flt, Eq):
        return flt.path == path and flt.operand.kind in ("string", "number")
    if isinstance(flt, And):
        return any(_keyed_eq(c, path) for c in flt.clauses)
    return False


class SQLiteQueries:
    """The query half of the SQLite backend (a mixin: the class provides the rest)."""

    _closed: bool
    _docs: dict[int, Doc]
    _maintenance: threading.Thread | None
    _stop: threading.Event

    # Provided by SQLiteBackend.
    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _ns_id(self, name: str) -> int | None:
        raise NotImplementedError

    def _item(self, namespace: str, r: tuple[Any, ...]) -> StoredItem:
        raise NotImplementedError

    def _iter(self, namespace: str, live_at: float | None) -> Iterator[StoredItem]:
        raise NotImplementedError

    def _remember_ns(self, name: str, nid: int) -> None:
        raise NotImplementedError

    # -- the JSON copy on the write path ---------------------------------------------

    def _stage_docs(self, unit: WriteUnit) -> list[int]:
        """Compute the JSON copy of each put's value from the document the codec handed
        over, keyed by the bytes object (alive until :meth:`_unstage_docs`)."""
        staged: list[int] = []
        docs = self._docs
        for w in unit.writes:
            if w.value is not None and (w.op == OP_PUT or w.op == OP_REWRAP):
                docs[id(w.value)] = write_doc(w.value, w.doc)
                staged.append(id(w.value))
        return staged

    def _unstage_docs(self, staged: list[int]) -> None:
        docs = self._docs
        for i in staged:
            docs.pop(i, None)

    def _doc_of(self, value: bytes) -> Doc:
        """The JSON copy of ``value`` as staged, or decoded from the bytes."""
        found = self._docs.get(id(value))
        return found if found is not None else value_doc(value)

    # -- maintenance: backfill and unfinished indexes ----------------------------------

    def _init_maintenance(self) -> None:
        """The maintenance state, with no thread yet (see :meth:`start_background`)."""
        self._docs = {}
        self._stop = threading.Event()
        self._maintenance = None

    def start_background(self) -> None:
        """Start the maintenance thread if rows lack their JSON copy or a declared
        index is unfinished (two probes of near-empty partial indexes).  Called by the
        facade once it accepted the open, never by the constructor: a refused open
        writes nothing."""
        if self._maintenance is not None or self._stop.is_set():
            return
        try:
            conn = self._conn()
            pending = (
                conn.execute("SELECT 1 FROM items WHERE opaque IS NULL LIMIT 1").fetchone()
                or conn.execute(
                    "SELECT 1 FROM query_indexes WHERE state <> 'ready' LIMIT 1"
                ).fetchone()
            )
        except sqlite3.Error as exc:
            raise _translate(exc, "open") from exc
        if pending:
            self._maintenance = threading.Thread(
                target=self._maintain, name="clawstate-sqlite-backfill", daemon=True
            )
            self._maintenance.start()

    def _stop_maintenance(self) -> None:
        thread = getattr(self, "_maintenance", None)
        if thread is not None:
            self._stop.set()
            thread.join(30)

    def _maintain(self) -> None:
        try:
            # close() interrupts a long statement (an index build) instead of waiting
            # for it: the statement rolls back whole and the next open resumes it.
            stop = self._stop
            self._conn().set_progress_handler(lambda: 1 if stop.is_set() else 0, 10000)
            while not self._stop.is_set() and self.backfill_docs(_CHUNK):
                pass
            if not self._stop.is_set():
                self._finish_indexes()
        except (ClawStateError, sqlite3.Error):
            pass  # closed, or busy for a minute: the next open resumes
        finally:
            conn = getattr(getattr(self, "_local", None), "conn", None)
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass

    def backfill_docs(self, limit: int) -> int:
        """Give up to ``limit`` rows that lack it their JSON copy, in one short write
        transaction; return how many (0: nothing left).  Any process may run it at any
        time: a row is done once, and a kill loses at most the open chunk."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(
                    "SELECT ns, key, value FROM items WHERE opaque IS NULL LIMIT ?", (limit,)
                ).fetchall()
                conn.executemany(
                    "UPDATE items SET doc = ?, opaque = ? WHERE ns = ? AND key = ?",
                    [(*value_doc(bytes(v)), ns, k) for ns, k, v in rows],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _translate(exc, "backfill") from exc
        return len(rows)

    def _finish_indexes(self) -> None:
        conn = self._conn()
        for nid, path, name in conn.execute(
            "SELECT ns, path, name FROM query_indexes WHERE state <> 'ready'"
        ).fetchall():
            if self._stop.is_set():
                return
            self._build_index(int(nid), tuple(str(path).split(".")), str(name))

    # -- queries -----------------------------------------------------------------------

    def query(
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool = False,
        max_scan: int | None = None,
    ) -> QueryResult:
        try:
            return self._query(namespace, query, decode, now, explain, max_scan)
        except sqlite3.Error as exc:
            raise _translate(exc, "query") from exc

    def _query(
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool,
        max_scan: int | None,
    ) -> QueryResult:
        nid = self._ns_id(namespace)
        # run_query over no rows validates the token (InvalidRequest for a bad one)
        # before the compiler decodes it.
        if nid is None or query.token is not None:
            run_query(query, [])
        if nid is None:
            return QueryResult([], None, QueryPlan("sqlite", "sql", 0))
        conn = self._conn()
        ready = self.ready_indexes(nid)
        served = serving_path(query.filter, ready.keys())
        reason: str | None = None
        text, params = "", dict[str, Any]()
        hinted: str | None = None
        opaque, undocumented = self._python_rows(conn, nid, now)
        if undocumented:
            reason = "rows written before the JSON copy existed are still being backfilled"
        else:
            try:
                text, _, params = compile_page(nid, query, now, _ITEM_COLS)
                if served is not None and not query.sort:
                    name = ready[served]
                    if name.endswith(KEYED_SUFFIX) and _keyed_eq(query.filter, served):
                        hinted = name  # reads exactly the page's entries, in key order
                    else:
                        hinted = self._pick_index(nid, query, now, name)
                    if hinted is not None:
                        text, _, params = compile_page(nid, query, now, _ITEM_COLS, hinted)
            except Unsupported as exc:
                reason = f"not compiled: {exc}"
        if reason is not None:
            rows = ((it.key, decode(it), it) for it in self._iter(namespace, now))
            bound = max_scan if served is None else None
            run = run_query(query, rows, key_ordered=True, max_read=bound)
            plan = QueryPlan(
                "sqlite", "scan", run.rows_read, run.early_exit, None, [f"python scan: {reason}"]
            )
            return QueryResult(run.items, run.token, plan)
        bounded = False
        if max_scan is not None and served is None:
            row = conn.execute("SELECT items FROM ns_stats WHERE ns = ?", (nid,)).fetchone()
            stored = 0 if row is None else int(row[0])
            if stored > max_scan:
                if query.sort:  # every row must be read to order them
                    raise scan_refused(query, stored, max_scan)
                # Key order: read at most max_scan rows, as the evaluator's bound does.
                bounded = True
                text, _, params = compile_page(
                    nid, query, now, _ITEM_COLS, window=max_scan, after_key=resume_key(query)
                )
        found = conn.execute(text, params).fetchall()
        if bounded and len(found) <= query.limit:
            assert max_scan is not None
            self._refuse_beyond(nid, query, now, max_scan)
        items = [self._item(namespace, r) for r in found]
        if opaque:
            items.extend(self._item(namespace, r) for r in opaque)
            rows = ((it.key, decode(it), it) for it in items)
            page = run_query(query, rows, key_ordered=False)
        elif query.sort:  # the evaluator orders ties and issues tokens by the values
            rows = ((it.key, decode(it), it) for it in items)
            page = run_query(query, rows, key_ordered=True, prefiltered=True)
        else:
            # SQL evaluated the filter exactly: no value is decoded here (the facade
            # decodes each returned row once, building its Item).
            rows = ((it.key, None, it) for it in items)
            page = run_query(query, rows, key_ordered=True, prefiltered=True)
        names = set(ready.values())
        index: str | None
        detail: list[str] = []
        if explain:
            detail = [str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + text, params)]
            index = next((n for line in detail for n in names if n in line.split()), None)
        else:
            index = hinted or (ready[served] if served is not None and query.sort else None)
        plan = compiled_plan("sqlite", len(found), len(opaque), query.limit, index, detail)
        return QueryResult(page.items, page.token, plan)

    @staticmethod
    def _python_rows(
        conn: sqlite3.Connection, nid: int, now: float
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """The namespace's live rows SQL cannot evaluate (encrypted or not exactly
        representable: ``opaque = 1``), and whether any row still lacks its JSON copy
        (``opaque IS NULL``: then SQL cannot answer at all).

        One read of the partial index ``items_python`` (``opaque IS NOT 0``, which
        NULL passes too) answers both: it is empty in the usual store, and it stops at
        the first row to backfill."""
        rows: list[tuple[Any, ...]] = []
        for r in conn.execute(
            f"SELECT {_ITEM_COLS}, opaque FROM items WHERE ns = {int(nid)} AND opaque IS NOT 0"
        ):
            if r[7] is None:
                return rows, True
            if r[6] is None or r[6] > now:
                rows.append(r[:7])
        return rows, False

    def _refuse_beyond(self, nid: int, query: Query, now: float, max_scan: int) -> None:
        """Raise :func:`scan_refused` when live rows lie beyond the ``max_scan`` a
        bounded page read (the page is short only because the bound stopped it)."""
        after = resume_key(query)
        resume = "" if after is None else " AND key > :after"
        beyond = (
            self._conn()
            .execute(
                f"SELECT count(*) FROM (SELECT 1 FROM items WHERE ns = {int(nid)} AND "
                f"(expires_at IS NULL OR expires_at > :now){resume} LIMIT {int(max_scan) + 1})",
                {"now": now, "after": after},
            )
            .fetchone()[0]
        )
        if int(beyond) > max_scan:
            raise scan_refused(query, int(beyond), max_scan)

    def _pick_index(self, nid: int, query: Query, now: float, name: str) -> str | None:
        """``name`` when its index should answer a query without a sort, else None.

        Such a query competes with the key-ordered scan, which stops after ``limit +
        1`` matches: the better plan depends on how many rows match, which SQLite's
        planner cannot know (statistics taken when the index was declared — usually on
        an empty namespace — are stale, and without them it always took the scan).
        So ask the index itself: count up to ``PROBE`` matches through it (an index
        range read).  Fewer: the lookup plus a sort of that few wins, and the page is
        forced through the index (``INDEXED BY``).  More: the matches are dense and the
        scan reaches ``limit + 1`` of them soon.  A filter the index cannot serve alone
        (an ``OR`` over several) leaves the choice to the planner.  (An ``EQ`` on a
        keyed index skips this: see :func:`_keyed_eq`.  The probe stays for ``IN`` and
        ranges, whose matches span several values and so are not in key order.)"""
        _, probe, params = compile_page(nid, query, now, "1", name)
        try:
            found = int(self._conn().execute(probe, params).fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no query solution" in str(exc):
                return None
            raise
        return name if found < PROBE else None

    def ready_indexes(self, nid: int) -> dict[tuple[str, ...], str]:
        """The namespace's complete declared indexes: ``{path: index name}`` (read per
        query: another process may have finished one meanwhile)."""
        return {
            tuple(str(path).split(".")): str(name)
            for path, name in self._conn().execute(
                "SELECT path, name FROM query_indexes WHERE ns = ? AND state = 'ready'", (nid,)
            )
        }

    # -- declared indexes -------------------------------------------------------------

    def ensure_index(
        self, namespace: str, fields: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        """Create (if absent) a partial expression index per field (a dotted path) in
        ``namespace``; return their names in order.  Idempotent, and safe against
        another process doing the same (each step is one write transaction).

        The declaration is recorded first (``building``); the index is then built by
        one ``CREATE INDEX`` that commits together with the mark ``ready`` — SQLite
        cannot build an index in pieces, so a build holds the write lock for its
        duration (measured 1.7 s at 1.6 M rows, docs/backends.md) and a kill rolls it
        back whole: the record stays ``building``, queries read without the index, and
        the next open (its maintenance thread) or call builds it.  ``progress(done,
        total)`` hears ``(0, rows × fields)`` first and each index's rows as it
        completes."""
        if isinstance(fields, str):
            raise InvalidRequest("indexes", "must be a list of dotted paths, not one string")
        paths = [tuple(str(f).split(".")) for f in fields]
        for path in paths:
            self._check_index_path(path)
        if not paths:
            return []
        try:
            nid = self._create_namespace(namespace)
            row = self._conn().execute("SELECT items FROM ns_stats WHERE ns = ?", (nid,)).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, "ensure_index") from exc
        rows = 0 if row is None else int(row[0])
        total = rows * len(paths)
        if progress is not None:
            progress(0, total)
        names: list[str] = []
        for done, path in enumerate(paths, start=1):
            name = index_name(nid, path)
            try:
                self._declare_index(nid, path, name)
                self._build_index(nid, path, name)
            except sqlite3.Error as exc:
                raise _translate(exc, "ensure_index") from exc
            names.append(name)
            if progress is not None:
                progress(rows * done, total)
        return names

    @staticmethod
    def _check_index_path(path: tuple[str, ...]) -> None:
        shown = ".".join(path)
        if not path or any(not s or "\x00" in s for s in path):
            raise InvalidRequest("indexes", f"not an indexable path: {shown!r}")
        if len(path) > MAX_PATH_SEGMENTS:
            raise InvalidRequest(
                "indexes",
                f"path has more than {MAX_PATH_SEGMENTS} segments",
                limit=MAX_PATH_SEGMENTS,
            )
        for seg in path:
            if not inlinable(seg):
                raise InvalidRequest(
                    "indexes",
                    f"path {shown!r}: SQLite cannot index a key holding a quote, a "
                    "backslash or a control character",
                )
            if seg.isascii() and seg.isdigit():
                raise InvalidRequest(
                    "indexes",
                    f"path {shown!r}: a digit segment (an array position or a key) "
                    "cannot be indexed on SQLite",
                )
            try:
                seg.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest("indexes", f"not an indexable path: {shown!r}") from None

    def _create_namespace(self, name: str) -> int:
        nid = self._ns_id(name)
        if nid is not None:
            return nid
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR IGNORE INTO namespaces (name) VALUES (?)", (name,))
            found = conn.execute("SELECT id FROM namespaces WHERE name = ?", (name,)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        nid = int(found[0])
        self._remember_ns(name, nid)
        return nid

    def _declare_index(self, nid: int, path: tuple[str, ...], name: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR IGNORE INTO query_indexes (ns, path, name, state) "
                "VALUES (?, ?, ?, 'building')",
                (nid, ".".join(path), name),
            )
            # An index an older clawstate declared (on the value alone, see
            # query.index_columns) is rebuilt in the keyed shape; the old one keeps
            # existing until the new one is built (_build_index drops it).
            conn.execute(
                "UPDATE query_indexes SET name = ?, state = 'building' "
                "WHERE ns = ? AND path = ? AND name <> ?",
                (name, nid, ".".join(path), name),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _build_index(self, nid: int, path: tuple[str, ...], name: str) -> None:
        """Build the index and mark it ready in one transaction (a no-op when ready)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT state FROM query_indexes WHERE ns = ? AND path = ?",
                (nid, ".".join(path)),
            ).fetchone()
            if row is None or row[0] != "ready":
                conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "{name}" ON items ({index_columns(path)}) '
                    f"WHERE ns = {int(nid)}"
                )
                if name.endswith(KEYED_SUFFIX):  # the older shape's index, if any
                    conn.execute(f'DROP INDEX IF EXISTS "{name.removesuffix(KEYED_SUFFIX)}"')
                conn.execute(
                    "UPDATE query_indexes SET state = 'ready' WHERE ns = ? AND path = ?",
                    (nid, ".".join(path)),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
