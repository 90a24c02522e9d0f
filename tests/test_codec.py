"""Codec: round trips, the stored-value header, strict values, and tamper detection."""

from __future__ import annotations

import collections
import datetime
import enum
import math
import os
import threading
from typing import Any

import msgspec
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawstate.codec import HEADER_VERSION, MAX_DEPTH, Codec, CodecPolicy, is_encrypted
from clawstate.errors import ConfigError, IntegrityError, InvalidRequest
from clawstate.keyring import Keyring

MARKER = "PLAINTEXT-MARKER-7f3a"

SAMPLE: dict[str, Any] = {
    "id": 12345,
    "name": MARKER,
    "tags": ["a", "bb", "ccc"],
    "price": 19.99,
    "neg": -0.5,
    "active": True,
    "owner": None,
    "big": 2**64 - 1,
    "small": -(2**63),
    "meta": {"history": [{"at": i, "by": f"user{i}"} for i in range(5)], "empty": {}},
    "unicode": "héllo ☃ 🐙",
}


@pytest.fixture
def ring() -> Keyring:
    return Keyring.generate("k1")


def codec(ring: Keyring | None = None, *, max_value_bytes: int = 1 << 20, **policy: Any) -> Codec:
    return Codec(CodecPolicy(**policy), ring, max_value_bytes=max_value_bytes)


POLICIES = [
    {"serializer": s, "compress_above": c, "encrypt": e}
    for s in ("msgpack", "json")
    for c in (None, 0)
    for e in (False, True)
]


def _id(p: dict[str, Any]) -> str:
    return f"{p['serializer']}-{'zstd' if p['compress_above'] == 0 else 'plain'}" + (
        "-enc" if p["encrypt"] else ""
    )


# -- round trips --------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=_id)
@pytest.mark.parametrize(
    "value",
    [SAMPLE, None, True, False, 0, -1, 1.5, "", "text", [], {}, [1, [2, [3]]], {"": ""}],
)
def test_round_trip(ring: Keyring, policy: dict[str, Any], value: Any) -> None:
    c = codec(ring, **policy)
    data = c.encode("ns", "key", value)
    out = c.decode("ns", "key", data)
    assert out == value
    assert type(out) is type(value)
    info = c.describe(data)
    assert info["version"] == HEADER_VERSION
    assert info["serializer"] == policy["serializer"]
    assert info["encrypted"] is policy["encrypt"]
    assert info["kid"] == ("k1" if policy["encrypt"] else None)
    assert is_encrypted(data) is policy["encrypt"]


@pytest.mark.parametrize("policy", POLICIES, ids=_id)
@pytest.mark.parametrize("raw", [b"", b"\x00\xff" * 10, bytearray(b"abc"), memoryview(b"xyz")])
def test_bytes_values_stored_raw(ring: Keyring, policy: dict[str, Any], raw: Any) -> None:
    c = codec(ring, **policy)
    data = c.encode("ns", "key", raw)
    out = c.decode("ns", "key", data)
    assert type(out) is bytes
    assert out == bytes(raw)
    assert c.describe(data)["serializer"] == "raw"


def test_unencrypted_layout_is_two_header_bytes_then_payload() -> None:
    assert codec().encode("n", "k", SAMPLE) == b"\x01\x01" + msgspec.msgpack.encode(SAMPLE)
    assert codec(serializer="json").encode("n", "k", [1]) == b"\x01\x02[1]"
    assert codec().encode("n", "k", b"raw") == b"\x01\x00raw"


def test_encrypted_layout_matches_the_spec(ring: Keyring) -> None:
    """Decrypt by hand, following the documented layout, to pin the format."""
    data = codec(ring, encrypt=True).encode("ns", "key", SAMPLE)
    assert data[0] == 1
    assert data[1] == 0b1000 | 1
    pos = 2
    kid = data[pos + 1 : pos + 1 + data[pos]]
    pos += 1 + data[pos]
    assert kid == b"k1"
    wrapped = data[pos + 1 : pos + 1 + data[pos]]
    pos += 1 + data[pos]
    assert len(wrapped) == 12 + 32 + 16
    dek = AESGCM(ring.get("k1")).decrypt(wrapped[:12], wrapped[12:], b"clawstate-dek\0k1")
    nonce, body = data[pos : pos + 12], data[pos + 12 :]
    plain = AESGCM(dek).decrypt(nonce, body, data[:2] + b"ns\0key")
    assert msgspec.msgpack.decode(plain) == SAMPLE


def test_msgpack_allows_nested_bytes() -> None:
    c = codec()
    out = c.decode("n", "k", c.encode("n", "k", {"b": b"\x00\x01", "l": [bytearray(b"x")]}))
    assert out == {"b": b"\x00\x01", "l": [b"x"]}


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_every_serializer_refuses_non_finite_floats(serializer: str, bad: float) -> None:
    """One policy on every path (issue 10, item 8): msgpack could store NaN, but a JSON
    reader of the same value would get null, so it is refused under msgpack too."""
    c = codec(serializer=serializer)
    for value, where in ((bad, "$"), ([1, bad], "$[1]"), ({"a": {"b": bad}}, "$.a.b")):
        with pytest.raises(InvalidRequest) as info:
            c.encode("n", "k", value)
        assert info.value.field == "value"
        assert f"non-finite float at {where} " in str(info.value)


def test_values_stored_before_the_policy_still_read() -> None:
    """Stored values are not re-validated on read: a NaN written by an older version
    (msgpack) still decodes."""
    old = b"\x01\x01" + msgspec.msgpack.encode([float("nan"), float("inf")])
    out = codec().decode("n", "k", old)
    assert math.isnan(out[0]) and out[1] == float("inf")


def test_negative_zero_survives_json() -> None:
    c = codec(serializer="json")
    out = c.decode("n", "k", c.encode("n", "k", -0.0))
    assert math.copysign(1.0, out) == -1.0


# -- compression --------------------------------------------------------------------


def test_compression_threshold() -> None:
    c = codec(compress_above=100)
    small = c.encode("n", "k", "x" * 50)
    big = c.encode("n", "k", "x" * 5000)
    assert not c.describe(small)["compressed"]
    assert c.describe(big)["compressed"]
    assert len(big) < 200
    assert c.decode("n", "k", big) == "x" * 5000


def test_incompressible_payload_is_stored_uncompressed() -> None:
    c = codec(compress_above=0)
    raw = os.urandom(4096)
    data = c.encode("n", "k", raw)
    assert not c.describe(data)["compressed"]
    assert c.decode("n", "k", data) == raw


def test_compress_above_none_never_compresses() -> None:
    c = codec(compress_above=None)
    assert not c.describe(c.encode("n", "k", "x" * 100_000))["compressed"]


def test_decompression_bomb_refused_before_allocation() -> None:
    big = codec(compress_above=0, max_value_bytes=10_000_000).encode("n", "k", b"\0" * 5_000_000)
    assert len(big) < 1000
    small = codec(max_value_bytes=1_000_000)
    with pytest.raises(IntegrityError, match="decompresses to 5000000 bytes"):
        small.decode("n", "k", big)


def test_compressed_frame_without_size_is_refused() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"\x01\x02")
    with pytest.raises(IntegrityError, match="does not declare its size"):
        codec().decode("n", "k", bytes([1, 0b0100]) + frame)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[:-4],  # truncated
        lambda p: p + b"junk",  # trailing data
        lambda p: p[:8] + bytes([p[8] ^ 0xFF]) + p[9:],  # corrupt block
        lambda p: b"nope" + p[4:],  # bad magic
    ],
)
def test_corrupt_compressed_payload(mangle: Any) -> None:
    c = codec(compress_above=0)
    data = c.encode("n", "k", "hello world " * 100)
    assert c.describe(data)["compressed"]
    with pytest.raises(IntegrityError):
        c.decode("n", "k", data[:2] + mangle(data[2:]))


# -- old values stay readable -------------------------------------------------------


@pytest.mark.parametrize("old", POLICIES, ids=_id)
@pytest.mark.parametrize("new", POLICIES, ids=_id)
def test_policy_change_then_decode_old_value(
    ring: Keyring, old: dict[str, Any], new: dict[str, Any]
) -> None:
    data = codec(ring, **old).encode("ns", "key", SAMPLE)
    assert codec(ring, **new).decode("ns", "key", data) == SAMPLE


def test_encrypted_value_with_codec_without_keyring(ring: Keyring) -> None:
    data = codec(ring, encrypt=True).encode("ns", "key", SAMPLE)
    with pytest.raises(IntegrityError, match="no keyring"):
        codec().decode("ns", "key", data)


# -- tampering ----------------------------------------------------------------------


@pytest.mark.parametrize("compress_above", [None, 0])
def test_every_flipped_bit_is_detected(ring: Keyring, compress_above: int | None) -> None:
    c = codec(ring, encrypt=True, compress_above=compress_above)
    data = c.encode("ns", "key", {"secret": MARKER * 4})
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :]
            with pytest.raises(IntegrityError):
                c.decode("ns", "key", bad)


def test_every_truncation_is_detected(ring: Keyring) -> None:
    c = codec(ring, encrypt=True)
    data = c.encode("ns", "key", SAMPLE)
    for n in range(len(data)):
        with pytest.raises(IntegrityError):
            c.decode("ns", "key", data[:n])


@pytest.mark.parametrize(("ns", "key"), [("other", "key"), ("ns", "other"), ("nsk", "ey")])
def test_value_moved_to_another_namespace_or_key(ring: Keyring, ns: str, key: str) -> None:
    c = codec(ring, encrypt=True)
    data = c.encode("ns", "key", SAMPLE)
    with pytest.raises(IntegrityError, match="failed authentication"):
        c.decode(ns, key, data)


def test_wrapped_dek_swapped_between_values(ring: Keyring) -> None:
    c = codec(ring, encrypt=True)
    a = c.encode("ns", "key", "value a")
    b = c.encode("ns", "key", "value b")
    header_len = 2 + 1 + 2 + 1 + 60
    swapped = b[:header_len] + a[header_len:]
    with pytest.raises(IntegrityError):
        c.decode("ns", "key", swapped)


def test_serializer_flag_is_authenticated(ring: Keyring) -> None:
    c = codec(ring, encrypt=True)
    data = c.encode("ns", "key", SAMPLE)
    relabeled = data[:1] + bytes([data[1] ^ 0b11]) + data[2:]  # msgpack -> json
    with pytest.raises(IntegrityError):
        c.decode("ns", "key", relabeled)


def test_unknown_kid(ring: Keyring) -> None:
    data = codec(ring, encrypt=True).encode("ns", "key", SAMPLE)
    other = Keyring.generate("k2")
    with pytest.raises(IntegrityError, match="'k1'"):
        codec(other, encrypt=True).decode("ns", "key", data)


def test_same_kid_different_key_fails_authentication(ring: Keyring) -> None:
    data = codec(ring, encrypt=True).encode("ns", "key", SAMPLE)
    impostor = Keyring.generate("k1")
    with pytest.raises(IntegrityError, match="data key failed authentication"):
        codec(impostor, encrypt=True).decode("ns", "key", data)


@pytest.mark.parametrize("compress_above", [None, 0])
def test_ciphertext_does_not_contain_plaintext(ring: Keyring, compress_above: int | None) -> None:
    c = codec(ring, encrypt=True, compress_above=compress_above)
    for value in ({"note": MARKER * 3}, MARKER.encode() * 3, [MARKER]):
        data = c.encode("ns", "key", value)
        assert MARKER.encode() not in data
        assert MARKER[:8].encode() not in data
    assert MARKER.encode() in codec().encode("ns", "key", {"note": MARKER})  # sanity


def test_each_encryption_is_fresh(ring: Keyring) -> None:
    c = codec(ring, encrypt=True)
    assert c.encode("ns", "key", SAMPLE) != c.encode("ns", "key", SAMPLE)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x02\x01\x80",  # future version
        b"\x00\x01\x80",
        b"\x01\x03\x80",  # serializer 3
        b"\x01\x11\x80",  # unknown flag bit
        b"\x01\x09",  # encrypted, no header
        b"\x01\x09\x00" + b"\x00" * 80,  # empty kid
        b"\x01\x09\x02\xff\xfe" + b"\x00" * 80,  # kid not utf-8
        b"\x01\x09\x02k1\x05" + b"\x00" * 80,  # wrapped DEK too short
    ],
)
def test_bad_headers(ring: Keyring, data: bytes) -> None:
    c = codec(ring)
    with pytest.raises(IntegrityError):
        c.decode("ns", "key", data)
    with pytest.raises(IntegrityError):
        c.describe(data)
    with pytest.raises(IntegrityError):
        c.rewrap("ns", "key", data)
    if len(data) < 2 or data[0] != 1 or data[1] & 0xF0 or data[1] & 3 == 3:
        with pytest.raises(IntegrityError):
            is_encrypted(data)


@pytest.mark.parametrize("data", [b"\x01\x01\xc1", b"\x01\x01\x92\x01", b"\x01\x02{", b"\x01\x01"])
def test_corrupt_unencrypted_payload(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        codec().decode("ns", "key", data)


# -- rotation -----------------------------------------------------------------------


def test_rotate_rewrap_decode(tmp_path: Any) -> None:
    ring = Keyring.from_source(f"file:{tmp_path / 'keyring.json'}")
    old_kid = ring.primary_id
    c = codec(ring, encrypt=True, compress_above=0)
    data = c.encode("ns", "key", SAMPLE)
    assert c.rewrap("ns", "key", data) is None  # already under the primary

    new_kid = ring.rotate()
    fresh = c.encode("ns", "key", SAMPLE)
    assert c.describe(fresh)["kid"] == new_kid
    assert c.decode("ns", "key", data) == SAMPLE  # old kid still readable

    moved = c.rewrap("ns", "key", data)
    assert moved is not None
    assert c.describe(moved)["kid"] == new_kid
    assert c.describe(moved)["compressed"]
    assert moved[-len(SAMPLE) :] == data[-len(SAMPLE) :]
    tail = 2 + 1 + len(old_kid) + 1 + 60
    assert moved[2 + 1 + len(new_kid) + 1 + 60 :] == data[tail:]  # nonce + ciphertext unchanged
    assert c.decode("ns", "key", moved) == SAMPLE
    assert c.rewrap("ns", "key", moved) is None

    # Once everything is re-wrapped the old key can go; the old bytes then cannot be read.
    only_new = Keyring({new_kid: ring.get(new_kid)}, new_kid)
    assert codec(only_new).decode("ns", "key", moved) == SAMPLE
    with pytest.raises(IntegrityError, match=old_kid):
        codec(only_new).decode("ns", "key", data)


def test_rewrap_does_not_need_the_policy(ring: Keyring) -> None:
    data = codec(ring, encrypt=True, serializer="json").encode("ns", "key", SAMPLE)
    ring.rotate()
    plain_policy = codec(ring)  # encrypt=False, msgpack
    moved = plain_policy.rewrap("ns", "key", data)
    assert moved is not None
    assert plain_policy.decode("ns", "key", moved) == SAMPLE
    assert plain_policy.describe(moved)["serializer"] == "json"


def test_rewrap_unencrypted_is_none(ring: Keyring) -> None:
    c = codec(ring)
    assert c.rewrap("ns", "key", c.encode("ns", "key", SAMPLE)) is None
    assert codec().rewrap("ns", "key", codec().encode("ns", "key", b"x")) is None


def test_rewrap_refuses_tampered_or_misplaced_values(ring: Keyring) -> None:
    c = codec(ring, encrypt=True)
    data = c.encode("ns", "key", SAMPLE)
    ring.rotate()
    with pytest.raises(IntegrityError):
        c.rewrap("ns", "key", data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        c.rewrap("ns", "other", data)


# -- value validation ---------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Thing:
    pass


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        ((1, 2), "tuple"),
        (datetime.datetime(2024, 1, 1), "datetime.datetime"),
        ({"a": [datetime.date(2024, 1, 1)]}, "datetime.date"),
        (Thing(), "Thing"),
        ({"a": {"b": Color.RED}}, "Color"),
        (collections.OrderedDict(a=1), "collections.OrderedDict"),
        ({"x": msgspec.Struct}, "msgspec._core.StructMeta"),
        ([1, 2, {"deep": [object()]}], "object"),
    ],
)
def test_unsupported_types(serializer: str, value: Any, type_name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        codec(serializer=serializer).encode("n", "k", value)
    assert info.value.field == "value"
    assert "not JSON-compatible: " in str(info.value)
    assert str(info.value).endswith(type_name)


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_non_str_keys(serializer: str) -> None:
    for value in ({1: "a"}, {"ok": {None: 1}}, {(1, 2): 3}):
        with pytest.raises(InvalidRequest, match="key that is not JSON-compatible"):
            codec(serializer=serializer).encode("n", "k", value)


def test_error_names_the_path() -> None:
    with pytest.raises(InvalidRequest, match=r"at \$\.a\[1\]\['b c'\] is not JSON-compatible"):
        codec().encode("n", "k", {"a": [0, {"b c": {1}}]})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_json_rejects_non_finite_floats(bad: float) -> None:
    c = codec(serializer="json")
    for value in (bad, [1, bad], {"a": {"b": bad}}):
        with pytest.raises(InvalidRequest) as info:
            c.encode("n", "k", value)
        assert info.value.field == "value"
        assert "non-finite" in str(info.value)


def test_json_rejects_nested_bytes() -> None:
    with pytest.raises(InvalidRequest, match="json serializer cannot store"):
        codec(serializer="json").encode("n", "k", {"b": b"x"})


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 10**30])
def test_integers_beyond_64_bits(serializer: str, n: int) -> None:
    c = codec(serializer=serializer)
    for value in (n, [n], {"n": n}):
        with pytest.raises(InvalidRequest, match="64-bit") as info:
            c.encode("n", "k", value)
        assert info.value.field == "value"


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_lone_surrogates(serializer: str) -> None:
    for value in ("\ud800", {"\udfff": 1}):
        with pytest.raises(InvalidRequest, match="Unicode"):
            codec(serializer=serializer).encode("n", "k", value)


def test_nesting_limit() -> None:
    def nest(n: int) -> Any:
        v: Any = []
        for _ in range(n - 1):
            v = [v]
        return v

    c = codec()
    assert c.decode("n", "k", c.encode("n", "k", nest(MAX_DEPTH))) == nest(MAX_DEPTH)
    with pytest.raises(InvalidRequest, match="deeper"):
        c.encode("n", "k", nest(MAX_DEPTH + 1))
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidRequest):
        c.encode("n", "k", cyclic)


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
def test_size_limit(serializer: str) -> None:
    c = codec(serializer=serializer, max_value_bytes=1000)
    with pytest.raises(InvalidRequest) as info:
        c.encode("n", "k", "x" * 2000)
    assert info.value.field == "value"
    assert info.value.limit == 1000
    assert "bytes serialized; the limit is 1000" in str(info.value)
    assert info.value.to_problem()["limit"] == 1000
    with pytest.raises(InvalidRequest) as info:
        c.encode("n", "k", b"x" * 1001)
    assert "value is 1001 bytes serialized; the limit is 1000" in str(info.value)
    assert c.decode("n", "k", c.encode("n", "k", b"x" * 1000)) == b"x" * 1000


def test_size_limit_applies_before_compression() -> None:
    c = codec(compress_above=0, max_value_bytes=1000)
    with pytest.raises(InvalidRequest):
        c.encode("n", "k", "x" * 5000)  # compresses to ~20 bytes, still refused


def test_nul_in_namespace_refused_when_encrypting(ring: Keyring) -> None:
    with pytest.raises(InvalidRequest) as info:
        codec(ring, encrypt=True).encode("a\0b", "k", 1)
    assert info.value.field == "namespace"


# -- configuration ------------------------------------------------------------------


def test_encrypt_without_keyring_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Codec(CodecPolicy(encrypt=True))
    assert info.value.field == "keyring"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"serializer": "xml"}, "codec.serializer"),
        ({"compress_above": -1}, "codec.compress_above"),
        ({"compress_above": True}, "codec.compress_above"),
        ({"compression_level": 23}, "codec.compression_level"),
        ({"compression_level": "3"}, "codec.compression_level"),
        ({"encrypt": 1}, "codec.encrypt"),
    ],
)
def test_bad_policy(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CodecPolicy(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("limit", [0, -1, 1 << 31, 1.5])
def test_bad_max_value_bytes(limit: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Codec(CodecPolicy(), max_value_bytes=limit)
    assert info.value.field == "max_value_bytes"


def test_repr_has_no_key_material(ring: Keyring) -> None:
    text = repr(codec(ring, encrypt=True))
    assert "k1" in text
    assert ring.get("k1").hex() not in text


# -- threads ------------------------------------------------------------------------


def test_threads_share_one_codec(ring: Keyring) -> None:
    c = codec(ring, encrypt=True, compress_above=0)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(200):
                value = {"i": i, "j": j, "pad": "y" * (j * 7)}
                assert c.decode("ns", f"{i}-{j}", c.encode("ns", f"{i}-{j}", value)) == value
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- properties ---------------------------------------------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(), children, max_size=6)
    ),
    max_leaves=40,
)
MSGPACK_VALUES = st.recursive(
    _leaves | st.binary(max_size=64),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(), children, max_size=6)
    ),
    max_leaves=40,
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells ``1`` from ``1.0`` from ``True`` and ``0.0`` from ``-0.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


PROPERTY_RING = Keyring.generate("prop")


@pytest.mark.parametrize("policy", POLICIES, ids=_id)
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.data())
def test_property_round_trip(policy: dict[str, Any], value: st.DataObject) -> None:
    strategy = JSON_VALUES if policy["serializer"] == "json" else MSGPACK_VALUES
    v = value.draw(strategy)
    c = codec(PROPERTY_RING, **policy)
    data = c.encode("ns", "k", v)
    assert _same(c.decode("ns", "k", data), v)
    # Readable under any other policy too: decoding only looks at the header.
    assert _same(codec(PROPERTY_RING).decode("ns", "k", data), v)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=10_000), compress=st.booleans(), encrypt=st.booleans())
def test_property_bytes_round_trip(raw: bytes, compress: bool, encrypt: bool) -> None:
    c = codec(PROPERTY_RING, compress_above=0 if compress else None, encrypt=encrypt)
    assert c.decode("n", "k", c.encode("n", "k", raw)) == raw


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_property_garbage_never_decodes_to_wrong_type_of_error(data: bytes) -> None:
    """Arbitrary bytes either decode (unencrypted formats have no MAC) or raise IntegrityError."""
    c = codec(PROPERTY_RING)
    try:
        c.decode("n", "k", data)
    except IntegrityError:
        pass
