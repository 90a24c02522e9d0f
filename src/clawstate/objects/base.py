"""What every object store offers: the :class:`ObjectStore` protocol, its result types
and the one name check.

Objects are the bottom layer of issue 14: blobs and the cold tier are built on it, so
the protocol is deliberately small (put/get/range/open/head/list/delete) and every
implementation keeps the same rules: names are checked here, once; a ``put`` is atomic
(readers see the old object or the whole new one, never a part); driver errors are
translated into :mod:`clawstate.errors` at the implementation's edge.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol, runtime_checkable

from ..errors import InvalidRequest

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_OBJECT_BYTES",
    "Data",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectPage",
    "ObjectStore",
    "check_limit",
    "check_name",
    "check_prefix",
    "check_range",
]

#: S3's own key limit; a longer name could be written on a filesystem but not moved to S3.
MAX_NAME_BYTES = 1024
#: S3's largest object (5 TiB): a bigger ``put`` is refused before any byte is sent.
MAX_OBJECT_BYTES = 5 * 1024**4
#: The largest page ``list`` returns (S3 answers at most 1000 keys per request).
MAX_LIST_LIMIT = 10_000
#: A byte offset past this is a mistake, not a file (and would overflow S3's 64-bit ranges).
MAX_OFFSET = 2**63 - 1

#: What ``put`` accepts: bytes, a binary file, or an iterator of bytes chunks.
Data = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


class ObjectNotFound(InvalidRequest):
    """No object has that name (``field`` is ``name``).  An :class:`InvalidRequest`
    (asking for a missing object is a request that cannot be served) answered as 404."""

    http_status = 404

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__("name", f"no object named {name!r}")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object's name, size in bytes and etag (changes whenever the bytes are rewritten)."""

    name: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """One page of :meth:`ObjectStore.list`, in name order; ``cursor`` is ``None`` on the last."""

    items: list[ObjectInfo]
    cursor: str | None


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of immutable-once-written byte objects (``file:`` or ``s3://``)."""

    url: str

    def put(self, name: str, data: Data, *, content_type: str | None = None) -> ObjectInfo:
        """Write ``data`` as ``name`` atomically, streaming in bounded memory."""
        ...

    def get(self, name: str) -> bytes:
        """The whole object; :class:`ObjectNotFound` when absent."""
        ...

    def get_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, cut at the object's end (``b""`` past it)."""
        ...

    def open(self, name: str) -> IO[bytes]:
        """A streaming binary reader over the object (close it, or use ``with``)."""
        ...

    def head(self, name: str) -> ObjectInfo | None:
        """The object's info, or ``None`` when absent."""
        ...

    def list(self, prefix: str = "", limit: int = 1000, cursor: str | None = None) -> ObjectPage:
        """Objects whose name starts with ``prefix``, after ``cursor`` (the last name of
        the previous page), each once.  In UTF-8 byte order on the file store and AWS S3;
        SeaweedFS lists a "directory" ``p/`` before its sibling ``p-x``."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the object; ``False`` when there was none (deleting twice is fine)."""
        ...

    def close(self) -> None:
        """Release what the store holds (connections); idempotent."""
        ...


def check_name(name: object, field: str = "name") -> str:
    """Refuse a name that cannot be the same object on every backend.

    ``/``-separated segments, none empty, ``.`` or ``..`` (a filesystem would resolve
    them and S3 would not); no leading ``/``, no backslash, no NUL or other control
    character; at most :data:`MAX_NAME_BYTES` in UTF-8.  A first segment of ``.tmp`` is
    reserved for the file store's uploads in flight.
    """
    if not isinstance(name, str):
        raise InvalidRequest(field, f"must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidRequest(field, "must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(field, "must be valid Unicode (no lone surrogates)") from None
    if size > MAX_NAME_BYTES:
        raise InvalidRequest(
            field, f"is {size} bytes long, above {MAX_NAME_BYTES}", limit=MAX_NAME_BYTES
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidRequest(field, "must not contain NUL or other control characters")
    if "\\" in name:
        raise InvalidRequest(field, "must not contain a backslash (use '/')")
    if name.startswith("/"):
        raise InvalidRequest(field, "must be relative (no leading '/')")
    segments = name.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidRequest(
                field, f"{name!r} has an empty, '.' or '..' segment; each segment names a level"
            )
    if segments[0] == ".tmp":
        raise InvalidRequest(field, "the top-level '.tmp/' is reserved for uploads in flight")
    return name


def check_prefix(prefix: object) -> str:
    """A list prefix: any string a name could start with (``""`` lists everything)."""
    if not isinstance(prefix, str):
        raise InvalidRequest("prefix", f"must be a string, not {type(prefix).__name__}")
    if prefix:
        # A prefix is a name cut anywhere: check it as a name with a harmless tail.
        check_name(prefix + "x", "prefix")
    return prefix


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidRequest("limit", f"must be an integer, not {type(limit).__name__}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequest(
            "limit", f"must be between 1 and {MAX_LIST_LIMIT}, got {limit}", limit=MAX_LIST_LIMIT
        )
    return limit


def check_range(start: object, end: object) -> tuple[int, int]:
    """``0 <= start <= end <= 2**63 - 1``, integers (not bools, not floats)."""
    for field, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(field, f"must be an integer, not {type(value).__name__}")
        if not 0 <= value <= MAX_OFFSET:
            raise InvalidRequest(
                field, f"must be between 0 and {MAX_OFFSET}, got {value}", limit=MAX_OFFSET
            )
    assert isinstance(start, int) and isinstance(end, int)
    if end < start:
        raise InvalidRequest("end", f"must be at least start ({start}), got {end}", limit=start)
    return start, end


def check_content_type(content_type: object) -> str | None:
    if content_type is None:
        return None
    if not isinstance(content_type, str) or not content_type or len(content_type) > 255:
        raise InvalidRequest("content_type", "must be a non-empty string of at most 255 characters")
    if any(ord(c) < 0x20 or ord(c) >= 0x7F for c in content_type):
        raise InvalidRequest("content_type", "must be printable ASCII (it becomes a header)")
    return content_type


def chunks(data: Data, chunk_size: int) -> Iterator[bytes]:
    """``data`` as a stream of chunks, reading a file ``chunk_size`` bytes at a time."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        for offset in range(0, len(view), chunk_size):
            yield bytes(view[offset : offset + chunk_size])
        return
    if isinstance(data, str):
        raise InvalidRequest(
            "data", "must be bytes, a binary file or an iterator of bytes, not str"
        )
    read = getattr(data, "read", None)
    if callable(read):
        while True:
            chunk = read(chunk_size)
            if isinstance(chunk, str):
                raise InvalidRequest("data", "the file is open in text mode; open it with 'rb'")
            if not chunk:
                return
            yield bytes(chunk)
    else:
        for chunk in data:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise InvalidRequest(
                    "data", f"an iterator must yield bytes, got {type(chunk).__name__}"
                )
            if chunk:
                yield bytes(chunk)


class LimitedCounter:
    """Counts bytes as they stream through and refuses past ``max_size`` (before storing)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0

    def add(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise InvalidRequest(
                "data", f"is larger than {self.max_size} bytes", limit=self.max_size
            )
        return chunk


class Guarded:
    """Iterates the caller's chunks and remembers an error the *source* raised, so a
    broken upload source reaches the caller as itself, not as a storage failure."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._source)
        except StopIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise


class IterReader(io.RawIOBase):
    """A raw binary reader over an iterator of chunks (the S3 streaming body)."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            try:
                self._pending = next(self._source)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
