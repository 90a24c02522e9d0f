"""The query AST: a closed set of frozen nodes, the one thing every backend reads.

The in-memory, SQLite and Redis backends evaluate it in Python
(:mod:`clawstate.query.run`); the PostgreSQL backend compiles it to SQL.  The meaning
of each node is the language's (see :mod:`clawstate.query`).  :attr:`Query.fingerprint`
hashes a canonical form of filter and sort, so a page token only resumes the query that
issued it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

import msgspec

from ._json import _json_number

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
# Fingerprint
# ---------------------------------------------------------------------------


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
