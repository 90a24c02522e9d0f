"""The SQLite backend's queries: the compiler from clawstate's query AST to SQL over
the JSON copy of each value (``items.doc``, see :mod:`.docs`), and the declared
expression indexes that serve it.

Every path becomes ``json_extract(doc, '$."a"."b"')`` with the path *inlined* as a
literal (never bound): SQLite uses an expression index only when the query's
expression matches the indexed one textually, and the partial index's ``ns = <id>``
likewise.  Segments are checked so that inlining is safe (no quote, backslash or
control character — those are also the keys SQLite 3.40 cannot address, because it
compares path labels with the key's escaped JSON text).

Typing follows :mod:`clawstate.query`: ``json_extract`` alone would say ``true = 1``
and read objects as their JSON text, so every comparison is guarded by
``json_type(doc, path)`` (``'null'``, ``'true'``, ``'false'``, ``'integer'``, ``'real'``,
``'text'``, ``'array'``, ``'object'``; SQL NULL for a missing path).  Sorting orders
by ``(rank, value)`` where value is the string (BINARY collation = UTF-8 byte order =
code-point order), the number, 0/1, the array length or the member count.

A digit segment indexes an array *or* names an object key depending on the row,
which one JSON path cannot say: such a path compiles to ``COALESCE`` over both forms
(``$."a"[0]``, ``$."a"."0"``; at most one exists in a row), up to three digit segments.

What is not compiled (the query then runs on the Python path and the plan's detail
says why): more digit segments than that, a segment that cannot be inlined, an
integer operand or token position beyond 64 bits, and a string operand or token
position holding NUL or a lone surrogate.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final

from ...query import And, Compare, Eq, Filter, In, Or, Query

__all__ = [
    "KEYED_SUFFIX",
    "Unsupported",
    "compile_page",
    "index_columns",
    "index_expr",
    "index_name",
    "inlinable",
]

#: How many matches an index lookup may find before a query without a sort is left to
#: the key-ordered scan (see SQLiteQueries._pick_index).  An ``EQ`` on a keyed index
#: (:func:`index_columns`) is never probed: that lookup is already in key order.
PROBE: Final = 2000
_CMP_SQL: Final = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_I64: Final = 2**63 - 1
_NUMERIC: Final = "IN ('integer', 'real')"


class Unsupported(Exception):
    """The query cannot be compiled exactly; the message says why (plan detail)."""


def inlinable(segment: str) -> bool:
    """Whether a path segment can be inlined in a JSON path literal and addressed."""
    return bool(segment) and not any(c in '"\\' or ord(c) < 0x20 for c in segment)


#: At most this many digit segments in a compiled path (2**n JSON paths are tried).
_MAX_DIGIT_SEGMENTS: Final = 3


def _literal(inner: str) -> str:
    return "'" + inner.replace("'", "''") + "'"


def json_paths(path: tuple[str, ...]) -> list[str]:
    """The SQL literals of the JSON paths that may address ``path`` in a row.

    A digit segment indexes an array or names an object key, depending on the row;
    one JSON path cannot say both (``$.a[0]`` vs ``$.a."0"``), so each digit segment
    doubles the paths.  In any one row at most one of them exists (a node is either an
    array or an object), so ``COALESCE`` over them is the value at ``path``."""
    alternatives = [""]
    digits = 0
    for seg in path:
        json_path((seg,))  # checks the segment
        if seg.isascii() and seg.isdigit():
            digits += 1
            if digits > _MAX_DIGIT_SEGMENTS or len(seg) > 18:
                raise Unsupported(f"path {'.'.join(path)!r} has too many digit segments")
            alternatives = [
                a + step for a in alternatives for step in (f"[{int(seg)}]", f'."{seg}"')
            ]
        else:
            alternatives = [a + f'."{seg}"' for a in alternatives]
    return [_literal("$" + a) for a in alternatives]


def _call(func: str, path: tuple[str, ...]) -> str:
    """``func(doc, path)``, over every JSON path that may address ``path``."""
    paths = json_paths(path)
    if len(paths) == 1:
        return f"{func}(doc, {paths[0]})"
    return "COALESCE(" + ", ".join(f"{func}(doc, {p})" for p in paths) + ")"


def _members(path: tuple[str, ...]) -> str:
    """The member count of the object at ``path`` (only ever asked of an object; the
    alternatives that do not exist add 0)."""
    return " + ".join(f"(SELECT count(*) FROM json_each(doc, {p}))" for p in json_paths(path))


def json_path(path: tuple[str, ...]) -> str:
    """The SQL literal of the JSON path (``'$."a"."b"'``) of a path without digit
    segments (an index's); raises :class:`Unsupported`."""
    for seg in path:
        if not inlinable(seg):
            raise Unsupported(f"path {'.'.join(path)!r} has a segment SQLite cannot address")
        try:
            seg.encode("utf-8")
        except UnicodeEncodeError:
            raise Unsupported("path holds a lone surrogate") from None
    return _literal("$" + "".join(f'."{seg}"' for seg in path))


def index_expr(path: tuple[str, ...]) -> str:
    """The expression an index on ``path`` holds; the compiler emits the same text."""
    return f"json_extract(doc, {json_path(path)})"


def index_columns(path: tuple[str, ...]) -> str:
    """The column list of the index on ``path``: the value, then the key.

    ``items`` is a rowid table, so an index on the value alone orders the entries of
    one value by rowid (insertion order): a page in key order had to find *every*
    match and sort them (``USE TEMP B-TREE FOR ORDER BY``, growing with the matches).
    With the key as second column one value's entries lie in key order: an ``EQ``
    page without a sort reads exactly its ``limit + 1`` entries and stops."""
    return f"{index_expr(path)}, key"


#: The suffix that marks an index of the :func:`index_columns` shape; an index
#: without it (declared by an older clawstate, on the value alone) is rebuilt by the
#: next ``ensure_index`` and meanwhile still serves, through the probe.
KEYED_SUFFIX: Final = "_k"


def index_name(nid: int, path: tuple[str, ...]) -> str:
    digest = hashlib.blake2b("\x1f".join(path).encode(), digest_size=8).hexdigest()
    return f"items_q{nid}_{digest}{KEYED_SUFFIX}"


def _text_ok(value: str) -> str:
    if "\x00" in value:
        raise Unsupported("a string holds NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unsupported("a string holds a lone surrogate") from None
    return value


def _num_ok(value: int | float) -> int | float:
    if isinstance(value, int) and not -_I64 - 1 <= value <= _I64:
        raise Unsupported("an integer beyond 64 bits")
    return value


class _Compiler:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        """A named parameter (a keyset condition repeats its terms: not positional)."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def filter(self, f: Filter) -> str:
        if isinstance(f, Eq):
            return self._eq(f.path, f.operand.kind, f.operand.value)
        if isinstance(f, In):
            return "(" + " OR ".join(self._eq(f.path, s.kind, s.value) for s in f.operands) + ")"
        if isinstance(f, Compare):
            return self._compare(f)
        assert isinstance(f, And | Or)
        glue = " AND " if isinstance(f, And) else " OR "
        return "(" + glue.join(self.filter(c) for c in f.clauses) + ")"

    def _eq(self, path: tuple[str, ...], kind: str, value: Any) -> str:
        t = _call("json_type", path)
        x = _call("json_extract", path)
        if kind == "null":
            return f"({t} = 'null')"
        if kind == "boolean":
            return f"({t} = '{'true' if value else 'false'}')"
        if kind == "string":
            return f"({x} = {self.bind(_text_ok(value))} AND {t} = 'text')"
        return f"({x} = {self.bind(_num_ok(value))} AND {t} {_NUMERIC})"

    def _compare(self, f: Compare) -> str:
        t = _call("json_type", f.path)
        x = _call("json_extract", f.path)
        op = _CMP_SQL[f.op]
        value = f.operand.value
        if f.operand.kind == "string":
            assert isinstance(value, str)
            # Text sorts above every number in SQLite: the bound keeps an index range
            # scan within the text entries.
            bound = f" AND {x} >= ''" if op in ("<", "<=") else ""
            return f"({x} {op} {self.bind(_text_ok(value))}{bound} AND {t} = 'text')"
        assert isinstance(value, int | float) and not isinstance(value, bool)
        bound = f" AND {x} < ''" if op in (">", ">=") else ""
        return f"({x} {op} {self.bind(_num_ok(value))}{bound} AND {t} {_NUMERIC})"


def _sort_exprs(path: tuple[str, ...]) -> tuple[str, str]:
    """``(rank, value)`` SQL expressions of one sort key (rank 6: missing)."""
    t = _call("json_type", path)
    rank = (
        f"(CASE {t} WHEN 'null' THEN 0 WHEN 'text' THEN 1 WHEN 'integer' THEN 2 "
        "WHEN 'real' THEN 2 WHEN 'true' THEN 3 WHEN 'false' THEN 3 WHEN 'array' THEN 4 "
        "WHEN 'object' THEN 5 ELSE 6 END)"
    )
    value = (
        f"(CASE {t} WHEN 'array' THEN {_call('json_array_length', path)} "
        f"WHEN 'object' THEN {_members(path)} "
        f"WHEN 'null' THEN 0 ELSE {_call('json_extract', path)} END)"
    )
    return rank, value


def _token_positions(token: str) -> tuple[list[tuple[int, Any]], str]:
    """The sort positions and key a (validated) page token resumes after."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    doc = json.loads(raw.decode("ascii"))
    positions: list[tuple[int, Any]] = []
    for rank, value in doc[2]:
        if isinstance(value, dict):
            value = int(value["int"], 16)
        positions.append((int(rank), value))
    return positions, str(doc[3])


def compile_page(
    nid: int,
    query: Query,
    now: float,
    columns: str,
    index: str | None = None,
    window: int | None = None,
    after_key: str | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """``(page SQL, probe SQL, parameters)``: the page selects the next ``limit + 1``
    document rows of namespace ``nid`` for ``query``, in the query's order; the probe
    counts up to ``_PROBE`` matching rows through ``index`` (``INDEXED BY``, which the
    page then uses too; see :meth:`SQLiteQueries._query`).  ``window`` reads only the
    first ``window`` live rows in key order (after ``after_key``): the scan bound of a
    query without a sort that no index serves.  Raises
    :class:`Unsupported`.  The query's token must already be validated."""
    c = _Compiler()
    where = [
        f"ns = {int(nid)}",
        "opaque = 0",
        f"(expires_at IS NULL OR expires_at > {c.bind(now)})",
    ]
    if query.filter is not None:
        where.append(c.filter(query.filter))
    parts = [_sort_exprs(k.path) for k in query.sort]
    order: list[str] = []
    for (rank, value), k in zip(parts, query.sort, strict=True):
        direction = " DESC" if k.descending else ""
        order += [rank + direction, value + direction]
    order.append("key")
    if query.token:
        positions, last_key = _token_positions(query.token)
        alternatives: list[str] = []
        equal: list[str] = []
        for (rank, value), k, (r, raw) in zip(parts, query.sort, positions, strict=True):
            op = "<" if k.descending else ">"
            if r in (0, 6):
                after = f"{rank} {op} {r}"
                same = f"{rank} = {r}"
            else:
                if r == 1:
                    raw = _text_ok(raw)
                elif r == 2:
                    raw = _num_ok(raw)
                after = f"({rank} {op} {r} OR ({rank} = {r} AND {value} {op} {c.bind(raw)}))"
                same = f"({rank} = {r} AND {value} = {c.bind(raw)})"
            alternatives.append(" AND ".join([*equal, after]))
            equal.append(same)
        alternatives.append(" AND ".join([*equal, f"key > {c.bind(_text_ok(last_key))}"]))
        where.append("(" + " OR ".join(f"({a})" for a in alternatives) + ")")
    source = "items" if index is None else f'items INDEXED BY "{index}"'
    if window is not None:
        resume = "" if after_key is None else f" AND key > {c.bind(_text_ok(after_key))}"
        source = (
            f"(SELECT * FROM items WHERE ns = {int(nid)} AND (expires_at IS NULL OR "
            f"expires_at > {c.bind(now)}){resume} ORDER BY key LIMIT {int(window)}) AS items"
        )
    condition = " AND ".join(where)
    text = (
        f"SELECT {columns} FROM {source} WHERE {condition} ORDER BY "
        + ", ".join(order)
        + f" LIMIT {int(query.limit) + 1}"
    )
    probe = f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {condition} LIMIT {PROBE})"
    return text, probe, c.params
