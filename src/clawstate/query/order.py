"""The sort order of a query, and page tokens: keyset positions in that order.

A row's sort key is one flat tuple ``(rank1, v1, rank2, v2, …, key)`` whose natural
order is the query's order, descending parts pre-inverted, so one tuple comparison
places a row and one tells whether it lies after a page token.  A token carries the
sort positions of the last row of a page and the query's fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from clawstate.errors import InvalidRequest

from ._json import _json_number, _no_constants
from .filters import compile_filter
from .nodes import Query
from .paths import (
    _R_ARR,
    _R_BOOL,
    _R_MISSING,
    _R_NULL,
    _R_NUM,
    _R_OBJ,
    _R_STR,
    Getter,
    _compile_getter,
    _rank,
)

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
