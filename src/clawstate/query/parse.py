"""Parsing a query document (a dict, or JSON text) into :class:`~clawstate.query.Query`.

Every error is :class:`~clawstate.errors.InvalidRequest` whose ``field`` is the JSON
path of the culprit (``query.filter.AND[1].EQ``, ``query.sort[0].order``) and whose
``limit`` is the bound that was broken, when there is one; the bounds keep a hostile
document from costing more than a page of work.
"""

from __future__ import annotations

import math
from typing import Any, Final, cast

from clawstate.errors import InvalidRequest

from ._json import _load_json, _show
from .nodes import (
    MAX_PATH_SEGMENTS,
    And,
    Compare,
    CompareOp,
    Eq,
    Filter,
    In,
    Or,
    Query,
    Scalar,
    SortKey,
)

_TOP_FIELDS: Final = ("filter", "sort", "page")
_OPERATORS: Final = ("AND", "OR", "EQ", "IN", "GT", "GTE", "LT", "LTE")


def _name(key: Any) -> str:
    """A client-supplied object key as a segment of an error's ``field``."""
    if isinstance(key, str) and len(key) <= 60:
        return key
    return _show(key)


def _known_fields(node: dict[Any, Any], known: tuple[str, ...], field: str) -> None:
    """Refuse a member of the object ``node`` that is not one of ``known``, by its path."""
    for name in node:
        if name not in known:
            expected = ", ".join(known[:-1]) + " or " + known[-1]
            raise InvalidRequest(
                f"{field}.{_name(name)}", f"unknown field {_show(name)}; expected {expected}"
            )


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
        _known_fields(entry, ("key", "order"), here)
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
    _known_fields(doc, _TOP_FIELDS, "query")

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
        _known_fields(page, ("limit", "token"), "query.page")
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
