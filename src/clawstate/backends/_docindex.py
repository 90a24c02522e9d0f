"""What a declared index holds for one stored value: the pure-Python half of the
memory and Redis secondary indexes (issue 12).

An index on a path maps the *scalar* found at that path to the keys holding it.  The
rule that keeps an index sound is that its lookups return a **superset** of the keys a
leaf filter (``EQ``/``IN``/range on the path) matches: the query still decodes every
candidate and applies the full predicate (:func:`clawstate.query.run_query`), so an
index entry may be imprecise in the direction of "too many", never "too few".

* :func:`document_of` — the document a write stores in plaintext: ``Write.doc`` when
  the codec handed it over, else the value decoded from its (plaintext) bytes, else
  :data:`OPAQUE` for an encrypted value (or bytes that are not this codec's).  An
  encrypted value gets no entry — an index entry would be a plaintext copy of part of
  it — and is kept in the path's *opaque* set instead, which every index lookup adds to
  its candidates (as PostgreSQL adds its ``opaque`` rows).
* :func:`scalar_at` — ``(tag, value)`` of the scalar at a path, with the evaluator's
  own getter, so "found at the path" means exactly what the filter means.  Tags are
  type tags (``1`` ≠ ``"1"`` ≠ ``true``); numbers keep their Python value, whose hash
  and equality are numeric (``1 == 1.0``; a big int is exact).
"""

from __future__ import annotations

import math
from typing import Any, Final

from ..codec import Codec, CodecPolicy, stored_form
from ..errors import ClawStateError, InvalidRequest
from ..query.nodes import MAX_PATH_SEGMENTS
from ..query.paths import _MISSING, _compile_getter
from .base import NO_DOCUMENT

__all__ = [
    "NOTHING",
    "OPAQUE",
    "TAG_FALSE",
    "TAG_NULL",
    "TAG_NUMBER",
    "TAG_STRING",
    "TAG_TRUE",
    "Token",
    "document_of",
    "getter",
    "parse_index_path",
    "scalar_at",
    "token_of_operand",
]


class _Opaque:
    """The type of :data:`OPAQUE`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OPAQUE"


#: A stored value whose document the backend cannot see (encrypted, or not codec bytes).
OPAQUE: Final[Any] = _Opaque()
#: :func:`scalar_at` when the path holds no scalar (missing, array, object, bytes…).
NOTHING: Final = None

TAG_NULL: Final = "n"
TAG_STRING: Final = "s"
TAG_NUMBER: Final = "d"
TAG_FALSE: Final = "f"
TAG_TRUE: Final = "t"

#: ``(tag, value)``: value None for null/booleans, the str for strings, the int or
#: float for numbers.
Token = tuple[str, Any]

_PLAIN: Final = Codec(CodecPolicy())
_BAD: Final = (ClawStateError, ValueError, TypeError, UnicodeDecodeError)


def document_of(value: bytes, doc: Any) -> Any:
    """The plaintext document ``value`` stores (see the module docstring), or
    :data:`OPAQUE`.  The stored header decides, whatever ``doc`` says: an encrypted
    value is opaque even if a document came with it."""
    form = stored_form(value)
    if form is None or form[2]:
        return OPAQUE
    if form[0] == "raw":
        return b""  # raw bytes: no path reaches into them, no entry, not opaque
    if doc is not NO_DOCUMENT:
        return doc
    try:
        return _PLAIN.decode("", "", value)
    except _BAD:
        return OPAQUE


def getter(path: tuple[str, ...]) -> Any:
    """The evaluator's compiled getter for ``path`` (one per index, reused per row)."""
    return _compile_getter(path)


def scalar_at(get: Any, document: Any) -> Token | None:
    """The type-tagged scalar ``get`` finds in ``document``, or :data:`NOTHING`.

    Mirrors :mod:`clawstate.query.filters`: ``None`` is null, ``bool`` before ``int``
    (``True`` is not ``1``), a finite ``int``/``float`` is a number, a ``str`` (or
    subclass) a string; anything else cannot match ``EQ``/``IN``/a range."""
    x = get(document)
    if x is _MISSING or x is None:
        return (TAG_NULL, None) if x is None else NOTHING
    if x is True:
        return (TAG_TRUE, None)
    if x is False:
        return (TAG_FALSE, None)
    if isinstance(x, str):
        return (TAG_STRING, str(x))
    if isinstance(x, int):
        return (TAG_NUMBER, int(x))
    if isinstance(x, float):
        return (TAG_NUMBER, float(x)) if math.isfinite(x) else NOTHING
    return NOTHING


def token_of_operand(kind: str, value: Any) -> Token:
    """The token an ``EQ``/``IN`` operand (:class:`clawstate.query.Scalar`) looks up."""
    if kind == "null":
        return (TAG_NULL, None)
    if kind == "boolean":
        return (TAG_TRUE if value else TAG_FALSE, None)
    if kind == "string":
        return (TAG_STRING, value)
    return (TAG_NUMBER, value)


def parse_index_path(field: str) -> tuple[str, ...]:
    """A declared index's dotted path as segments; InvalidRequest (``indexes``) for
    one no query could name (empty segment, NUL, too many segments)."""
    if not isinstance(field, str) or not field:
        raise InvalidRequest("indexes", f"not an indexable path: {field!r}")
    segments = tuple(field.split("."))
    if any(not s or "\x00" in s for s in segments):
        raise InvalidRequest("indexes", f"not an indexable path: {field!r}")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise InvalidRequest(
            "indexes", f"path has more than {MAX_PATH_SEGMENTS} segments", limit=MAX_PATH_SEGMENTS
        )
    return segments


def index_name(namespace: str, path: tuple[str, ...]) -> str:
    """What ``ensure_index`` returns and ``explain`` names on the memory and Redis
    backends: ``namespace/dotted.path``."""
    return f"{namespace}/{'.'.join(path)}"
