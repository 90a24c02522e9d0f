"""Dapr state-query documents: parsed into a small typed AST, evaluated in Python.

Why this module exists
======================

Every backend answers the same query language (Dapr's state-query API), and the
answers must not depend on the backend: a page token handed out by the SQLite
backend means the same position as one from the in-memory backend, and a
PostgreSQL backend will later compile the very same AST to SQL over ``jsonb``.
So the query is parsed once, here, into a closed set of frozen nodes whose
meaning is pinned down below, and the in-memory and SQLite backends share the
pure-Python evaluator (:func:`matches`, :func:`run_query`).  Every rule was
chosen so that it is expressible in PostgreSQL, and the notes below say how.

The document::

    {"filter": {...}, "sort": [{"key": "a.b", "order": "ASC"}], "page": {"limit": 50, "token": "…"}}

All three fields are optional (JSON ``null`` counts as absent); anything else
at the top level is an error.  Every error is :class:`InvalidRequest` whose
``field`` is the JSON path of the culprit (``query.filter.AND[1].EQ``,
``query.sort[0].order``, ``query.page.limit``…) and whose ``limit`` is the bound
that was broken, when there is one.

Paths
-----
``"customer.address.0.city"`` splits on ``.``; no segment may be empty (keys
that contain a dot cannot be addressed).  At each step an object is indexed by
the segment as a key; a list is indexed only by a segment made of ASCII digits
(``"0"``, ``"12"``, ``"01"`` == 1); anything else — a scalar node, an absent
key, an index past the end, ``"-1"`` — makes the path *missing*.  A digit
segment on an object is an ordinary key (``{"0": x}``).  Python values that JSON
cannot represent (NaN, ±Infinity, bytes, sets, …) count as missing too.

PostgreSQL: ``v #> '{customer,address,0,city}'`` has exactly this behaviour
except that ``#>`` also accepts signed integers (``-1``, ``+1``) on arrays; the
compiler must guard such segments with ``jsonb_typeof(…) = 'object'`` or use a
chain of ``->`` operators.  A missing path is SQL ``NULL``, a present JSON null
is ``'null'::jsonb`` — the two stay distinct, as here.

Filters
-------
For each operator: when it matches, and its PostgreSQL form (``x`` stands for
``v #> path``).

``EQ {p: s}``
    ``p`` is present and its value has the same JSON type as the scalar ``s``
    and is equal to it.  Numbers compare numerically (``1`` = ``1.0``), but
    ``true`` ≠ ``1``; ``null`` matches a present null only, never a missing
    path.  PG: ``x = s::jsonb`` (jsonb equality is already typed and numeric).
``IN {p: [s, …]}``
    ``EQ`` against any element; 1 ≤ n ≤ ``max_in``.  PG: ``x = ANY($1::jsonb[])``.
``GT / GTE / LT / LTE {p: n | "s"}``
    ``p`` is present, and value and operand are both numbers (numeric order)
    or both strings (code-point order = UTF-8 byte order = ``COLLATE "C"``);
    any other combination does not match.  PG: ``jsonb_typeof(x) = 'number'
    AND x::numeric > n``, or ``jsonb_typeof(x) = 'string' AND (x #>> '{}')
    COLLATE "C" > s``.  (Not the ``jsonb > jsonb`` operator: it orders across
    types and by the database collation.)
``AND [f, …]`` / ``OR [f, …]``
    every / some ``f`` matches; the list is never empty.  PG: ``AND`` / ``OR``.

``EQ``/``IN`` operands must be JSON scalars (null, boolean, number, string);
range operands must be a number or a string.  Each operator object and each
``EQ``/``IN``/range operand object has exactly one key.  ``max_depth`` bounds
the nesting of ``AND``/``OR``; ``max_clauses`` bounds the number of operator
objects (combinators included).  Duplicate keys in a JSON text are rejected,
so ``{"EQ": …, "EQ": …}`` cannot smuggle a second operator past the
one-key rule.

Numbers are compared as Python does after decoding: ints exactly, floats as
IEEE doubles.  PostgreSQL's ``numeric`` is decimal, so two literals that differ
only beyond double precision (``0.1`` vs ``0.10000000000000000001``) are equal
here and distinct there; no realistic query depends on that.

Sort order
----------
One total order, so that every backend returns the same pages.  Per sort key,
ascending::

    null < strings < numbers < booleans < arrays < objects < MISSING

* the type ranks are PostgreSQL's jsonb btree order (``Object > Array >
  Boolean > Number > String > Null``); ``false < true``;
* strings by code point (``COLLATE "C"``), numbers numerically;
* arrays by length only, objects by number of members only (``jsonb_array_length``,
  ``count(jsonb_object_keys)``) — contents do not take part;
* a missing path sorts after everything ascending and before everything
  descending: PostgreSQL's default ``NULLS LAST`` for ``ASC`` and ``NULLS FIRST``
  for ``DESC``.  ``DESC`` is the exact reverse of ``ASC``.

Ties are broken by the item key, ascending, whatever the sort orders — keys are
unique, so the order is total.  Without a sort the order is by key ascending.
The PostgreSQL backend must not ``ORDER BY`` the raw ``jsonb``: its string
order follows the database collation, and an empty top-level array sorts before
``null`` there.  It orders by ``(rank, typed value)`` pairs built from
``jsonb_typeof`` instead, as :func:`run_query` does here.

Pages
-----
``page.limit`` (default ``default_limit``, at most ``max_limit``) bounds a
page.  A page token is a *keyset position*, not an offset: url-safe base64 of
``[1, fingerprint, sort positions of the last row, last key]``.  The next page
starts strictly after that position, so rows inserted or deleted between two
requests neither duplicate nor skip the rows that existed throughout (a row
whose sort values change in between may of course move across the boundary).
The fingerprint hashes filter and sort, so a token only works with the query
that issued it (the limit may change between pages).  Tokens are not signed:
forging one only chooses where the same query resumes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Literal, TypeAlias, TypeVar, cast

import msgspec

from clawstate.errors import InvalidRequest

__all__ = [
    "MAX_PATH_SEGMENTS",
    "And",
    "Compare",
    "CompareOp",
    "Eq",
    "Filter",
    "In",
    "Or",
    "Query",
    "Scalar",
    "ScalarKind",
    "SortKey",
    "compile_filter",
    "matches",
    "parse_query",
    "path_get",
    "run_query",
]

T = TypeVar("T")

#: Most segments a path may have.
MAX_PATH_SEGMENTS: Final = 32

# ---------------------------------------------------------------------------
# AST
# ---------------------------------------------------------------------------

#: JSON type of a scalar operand, spelled as ``jsonb_typeof`` spells it.
ScalarKind: TypeAlias = Literal["null", "boolean", "number", "string"]
CompareOp: TypeAlias = Literal["GT", "GTE", "LT", "LTE"]


class Scalar(msgspec.Struct, frozen=True):
    """A JSON scalar operand with its JSON type.

    Carrying ``kind`` keeps ``Scalar("boolean", True)`` and ``Scalar("number", 1)``
    apart, although ``True == 1`` in Python; ``Scalar("number", 1)`` equals
    ``Scalar("number", 1.0)``, as in JSON.
    """

    kind: ScalarKind
    value: bool | int | float | str | None


class Eq(msgspec.Struct, frozen=True):
    """``{"EQ": {path: operand}}``."""

    path: tuple[str, ...]
    operand: Scalar


class In(msgspec.Struct, frozen=True):
    """``{"IN": {path: [operand, ...]}}``."""

    path: tuple[str, ...]
    operands: tuple[Scalar, ...]


class Compare(msgspec.Struct, frozen=True):
    """``{"GT"|"GTE"|"LT"|"LTE": {path: operand}}``; operand is a number or a string."""

    op: CompareOp
    path: tuple[str, ...]
    operand: Scalar


class And(msgspec.Struct, frozen=True):
    """``{"AND": [filter, ...]}`` (never empty)."""

    clauses: tuple[Filter, ...]


class Or(msgspec.Struct, frozen=True):
    """``{"OR": [filter, ...]}`` (never empty)."""

    clauses: tuple[Filter, ...]


Filter: TypeAlias = Eq | In | Compare | And | Or


class SortKey(msgspec.Struct, frozen=True):
    """One ``sort`` entry: the path to sort by and the direction."""

    path: tuple[str, ...]
    descending: bool = False


class Query(msgspec.Struct, frozen=True):
    """A parsed query; ``limit`` is already resolved against the defaults."""

    filter: Filter | None = None
    sort: list[SortKey] = msgspec.field(default_factory=list)
    limit: int = 1_000
    token: str | None = None

    @property
    def fingerprint(self) -> str:
        """Stable hash of filter and sort; binds page tokens to the query."""
        return _fingerprint(self.filter, self.sort)


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

_TOP_FIELDS: Final = ("filter", "sort", "page")
_COMPARE_OPS: Final[frozenset[str]] = frozenset(("GT", "GTE", "LT", "LTE"))
_OPERATORS: Final = ("AND", "OR", "EQ", "IN", "GT", "GTE", "LT", "LTE")


class _JSONReject(ValueError):
    """Raised from the json hooks; turned into InvalidRequest by parse_query."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JSONReject(f"duplicate key {_show(key)} in a JSON object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _JSONReject(f"{name} is not valid JSON")


def _load_json(doc: str | bytes | bytearray | memoryview) -> Any:
    try:
        text = bytes(doc).decode("utf-8") if not isinstance(doc, str) else doc
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _JSONReject as exc:
        raise InvalidRequest("query", str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("query", f"not valid JSON: {exc}") from None


def _show(value: Any, width: int = 60) -> str:
    """A short repr of client input for error messages (never raises, never huge)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints past the str() digit limit, deep nesting
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 1] + "…"


def _name(key: Any) -> str:
    """A client-supplied object key as a segment of an error's ``field``."""
    if isinstance(key, str) and len(key) <= 60:
        return key
    return _show(key)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else f"{value!r} (not finite)"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _to_scalar(value: Any) -> Scalar | None:
    """The operand as a typed JSON scalar, or None when it is not one."""
    if value is None:
        return Scalar("null", None)
    if isinstance(value, bool):
        return Scalar("boolean", bool(value))
    if isinstance(value, int):
        return Scalar("number", int(value))
    if isinstance(value, float):
        return Scalar("number", float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        return Scalar("string", str(value))
    return None


def _parse_path(raw: Any, field: str) -> tuple[str, ...]:
    if not isinstance(raw, str):
        raise InvalidRequest(field, f"path must be a string, got {_describe(raw)}")
    if not raw:
        raise InvalidRequest(field, "path is empty")
    segments = tuple(raw.split("."))
    if len(segments) > MAX_PATH_SEGMENTS:
        raise InvalidRequest(
            field,
            f"path {_show(raw)} has {len(segments)} segments, more than {MAX_PATH_SEGMENTS}",
            limit=MAX_PATH_SEGMENTS,
        )
    if "" in segments:
        raise InvalidRequest(field, f"path {_show(raw)} has an empty segment")
    return segments


class _Parser:
    def __init__(self, *, max_depth: int, max_in: int, max_clauses: int) -> None:
        self.max_depth = max_depth
        self.max_in = max_in
        self.max_clauses = max_clauses
        self.clauses = 0

    def filter(self, node: Any, field: str, depth: int) -> Filter:
        if not isinstance(node, dict):
            raise InvalidRequest(field, f"a filter must be an object, got {_describe(node)}")
        if len(node) != 1:
            raise InvalidRequest(
                field,
                f"a filter object must have exactly one operator key, got {len(node)}"
                + (" (combine several with AND)" if len(node) > 1 else ""),
            )
        ((op, arg),) = node.items()
        if op not in _OPERATORS:
            raise InvalidRequest(
                f"{field}.{_name(op)}",
                f"unknown operator {_show(op)}; expected one of {', '.join(_OPERATORS)}",
            )
        self.clauses += 1
        if self.clauses > self.max_clauses:
            raise InvalidRequest(
                field,
                f"the filter has more than {self.max_clauses} clauses",
                limit=self.max_clauses,
            )
        here = f"{field}.{op}"
        if op == "AND" or op == "OR":
            if depth + 1 > self.max_depth:
                raise InvalidRequest(
                    here,
                    f"AND/OR nested deeper than {self.max_depth} levels",
                    limit=self.max_depth,
                )
            if not isinstance(arg, list):
                raise InvalidRequest(here, f"{op} takes a list of filters, got {_describe(arg)}")
            if not arg:
                raise InvalidRequest(here, f"{op} needs at least one filter")
            clauses = tuple(
                self.filter(child, f"{here}[{i}]", depth + 1) for i, child in enumerate(arg)
            )
            return And(clauses) if op == "AND" else Or(clauses)

        if not isinstance(arg, dict):
            raise InvalidRequest(
                here, f"{op} takes an object {{path: value}}, got {_describe(arg)}"
            )
        if len(arg) != 1:
            raise InvalidRequest(
                here, f"{op} takes exactly one path, got {len(arg)} (combine several with AND)"
            )
        ((raw_path, operand),) = arg.items()
        path = _parse_path(raw_path, here)

        if op == "EQ":
            scalar = _to_scalar(operand)
            if scalar is None:
                raise InvalidRequest(
                    here,
                    f"EQ value for {_show(raw_path)} must be a JSON scalar "
                    f"(null, boolean, number, string), got {_describe(operand)}",
                )
            return Eq(path, scalar)

        if op == "IN":
            if not isinstance(operand, list):
                raise InvalidRequest(
                    here, f"IN value for {_show(raw_path)} must be a list, got {_describe(operand)}"
                )
            if not operand:
                raise InvalidRequest(here, f"IN list for {_show(raw_path)} is empty")
            if len(operand) > self.max_in:
                raise InvalidRequest(
                    here,
                    f"IN list for {_show(raw_path)} has {len(operand)} values, "
                    f"more than {self.max_in}",
                    limit=self.max_in,
                )
            operands: list[Scalar] = []
            for i, item in enumerate(operand):
                scalar = _to_scalar(item)
                if scalar is None:
                    raise InvalidRequest(
                        here,
                        f"IN value [{i}] for {_show(raw_path)} must be a JSON scalar "
                        f"(null, boolean, number, string), got {_describe(item)}",
                    )
                operands.append(scalar)
            return In(path, tuple(operands))

        scalar = _to_scalar(operand)
        if scalar is None or scalar.kind not in ("number", "string"):
            raise InvalidRequest(
                here,
                f"{op} value for {_show(raw_path)} must be a number or a string, "
                f"got {_describe(operand)}",
            )
        return Compare(cast(CompareOp, op), path, scalar)


def _parse_sort(raw: Any, max_sort_keys: int) -> list[SortKey]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("query.sort", f"sort must be a list, got {_describe(raw)}")
    if len(raw) > max_sort_keys:
        raise InvalidRequest(
            "query.sort",
            f"sort has {len(raw)} keys, more than {max_sort_keys}",
            limit=max_sort_keys,
        )
    keys: list[SortKey] = []
    seen: dict[tuple[str, ...], int] = {}
    for i, entry in enumerate(raw):
        here = f"query.sort[{i}]"
        if not isinstance(entry, dict):
            raise InvalidRequest(
                here, f"a sort entry must be an object {{key, order}}, got {_describe(entry)}"
            )
        for name in entry:
            if name not in ("key", "order"):
                raise InvalidRequest(
                    f"{here}.{_name(name)}", f"unknown field {_show(name)}; expected key or order"
                )
        if "key" not in entry:
            raise InvalidRequest(f"{here}.key", "sort entry has no key")
        path = _parse_path(entry["key"], f"{here}.key")
        if path in seen:
            raise InvalidRequest(
                f"{here}.key",
                f"duplicate sort key {_show(entry['key'])} (already at query.sort[{seen[path]}])",
            )
        seen[path] = i
        order = entry.get("order", "ASC")
        if order is None:
            order = "ASC"
        if not isinstance(order, str) or order not in ("ASC", "DESC"):
            raise InvalidRequest(
                f"{here}.order", f"order must be 'ASC' or 'DESC', got {_show(order)}"
            )
        keys.append(SortKey(path, order == "DESC"))
    return keys


def parse_query(
    doc: Any,
    *,
    max_depth: int = 8,
    max_limit: int = 10_000,
    default_limit: int = 1_000,
    max_in: int = 1_000,
    max_clauses: int = 256,
    max_sort_keys: int = 16,
) -> Query:
    """Parse a Dapr state-query document (dict, or JSON text as str/bytes) into a Query.

    Raises InvalidRequest naming the JSON path of the culprit in ``field`` and,
    when a bound was broken, the bound in ``limit``.  ``default_limit`` is used
    when the page has no limit (capped at ``max_limit``).  Bounds: ``max_depth``
    levels of AND/OR nesting, ``max_clauses`` operator objects in all,
    ``max_in`` values per IN, ``max_sort_keys`` sort entries and
    :data:`MAX_PATH_SEGMENTS` segments per path.
    """
    if isinstance(doc, str | bytes | bytearray | memoryview):
        doc = _load_json(doc)
    if not isinstance(doc, dict):
        raise InvalidRequest("query", f"a query must be a JSON object, got {_describe(doc)}")
    for name in doc:
        if name not in _TOP_FIELDS:
            raise InvalidRequest(
                f"query.{_name(name)}",
                f"unknown field {_show(name)}; expected filter, sort or page",
            )

    raw_filter = doc.get("filter")
    parsed_filter: Filter | None = None
    if raw_filter is not None:
        parser = _Parser(max_depth=max_depth, max_in=max_in, max_clauses=max_clauses)
        parsed_filter = parser.filter(raw_filter, "query.filter", 0)

    sort = _parse_sort(doc.get("sort"), max_sort_keys)

    limit = min(default_limit, max_limit)
    token: str | None = None
    page = doc.get("page")
    if page is not None:
        if not isinstance(page, dict):
            raise InvalidRequest(
                "query.page", f"page must be an object {{limit, token}}, got {_describe(page)}"
            )
        for name in page:
            if name not in ("limit", "token"):
                raise InvalidRequest(
                    f"query.page.{_name(name)}",
                    f"unknown field {_show(name)}; expected limit or token",
                )
        raw_limit = page.get("limit")
        if raw_limit is not None:
            if not isinstance(raw_limit, int) or isinstance(raw_limit, bool) or raw_limit < 1:
                raise InvalidRequest(
                    "query.page.limit",
                    f"limit must be a positive integer, got {_show(raw_limit)}",
                )
            if raw_limit > max_limit:
                raise InvalidRequest(
                    "query.page.limit",
                    f"limit is above the maximum of {max_limit}",
                    limit=max_limit,
                )
            limit = int(raw_limit)
        raw_token = page.get("token")
        if raw_token is not None:
            if not isinstance(raw_token, str):
                raise InvalidRequest(
                    "query.page.token", f"token must be a string, got {_describe(raw_token)}"
                )
            token = raw_token or None

    return Query(filter=parsed_filter, sort=sort, limit=limit, token=token)


# ---------------------------------------------------------------------------
# Fingerprint
# ---------------------------------------------------------------------------


_INT64: Final = 1 << 63


def _json_number(x: int | float) -> Any:
    """A number for json.dumps: ints past 64 bits as ``{"int": hex}``.

    Decimal str() of an int is capped at 4300 digits (CVE-2020-10735); hex is not.
    """
    if isinstance(x, int) and not -_INT64 <= x < _INT64:
        return {"int": format(x, "x")}
    return x


def _canon_scalar(s: Scalar) -> list[Any]:
    value = s.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1 and 1.0 are the same JSON number: same fingerprint
    if isinstance(value, int) and not isinstance(value, bool):
        return [s.kind, _json_number(value)]
    return [s.kind, value]


def _canon_filter(f: Filter) -> list[Any]:
    if isinstance(f, Eq):
        return ["EQ", list(f.path), _canon_scalar(f.operand)]
    if isinstance(f, In):
        return ["IN", list(f.path), [_canon_scalar(s) for s in f.operands]]
    if isinstance(f, Compare):
        return [f.op, list(f.path), _canon_scalar(f.operand)]
    tag = "AND" if isinstance(f, And) else "OR"
    return [tag, [_canon_filter(c) for c in f.clauses]]


def _fingerprint(f: Filter | None, sort: Iterable[SortKey]) -> str:
    canon = [
        "clawstate.query/1",
        None if f is None else _canon_filter(f),
        [[list(s.path), s.descending] for s in sort],
    ]
    text = json.dumps(canon, ensure_ascii=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()

# Sort ranks, ascending (PostgreSQL jsonb btree order, MISSING = NULLS LAST).
_R_NULL: Final = 0
_R_STR: Final = 1
_R_NUM: Final = 2
_R_BOOL: Final = 3
_R_ARR: Final = 4
_R_OBJ: Final = 5
_R_MISSING: Final = 6

_RANK_OF_KIND: Final[dict[str, int]] = {
    "null": _R_NULL,
    "string": _R_STR,
    "number": _R_NUM,
    "boolean": _R_BOOL,
}
_RANK_BY_TYPE: Final[dict[type, int]] = {
    type(None): _R_NULL,
    str: _R_STR,
    int: _R_NUM,
    float: _R_NUM,
    bool: _R_BOOL,
    list: _R_ARR,
    tuple: _R_ARR,
    dict: _R_OBJ,
}


def _rank_slow(x: Any) -> int:
    if isinstance(x, bool):
        return _R_BOOL
    if isinstance(x, int):
        return _R_NUM
    if isinstance(x, float):
        return _R_NUM if math.isfinite(x) else _R_MISSING
    if isinstance(x, str):
        return _R_STR
    if isinstance(x, dict):
        return _R_OBJ
    if isinstance(x, list | tuple):
        return _R_ARR
    return _R_MISSING  # _MISSING itself, and anything JSON cannot represent


def _rank(x: Any) -> int:
    """JSON type rank of a decoded value (``_R_MISSING`` for absent / non-JSON)."""
    t = type(x)
    r = _RANK_BY_TYPE.get(t)
    if r is None:
        return _rank_slow(x)
    if t is float and not math.isfinite(x):
        return _R_MISSING
    return r


def _list_index(segment: str) -> int | None:
    """The list index a segment denotes: ASCII digits only (``"²"`` is not one)."""
    if segment.isascii() and segment.isdigit():
        # Longer than any list can be; also avoids int()'s digit limit.
        return int(segment) if len(segment) <= 18 else 1 << 62
    return None


Getter: TypeAlias = Callable[[Any], Any]


def _compile_getter(path: tuple[str, ...]) -> Getter:
    """A function value -> value at path, or ``_MISSING``."""
    steps = tuple((seg, _list_index(seg)) for seg in path)
    if len(steps) == 1:
        seg, idx = steps[0]

        def get1(node: Any) -> Any:
            if isinstance(node, dict):
                return node.get(seg, _MISSING)
            if idx is not None and isinstance(node, list | tuple) and idx < len(node):
                return node[idx]
            return _MISSING

        return get1

    def get(node: Any) -> Any:
        for seg, idx in steps:
            if isinstance(node, dict):
                node = node.get(seg, _MISSING)
                if node is _MISSING:
                    return _MISSING
            elif idx is not None and isinstance(node, list | tuple) and idx < len(node):
                node = node[idx]
            else:
                return _MISSING
        return node

    return get


def path_get(value: Any, path: tuple[str, ...] | str) -> tuple[bool, Any]:
    """``(found, value_at_path)`` with the path rules above; ``(False, None)`` if missing.

    ``path`` is a tuple of segments or a dotted string.  A value JSON cannot
    represent (NaN, ±Infinity, bytes…) reached by the path counts as missing.
    """
    segments = tuple(path.split(".")) if isinstance(path, str) else path
    found = _compile_getter(segments)(value)
    if _rank(found) == _R_MISSING:
        return False, None
    return True, found


Predicate: TypeAlias = Callable[[Any], bool]

_CMP: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "GT": operator.gt,
    "GTE": operator.ge,
    "LT": operator.lt,
    "LTE": operator.le,
}


# The predicates below test the exact decoded types first (type(x) is str…)
# and fall back to _rank() only for subclasses and odd values: that is what
# keeps a 100k-row filter in the tens of milliseconds.


def _compile_eq(get: Getter, operand: Scalar) -> Predicate:
    want = operand.value
    kind = operand.kind
    if kind == "null":
        return lambda v: get(v) is None
    if kind == "boolean":
        # bool has exactly two instances and cannot be subclassed; 1 is not True.
        return lambda v: get(v) is want

    if kind == "string":

        def eq_str(v: Any) -> bool:
            x = get(v)
            if x == want:
                return type(x) is str or _rank(x) == _R_STR
            return False

        return eq_str

    def eq_num(v: Any) -> bool:
        x = get(v)
        if x == want:  # True == 1 in Python: the type test below tells them apart
            t = type(x)
            return t is int or t is float or _rank(x) == _R_NUM
        return False

    return eq_num


def _compile_in(get: Getter, operands: tuple[Scalar, ...]) -> Predicate:
    by_rank: dict[int, set[Any]] = {}
    for s in operands:
        by_rank.setdefault(_RANK_OF_KIND[s.kind], set()).add(s.value)
    sets = {rank: frozenset(values) for rank, values in by_rank.items()}
    strs = sets.get(_R_STR, frozenset())
    nums = sets.get(_R_NUM, frozenset())  # {1, 1.0} is one element: numeric equality

    def in_(v: Any) -> bool:
        x = get(v)
        t = type(x)
        if t is str:
            return x in strs
        if t is int or t is float:
            return x in nums  # operands are finite, so NaN and ±inf never match
        values = sets.get(_rank(x))
        # Only scalar ranks have a set, so x is hashable here.
        return values is not None and x in values

    return in_


def _compile_compare(get: Getter, op: CompareOp, operand: Scalar) -> Predicate:
    cmp = _CMP[op]
    want = operand.value

    if operand.kind == "string":

        def cmp_str(v: Any) -> bool:
            x = get(v)
            if type(x) is str or _rank(x) == _R_STR:
                return cmp(x, want)
            return False

        return cmp_str

    def cmp_num(v: Any) -> bool:
        x = get(v)
        t = type(x)
        if t is int:
            return cmp(x, want)
        if t is float:
            return math.isfinite(x) and cmp(x, want)
        return _rank(x) == _R_NUM and cmp(x, want)

    return cmp_num


def compile_filter(f: Filter | None) -> Predicate:
    """A predicate ``value -> bool`` for the filter (``None`` matches everything).

    Compile once and call per row; :func:`matches` compiles on every call.
    """
    if f is None:
        return lambda v: True
    if isinstance(f, Eq):
        return _compile_eq(_compile_getter(f.path), f.operand)
    if isinstance(f, In):
        return _compile_in(_compile_getter(f.path), f.operands)
    if isinstance(f, Compare):
        return _compile_compare(_compile_getter(f.path), f.op, f.operand)
    preds = tuple(compile_filter(c) for c in f.clauses)
    conjunction = isinstance(f, And)
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        if conjunction:
            return lambda v: a(v) and b(v)
        return lambda v: a(v) or b(v)

    # Plain loops: all()/any() over a generator cost ~2x per row here.
    if conjunction:

        def all_(v: Any) -> bool:
            for p in preds:  # noqa: SIM110
                if not p(v):
                    return False
            return True

        return all_

    def any_(v: Any) -> bool:
        for p in preds:  # noqa: SIM110
            if p(v):
                return True
        return False

    return any_


def matches(f: Filter | None, value: Any) -> bool:
    """Whether the decoded JSON ``value`` satisfies the filter (semantics in the module doc)."""
    return compile_filter(f)(value)


# ---------------------------------------------------------------------------
# Sorting and paging
# ---------------------------------------------------------------------------

# Descending strings: UTF-8 bytes (order-preserving, surrogatepass keeps lone
# surrogates in code-point order) with every byte b mapped to 0xFE - b, then a
# 0xFF terminator.  UTF-8 never contains 0xFF, so the terminator outranks every
# mapped byte and a prefix sorts *after* its extensions — the exact reverse.
_INVERT_BYTES: Final = bytes(0xFE - b if b <= 0xFE else 0 for b in range(256))


def _invert_str(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass").translate(_INVERT_BYTES) + b"\xff"


def _position(x: Any) -> tuple[int, Any]:
    """Ascending sort position of a value: ``(rank, comparable)``."""
    r = _rank(x)
    if r in (_R_STR, _R_NUM):
        return r, x
    if r == _R_BOOL:
        return r, int(x)
    if r in (_R_ARR, _R_OBJ):
        return r, len(x)
    return r, 0  # null, missing


def _extend_key(out: list[Any], r: int, raw: Any, descending: bool) -> None:
    if not descending:
        out.append(r)
        out.append(raw)
    else:
        out.append(-r)
        out.append(_invert_str(raw) if r == _R_STR else -raw)


SortPart: TypeAlias = Callable[[Any], tuple[int, Any]]
_isfinite: Final = math.isfinite


def _compile_sort_part(get: Getter, descending: bool) -> SortPart:
    """``value -> (rank, comparable)`` for one sort key; DESC is pre-inverted."""
    if not descending:

        def asc(v: Any) -> tuple[int, Any]:
            x = get(v)
            t = type(x)
            if t is str:
                return _R_STR, x
            if t is int or (t is float and _isfinite(x)):
                return _R_NUM, x
            return _position(x)

        return asc

    def desc(v: Any) -> tuple[int, Any]:
        x = get(v)
        t = type(x)
        if t is str:
            return -_R_STR, _invert_str(x)
        if t is int or (t is float and _isfinite(x)):
            return -_R_NUM, -x
        r, raw = _position(x)
        return -r, (_invert_str(raw) if r == _R_STR else -raw)

    return desc


class _Plan:
    """Compiled filter + sort for one query."""

    __slots__ = ("descending", "fingerprint", "getters", "predicate")

    def __init__(self, query: Query) -> None:
        self.predicate = None if query.filter is None else compile_filter(query.filter)
        self.getters = tuple(_compile_getter(s.path) for s in query.sort)
        self.descending = tuple(s.descending for s in query.sort)
        self.fingerprint = query.fingerprint

    def key_fn(self) -> Callable[[str, Any], tuple[Any, ...]]:
        """``(key, value) -> tuple`` whose natural order is the query's order.

        The tuple is flat: ``(rank1, v1, rank2, v2, …, key)``.  Rows compare
        equal up to a rank only if the ranks match, so values of different
        JSON types are never compared with each other.
        """
        parts = tuple(
            _compile_sort_part(get, desc)
            for get, desc in zip(self.getters, self.descending, strict=True)
        )
        if not parts:
            return lambda k, v: (k,)
        if len(parts) == 1:
            (p1,) = parts

            def key1(k: str, v: Any) -> tuple[Any, ...]:
                r, x = p1(v)
                return r, x, k

            return key1
        if len(parts) == 2:
            p1, p2 = parts

            def key2(k: str, v: Any) -> tuple[Any, ...]:
                r1, x1 = p1(v)
                r2, x2 = p2(v)
                return r1, x1, r2, x2, k

            return key2

        def key(k: str, v: Any) -> tuple[Any, ...]:
            out: list[Any] = []
            for part in parts:
                out.extend(part(v))
            out.append(k)
            return tuple(out)

        return key

    def token_for(self, key: str, value: Any) -> str:
        positions: list[list[Any]] = []
        for get in self.getters:
            r, raw = _position(get(value))
            positions.append([r, _json_number(raw) if r == _R_NUM else raw])
        text = json.dumps([1, self.fingerprint, positions, key], ensure_ascii=True)
        return base64.urlsafe_b64encode(text.encode("ascii")).rstrip(b"=").decode("ascii")

    def decode_token(self, token: str) -> tuple[Any, ...]:
        """The sort-key tuple of the row the token was issued after."""
        field = "query.page.token"
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
            doc = json.loads(raw.decode("ascii"), parse_constant=_no_constants)
        except (ValueError, RecursionError, binascii.Error):
            raise InvalidRequest(field, "not a valid page token") from None
        if not (
            isinstance(doc, list)
            and len(doc) == 4
            and doc[0] == 1
            and type(doc[0]) is int
            and isinstance(doc[1], str)
            and isinstance(doc[2], list)
            and isinstance(doc[3], str)
        ):
            raise InvalidRequest(field, "not a valid page token")
        if doc[1] != self.fingerprint:
            raise InvalidRequest(
                field, "the token was issued for a different query (filter or sort changed)"
            )
        positions = doc[2]
        if len(positions) != len(self.getters):
            raise InvalidRequest(field, "not a valid page token")
        out: list[Any] = []
        for pos, descending in zip(positions, self.descending, strict=True):
            decoded = _decode_position(pos)
            if decoded is None:
                raise InvalidRequest(field, "not a valid page token")
            _extend_key(out, decoded[0], decoded[1], descending)
        out.append(doc[3])
        return tuple(out)


_HEX_INT: Final = re.compile(r"-?[0-9a-f]+")


def _decode_position(pos: Any) -> tuple[int, Any] | None:
    """``[rank, raw]`` from a token, checked against its rank; None if malformed."""
    if not (isinstance(pos, list) and len(pos) == 2 and type(pos[0]) is int):
        return None
    r, raw = pos
    if r == _R_NUM and isinstance(raw, dict) and list(raw) == ["int"]:
        digits = raw["int"]
        if not (isinstance(digits, str) and _HEX_INT.fullmatch(digits)):
            return None
        raw = int(digits, 16)
    ok = False
    if r == _R_STR:
        ok = isinstance(raw, str)
    elif r == _R_NUM:
        ok = type(raw) is int or (type(raw) is float and math.isfinite(raw))
    elif r == _R_BOOL:
        ok = type(raw) is int and raw in (0, 1)
    elif r in (_R_ARR, _R_OBJ):
        ok = type(raw) is int and raw >= 0
    elif r in (_R_NULL, _R_MISSING):
        ok = type(raw) is int and raw == 0
    return (r, raw) if ok else None


def _first(entry: tuple[tuple[Any, ...], Any, Any]) -> tuple[Any, ...]:
    return entry[0]


def run_query(query: Query, rows: Iterable[tuple[str, Any, T]]) -> tuple[list[T], str | None]:
    """One page of ``rows`` (``(key, decoded_value, payload)``) for the query.

    Filters in one pass, orders by the query's sort (by key when it has none),
    resumes strictly after ``query.token`` and returns the payloads of at most
    ``query.limit`` rows plus the token of the next page (``None`` on the last
    page).  Keys must be unique among ``rows``.  Raises InvalidRequest
    (``query.page.token``) for a malformed token or one from another query.
    """
    plan = _Plan(query)
    after = plan.decode_token(query.token) if query.token else None
    predicate = plan.predicate
    key_fn = plan.key_fn()

    def candidates() -> Iterator[tuple[tuple[Any, ...], Any, T]]:
        for key, value, payload in rows:
            if predicate is not None and not predicate(value):
                continue
            sort_key = key_fn(key, value)
            if after is not None and sort_key <= after:
                continue
            yield sort_key, value, payload

    # A bounded heap over a stream: O(n log limit), and only limit + 1 rows are
    # ever held, instead of materialising and sorting every match.
    limit = query.limit
    page = heapq.nsmallest(limit + 1, candidates(), key=_first)
    has_more = len(page) > limit
    del page[limit:]

    token = None
    if has_more and page:
        last_key: str = page[-1][0][-1]
        token = plan.token_for(last_key, page[-1][1])
    return [entry[2] for entry in page], token
