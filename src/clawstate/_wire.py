"""The HTTP wire format, written once for both ends: ``clawstate serve`` and the client.

Why a module of its own: the server (``server/app.py``) and the remote client
(``client.py``) must agree byte for byte on how an :class:`~clawstate.types.Item`,
a :class:`~clawstate.types.Page`, a :class:`~clawstate.types.Change`, a transaction
and an error travel.  Keeping the records, the content types and the problem mapping
here means neither side can drift, and the client never imports the server's
dependencies (Litestar, prometheus-client): this module needs only msgspec.

Two encodings carry every body: JSON (the default, what curl and browsers speak)
and msgpack (``application/msgpack``), which the Python client uses because it keeps
``bytes`` values and the exact int/float distinction.  Errors are always RFC 9457
``application/problem+json`` whose ``title`` is the class name of DESIGN.md's error
tree, so the client re-raises the very class the store raised, with its fields.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

import msgspec

from .codec import NON_FINITE_WHY
from .errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    FencingError,
    Forbidden,
    IntegrityError,
    InvalidRequest,
    InvalidTransition,
    LockTimeout,
    LogTrimmed,
    RateLimited,
    Unauthorized,
    VersionConflict,
    WrongExpectedVersion,
)
from .types import AppendResult, Change, Event, Item, RecordedEvent

__all__ = [
    "JSON",
    "MSGPACK",
    "MSGPACK_TYPES",
    "PROBLEM_JSON",
    "SSE",
    "AppendEvents",
    "AppendResult",
    "BatchGet",
    "BatchPut",
    "ChangeBatch",
    "EventPage",
    "ItemMeta",
    "ItemsByKey",
    "ItemsMeta",
    "NotFound",
    "Problem",
    "StreamEvents",
    "TxResult",
    "TxWrite",
    "TxWrites",
    "decode_body",
    "error_from_problem",
    "format_etag",
    "meta_of",
    "parse_etag",
    "problem_doc",
    "quote_key",
    "unquote_key",
]

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
PROBLEM_JSON: Final = "application/problem+json"
SSE: Final = "text/event-stream"
#: Every spelling of msgpack a client may send or accept.
MSGPACK_TYPES: Final = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)

#: Header names (case-insensitive on the wire).
IDEMPOTENCY_KEY: Final = "idempotency-key"
NAMESPACE_OPTIONS: Final = "clawstate-namespace-options"


class ItemMeta(msgspec.Struct, frozen=True, gc=False, omit_defaults=False):
    """An item without its value: what a write answers (the writer has the value)."""

    key: str
    version: int
    etag: str
    created_at: float
    updated_at: float
    expires_at: float | None = None
    namespace: str = ""

    def with_value(self, value: Any) -> Item:
        return Item(
            self.key,
            value,
            self.version,
            self.etag,
            self.created_at,
            self.updated_at,
            self.expires_at,
            self.namespace,
        )


def meta_of(item: Item) -> ItemMeta:
    return ItemMeta(
        item.key,
        item.version,
        item.etag,
        item.created_at,
        item.updated_at,
        item.expires_at,
        item.namespace,
    )


class AppendEvents(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/streams/{stream}/events`` body: ``EventStore.append``'s arguments."""

    events: list[Event]
    expected_version: int | str = "any"


class StreamEvents(msgspec.Struct, gc=False):
    """``GET /v1/streams/{stream}/events``: one stream's events, in the order asked."""

    events: list[RecordedEvent]


class EventPage(msgspec.Struct, gc=False):
    """``GET /v1/events``: events of the global log, and ``end``, the position the
    read scanned through (pass it as ``from_position`` to continue, even when a
    filter left ``events`` empty)."""

    events: list[RecordedEvent]
    end: int


class BatchGet(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/namespaces/{ns}/batch/get`` body."""

    keys: list[Any]


class BatchPut(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/namespaces/{ns}/batch/put`` body: pairs keep order and duplicates."""

    items: list[tuple[Any, Any]]
    ttl: Any = None
    #: a fenced batch: ``{"name": <lock>, "token": <int>}`` (see ``server/locks.py``)
    fence: Any = None


class ItemsByKey(msgspec.Struct):
    items: dict[str, Item]


class ItemsMeta(msgspec.Struct):
    items: list[ItemMeta]


class TxWrite(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One buffered write of a transaction, replayed by the server in order.

    ``value``, ``ttl`` and ``if_absent`` default to ``UNSET`` rather than None/False so
    that :meth:`check` can tell a field that was sent from one that was not: a delete
    that carries a value or a TTL is a confused client, and ignoring the field would
    hide it.  The values' own types are the facade's to check (``if_absent: "yes"``
    is refused there, as it is in-process).
    """

    op: Literal["put", "delete"]
    namespace: Any
    key: Any
    value: Any = msgspec.UNSET
    ttl: Any = msgspec.UNSET
    if_version: Any = None
    if_absent: Any = msgspec.UNSET
    #: keep the live item's expiry (``TxNamespace.put(keep_ttl=True)``)
    keep_ttl: Any = msgspec.UNSET
    #: a fenced write: ``{"name": <lock>, "token": <int>}`` (see ``server/locks.py``)
    fence: Any = None

    def check(self, index: int) -> None:
        """Refuse fields that do not apply to the op, naming them (``writes[i].ttl``)."""
        if self.op == "delete":
            for name in ("value", "ttl", "if_absent", "keep_ttl"):
                if getattr(self, name) is not msgspec.UNSET:
                    raise InvalidRequest(
                        f"writes[{index}].{name}",
                        "does not apply to a delete (it takes namespace, key and if_version)",
                    )
        elif self.value is msgspec.UNSET:
            raise InvalidRequest(f"writes[{index}].value", "is required for a put")

    def put_options(self) -> tuple[Any, Any, Any]:
        """``(ttl, if_absent, keep_ttl)`` for ``TxNamespace.put``, defaults filled in."""
        ttl = None if self.ttl is msgspec.UNSET else self.ttl
        return (
            ttl,
            False if self.if_absent is msgspec.UNSET else self.if_absent,
            False if self.keep_ttl is msgspec.UNSET else self.keep_ttl,
        )


class TxWrites(msgspec.Struct, forbid_unknown_fields=True):
    writes: list[TxWrite]


class TxResult(msgspec.Struct):
    """One entry per write: the item's metadata for a put, ``deleted`` for a delete."""

    result: list[ItemMeta | bool]


class ChangeBatch(msgspec.Struct):
    """``GET /v1/changes`` as JSON: changes after ``from_seq`` and where to resume."""

    changes: list[Change]
    last_seq: int


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document; ``title`` is the error class name."""

    type: str
    title: str
    status: int
    detail: str = ""
    field: str | None = None
    limit: Any = None
    key: str | None = None
    expected: int | str | None = None
    actual: int | None = None
    namespace: str | None = None
    stream: str | None = None
    retry_after: float | None = None


class NotFound(ClawStateError):
    """Over HTTP only: the item (or route) is absent.  The facade returns ``None``
    instead; the client turns this into ``None`` and never raises it to callers."""

    http_status = 404


def problem_doc(exc: ClawStateError, status: int | None = None) -> dict[str, Any]:
    """The problem document for ``exc`` (``status`` overrides its default)."""
    doc = exc.to_problem()
    if status is not None:
        doc["status"] = status
    if isinstance(exc, WrongExpectedVersion):
        doc["stream"] = exc.stream
    if isinstance(exc, ConfigError):
        doc["field"] = exc.field
    return doc


_ERRORS: dict[str, type[ClawStateError]] = {
    cls.__name__: cls
    for cls in (
        ClawStateError,
        VersionConflict,
        WrongExpectedVersion,
        InvalidRequest,
        Unauthorized,
        Forbidden,
        BackendUnavailable,
        RateLimited,
        IntegrityError,
        ConfigError,
        LogTrimmed,
        NotFound,
        FencingError,
        LockTimeout,
        InvalidTransition,
    )
}
_PREFIX = "urn:clawstate:error:"


def error_from_problem(doc: Any, status: int) -> ClawStateError:
    """Re-build the error a problem document describes, with its fields.

    Unknown titles (a proxy's HTML error page, a future error class) become the
    closest class by status, so a caller's ``except ClawStateError`` always works.
    """
    if not isinstance(doc, dict):
        doc = {}
    name = str(doc.get("title") or "")
    type_ = str(doc.get("type") or "")
    if type_.startswith(_PREFIX):
        name = type_[len(_PREFIX) :]
    detail = str(doc.get("detail") or f"HTTP {status}")
    cls = _ERRORS.get(name)
    if cls is WrongExpectedVersion:
        return WrongExpectedVersion(
            str(doc.get("stream") or doc.get("key") or ""), doc.get("expected"), doc.get("actual")
        )
    if cls is VersionConflict:
        return VersionConflict(
            str(doc.get("key") or ""),
            doc.get("expected"),
            doc.get("actual"),
            namespace=doc.get("namespace"),
            message=detail,
        )
    if cls is FencingError:
        token, current = doc.get("token"), doc.get("current")
        return FencingError(
            str(doc.get("name") or ""),
            token if type(token) is int else 0,
            current if type(current) is int else None,
        )
    if cls is LockTimeout:
        waited = doc.get("waited")
        return LockTimeout(
            str(doc.get("name") or ""), float(waited) if type(waited) in (int, float) else 0.0
        )
    if cls is InvalidTransition:
        reason = doc.get("reason")
        return InvalidTransition(
            str(doc.get("machine") or ""),
            str(doc.get("id") or ""),
            str(doc.get("state") or ""),
            str(doc.get("event") or ""),
            reason=reason if isinstance(reason, str) else None,
        )
    if cls is RateLimited or (cls is None and status == 429):
        after = doc.get("retry_after")
        return RateLimited(float(after) if isinstance(after, int | float) else None, detail)
    if cls is LogTrimmed:
        requested, first = doc.get("requested"), doc.get("first_available")
        if isinstance(requested, int) and isinstance(first, int):
            trimmed = LogTrimmed(requested, first, field=str(doc.get("field") or "from_seq"))
            trimmed.args = (detail,)
            return trimmed
        cls = InvalidRequest  # a document without its positions: still the same meaning
    if cls is InvalidRequest:
        field = str(doc.get("field") or "request")
        err = InvalidRequest(field, "", limit=doc.get("limit"))
        err.args = (detail,)
        return err
    if cls is ConfigError:
        field = str(doc.get("field") or "config")
        cerr = ConfigError(field, "")
        cerr.args = (detail,)
        return cerr
    if cls is not None:
        return cls(detail)
    if status in (401,):
        return Unauthorized(detail)
    if status == 403:
        return Forbidden(detail)
    if status == 404:
        return NotFound(detail)
    if status == 409 or status == 412:
        return VersionConflict("", None, None, message=detail)
    if 400 <= status < 500:
        err = InvalidRequest("request", "")
        err.args = (detail,)
        return err
    return BackendUnavailable(detail)


# -- bodies -------------------------------------------------------------------------

_json_decoder = msgspec.json.Decoder()
_msgpack_decoder = msgspec.msgpack.Decoder()


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


_json_encode = msgspec.json.Encoder().encode


def _may_have_duplicates(data: bytes, value: Any) -> bool:
    """False when ``data`` certainly has no duplicate object name (the fast path).

    Every name in JSON text is followed by one ``:``, and re-encoding the decoded value
    reproduces every name and string exactly — except names dropped as duplicates — and
    never adds a ``:``.  So without ``\\u`` escapes (one could spell a ``:`` that
    re-encoding writes plainly) equal ``:`` counts prove there was no duplicate, at the
    cost of one msgspec encode and two C-speed byte counts instead of a full stdlib parse.
    """
    if b"\\u" in data:
        return True
    return _json_encode(value).count(b":") != data.count(b":")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- msgpack maps with a duplicate key ---------------------------------------------------

_msgpack_encode = msgspec.msgpack.Encoder().encode
_msgpack_decode_one = msgspec.msgpack.Decoder().decode

#: msgpack header byte -> (bytes before the payload, payload length in the header's
#: trailing bytes: 0 none, else how many big-endian bytes hold it, fixed payload size)
_FIXED: Final = {
    0xC0: 1, 0xC2: 1, 0xC3: 1,  # nil, false, true
    0xCA: 5, 0xCB: 9,  # float32, float64
    0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,  # uint8..64
    0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9,  # int8..64
    0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,  # fixext 1..16
}  # fmt: skip
#: header byte -> (size of the length field, extra bytes after it) for str/bin/ext
_SIZED: Final = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin 8/16/32
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext 8/16/32 (+ type byte)
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str 8/16/32
}  # fmt: skip


def _head(data: bytes, pos: int) -> tuple[int, int, bool]:
    """``(bytes to advance, child elements, is a map)`` for the element at ``pos``: the
    whole element for a scalar, only the header for an array (N children) or a map (2N)."""
    b = data[pos]
    if b <= 0x7F or b >= 0xE0:
        return 1, 0, False
    if b <= 0x8F:
        return 1, 2 * (b & 0x0F), True
    if b <= 0x9F:
        return 1, b & 0x0F, False
    if b <= 0xBF:
        return 1 + (b & 0x1F), 0, False
    fixed = _FIXED.get(b)
    if fixed is not None:
        return fixed, 0, False
    sized = _SIZED.get(b)
    if sized is not None:
        width, extra = sized
        size = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
        return 1 + width + extra + size, 0, False
    width = 2 if b in (0xDC, 0xDE) else 4  # array16/map16, array32/map32
    count = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
    is_map = b >= 0xDE
    return 1 + width, 2 * count if is_map else count, is_map


def _skip(data: bytes, pos: int) -> int:
    """The position just after the (possibly nested) element at ``pos``."""
    pending = 1
    while pending:
        advance, children, _ = _head(data, pos)
        pos += advance
        pending += children - 1
    return pos


def _kinds() -> tuple[list[int], list[int]]:
    """Per msgpack header byte: how to step over the element (``_K_*``) and a size
    (a whole scalar's length, or the width of a str/bin/ext length field)."""
    kind = [_K_SCALAR] * 256
    size = [1] * 256
    for b in range(0xA0, 0xC0):  # fixstr: the header holds the length
        size[b] = 1 + (b & 0x1F)
    for b, total in _FIXED.items():
        size[b] = total
    for b, (width, _) in _SIZED.items():
        kind[b], size[b] = _K_SIZED, width
    for b in range(0x80, 0x90):
        kind[b] = _K_FIXMAP
    for b in range(0x90, 0xA0):
        kind[b] = _K_FIXARRAY
    kind[0xDC], size[0xDC] = _K_ARRAY, 2
    kind[0xDD], size[0xDD] = _K_ARRAY, 4
    kind[0xDE], size[0xDE] = _K_MAP, 2
    kind[0xDF], size[0xDF] = _K_MAP, 4
    return kind, size


_K_SCALAR, _K_SIZED, _K_FIXARRAY, _K_FIXMAP, _K_ARRAY, _K_MAP = range(6)
_KIND, _SIZE = _kinds()
_EXT: Final = frozenset((0xC7, 0xC8, 0xC9))  # a type byte follows the length


def _msgpack_duplicate(data: bytes) -> tuple[Any, str] | None:
    """The first map key that appears twice in one map of ``data``, with that map's
    path, or None.

    The slow path of :func:`decode_body`, one pass over the wire headers in Python at
    about the cost of the codec's own type walk (``bench/validation.py``).  A str key
    is compared by its UTF-8 bytes (msgspec has validated them, and valid UTF-8 is
    unique per string); any other key is decoded with msgspec and compared as the
    decoded dict compares it (``1``, ``1.0`` and ``True`` are one key).  ``data`` has
    already been decoded once by msgspec, so it is well formed.
    """
    kinds, sizes = _KIND, _SIZE
    # One frame per open container: [elements left, keys seen (None: an array),
    # elements in all, the last key read].  The path is rebuilt from them on a hit.
    stack: list[list[Any]] = []
    pos, end = 0, len(data)
    while pos < end:
        if stack:
            frame = stack[-1]
            while frame[0] == 0:
                stack.pop()
                if not stack:
                    return None  # trailing bytes: not msgpack msgspec would accept
                frame = stack[-1]
            left = frame[0]
            seen = frame[1]
            if seen is None:
                # An array: step over a run of scalars in a tight loop (an array of
                # a million numbers is the cheapest way to make this walk expensive).
                while left:
                    b = data[pos]
                    kind = kinds[b]
                    if kind == _K_SCALAR:
                        pos += sizes[b]
                    elif kind == _K_SIZED:
                        width = sizes[b]
                        length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
                        pos += 1 + width + length + (1 if b in _EXT else 0)
                    else:
                        break
                    left -= 1
                frame[0] = left
                if not left:
                    continue
            frame[0] = left - 1
            if seen is not None and not left & 1:  # an even count left: a key comes
                b = data[pos]
                if 0xA0 <= b <= 0xBF:
                    after = pos + 1 + (b & 0x1F)
                    key: Any = data[pos + 1 : after]
                elif 0xD9 <= b <= 0xDB:
                    width = sizes[b]
                    start = pos + 1 + width
                    after = start + int.from_bytes(data[pos + 1 : start], "big")
                    key = data[start:after]
                else:  # not a str: compare as the decoded dict does
                    after = _skip(data, pos)
                    key = ("", _msgpack_decode_one(data[pos:after]))
                try:
                    if key in seen:
                        return _shown_key(key), _path(stack[:-1])
                    seen.add(key)
                except TypeError:  # unhashable: msgspec would not have decoded it
                    pass
                frame[3] = key
                pos = after
                continue
        b = data[pos]
        kind = kinds[b]
        if kind == _K_SCALAR:
            pos += sizes[b]
        elif kind == _K_SIZED:
            width = sizes[b]
            length = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
            pos += 1 + width + length + (1 if b in _EXT else 0)
        else:
            if kind in (_K_FIXARRAY, _K_FIXMAP):
                count = b & 0x0F
                pos += 1
            else:
                width = sizes[b]
                count = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
                pos += 1 + width
            if count:
                if kind in (_K_FIXMAP, _K_MAP):
                    stack.append([2 * count, set(), 2 * count, None])
                else:
                    stack.append([count, None, count, None])
    return None


def _shown_key(key: Any) -> Any:
    if type(key) is bytes:
        return key.decode("utf-8", "replace")
    return key[1]


def _path(frames: list[list[Any]]) -> str:
    """The path of the container the innermost frame reads, from its ancestors."""
    out = ["$"]
    for left, seen, total, last in frames:
        if seen is None:
            out.append(f"[{total - left - 1}]")
        else:
            out.append(f"[{_shown_key(last)!r}]")
    return "".join(out)


def _check_msgpack_maps(data: bytes, value: Any, field: str) -> None:
    """Refuse a msgpack body with a duplicate map key, as JSON bodies are refused.

    msgspec keeps the last value silently.  Fast path: re-encode the decoded value and
    compare bytes.  If they are equal, the body parses like the re-encoding, whose
    map headers count the decoded dicts' entries, so no map lost an entry.  msgspec
    writes canonical msgpack, so every body from the Python client (and most other
    encoders) takes this path: one encode and a memcmp (about 1 µs for a 400-byte
    value; `bench/validation.py`, docs/configuration.md "Values").  Otherwise the exact
    walk of the wire headers decides.
    """
    if type(value) is not dict and type(value) is not list:
        return  # a scalar has no map
    if _msgpack_encode(value) == data:
        return
    dup = _msgpack_duplicate(data)
    if dup is not None:
        key, where = dup
        raise InvalidRequest(field, f"has a duplicate map key {key!r} in the map at {where}")


def decode_body(data: bytes, content_type: str, field: str = "body") -> Any:
    """Decode a request or response body; any malformation is ``InvalidRequest(field)``.

    JSON objects with a duplicate name are refused (RFC 8259 leaves them undefined,
    I-JSON forbids them): a store must not silently keep one of two values.  msgspec
    has no hook for that, so bodies that contain an object go through the stdlib
    parser with an ``object_pairs_hook`` — after msgspec has validated the syntax,
    UTF-8 and number ranges fast.
    """
    if content_type in MSGPACK_TYPES:
        try:
            value = _msgpack_decoder.decode(data)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            raise InvalidRequest(field, f"is not valid msgpack: {exc}") from None
        _check_msgpack_maps(data, value, field)
        return value
    try:
        value = _json_decoder.decode(data)
    except RecursionError:
        raise InvalidRequest(field, "nests too deeply") from None
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        text = str(exc)
        if text.startswith("Number out of range"):
            # 1e999 would be an infinity: refused like NaN on every path (codec.py).
            where = text.partition(" - at ")[2].strip("`") or "$"
            raise InvalidRequest(
                field,
                f"has a non-finite float at {where} (a number out of range reads as "
                f"infinity): {NON_FINITE_WHY}",
            ) from None
        if b"NaN" in data or b"Infinity" in data:
            text += " (NaN and Infinity are not JSON; clawstate refuses non-finite numbers)"
        raise InvalidRequest(field, f"is not valid JSON: {text}") from None
    if b"{" in data and isinstance(value, dict | list) and _may_have_duplicates(data, value):
        try:
            value = json.loads(
                data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
            )
        except _DuplicateKey as exc:
            raise InvalidRequest(field, f"has a duplicate object name {exc.args[0]!r}") from None
        except RecursionError:
            raise InvalidRequest(field, "nests too deeply") from None
        except ValueError as exc:
            raise InvalidRequest(field, f"is not valid JSON: {exc}") from None
    return value


# -- keys and etags in URLs and headers ------------------------------------------------

_SAFE = re.compile(r"[A-Za-z0-9_~-]")


def quote_key(key: str) -> str:
    """Percent-encode a key as ONE path segment.

    Every byte but unreserved letters, digits, ``-``, ``_`` and ``~`` is escaped —
    ``/`` so the key stays one segment, and ``.`` so that ``.`` and ``..`` keys are
    not "normalised" away by HTTP libraries.  The server routes on the raw path and
    decodes the segment itself (see :func:`unquote_key`).
    """
    out: list[str] = []
    for ch in key:
        if _SAFE.match(ch):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def unquote_key(segment: str) -> str:
    """Decode one percent-encoded path segment; invalid UTF-8 is ``InvalidRequest(key)``."""
    if "%" not in segment:
        return segment
    raw = bytearray()
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        if ch == "%" and i + 3 <= n and _is_hex(segment[i + 1 : i + 3]):
            raw.append(int(segment[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(ch.encode("utf-8", "surrogateescape"))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("key", "is not valid UTF-8 once percent-decoded") from None


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def format_etag(etag: str) -> str:
    return f'"{etag}"'


def parse_etag(header: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match header (``*`` kept as is)."""
    tags: list[str] = []
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        if len(part) >= 2 and part[0] == part[-1] == '"':
            part = part[1:-1]
        if part:
            tags.append(part)
    return tags
