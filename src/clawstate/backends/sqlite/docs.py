"""Values → the JSON text copy (``items.doc``) that SQLite's JSON1 functions query.

``items.value`` always holds the codec's bytes; ``items.doc`` holds the same value as
JSON text when SQL can evaluate the query language on it *exactly*, and
``items.opaque`` says which case a row is in:

* ``0`` — ``doc`` is the value (raw-bytes values get ``'null'``: no path reaches into
  them, so every path is missing, as in the Python evaluator);
* ``1`` — plain, but not exactly representable for ``json_extract``: a NaN/infinity or
  nested bytes, a NUL character (SQLite text functions stop at NUL), or an integer
  beyond 64 bits (``json_extract`` reads those as lossy REALs);
* ``2`` — encrypted: never copied, whatever the write carried;
* ``NULL`` — a row written before the column existed, not yet backfilled.

Rows with ``opaque IS NOT 0`` are evaluated in Python by the query path (encrypted
ones through the facade's decoder); a namespace with any ``NULL`` row answers by the
Python scan until the backfill (:meth:`SQLiteBackend._backfill_docs`) reaches it.

Same contract as PostgreSQL's ``values.py`` (the codec hands a put's document over as
``Write.doc``; everything else decodes the stored bytes); kept separate because the
exactness limits differ (jsonb holds arbitrary precision numbers, JSON1 does not).
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from ...codec import Codec, CodecPolicy, stored_form
from ...errors import ClawStateError
from ..base import NO_DOCUMENT

__all__ = ["OPAQUE_ENCRYPTED", "OPAQUE_NONE", "OPAQUE_PLAIN", "value_doc", "write_doc"]

OPAQUE_NONE: Final = 0
OPAQUE_PLAIN: Final = 1
OPAQUE_ENCRYPTED: Final = 2

#: msgpack markers of a float with an all-ones exponent (NaN/inf), of bin data, or of
#: a uint64 (the only msgpack integer that can exceed SQLite's 64-bit signed range).
_SUSPECT: Final = re.compile(rb"[\xca\xcb][\x7f\xff]|[\xc4-\xc6\xcf]")


def _bin_or_u64(data: bytes) -> bool:
    """Whether msgpack ``data`` may hold bin data or a uint64 (a handed-over document
    was validated by the codec: no NaN/infinity).  Four ``memchr`` searches: ~0.2 µs
    for a 380-byte value where a regex character class measured 1.2 µs and a pattern
    over the JSON text (19 digits in a row) 2.8 µs.  A false positive (the byte inside
    a string) only costs a walk of the value."""
    return b"\xc4" in data or b"\xc5" in data or b"\xc6" in data or b"\xcf" in data


_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_MSGPACK_DEC: Final = msgspec.msgpack.Decoder()
_JSON_ENC: Final = msgspec.json.Encoder()
_DOC_CODEC: Final = Codec(CodecPolicy())
_BAD: Final = (ClawStateError, msgspec.DecodeError, UnicodeDecodeError, TypeError, ValueError)

Doc = tuple[str | None, int]


def _jsonable(v: Any) -> bool:
    t = type(v)
    if t is dict:
        return all(type(k) is str and _jsonable(x) for k, x in v.items())
    if t is list:
        return all(_jsonable(x) for x in v)
    if t is float:
        return bool(v - v == 0.0)
    if t is int:
        return bool(_I64_MIN <= v <= _I64_MAX)  # json_extract reads larger ones as lossy REALs
    return t is str or t is bool or v is None


def _checked(text: bytes) -> Doc:
    if b"\\u0000" in text:  # JSON text escapes every control character
        return None, OPAQUE_PLAIN
    try:
        return text.decode("utf-8"), OPAQUE_NONE
    except UnicodeDecodeError:
        return None, OPAQUE_PLAIN


def _text(value: Any, suspect: bool) -> Doc:
    if suspect and not _jsonable(value):
        return None, OPAQUE_PLAIN
    try:
        text = _JSON_ENC.encode(value)
    except _BAD:
        return None, OPAQUE_PLAIN
    return _checked(text)


def value_doc(data: bytes, codec: Codec | None = None) -> Doc:
    """``(JSON text or None, opaque mark)`` for stored ``data`` (codec bytes)."""
    form = stored_form(data)
    if form is None:
        return None, OPAQUE_PLAIN
    serializer, compressed, encrypted = form
    if encrypted:
        return None, OPAQUE_ENCRYPTED
    if serializer == "raw":
        return "null", OPAQUE_NONE
    try:
        if serializer == "json" and not compressed:
            return _text(msgspec.json.decode(data[2:]), True)
        if not compressed:
            return _text(_MSGPACK_DEC.decode(data[2:]), _SUSPECT.search(data) is not None)
        return _text((codec or _DOC_CODEC).decode("", "", data), True)
    except _BAD:
        return None, OPAQUE_PLAIN


def write_doc(data: bytes, doc: Any, codec: Codec | None = None) -> Doc:
    """:func:`value_doc` for a put that carried its document (``Write.doc``): one JSON
    encode of a value already in memory instead of a decode.  The stored header still
    decides: an encrypted value gets no document even if one came with it."""
    if doc is NO_DOCUMENT:
        return value_doc(data, codec)
    form = stored_form(data)
    if form is None or form[2] or form[0] != "msgpack":
        return value_doc(data, codec)
    return _text(doc, form[1] or _bin_or_u64(data))
