"""The object-store contract (:mod:`clawstate.objects`): one suite every backend passes.

A test module subclasses :class:`ObjectStoreConformance` and provides the fixture
``object_url`` — a callable returning ``(url, base_dir)`` of a *fresh, empty* object
store (``file:`` under a temp dir, or a new bucket of a real S3 server).  The suite
opens it with :func:`clawstate.objects.open_object_store`, so URL parsing is under test
too.  Bounded memory is measured as peak-RSS growth in a subprocess (never time).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clawstate.errors import InvalidRequest
from clawstate.objects import ObjectInfo, ObjectNotFound, ObjectStore, open_object_store

ObjectUrl = Callable[[], tuple[str, Path]]

MIB = 1024 * 1024

BAD_NAMES: list[Any] = [
    "",
    "..",
    ".",
    "../escape",
    "a/../../escape",
    "a/./b",
    "/etc/passwd",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "a\\b",
    ".tmp/x",
    "x" * 1025,
    "é" * 513,  # 1026 bytes in UTF-8
    "\ud800",
    None,
    42,
    b"bytes",
]


def _pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes (a hash chain), so nothing dedups."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 32
    return bytes(out[:size])


class ObjectStoreConformance:
    """What every :class:`~clawstate.objects.ObjectStore` guarantees."""

    #: Whether ``list`` returns UTF-8 byte order (the file store, AWS S3) — SeaweedFS
    #: walks its directory tree instead; paging is exact either way.
    byte_order = True

    @pytest.fixture
    def objects(self, object_url: ObjectUrl) -> Iterator[ObjectStore]:
        url, base = object_url()
        store = open_object_store(url, base)
        yield store
        store.close()

    # -- round trips ----------------------------------------------------------------

    @pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "file", "iterator"])
    def test_round_trip(self, objects: ObjectStore, kind: str) -> None:
        payload = _pattern(300_000, seed=1)
        data: Any = {
            "bytes": payload,
            "bytearray": bytearray(payload),
            "memoryview": memoryview(payload),
            "file": io.BytesIO(payload),
            "iterator": iter([payload[:1], payload[1:70_000], b"", payload[70_000:]]),
        }[kind]
        info = objects.put("dir/sub/obj.bin", data, content_type="application/octet-stream")
        assert info.name == "dir/sub/obj.bin" and info.size == len(payload) and info.etag
        assert objects.get("dir/sub/obj.bin") == payload
        assert objects.head("dir/sub/obj.bin") == ObjectInfo(
            "dir/sub/obj.bin", len(payload), info.etag
        )
        with objects.open("dir/sub/obj.bin") as f:
            assert f.read(10) == payload[:10]
            assert f.read() == payload[10:]

    def test_empty_object(self, objects: ObjectStore) -> None:
        info = objects.put("empty", b"")
        assert info.size == 0
        assert objects.get("empty") == b""
        assert objects.head("empty") is not None
        assert objects.get_range("empty", 0, 10) == b""
        with objects.open("empty") as f:
            assert f.read() == b""
        assert [i.name for i in objects.list().items] == ["empty"]
        info2 = objects.put("empty2", iter([]))
        assert info2.size == 0 and objects.get("empty2") == b""

    def test_unicode_names(self, objects: ObjectStore) -> None:
        names = ["ünï/cødé", "with space/x", "a+b=c&d?e#f", "emoji/😀", "pct/100%25", "~!$'()*"]
        for name in names:
            objects.put(name, name.encode())
            assert objects.get(name) == name.encode()
        assert sorted(i.name for i in objects.list().items) == sorted(names)

    def test_overwrite_changes_bytes_and_etag(self, objects: ObjectStore) -> None:
        first = objects.put("o", b"one")
        second = objects.put("o", b"second value")
        assert objects.get("o") == b"second value"
        assert second.size == 12 and second.etag != first.etag
        head = objects.head("o")
        assert head is not None and head.etag == second.etag

    def test_missing(self, objects: ObjectStore) -> None:
        assert objects.head("nope") is None
        with pytest.raises(ObjectNotFound) as err:
            objects.get("nope")
        assert err.value.field == "name" and err.value.http_status == 404
        with pytest.raises(ObjectNotFound):
            objects.open("nope")
        with pytest.raises(ObjectNotFound):
            objects.get_range("nope", 0, 1)

    def test_delete_is_idempotent(self, objects: ObjectStore) -> None:
        objects.put("d/x", b"1")
        objects.put("d/y", b"2")
        assert objects.delete("d/x") is True
        assert objects.delete("d/x") is False
        assert objects.delete("never") is False
        assert objects.head("d/x") is None
        with pytest.raises(ObjectNotFound):
            objects.get("d/x")
        assert [i.name for i in objects.list().items] == ["d/y"]
        assert objects.delete("d/y") is True
        assert objects.list().items == []
        objects.put("d/x", b"again")  # a deleted name can be written again
        assert objects.get("d/x") == b"again"

    # -- ranges ---------------------------------------------------------------------

    def test_range_reads_at_the_edges(self, objects: ObjectStore) -> None:
        payload = _pattern(10_000, seed=2)
        objects.put("r", payload)
        n = len(payload)
        for start, end in [
            (0, 0),
            (0, 1),
            (0, n),
            (1, n - 1),
            (n - 1, n),
            (n, n),
            (n - 5, n + 100),
            (n, n + 1),
            (n + 100, n + 200),
            (4096, 8192),
            (0, 2**62),
        ]:
            assert objects.get_range("r", start, end) == payload[start:end], (start, end)

    @pytest.mark.parametrize(
        ("start", "end", "field"),
        [
            (-1, 5, "start"),
            (0, -1, "end"),
            (5, 4, "end"),
            (True, 5, "start"),
            (0, 1.5, "end"),
            (0, 2**64, "end"),
            ("0", 1, "start"),
            (float("nan"), 1, "start"),
        ],
    )
    def test_bad_ranges(self, objects: ObjectStore, start: Any, end: Any, field: str) -> None:
        objects.put("r", b"0123456789")
        with pytest.raises(InvalidRequest) as err:
            objects.get_range("r", start, end)
        assert err.value.field == field

    # -- listing --------------------------------------------------------------------

    def test_list_pages_in_name_order(self, objects: ObjectStore) -> None:
        names = sorted(
            [f"p/{i:03d}" for i in range(23)] + ["p-x", "p0", "q/1", "o", "p/sub/deep/z"],
            key=lambda s: s.encode(),
        )
        for name in names:
            objects.put(name, name.encode())
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = objects.list(limit=7, cursor=cursor)
            assert len(page.items) <= 7
            seen += [i.name for i in page.items]
            pages += 1
            cursor = page.cursor
            if cursor is None:
                break
            assert pages < 20
        # Every object once; the order is the server's (byte order, or SeaweedFS's tree).
        assert sorted(seen) == sorted(names) and len(seen) == len(set(seen))
        assert pages == -(-len(names) // 7)
        if self.byte_order:
            assert seen == names
        sizes = {i.name: i.size for i in objects.list(limit=100).items}
        assert sizes == {n: len(n.encode()) for n in names}

    def test_list_prefix(self, objects: ObjectStore) -> None:
        for name in ["p/1", "p/2", "p/sub/3", "p-x", "p0", "pa/1", "q"]:
            objects.put(name, b"x")

        def names(prefix: str, limit: int = 100) -> list[str]:
            out: list[str] = []
            cursor = None
            while True:
                page = objects.list(prefix, limit, cursor)
                out += [i.name for i in page.items]
                if page.cursor is None:
                    assert len(out) == len(set(out))
                    return sorted(out, key=lambda s: s.encode())
                cursor = page.cursor

        assert names("p/") == ["p/1", "p/2", "p/sub/3"]
        assert names("p/", 1) == ["p/1", "p/2", "p/sub/3"]
        assert names("p") == ["p-x", "p/1", "p/2", "p/sub/3", "p0", "pa/1"]
        assert names("p/s") == ["p/sub/3"]
        assert names("pa") == ["pa/1"]
        assert names("zz") == []
        assert names("") == ["p-x", "p/1", "p/2", "p/sub/3", "p0", "pa/1", "q"]
        page = objects.list("p/", 2)
        rest = objects.list("p/", 2, page.cursor)
        assert len(page.items) == 2 and page.cursor == page.items[-1].name
        assert rest.cursor is None
        assert sorted(i.name for i in page.items + rest.items) == ["p/1", "p/2", "p/sub/3"]

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": 10_001}, "limit"),
            ({"limit": True}, "limit"),
            ({"limit": 2**70}, "limit"),
            ({"prefix": "../"}, "prefix"),
            ({"prefix": "a\x00"}, "prefix"),
            ({"prefix": None}, "prefix"),
            ({"cursor": "../x"}, "cursor"),
        ],
    )
    def test_bad_list_arguments(
        self, objects: ObjectStore, kwargs: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(InvalidRequest) as err:
            objects.list(**kwargs)
        assert err.value.field == field

    # -- bad input changes nothing --------------------------------------------------

    @pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
    def test_bad_names_are_refused(self, objects: ObjectStore, name: Any) -> None:
        for call in (
            lambda: objects.put(name, b"x"),
            lambda: objects.get(name),
            lambda: objects.head(name),
            lambda: objects.delete(name),
            lambda: objects.open(name),
            lambda: objects.get_range(name, 0, 1),
        ):
            with pytest.raises(InvalidRequest) as err:
                call()
            assert err.value.field == "name"
        assert objects.list().items == []

    @pytest.mark.parametrize(
        ("data", "content_type", "field"),
        [
            (lambda: "text", None, "data"),
            (lambda: iter([b"ok", "text"]), None, "data"),
            (lambda: iter([b"ok", 3]), None, "data"),
            (lambda: io.StringIO("text"), None, "data"),
            (lambda: b"x", "text/plain\r\nX-Evil: 1", "content_type"),
            (lambda: b"x", "", "content_type"),
        ],
    )
    def test_bad_data_writes_nothing(
        self, objects: ObjectStore, data: Any, content_type: Any, field: str
    ) -> None:
        objects.put("keep", b"old")
        for name in ("keep", "new"):
            with pytest.raises(InvalidRequest) as err:
                objects.put(name, data(), content_type=content_type)
            assert err.value.field == field
        assert objects.get("keep") == b"old"
        assert [i.name for i in objects.list().items] == ["keep"]

    def test_a_failing_source_leaves_the_old_object(self, objects: ObjectStore) -> None:
        objects.put("keep", b"old")

        def source() -> Iterator[bytes]:
            yield _pattern(12 * MIB, seed=3)  # past the multipart threshold on S3
            raise OSError("the upload's source broke")

        with pytest.raises(OSError, match="source broke"):
            objects.put("keep", source())
        assert objects.get("keep") == b"old"
        assert [i.name for i in objects.list().items] == ["keep"]

    # -- concurrency ----------------------------------------------------------------

    def test_concurrent_puts_of_one_name_leave_one_whole_value(self, objects: ObjectStore) -> None:
        payloads = [_pattern(256 * 1024, seed=10 + i) for i in range(6)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(payloads))

        def writer(data: bytes) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    objects.put("shared", data)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert objects.get("shared") in payloads
        assert [i.name for i in objects.list().items] == ["shared"]

    # -- bounded memory -------------------------------------------------------------

    def test_64_mib_streams_in_bounded_memory(self, object_url: ObjectUrl) -> None:
        """Put 64 MiB from an iterator and read it back through ``open``, in a fresh
        process; its peak RSS may grow by far less than the object."""
        url, base = object_url()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run(
            [sys.executable, "-c", _STREAM_SCRIPT, url, str(base)],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["size"] == 64 * MIB
        assert result["sha_in"] == result["sha_out"]
        assert result["growth_mib"] < 32, result


_STREAM_SCRIPT = r"""
import hashlib, json, resource, sys
from clawstate.objects import open_object_store

MIB = 1024 * 1024
store = open_object_store(sys.argv[1], sys.argv[2])

def source(total, seed):
    block = hashlib.sha256(seed).digest() * (MIB // 32)
    for i in range(total // MIB):
        yield hashlib.sha256(block[:64] + i.to_bytes(8, "big")).digest() + block[32:]

def drain(name):
    sha = hashlib.sha256()
    with store.open(name) as f:
        while chunk := f.read(MIB):
            sha.update(chunk)
    return sha.hexdigest()

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

# Warm up the client (connections, the runtime) with a small object first.
store.put("warm", source(1 * MIB, b"w"))
drain("warm")
base = peak()
sha_in = hashlib.sha256()
def counted():
    for chunk in source(64 * MIB, b"big"):
        sha_in.update(chunk)
        yield chunk
info = store.put("big", counted())
sha_out = drain("big")
print(json.dumps({"size": info.size, "sha_in": sha_in.hexdigest(), "sha_out": sha_out,
                  "growth_mib": (peak() - base) / MIB}))
"""
