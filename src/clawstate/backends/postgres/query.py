"""The PostgreSQL backend's queries: the compiler from clawstate's query AST to SQL,
and the expression indexes that serve it.

Queries compile the AST of :mod:`clawstate.query` to SQL with bound parameters only
(paths are ``text[]`` parameters under ``#>``), ordered by ``(jsonb_typeof rank,
typed value)`` pairs and resumed with a keyset condition decoded from the page
token.  The page and its next token are then produced by
:func:`~clawstate.query.run_query` over the ``limit + 1`` rows SQL returned (plus
any opaque rows, evaluated in Python), so tokens are exactly the evaluator's and
interchangeable with every other backend's.

Indexes: the facade asks for them from the namespace policy (``indexes = [...]``,
also under ``[namespaces."*"]``) through :meth:`PostgresQueries.ensure_index` when
it opens a namespace; the backend never reads the configuration itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import psycopg
from psycopg import sql

from ...errors import InvalidRequest
from ...query import MAX_PATH_SEGMENTS, And, Compare, Eq, Filter, In, Or, run_query
from ...query.indexable import serving_path
from ...query.run import scan_refused
from ...types import QueryPlan
from ..base import Decoder, Progress, QueryResult, compiled_plan
from ._core import PostgresCore
from .schema import _ITEM_COLS, _LIVE
from .values import OPAQUE_ENCRYPTED

if TYPE_CHECKING:
    from ...query import Query

__all__ = ["PostgresQueries"]


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


#: The name of one of our expression indexes in a line of ``EXPLAIN`` output.
_INDEX_NAME: Final = re.compile(r"items_q\d+_[0-9a-f]{16}")


def _text_array_literal(segments: Sequence[str]) -> str:
    inner = ",".join('"' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"' for seg in segments)
    return "{" + inner + "}"


#: How often a watched index build polls its progress (seconds).
_PROGRESS_POLL: Final = 0.25
#: The phases of ``CREATE INDEX CONCURRENTLY`` in the order PostgreSQL runs them
#: (``pg_stat_progress_create_index.phase``), each with its rough share of the build's
#: time: the two passes over the table dominate, the waits are short unless a long
#: transaction holds them up.  A build's fraction is the shares of the phases before
#: its current one plus how far that phase's blocks or tuples got.
_BUILD_PHASES: Final = (
    ("initializing", 0.01),
    ("waiting for writers before build", 0.02),
    ("building index: scanning table", 0.45),
    ("building index: sorting live tuples", 0.05),
    ("building index: loading tuples in tree", 0.1),
    ("waiting for writers before validation", 0.02),
    ("index validation: scanning index", 0.1),
    ("index validation: sorting tuples", 0.05),
    ("index validation: scanning table", 0.18),
    ("waiting for old snapshots", 0.01),
    ("waiting for readers before marking dead", 0.01),
    ("waiting for readers before dropping", 0.0),
)
_PHASE_START: Final = {
    name: sum(share for _, share in _BUILD_PHASES[:i]) for i, (name, _) in enumerate(_BUILD_PHASES)
}
_PHASE_SHARE: Final = dict(_BUILD_PHASES)


def _build_fraction(conn: psycopg.Connection[Any], pid: int) -> float | None:
    """How far the index build of backend ``pid`` got, in [0, 1]; None when the
    progress view shows nothing for it (not started, done, or unreadable)."""
    try:
        row = conn.execute(
            "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
            "FROM pg_stat_progress_create_index WHERE pid = %s",
            (pid,),
        ).fetchone()
    except psycopg.Error:
        return None
    if row is None or row[0] not in _PHASE_START:
        return None
    phase, blocks_done, blocks_total, tuples_done, tuples_total = row
    within = 0.0
    if blocks_total:
        within = min(1.0, int(blocks_done) / int(blocks_total))
    elif tuples_total:
        within = min(1.0, int(tuples_done) / int(tuples_total))
    return min(1.0, _PHASE_START[phase] + within * _PHASE_SHARE[phase])


class PostgresQueries(PostgresCore):
    """Queries and indexes of :class:`~.backend.PostgresBackend`."""

    #: Per namespace id, the paths whose expression index this process has seen built
    #: and valid (:meth:`ensure_index` records them; the facade ensures a namespace's
    #: declared indexes when it opens it).  ``query(max_scan=...)`` trusts only these:
    #: an index still being built elsewhere does not count until it is valid.
    _indexed: dict[int, frozenset[tuple[str, ...]]]

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
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool = False,
        max_scan: int | None = None,
    ) -> QueryResult:
        nid = self._ns_id(namespace)
        if nid is None:
            # run_query over no rows validates the token (InvalidRequest for a bad one).
            run_query(query, [])
            return QueryResult([], None, QueryPlan("postgres", "sql", 0))
        if query.token is not None:
            # Refuse a malformed token (InvalidRequest, query.page.token) before the
            # compiler decodes it: run_query over no rows validates it and nothing else.
            run_query(query, [])
        if max_scan is not None:
            self._refuse_scan(nid, query, max_scan)
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
        page = run_query(query, ((it.key, decode(it), it) for it in items))
        detail = self._explain(text, params) if explain else []
        index = next((m.group(0) for line in detail for m in [_INDEX_NAME.search(line)] if m), None)
        plan = compiled_plan("postgres", len(rows), len(opaque), query.limit, index, detail)
        return QueryResult(page.items, page.token, plan)

    def _refuse_scan(self, nid: int, query: Query, max_scan: int) -> None:
        """Raise :func:`scan_refused` for a query no valid index serves on a namespace
        holding more than ``max_scan`` rows.

        Decided before the SQL runs (a statement cannot be stopped after N rows the
        way the Python evaluator stops reading), from the namespace's row counter
        (``ns_stats``: one primary-key read, never a count).  The counter includes
        expired rows not yet swept: the scan reads those too.  A query an index
        serves is never refused, whatever the namespace's size."""
        if serving_path(query.filter, self._indexed.get(nid, frozenset())) is not None:
            return
        stored = self._stored_rows(nid)
        if stored > max_scan:
            raise scan_refused(query, stored, max_scan)

    def _stored_rows(self, nid: int) -> int:
        """The namespace's stored rows (expired ones not yet swept included), from the
        counter the triggers keep (see stats.py)."""
        query = f"SELECT items FROM {self._s}.ns_stats WHERE ns = %s"

        def run(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(query, (nid,)).fetchone()
            return 0 if row is None else int(row[0])

        found: int = self._read("query", run)
        return found

    def _explain(self, text: str, params: dict[str, Any]) -> list[str]:
        """PostgreSQL's plan for the page's SQL, one line per plan node (``EXPLAIN``,
        not ``ANALYZE``: the query is not run twice)."""

        def run(conn: psycopg.Connection[Any]) -> list[str]:
            cur = conn.execute("EXPLAIN " + text, params, prepare=False)
            return [str(r[0]) for r in cur.fetchall()]

        lines: list[str] = self._read("explain", run)
        return lines

    # -- indexes ---------------------------------------------------------------------------

    def ensure_index(
        self, namespace: str, fields: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        """Create (if absent) the expression indexes serving query filters on each of
        ``fields`` (dotted paths: ``"customer.id"``) in ``namespace``; return their
        names, in order.  The facade calls it from the namespace policy.

        ``progress(done, total)`` hears the rows indexed: ``total`` is the namespace's
        stored rows times the number of indexes (from the row counter, not a count),
        reported as 0 before the first build, while each build runs (polled from
        ``pg_stat_progress_create_index``, on this thread) and as each index
        completes; ``done == total`` only once every index is valid.  Each path is
        recorded as served (for ``query(max_scan=...)``) only once its index is valid:
        a build killed midway leaves an invalid index, which the next call drops and
        rebuilds."""
        if isinstance(fields, str):
            raise InvalidRequest("indexes", "must be a list of dotted paths, not one string")
        paths = [tuple(f.split(".")) for f in fields]
        for path in paths:
            self._check_index_path(path)
        nid = self._create_namespace(namespace) if paths else 0
        rows = self._stored_rows(nid) if paths and progress is not None else 0
        total = rows * len(paths)
        if progress is not None:
            progress(0, total)
        names: list[str] = []
        reported = 0
        for done, path in enumerate(paths, start=1):
            watch: Callable[[float], None] | None = None
            if progress is not None and rows:
                base = rows * (done - 1)

                def watch(fraction: float, base: int = base) -> None:
                    nonlocal reported
                    # Monotone, and short of the index's last row until it is valid.
                    at = base + min(rows - 1, max(0, int(fraction * rows)))
                    if at > reported:
                        reported = at
                        progress(at, total)

            names.append(self.index_path(namespace, path, watch))
            self._indexed[nid] = self._indexed.get(nid, frozenset()) | {path}
            if progress is not None:
                reported = rows * done
                progress(reported, total)
        return names

    @staticmethod
    def _check_index_path(segments: tuple[str, ...]) -> None:
        if not segments or any(not s or "\x00" in s for s in segments):
            raise InvalidRequest("indexes", f"not an indexable path: {'.'.join(segments)!r}")
        if len(segments) > MAX_PATH_SEGMENTS:
            raise InvalidRequest(
                "indexes",
                f"path has more than {MAX_PATH_SEGMENTS} segments",
                limit=MAX_PATH_SEGMENTS,
            )

    def index_path(
        self,
        namespace: str,
        segments: tuple[str, ...],
        watch: Callable[[float], None] | None = None,
    ) -> str:
        """Create (if absent) the expression index for the path ``segments`` (as
        ``("customer", "id")``); return its name.

        A partial index ``ON items ((doc #> '{customer,id}')) WHERE ns = <id>``, built
        ``CONCURRENTLY`` (writers are not blocked) under the schema's DDL lock so that
        concurrent openers do not race.  EQ, IN and number ranges on that path use it.
        ``watch(fraction)`` hears how far a build got (see :meth:`_build_watched`).

        The path also gets expression statistics (:meth:`_ensure_path_stats`): the
        planner ignores a *partial* index's statistics when it estimates a filter,
        so without them ``path = value`` is guessed at 0.5% of the namespace and,
        once the namespace is large, the planner prefers walking the primary key in
        ``key`` order and filtering (the whole namespace when matches are rare) to
        the index.
        """
        self._check_index_path(segments)
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
                if row is None or not row[0]:
                    if row is not None:  # a failed concurrent build left it invalid
                        conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS {s}."{name}"')
                    conn.execute(
                        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON {s}.items '
                        f"((doc #> {literal}::text[])) WHERE ns = {int(nid)}"
                    )
                self._ensure_path_stats(conn, digest, literal)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._ddl_key,))

        if watch is None:
            self._read("ensure_index", run)
        else:
            self._build_watched(run, watch)
        return name

    def _ensure_path_stats(self, conn: psycopg.Connection[Any], digest: str, literal: str) -> None:
        """Create (if absent) the expression statistics ``items_s_<digest>`` on ``doc #>
        path`` over the whole table, and ``ANALYZE`` it when newly created.

        Why: PostgreSQL's selectivity estimates never use the statistics of a partial
        index (they describe only part of the table), so our ``WHERE ns = <id>``
        indexes leave an EQ on the path at the default 0.5% guess.  At 400k items with
        one match in 1,000, the planner then expects a primary-key walk in key order
        to meet ``limit + 1`` matches early and reads ~100k rows (73 ms) instead of
        the 400 index matches (~2 ms).  Extended statistics on the expression (one
        object per path, shared by every namespace indexing it; PostgreSQL 14+) give
        it the real frequencies.  They exist only after an ``ANALYZE``, and autovacuum
        analyzes after enough row changes, not after a new statistics object, so a
        new one is analyzed here (a sample of the table: about a second at 400k
        rows, once per path).  Runs under the DDL lock held by :meth:`index_path`."""
        if conn.info.server_version < 140000:
            return  # no expression statistics before PostgreSQL 14: estimates stay guesses
        name = f"items_s_{digest}"
        row = conn.execute(
            "SELECT 1 FROM pg_statistic_ext e JOIN pg_namespace n ON n.oid = e.stxnamespace "
            "WHERE n.nspname = %s AND e.stxname = %s",
            (self.schema, name),
        ).fetchone()
        if row is not None:
            return
        s = self._s
        conn.execute(
            f'CREATE STATISTICS IF NOT EXISTS {s}."{name}" ON ((doc #> {literal}::text[])) '
            f"FROM {s}.items"
        )
        conn.execute(f"ANALYZE {s}.items (doc)")

    def _build_watched(
        self, run: Callable[[psycopg.Connection[Any]], None], watch: Callable[[float], None]
    ) -> None:
        """Run the build ``run`` on a worker thread and, on this thread, tell ``watch``
        the fraction done as ``pg_stat_progress_create_index`` reports it for the
        building backend (polled from a connection of its own, outside the pool, so a
        small pool cannot stall the build).  ``watch`` is called on the caller's
        thread only; a progress view that cannot be read just means fewer reports."""
        pids: list[int] = []
        failed: list[BaseException] = []

        def build(conn: psycopg.Connection[Any]) -> None:
            pids.append(conn.info.backend_pid)
            run(conn)

        def worker() -> None:
            try:
                self._read("ensure_index", build)
            except BaseException as exc:  # re-raised on the caller's thread
                failed.append(exc)

        thread = threading.Thread(target=worker, name="clawstate-index-build", daemon=True)
        thread.start()
        poller: psycopg.Connection[Any] | None = None
        try:
            while True:
                thread.join(_PROGRESS_POLL)
                if not thread.is_alive():
                    break
                if not pids:
                    continue
                if poller is None:
                    try:
                        poller = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3)
                    except psycopg.Error:
                        thread.join()
                        break
                fraction = _build_fraction(poller, pids[-1])
                if fraction is not None:
                    watch(fraction)
        finally:
            if poller is not None:
                poller.close()
        if failed:
            raise failed[0]

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
