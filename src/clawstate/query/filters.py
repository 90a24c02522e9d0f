"""Filters compiled to Python predicates, one closure per operator node.

Compile once per query, call once per row: the predicates test the exact decoded types
first and fall back to the rank only for subclasses and odd values.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from .nodes import And, Compare, CompareOp, Eq, Filter, In, Scalar
from .paths import _R_NUM, _R_STR, _RANK_OF_KIND, Getter, _compile_getter, _rank

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
