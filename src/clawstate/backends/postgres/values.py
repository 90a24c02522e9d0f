"""Values → ``jsonb``: the queryable copy the PostgreSQL backend keeps of plaintext values.

``items.value`` (``bytea``) always holds the codec's bytes; ``items.doc`` (``jsonb``)
holds the same value when it is plain JSON, so that queries run in SQL.  Two ways in:

* :func:`write_doc` — a put: the codec handed the document over with the bytes
  (``Write.doc``, :meth:`clawstate.codec.Codec.encode_document`), so the text is one
  JSON encode of a value already in memory (0.4 µs for a small document against
  4.7 µs to decode the bytes again, measured here — docs/backends.md);
* :func:`value_doc` — everything else (rewraps, ``check()`` recomputing every
  document from the bytes): decode the stored bytes.

Both read the stored header through :func:`clawstate.codec.stored_form` — the
header's layout is the codec's alone — and an encrypted value never gets a
document, whatever the write carried: it is marked ``OPAQUE_ENCRYPTED`` and
queried in Python through the facade's decoder.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from ...codec import Codec, CodecPolicy, stored_form
from ...errors import ClawStateError
from ..base import NO_DOCUMENT

__all__ = ["OPAQUE_ENCRYPTED", "OPAQUE_NONE", "OPAQUE_PLAIN", "value_doc", "write_doc"]

#: ``items.opaque``: 0 — ``doc`` holds the value (or the value is raw bytes, which
#: no path reaches); 1 — JSON-compatible but not exactly representable in jsonb;
#: 2 — encrypted.  Rows with ``opaque <> 0`` are queried in Python.
OPAQUE_NONE: Final = 0
OPAQUE_PLAIN: Final = 1
OPAQUE_ENCRYPTED: Final = 2

#: Byte pairs that a msgpack payload must contain to hold NaN/±Infinity (a float
#: marker before an all-ones exponent) or a bin value.  Absent (the usual case),
#: decoding and re-encoding as JSON is exact and needs no walk over the value.
_SUSPECT: Final = re.compile(rb"[\xca\xcb][\x7f\xff]|[\xc4-\xc6]")
#: The msgpack markers of a bin value.  A handed-over document was validated by the
#: codec (no NaN or infinity: refused under every serializer), so nested bytes are all
#: that can keep it out of jsonb; a payload without these bytes has none.  One
#: character class: ~0.3 µs where the pattern above costs ~4 µs per value.
_BIN: Final = re.compile(rb"[\xc4-\xc6]")
_MSGPACK_DEC: Final = msgspec.msgpack.Decoder()
_JSON_ENC: Final = msgspec.json.Encoder()
_DOC_CODEC: Final = Codec(CodecPolicy())
_BAD: Final = (ClawStateError, msgspec.DecodeError, UnicodeDecodeError, TypeError, ValueError)


def _jsonable(v: Any) -> bool:
    """No non-finite float, no bytes, only str keys: jsonb represents it exactly."""
    t = type(v)
    if t is dict:
        return all(type(k) is str and _jsonable(x) for k, x in v.items())
    if t is list:
        return all(_jsonable(x) for x in v)
    if t is float:
        return bool(v - v == 0.0)  # false for NaN and ±inf
    return t is str or t is int or t is bool or v is None


def _text(value: Any, suspect: bool) -> tuple[str | None, int]:
    """The jsonb text of a decoded ``value`` (``suspect``: it may hold what jsonb cannot)."""
    if suspect and not _jsonable(value):
        return None, OPAQUE_PLAIN
    try:
        text = _JSON_ENC.encode(value)
    except _BAD:
        return None, OPAQUE_PLAIN
    if b"\\u0000" in text:
        return None, OPAQUE_PLAIN
    return text.decode("utf-8"), OPAQUE_NONE


def value_doc(data: bytes, codec: Codec | None = None) -> tuple[str | None, int]:
    """``(jsonb text or None, opaque mark)`` for stored ``data`` (codec bytes).

    Plain msgpack/json values (compressed ones too, decoded with ``codec``, which
    needs no key for them) become jsonb text; raw bytes get no document (no path
    reaches into them); encrypted values and values jsonb cannot hold exactly are
    opaque.
    """
    form = stored_form(data)
    if form is None:
        return None, OPAQUE_PLAIN  # not codec bytes: check() reports it
    serializer, compressed, encrypted = form
    if encrypted:
        return None, OPAQUE_ENCRYPTED
    if serializer == "raw":
        return None, OPAQUE_NONE
    try:
        if serializer == "json" and not compressed:
            if b"\\u0000" in data:
                return None, OPAQUE_PLAIN
            return data[2:].decode("utf-8"), OPAQUE_NONE
        if not compressed:
            return _text(_MSGPACK_DEC.decode(data[2:]), _SUSPECT.search(data) is not None)
        return _text((codec or _DOC_CODEC).decode("", "", data), True)
    except _BAD:
        return None, OPAQUE_PLAIN


def write_doc(data: bytes, doc: Any, codec: Codec | None = None) -> tuple[str | None, int]:
    """:func:`value_doc` for a put whose write carried its document ``doc`` (or
    :data:`~clawstate.backends.base.NO_DOCUMENT`, and then exactly ``value_doc``).

    The stored header still decides: an encrypted value stays opaque and document-less
    even if a document came with it (the codec never sends one; this holds even if a
    caller did), and JSON-serialized bytes are already the text.
    """
    if doc is NO_DOCUMENT:
        return value_doc(data, codec)
    form = stored_form(data)
    if form is None or form[2] or form[0] != "msgpack":
        return value_doc(data, codec)  # encrypted, raw, JSON text as is, or not codec bytes
    # A msgpack payload can hold nested bytes, which JSON would turn into text: walk
    # the document when the payload may hold some (or cannot be searched: compressed).
    return _text(doc, form[1] or _BIN.search(data) is not None)
