"""Values at paths, and the JSON type rank that orders them.

A path that leads nowhere (an absent key, an index past the end, a value JSON cannot
represent) yields ``_MISSING``, which ranks after every JSON type: PostgreSQL's
``NULLS LAST``.  Filters (:mod:`clawstate.query.filters`) and the sort order
(:mod:`clawstate.query.order`) both read values through these getters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeAlias


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
