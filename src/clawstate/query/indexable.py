"""Which declared index can serve a query, decided once for every backend.

A backend with secondary indexes (SQLite expression indexes, PostgreSQL expression
indexes, Redis index sets, the memory backend's dicts) holds indexes on dotted paths
declared by ``[namespaces.X] indexes = [...]``.  Whether one of them can narrow a
query's candidate rows is a property of the filter alone, so it is answered here and
every backend (and ``explain``, and the scan-limit refusal that names "the index that
would serve it") agrees:

* ``EQ`` / ``IN`` / a range on an indexed path is served by that path's index;
* ``AND`` is served when any of its operands is (the index narrows, the rest filters);
* ``OR`` is served only when every operand is (each branch a lookup, then a union);
  one unserved branch means every row must be read anyway.

A path that no declared index covers makes :func:`wanted_paths` name the candidates a
user could declare, for the error message.
"""

from __future__ import annotations

from collections.abc import Collection

from .nodes import And, Compare, Eq, Filter, In, Or

Path = tuple[str, ...]


def serving_path(flt: Filter | None, indexed: Collection[Path]) -> Path | None:
    """The indexed path whose index can serve ``flt``, or ``None`` (a full read).

    Among several candidates the first in filter order wins: deterministic, so the
    same query always reports the same plan."""
    if flt is None or not indexed:
        return None
    if isinstance(flt, (Eq, In, Compare)):
        return flt.path if flt.path in indexed else None
    if isinstance(flt, And):
        for operand in flt.clauses:
            found = serving_path(operand, indexed)
            if found is not None:
                return found
        return None
    if isinstance(flt, Or):
        paths = [serving_path(operand, indexed) for operand in flt.clauses]
        if any(p is None for p in paths):
            return None
        return paths[0]
    return None


def wanted_paths(flt: Filter | None) -> list[Path]:
    """The paths an index could be declared on to serve ``flt``, in filter order,
    without repeats (empty when no index could: no filter)."""
    out: list[Path] = []

    def walk(f: Filter) -> None:
        if isinstance(f, (Eq, In, Compare)):
            if f.path not in out:
                out.append(f.path)
        elif isinstance(f, (And, Or)):
            for operand in f.clauses:
                walk(operand)

    if flt is not None:
        walk(flt)
    return out


def dotted(path: Path) -> str:
    """A path as a user declares it: ``("customer", "id")`` -> ``"customer.id"``."""
    return ".".join(path)
