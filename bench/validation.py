"""What the value policy of docs/configuration.md ("Values") costs on the hot paths.

    .venv/bin/python -m bench.validation

* ``codec.encode``: the strict-value walk that every put runs; refusing NaN and
  infinities under msgpack added one float comparison to it (values without floats
  pay nothing new).  Printed for a typical ~400-byte value with and without floats.
* ``decode_body`` of a msgpack request body against a bare msgspec decode: the
  duplicate-map-key check re-encodes the decoded value and compares bytes (the fast
  path every canonical encoder, the Python client included, takes), and the exact
  Python walk of the wire headers that runs only when the bytes differ.

Figures are the best of several rounds (microseconds per call): the machine is shared,
so compare the rows of one run with each other, not with another run.
"""

from __future__ import annotations

import struct
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from clawstate._wire import MSGPACK, _msgpack_duplicate, decode_body
from clawstate.codec import Codec, CodecPolicy

WITH_FLOATS: dict[str, Any] = {
    "id": "order-12345",
    "customer": {"id": 42, "name": "Zoë Example", "email": "zoe@example.com"},
    "items": [
        {"sku": f"sku-{i}", "qty": i, "price": 9.99 + i, "weight": 0.25 * i} for i in range(5)
    ],
    "total": 123.45,
    "tax": 9.87,
    "status": "open",
    "tags": ["a", "b", "c"],
    "paid": False,
    "note": None,
}
WITHOUT_FLOATS: dict[str, Any] = {
    **WITH_FLOATS,
    "items": [{"sku": f"sku-{i}", "qty": i, "price": 999 + i, "weight": 25 * i} for i in range(5)],
    "total": 12345,
    "tax": 987,
}


def best(fn: Callable[[], object], number: int, rounds: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6


def main() -> None:
    codec = Codec(CodecPolicy())
    for name, value in (("with floats", WITH_FLOATS), ("without floats", WITHOUT_FLOATS)):
        size = len(msgspec.msgpack.encode(value))
        us = best(lambda v=value: codec.encode("n", "k", v), 20_000)
        print(f"codec.encode, {size}-byte value {name}: {us:.2f} µs")
    body = msgspec.msgpack.encode(WITH_FLOATS)
    plain = msgspec.msgpack.Decoder().decode
    base = best(lambda: plain(body), 20_000)
    checked = best(lambda: decode_body(body, MSGPACK, "value"), 20_000)
    walk = best(lambda: _msgpack_duplicate(body), 1_000)
    print(f"msgpack body of {len(body)} bytes: msgspec decode {base:.2f} µs")
    print(f"  decode_body (decode + duplicate-key check, fast path) {checked:.2f} µs")
    print(f"  exact header walk (non-canonical encoders only) {walk:.1f} µs")
    # The walk's worst cases against the codec walk every put runs on the same value:
    # a million small numbers, and 50,000 two-key maps in map16 headers.
    n = 1_000_000
    numbers = b"\x82\xa1f\xca" + struct.pack(">f", 1.5) + b"\xa1a\xdd" + n.to_bytes(4, "big")
    numbers += b"\x01" * n
    maps = b"\xdd" + (50_000).to_bytes(4, "big") + b"\xde\x00\x02\xa1a\x01\xa1b\x02" * 50_000
    big = Codec(CodecPolicy(), max_value_bytes=1 << 30)
    for name, data in (("1M numbers", numbers), ("50k small maps", maps)):
        value = msgspec.msgpack.decode(data)
        walk = best(lambda d=data: _msgpack_duplicate(d), 1, 3) / 1000
        typed = best(lambda v=value: big.encode("n", "k", v), 1, 3) / 1000
        print(f"{name} ({len(data)} bytes): header walk {walk:.0f} ms, codec walk {typed:.0f} ms")


if __name__ == "__main__":
    main()
