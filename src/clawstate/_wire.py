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

from .errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    Forbidden,
    IntegrityError,
    InvalidRequest,
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
REQUEST_ID: Final = "x-request-id"


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


class ItemsByKey(msgspec.Struct):
    items: dict[str, Item]


class ItemsMeta(msgspec.Struct):
    items: list[ItemMeta]


class TxWrite(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One buffered write of a transaction, replayed by the server in order."""

    op: Literal["put", "delete"]
    namespace: Any
    key: Any
    value: Any = None
    ttl: Any = None
    if_version: Any = None
    if_absent: Any = False


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
        IntegrityError,
        ConfigError,
        NotFound,
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
            return _msgpack_decoder.decode(data)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            raise InvalidRequest(field, f"is not valid msgpack: {exc}") from None
    try:
        value = _json_decoder.decode(data)
    except RecursionError:
        raise InvalidRequest(field, "nests too deeply") from None
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(field, f"is not valid JSON: {exc}") from None
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
