"""Turn values into stored bytes and back: serialize · compress · encrypt.

Every value a backend stores goes through :class:`Codec`.  The stored bytes
start with a small header that says exactly how they were produced, and
:meth:`Codec.decode` reads *only* that header to decide what to do.  The
policy (serializer, compression threshold, encryption) therefore only affects
new writes: values written under yesterday's policy stay readable after the
policy changes, and a store can hold a mix of them.

Layout (all lengths are single bytes)::

    byte 0   format version (HEADER_VERSION = 1)
    byte 1   flags: bits 0-1 serializer (0 raw bytes, 1 msgpack, 2 json)
                    bit 2 zstd-compressed, bit 3 encrypted, bits 4-7 zero
    -- only when encrypted --
    kid_len, kid (utf-8)                 which KEK wraps the DEK
    wdek_len, wrapped DEK                12-byte nonce + AES-GCM(KEK, DEK),
                                         AAD b"clawstate-dek\\0" + kid
    12-byte nonce
    -- then --
    payload                              serialized (then zstd) bytes; when
                                         encrypted AES-256-GCM(DEK, ·) with
                                         AAD = bytes 0-1 + namespace + b"\\0" + key

Why this shape:

* **Per-value DEK, wrapped by a KEK** (envelope encryption).  Rotating a KEK
  means re-wrapping 60 bytes per value (:meth:`Codec.rewrap`), never
  re-encrypting payloads.  That is also why the payload AAD covers the two
  fixed header bytes, the namespace and the key but *not* the kid or wrapped
  DEK: those change on rotation, and they are authenticated by the KEK anyway.
  Binding namespace and key means a ciphertext copied to another key fails
  authentication instead of decoding as the wrong value.  Because each DEK
  encrypts exactly one payload, its random nonce can never repeat under it;
  the KEK sees one random nonce per write, so rotate KEKs well before 2**32
  writes each.
* **Compress, then encrypt** (ciphertext does not compress).  Compression
  leaks a little about the plaintext through the stored length; values that
  mix secrets with attacker-chosen text should use ``compress_above=None``.
* **Strict values.**  Values are JSON-compatible (dict with str keys, list,
  str, int, float, bool, None) or top-level bytes, which are stored raw.  The
  serializers would otherwise quietly turn a set into a list, a datetime into
  a string or NaN into null; a store that hands back something other than
  what it was given is worse than one that refuses, so anything that would not
  come back identical is an :class:`~clawstate.errors.InvalidRequest`.
  Non-finite floats (NaN, ±infinity) are refused under *every* serializer:
  msgpack could keep them, but the same value must read the same over every
  transport, and a JSON reader (HTTP, the CLI, jsonb) would see ``null``.  The
  check costs one float comparison in the walk below, which runs anyway.
* **Failures are loud.**  A bad header, a failed authentication tag, an
  unknown kid or a corrupt compressed frame is an
  :class:`~clawstate.errors.IntegrityError`; decode never returns wrong data.

Unencrypted encode/decode is the hot path of every put and get, so it avoids
per-call allocation: module-level msgspec encoders and decoders, per-thread
zstd contexts (they are not thread-safe, and creating one costs ~8 µs against
~1 µs to reuse it), precomputed header bytes, and a type walker that only
recurses into containers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

import msgspec
import zstandard

from clawstate.backends.base import NO_DOCUMENT
from clawstate.errors import ConfigError, IntegrityError, InvalidRequest
from clawstate.keyring import Keyring

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _aesgcm(key: bytes) -> AESGCM:
    """AES-256-GCM for ``key``; ``cryptography`` is imported on first use, so stores
    that never encrypt do not pay its import time and memory."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


__all__ = [
    "HEADER_VERSION",
    "MAX_DEPTH",
    "Codec",
    "CodecPolicy",
    "HeaderInfo",
    "is_encrypted",
    "sealed_key_id",
    "stored_form",
]

#: Format version written in byte 0 of every stored value.
HEADER_VERSION: Final = 1

#: Deepest nesting of dicts/lists a value may have.  msgspec decodes with the C
#: stack and Python's recursion limit, so a value that is too deep for the
#: reader's stack would be stored but unreadable; refuse it on write instead.
MAX_DEPTH: Final = 256

_SER_RAW: Final = 0
_SER_MSGPACK: Final = 1
_SER_JSON: Final = 2
_SER_MASK: Final = 0b0011
_F_ZSTD: Final = 0b0100
_F_ENC: Final = 0b1000
_F_KNOWN: Final = _SER_MASK | _F_ZSTD | _F_ENC
_SerializerName = Literal["raw", "msgpack", "json"]
_SER_NAMES: Final[tuple[_SerializerName, ...]] = ("raw", "msgpack", "json")

_NONCE_BYTES: Final = 12
_DEK_BYTES: Final = 32
_TAG_BYTES: Final = 16
_DEK_AAD: Final = b"clawstate-dek\0"

#: ``_PREFIX[flags]`` is the two fixed header bytes for those flags.
_PREFIX: Final = tuple(bytes((HEADER_VERSION, flags)) for flags in range(16))

_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 64) - 1
_INF: Final = float("inf")

#: AES-GCM in ``cryptography`` takes at most 2**31 - 1 bytes per call.
_MAX_VALUE_LIMIT: Final = (1 << 31) - 1 - _TAG_BYTES

_ZSTD_MIN_LEVEL: Final = -(1 << 17)

# msgspec encoders/decoders are immutable after construction and safe to share.
_MSGPACK_ENC: Final = msgspec.msgpack.Encoder()
_MSGPACK_DEC: Final = msgspec.msgpack.Decoder()
_JSON_ENC: Final = msgspec.json.Encoder()
_JSON_DEC: Final = msgspec.json.Decoder()

_DECODERS: Final[tuple[Callable[[Any], Any] | None, ...]] = (
    None,
    _MSGPACK_DEC.decode,
    _JSON_DEC.decode,
    None,
)


class CodecPolicy(msgspec.Struct, frozen=True):
    """How *new* values are written.  Reading never consults the policy.

    ``compress_above`` is a byte count: payloads serialized to more than this
    many bytes are zstd-compressed (at ``compression_level``), unless the
    result would not be smaller; ``None`` never compresses.
    """

    serializer: Literal["msgpack", "json"] = "msgpack"
    compress_above: int | None = 4096
    compression_level: int = 3
    encrypt: bool = False

    def __post_init__(self) -> None:
        if self.serializer not in ("msgpack", "json"):
            raise ConfigError(
                "codec.serializer",
                f"unknown serializer {self.serializer!r}; use 'msgpack' or 'json'",
            )
        above = self.compress_above
        if above is not None and (type(above) is not int or above < 0):
            raise ConfigError(
                "codec.compress_above",
                f"must be a byte count >= 0 or None, not {above!r}",
            )
        level = self.compression_level
        if (
            type(level) is not int
            or not _ZSTD_MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL
        ):
            raise ConfigError(
                "codec.compression_level",
                f"must be an integer from {_ZSTD_MIN_LEVEL} to "
                f"{zstandard.MAX_COMPRESSION_LEVEL}, not {level!r}",
            )
        if type(self.encrypt) is not bool:
            raise ConfigError("codec.encrypt", f"must be true or false, not {self.encrypt!r}")


class HeaderInfo(TypedDict):
    """What :meth:`Codec.describe` reports about a stored value."""

    version: int
    serializer: _SerializerName
    compressed: bool
    encrypted: bool
    kid: str | None
    stored_bytes: int


# -- per-thread zstd contexts -------------------------------------------------------

_tls = threading.local()


def _compressor(level: int) -> Any:
    try:
        cache: dict[int, Any] = _tls.cctx
    except AttributeError:
        cache = _tls.cctx = {}
    cctx = cache.get(level)
    if cctx is None:
        # The checksum costs little and turns a corrupt frame into an error
        # instead of plausible garbage.
        cctx = cache[level] = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        )
    return cctx


def _decompressor() -> Any:
    try:
        return _tls.dctx
    except AttributeError:
        dctx = _tls.dctx = zstandard.ZstdDecompressor()
        return dctx


# -- value validation ---------------------------------------------------------------


class _Reject(Exception):
    """Internal: a value is not storable.  ``path`` is filled in while unwinding."""

    def __init__(self, reason: str, culprit: object, *, non_finite: bool = False) -> None:
        self.reason = reason
        self.culprit = culprit
        self.non_finite = non_finite
        self.path: list[str] = []


#: Why a value with NaN or an infinity is refused (see "Strict values" above).
NON_FINITE_WHY: Final = (
    "clawstate refuses NaN and infinities on every path, because JSON cannot carry them "
    "(a JSON reader would get null); store None, a string or a sentinel instead"
)


def _type_name(obj: object) -> str:
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _problem(x: object, json: bool) -> str | None:
    """Why leaf ``x`` cannot be stored (None if it can).  Off the fast path."""
    tx = type(x)
    if tx is str or tx is bool or x is None:
        return None
    if tx is int:
        if _INT_MIN <= x <= _INT_MAX:  # type: ignore[operator]
            return None
        return "is an integer outside the 64-bit range [-2**63, 2**64-1]"
    if tx is float:
        if not -_INF < x < _INF:  # type: ignore[operator]
            raise _Reject(f"({x!r})", x, non_finite=True)
        return None
    if tx is bytes or tx is bytearray or tx is memoryview:
        if json:
            return (
                "is bytes, which the json serializer cannot store (only a top-level bytes "
                "value is stored raw); use the msgpack serializer or base64-encode it"
            )
        return None
    return f"is not JSON-compatible: {_type_name(x)}"


def _walk(v: dict[Any, Any] | list[Any], json: bool, depth: int) -> None:
    """Check a container; raise :class:`_Reject` naming the first bad element.

    Only exact ``str``/``int``/``float``/``bool``/``None``/``dict``/``list`` pass
    (plus bytes for msgpack): subclasses such as ``IntEnum`` or ``OrderedDict``
    would come back as their base type.  The common leaves are tested inline
    so that only containers cost a call.
    """
    if depth > MAX_DEPTH:
        raise _Reject(f"nests deeper than {MAX_DEPTH} levels", v)
    items: Any
    if type(v) is dict:
        for k in v:
            if type(k) is not str:
                raise _Reject(
                    f"has a key that is not JSON-compatible: {_type_name(k)} "
                    "(object keys must be str)",
                    v,
                )
        items = v.values()
    else:
        items = v
    try:
        for x in items:
            tx = type(x)
            if tx is str:
                continue
            if tx is int:
                if _INT_MIN <= x <= _INT_MAX:
                    continue
            elif tx is float:
                if -_INF < x < _INF:  # NaN fails both comparisons
                    continue
            elif tx is dict or tx is list:
                _walk(x, json, depth + 1)
                continue
            elif tx is bool or x is None:
                continue
            reason = _problem(x, json)
            if reason is not None:
                raise _Reject(reason, x)
    except _Reject as exc:
        if exc.culprit is not v:
            exc.path.append(_locate(v, exc.culprit))
            exc.culprit = v
        raise


def _locate(container: dict[Any, Any] | list[Any], child: object) -> str:
    """Path step from ``container`` to ``child`` (by identity), for error messages."""
    if type(container) is dict:
        for k, x in container.items():
            if x is child:
                return f".{k}" if k.isidentifier() else f"[{k!r}]"
    else:
        for i, x in enumerate(container):
            if x is child:
                return f"[{i}]"
    return "[?]"  # pragma: no cover - the child came from this container


def _validate(value: object, json: bool) -> None:
    """Raise :class:`InvalidRequest` unless ``value`` would round-trip unchanged."""
    t = type(value)
    try:
        if t is dict or t is list:
            _walk(value, json, 1)  # type: ignore[arg-type]
            return
        reason = _problem(value, json)
        if reason is not None:
            raise _Reject(reason, value)
    except _Reject as exc:
        steps = exc.path[::-1]
        where = "$" + "".join(steps) if len(steps) <= 12 else "$…" + "".join(steps[-12:])
        if exc.non_finite:
            raise InvalidRequest(
                "value", f"value has a non-finite float at {where} {exc.reason}: {NON_FINITE_WHY}"
            ) from None
        raise InvalidRequest("value", f"value at {where} {exc.reason}") from None
    except RecursionError:
        raise InvalidRequest("value", "value nests too deeply to store") from None


# -- the codec ----------------------------------------------------------------------


def _aad_tail(namespace: str, key: str) -> bytes:
    """The namespace/key part of the payload AAD (the header bytes go in front)."""
    if "\0" in namespace:
        # b"a\0b" + b"\0" + b"c" == b"a" + b"\0" + b"b\0c": a NUL would make the
        # binding ambiguous.
        raise InvalidRequest("namespace", "must not contain NUL characters")
    try:
        return namespace.encode() + b"\0" + key.encode()
    except UnicodeEncodeError:
        raise InvalidRequest(
            "key", "namespace and key must be valid Unicode (no lone surrogates)"
        ) from None


class _Header:
    """A parsed encrypted header (off the hot path, so a plain class is fine)."""

    __slots__ = ("flags", "kid", "kid_raw", "nonce_at", "wrapped")

    def __init__(self, flags: int, kid_raw: bytes, kid: str, wrapped: bytes, nonce_at: int):
        self.flags = flags
        self.kid_raw = kid_raw
        self.kid = kid
        self.wrapped = wrapped
        self.nonce_at = nonce_at


def _parse_flags(data: bytes) -> int:
    if len(data) < 2:
        raise IntegrityError(f"stored value is {len(data)} bytes, too short for a header")
    if data[0] != HEADER_VERSION:
        raise IntegrityError(
            f"stored value has format version {data[0]}; this clawstate reads "
            f"version {HEADER_VERSION}"
        )
    flags = data[1]
    if flags & ~_F_KNOWN or (flags & _SER_MASK) == 3:
        raise IntegrityError(f"stored value has unknown header flags 0x{flags:02x}")
    return flags


def _parse_encrypted(data: bytes, flags: int) -> _Header:
    """Parse the kid / wrapped-DEK / nonce part of an encrypted header."""
    n = len(data)
    pos = 2
    if pos >= n:
        raise IntegrityError("encrypted value is truncated in its header")
    kid_len = data[pos]
    kid_raw = bytes(data[pos + 1 : pos + 1 + kid_len])
    pos += 1 + kid_len
    if kid_len == 0 or pos >= n:
        raise IntegrityError("encrypted value has a truncated or empty key id")
    try:
        kid = kid_raw.decode()
    except UnicodeDecodeError:
        raise IntegrityError("encrypted value has a key id that is not utf-8") from None
    wrapped_len = data[pos]
    wrapped = bytes(data[pos + 1 : pos + 1 + wrapped_len])
    pos += 1 + wrapped_len
    if wrapped_len < _NONCE_BYTES + _TAG_BYTES or pos + _NONCE_BYTES + _TAG_BYTES > n:
        raise IntegrityError("encrypted value is truncated in its wrapped data key or payload")
    return _Header(flags, kid_raw, kid, wrapped, pos)


class Codec:
    """Encodes values for storage under a :class:`CodecPolicy`; decodes anything.

    One codec is shared by every thread of a store.  ``max_value_bytes`` bounds
    the serialized size on write and the decompressed size on read.
    """

    __slots__ = (
        "_compress_above",
        "_encrypt",
        "_json",
        "_kek_cache",
        "_keyring",
        "_level",
        "_max",
        "_on_seal",
        "_policy",
        "_ser_flag",
        "_serialize",
    )

    def __init__(
        self,
        policy: CodecPolicy,
        keyring: Keyring | None = None,
        *,
        max_value_bytes: int = 16 * 1024 * 1024,
        on_seal: Callable[[str], None] | None = None,
    ) -> None:
        """``on_seal(kid)`` runs before every data key is wrapped under key ``kid``
        (encode and :meth:`rewrap`): the store records there, durably, which key ids
        its values need, *before* the first value sealed under a new one exists.  If
        it raises, nothing is sealed."""
        if type(max_value_bytes) is not int or not 0 < max_value_bytes <= _MAX_VALUE_LIMIT:
            raise ConfigError(
                "max_value_bytes",
                f"must be an integer from 1 to {_MAX_VALUE_LIMIT}, not {max_value_bytes!r}",
            )
        if policy.encrypt and keyring is None:
            raise ConfigError("keyring", "the codec policy encrypts values but no keyring is set")
        self._policy = policy
        self._keyring = keyring
        self._on_seal = on_seal
        self._max = max_value_bytes
        self._json = policy.serializer == "json"
        self._ser_flag = _SER_JSON if self._json else _SER_MSGPACK
        self._serialize = _JSON_ENC.encode if self._json else _MSGPACK_ENC.encode
        above = policy.compress_above
        self._compress_above = _MAX_VALUE_LIMIT + 1 if above is None else above
        self._level = policy.compression_level
        self._encrypt = policy.encrypt
        # kid -> (the key object it was built from, its AESGCM); ~0.7 µs saved per call.
        self._kek_cache: dict[str, tuple[bytes, AESGCM]] = {}

    @property
    def policy(self) -> CodecPolicy:
        return self._policy

    @property
    def keyring(self) -> Keyring | None:
        return self._keyring

    @property
    def max_value_bytes(self) -> int:
        return self._max

    def __repr__(self) -> str:
        return f"Codec({self._policy!r}, keyring={self._keyring!r}, max_value_bytes={self._max})"

    # -- encode ---------------------------------------------------------------------

    def encode(self, namespace: str, key: str, value: Any) -> bytes:
        """The stored bytes for ``value`` (header + payload).

        Raises :class:`InvalidRequest` (field ``value``) for values that are not
        JSON-compatible, that contain NaN or an infinity (refused under every
        serializer), that the json serializer cannot store exactly (nested
        bytes), or whose serialized size exceeds
        ``max_value_bytes``.
        """
        t = type(value)
        if t is bytes:
            payload: bytes = value
            flags = _SER_RAW
        elif t is bytearray or t is memoryview or isinstance(value, bytes | bytearray | memoryview):
            payload = bytes(value)
            flags = _SER_RAW
        else:
            _validate(value, self._json)
            try:
                payload = self._serialize(value)
            except UnicodeEncodeError:
                raise InvalidRequest(
                    "value", "value contains a string that is not valid Unicode (lone surrogate)"
                ) from None
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                # _validate should have caught it; never let a serializer error escape.
                raise InvalidRequest("value", f"value cannot be serialized: {exc}") from None
            flags = self._ser_flag
        size = len(payload)
        if size > self._max:
            raise InvalidRequest(
                "value",
                f"value is {size} bytes serialized; the limit is {self._max}",
                limit=self._max,
            )
        if size > self._compress_above:
            packed = _compressor(self._level).compress(payload)
            if len(packed) < size:
                payload = packed
                flags |= _F_ZSTD
        if not self._encrypt:
            return _PREFIX[flags] + payload
        return self._seal(namespace, key, flags | _F_ENC, payload)

    def encode_document(self, namespace: str, key: str, value: Any) -> tuple[bytes, Any]:
        """:meth:`encode`, plus the document those bytes store *in plaintext*: ``value``
        itself when it is serialized as msgpack or JSON and not encrypted, else
        :data:`~clawstate.backends.base.NO_DOCUMENT`.

        For backends that keep a queryable copy of values (PostgreSQL's ``jsonb``):
        they get the document the codec already had instead of decoding their own
        bytes again (~4 µs per put measured, docs/backends.md).  An encrypted value's
        document is never handed out — that is the codec's decision, here, not the
        caller's.  The value was validated by :meth:`encode`: JSON-compatible, no
        NaN or infinity (nested bytes are possible under msgpack: the backend checks).
        """
        data = self.encode(namespace, key, value)
        if self._encrypt or data[1] & _SER_MASK == _SER_RAW:
            return data, NO_DOCUMENT
        return data, value

    def _kek(self, kid: str) -> AESGCM:
        keyring = self._keyring
        if keyring is None:
            raise IntegrityError(
                f"value is encrypted under key id {kid!r} but this codec has no keyring"
            )
        kek = keyring.get(kid)
        cached = self._kek_cache.get(kid)
        if cached is not None and cached[0] is kek:
            return cached[1]
        aead = _aesgcm(kek)
        self._kek_cache[kid] = (kek, aead)
        return aead

    def _wrap(self, dek: bytes, nonce: bytes) -> tuple[bytes, bytes]:
        """``(kid_raw, wrapped)`` for ``dek`` under the primary KEK."""
        assert self._keyring is not None
        kid = self._keyring.primary_id
        if self._on_seal is not None:
            self._on_seal(kid)
        kid_raw = kid.encode()
        wrapped = nonce + self._kek(kid).encrypt(nonce, dek, _DEK_AAD + kid_raw)
        return kid_raw, wrapped

    def _seal(self, namespace: str, key: str, flags: int, payload: bytes) -> bytes:
        head = _PREFIX[flags]
        aad = head + _aad_tail(namespace, key)
        rnd = os.urandom(_DEK_BYTES + 2 * _NONCE_BYTES)
        dek = rnd[:_DEK_BYTES]
        nonce = rnd[_DEK_BYTES + _NONCE_BYTES :]
        kid_raw, wrapped = self._wrap(dek, rnd[_DEK_BYTES : _DEK_BYTES + _NONCE_BYTES])
        body = _aesgcm(dek).encrypt(nonce, payload, aad)
        return b"".join(
            (head, bytes((len(kid_raw),)), kid_raw, bytes((len(wrapped),)), wrapped, nonce, body)
        )

    # -- decode ---------------------------------------------------------------------

    def decode(self, namespace: str, key: str, data: bytes) -> Any:
        """The value stored in ``data``, however it was written.

        Raises :class:`IntegrityError` for a bad header, a failed
        authentication (tampering, or bytes stored under another namespace or
        key), an unknown key id, a corrupt payload, or a compressed payload
        that would expand past ``max_value_bytes``.
        """
        if len(data) >= 2 and data[0] == HEADER_VERSION and data[1] == _SER_MSGPACK:
            # Fast path: plain msgpack, the default policy for small values.
            try:
                return _MSGPACK_DEC.decode(data[2:])
            except msgspec.DecodeError as exc:
                raise IntegrityError(f"stored value {namespace}/{key} is corrupt: {exc}") from None
        flags = _parse_flags(data)
        if flags & _F_ENC:
            hdr = _parse_encrypted(data, flags)
            dek = self._unwrap(namespace, key, hdr)
            payload = self._open(namespace, key, data, hdr, dek)
        else:
            payload = data[2:]
        return self._finish(namespace, key, flags, payload)

    def _open(self, namespace: str, key: str, data: bytes, hdr: _Header, dek: bytes) -> bytes:
        """Decrypt the payload with ``dek``; IntegrityError on any failure."""
        nonce_at = hdr.nonce_at
        nonce = bytes(data[nonce_at : nonce_at + _NONCE_BYTES])
        body = data[nonce_at + _NONCE_BYTES :]
        aad = _PREFIX[hdr.flags] + _aad_tail(namespace, key)
        try:
            return _aesgcm(dek).decrypt(nonce, body, aad)
        except _invalid_tag():
            raise IntegrityError(
                f"stored value {namespace}/{key} failed authentication: it was tampered "
                "with, corrupted, or belongs to another namespace/key"
            ) from None

    def _unwrap(self, namespace: str, key: str, hdr: _Header) -> bytes:
        aead = self._kek(hdr.kid)
        wrapped = hdr.wrapped
        try:
            dek = aead.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _DEK_AAD + hdr.kid_raw
            )
        except _invalid_tag():
            raise IntegrityError(
                f"stored value {namespace}/{key}: its data key failed authentication under "
                f"key id {hdr.kid!r} (tampered, or the key for that id was replaced)"
            ) from None
        if len(dek) != _DEK_BYTES:
            raise IntegrityError(f"stored value {namespace}/{key}: wrapped data key is malformed")
        return dek

    def _finish(self, namespace: str, key: str, flags: int, payload: Any) -> Any:
        """Decompress (bounded) and deserialize a plaintext payload."""
        if flags & _F_ZSTD:
            payload = self._decompress(namespace, key, payload)
        ser = flags & _SER_MASK
        if ser == _SER_RAW:
            return bytes(payload)
        decoder = _DECODERS[ser]
        assert decoder is not None
        try:
            return decoder(payload)
        except msgspec.DecodeError as exc:
            raise IntegrityError(f"stored value {namespace}/{key} is corrupt: {exc}") from None

    def _decompress(self, namespace: str, key: str, payload: Any) -> bytes:
        """zstd-decompress, refusing to allocate more than ``max_value_bytes``.

        We always write the content size into the frame, so a frame without
        one, or declaring more than the limit, is refused *before* any output
        is allocated (``ZstdDecompressor.decompress`` otherwise trusts the
        declared size and ignores ``max_output_size``).  It is an
        IntegrityError, not an InvalidRequest: the reader asked for nothing
        wrong and cannot fix it by asking differently, while the stored bytes
        are either corrupt or hostile (encode never stores more than the limit)
        — or were written before ``max_value_bytes`` was lowered, which the
        message says.
        """
        try:
            declared = zstandard.frame_content_size(payload)
        except zstandard.ZstdError:
            raise IntegrityError(
                f"stored value {namespace}/{key} has a corrupt compressed frame header"
            ) from None
        if declared < 0:
            raise IntegrityError(
                f"stored value {namespace}/{key}: compressed frame does not declare its size"
            )
        if declared > self._max:
            raise IntegrityError(
                f"stored value {namespace}/{key} decompresses to {declared} bytes, past "
                f"max_value_bytes={self._max}; refusing (raise the limit if it was lowered "
                "since the value was written)"
            )
        try:
            out: bytes = _decompressor().decompress(payload, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise IntegrityError(
                f"stored value {namespace}/{key} has a corrupt compressed payload: {exc}"
            ) from None
        return out

    # -- rotation and inspection ----------------------------------------------------

    def rewrap(self, namespace: str, key: str, data: bytes) -> bytes | None:
        """``data`` with its DEK re-wrapped under the keyring's primary KEK.

        Returns None when there is nothing to do: the value is not encrypted,
        or its DEK is already wrapped under the primary.  The payload
        ciphertext is reused byte for byte; it is decrypted once (and
        discarded) so that a corrupt or misplaced value raises
        :class:`IntegrityError` here instead of being blessed with a fresh
        wrapping.  Works from the header alone: the policy is not consulted.
        """
        flags = _parse_flags(data)
        if not flags & _F_ENC:
            return None
        hdr = _parse_encrypted(data, flags)
        if self._keyring is not None and hdr.kid == self._keyring.primary_id:
            return None
        dek = self._unwrap(namespace, key, hdr)
        self._open(namespace, key, data, hdr, dek)  # verify before re-wrapping
        kid_raw, wrapped = self._wrap(dek, os.urandom(_NONCE_BYTES))
        return b"".join(
            (
                _PREFIX[flags],
                bytes((len(kid_raw),)),
                kid_raw,
                bytes((len(wrapped),)),
                wrapped,
                data[hdr.nonce_at :],
            )
        )

    def describe(self, data: bytes) -> HeaderInfo:
        """The header fields of ``data``; :class:`IntegrityError` if the header is bad.

        Checks structure only: it does not authenticate or decompress.
        """
        flags = _parse_flags(data)
        kid = _parse_encrypted(data, flags).kid if flags & _F_ENC else None
        return {
            "version": data[0],
            "serializer": _SER_NAMES[flags & _SER_MASK],
            "compressed": bool(flags & _F_ZSTD),
            "encrypted": bool(flags & _F_ENC),
            "kid": kid,
            "stored_bytes": len(data),
        }


def stored_form(data: bytes) -> tuple[_SerializerName, bool, bool] | None:
    """``(serializer, compressed, encrypted)`` from the two fixed header bytes of stored
    ``data``, or None when they are not this codec's header.  Reads nothing else.

    For backends that derive something from plaintext values (PostgreSQL's ``jsonb``
    copy) without re-declaring the header's bit layout, which is this module's alone.
    """
    if len(data) < 2 or data[0] != HEADER_VERSION or data[1] & ~_F_KNOWN:
        return None
    flags = data[1]
    return _SER_NAMES[flags & _SER_MASK], bool(flags & _F_ZSTD), bool(flags & _F_ENC)


def sealed_key_id(data: bytes) -> str | None:
    """The id of the key that wraps ``data``'s data key, or None when ``data`` is not
    encrypted; :class:`IntegrityError` if the header is bad.  Reads only the header
    (the store's one-time survey of values written before key ids were recorded)."""
    flags = _parse_flags(data)
    return _parse_encrypted(data, flags).kid if flags & _F_ENC else None


def is_encrypted(data: bytes) -> bool:
    """Whether stored ``data`` is encrypted; :class:`IntegrityError` if the header is bad.

    Reads only the two fixed header bytes.
    """
    return bool(_parse_flags(data) & _F_ENC)
