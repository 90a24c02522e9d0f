"""Declared indexes on Redis: what a write adds to them, and what a query looks up.

Per ``(namespace, dotted path)`` three sorted sets, named after a digest of the path
(``P q:{ns}/{digest}:`` + ``l`` / ``n`` / ``o``):

* ``l`` — every scalar at the path, as members ``<tag><value>\\0<key>`` (score 0), so
  ``ZRANGEBYLEX`` finds one value's keys (``EQ``/``IN``) or a string range.  The tag
  keeps types apart (``n`` null, ``f``/``t`` booleans, ``d`` numbers, ``s`` strings:
  ``1`` ≠ ``"1"`` ≠ ``true``); a number is its canonical text (``1`` and ``1.0`` are
  one number, a big int stays exact); a string is its UTF-8 bytes with ``\\0`` and
  ``\\1`` escaped order-preservingly (``\\1\\1``, ``\\1\\2``), so byte order of members
  is code-point order of values and the ``\\0`` before the key is unambiguous;
* ``n`` — the keys holding a number at the path, scored by it: number ranges;
* ``o`` — the keys whose value the backend cannot read (encrypted): every lookup of
  the index adds them to its candidates, which are decoded by the facade like any row.

The rule that keeps this sound: a lookup returns a *superset* of the keys the leaf
filter matches — the query decodes every candidate and applies the whole predicate,
checks liveness (an expired item not yet swept stays indexed until the sweep), and
orders it (:func:`clawstate.query.run_query`).  So bounds are inclusive where a double
score could round (a big int), and nothing is ever left out.

Which declared index serves a filter is :func:`clawstate.query.serving_path`'s
decision; this module only turns that decision into lookups.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection
from typing import Any

import msgspec

from ...query import And, Compare, Eq, Filter, In, serving_path
from .._docindex import (
    OPAQUE,
    TAG_NUMBER,
    TAG_STRING,
    Token,
    document_of,
    getter,
    index_name,
    scalar_at,
    token_of_operand,
)

__all__ = [
    "IndexCache",
    "NsIndexes",
    "RedisIndex",
    "candidate_lookups",
    "entries_for",
    "path_entries",
]

Path = tuple[str, ...]


class RedisIndex:
    """One declared index: its name, path, getter and sorted-set keys."""

    __slots__ = ("field", "get", "name", "path", "zlex", "znum", "zop", "zprefix")

    def __init__(self, prefix: str, namespace: str, path: Path) -> None:
        self.path = path
        self.field = ".".join(path)
        self.name = index_name(namespace, path)
        self.get = getter(path)
        digest = hashlib.blake2b(self.field.encode(), digest_size=8).hexdigest()
        self.zprefix = f"{prefix}q:{namespace}/{digest}:"
        self.zlex = self.zprefix + "l"
        self.znum = self.zprefix + "n"
        self.zop = self.zprefix + "o"


class NsIndexes:
    """A namespace's declarations as last read: the generation writers must quote,
    every declared index (writes maintain them all) and the ready ones (queries)."""

    __slots__ = ("building", "gen", "paths", "ready")

    def __init__(self, gen: bytes, paths: dict[Path, RedisIndex], ready: set[Path]) -> None:
        self.gen = gen
        self.paths = paths
        self.ready: dict[Path, RedisIndex] = {p: i for p, i in paths.items() if p in ready}
        self.building = len(self.ready) < len(paths)


class IndexCache:
    """Per-namespace :class:`NsIndexes` of one backend (any thread may read or fill it)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._by_ns: dict[str, NsIndexes] = {}

    def get(self, namespace: str) -> NsIndexes | None:
        return self._by_ns.get(namespace)

    def forget(self, namespace: str) -> None:
        with self._lock:
            self._by_ns.pop(namespace, None)

    def store(self, namespace: str, gen: Any, states: Any) -> NsIndexes:
        """Cache what ``HGET qgen`` and ``HGETALL qdef:{ns}`` answered."""
        if isinstance(states, dict):
            pairs = list(states.items())
        else:
            pairs = list(zip(states[::2], states[1::2], strict=True))
        paths: dict[Path, RedisIndex] = {}
        ready: set[Path] = set()
        for raw_field, raw_state in pairs:
            field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
            path = tuple(field.split("."))
            paths[path] = RedisIndex(self._prefix, namespace, path)
            if raw_state in (b"r", "r"):
                ready.add(path)
        g = b"0" if gen is None else (gen if isinstance(gen, bytes) else str(gen).encode())
        found = NsIndexes(g, paths, ready)
        with self._lock:
            self._by_ns[namespace] = found
        return found


# -- encodings ----------------------------------------------------------------------


def _escape(text: str) -> str:
    """``text`` with ``\\0``/``\\1`` escaped (one UTF-8 byte each, so this is the byte
    escape): byte order is kept and no ``\\0`` remains."""
    return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")


def _number_text(n: int | float) -> str:
    """One text per number value: ``1`` and ``1.0`` alike, a big int exact."""
    if isinstance(n, float):
        if not n.is_integer():
            return repr(n)
        n = int(n)
    return str(n) if -(1 << 63) < n < (1 << 63) else hex(n)


def _score(n: int | float) -> str:
    """A number as a sorted-set score (a double: may round, so bounds are inclusive)."""
    try:
        return repr(float(n))
    except OverflowError:
        return "+inf" if n > 0 else "-inf"


def _member_prefix(token: Token) -> str:
    tag, value = token
    if tag == TAG_STRING:
        return "s" + _escape(value) + "\0"
    if tag == TAG_NUMBER:
        return "d" + _number_text(value) + "\0"
    return tag + "\0"


def path_entries(index: RedisIndex, key: str, value: bytes, doc: Any) -> list[str]:
    """The flat (sorted-set key, score, member) triples ``value`` adds to ``index``."""
    return _entries(index, key, document_of(value, doc))


def _entries(index: RedisIndex, key: str, document: Any) -> list[str]:
    if document is OPAQUE:
        return [index.zop, "0", key]
    token = scalar_at(index.get, document)
    if token is None:
        return []
    if token[0] == TAG_NUMBER:
        member = "d" + _number_text(token[1]) + "\0" + key
        return [index.zlex, "0", member, index.znum, _score(token[1]), key]
    return [index.zlex, "0", _member_prefix(token) + key]


def entries_for(ix: NsIndexes, key: str, value: bytes, doc: Any) -> bytes:
    """The (sorted-set key, score, member) triples a put (or rewrap) of ``value`` adds
    to every declared index of its namespace, ready or building (the document is
    derived once), as one msgpack array of strings: one script argument, unpacked by
    Lua's cmsgpack, and kept as is in the item's ``q`` field; ``b""`` when none."""
    document = document_of(value, doc)
    out: list[str] = []
    for index in ix.paths.values():
        out += _entries(index, key, document)
    return _RECORD.encode(out) if out else b""


_RECORD = msgspec.msgpack.Encoder()


# -- lookups ------------------------------------------------------------------------


def candidate_lookups(flt: Filter, ix: NsIndexes) -> list[Any]:
    """The ``_CANDIDATES`` script's arguments for a filter that ``serving_path`` says
    the ready indexes serve: ``AND`` looks up its first served operand, ``OR`` every
    operand; each index used adds its opaque keys once."""
    out: list[Any] = []
    opaque: set[Path] = set()
    _lookups(flt, ix.ready, out, opaque)
    return out


def _lookups(flt: Filter, ready: dict[Path, RedisIndex], out: list[Any], opaque: set[Path]) -> None:
    if isinstance(flt, And):
        operand = next(c for c in flt.clauses if serving_path(c, _keys(ready)) is not None)
        _lookups(operand, ready, out, opaque)
        return
    if not isinstance(flt, (Eq, In, Compare)):
        for operand in flt.clauses:
            _lookups(operand, ready, out, opaque)
        return
    index = ready[flt.path]
    if flt.path not in opaque:
        opaque.add(flt.path)
        out += ("o", index.zop, "", "")
    if isinstance(flt, Compare):
        value = flt.operand.value
        upward = flt.op in ("GT", "GTE")
        if flt.operand.kind == "string":
            assert isinstance(value, str)
            if upward:
                out += ("l", index.zlex, "[s" + _escape(value), "(t")
            else:
                out += ("l", index.zlex, "[s", "(s" + _escape(value) + "\x01")
        else:
            assert isinstance(value, int | float)
            if upward:
                out += ("n", index.znum, _score(value), "+inf")
            else:
                out += ("n", index.znum, "-inf", _score(value))
        return
    operands = (flt.operand,) if isinstance(flt, Eq) else flt.operands
    for s in operands:
        prefix = _member_prefix(token_of_operand(s.kind, s.value))
        out += ("l", index.zlex, "[" + prefix, "(" + prefix[:-1] + "\x01")


def _keys(ready: dict[Path, RedisIndex]) -> Collection[Path]:
    return ready.keys()
