"""``s3://bucket[/prefix]?endpoint=…&region=…``: objects on any S3 API, through ``obstore``.

``obstore`` (the Rust ``object_store`` crate) was chosen as the issue says: one client
for S3, streaming bodies, multipart uploads and retries, without boto3's memory cost.
A ``put`` smaller than ``multipart_threshold`` is one request whose ETag (the MD5 of a
single-part upload) is checked against the MD5 computed while sending; a larger one is
a multipart upload of ``part_size`` parts, at most ``concurrency`` in flight, so memory
stays near ``part_size × concurrency`` whatever the object's size, and its size is
checked with a HEAD afterwards.  Either mismatch is an :class:`IntegrityError`.

Credentials come from the URL's query or the standard ``AWS_*`` environment variables;
they are never part of ``repr``, ``url`` or an error message.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ..errors import BackendUnavailable, ClawStateError, IntegrityError, InvalidRequest
from .base import (
    MAX_OBJECT_BYTES,
    Data,
    Guarded,
    IterReader,
    LimitedCounter,
    ObjectInfo,
    ObjectNotFound,
    ObjectPage,
    check_content_type,
    check_limit,
    check_name,
    check_prefix,
    check_range,
    chunks,
)

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = ["S3ObjectStore"]

_MIB = 1024 * 1024


class S3ObjectStore:
    """One bucket (and optional key prefix) of an S3 API."""

    def __init__(
        self,
        *,
        url: str,
        bucket: str,
        prefix: str,
        endpoint: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None,
        timeout: float = 30.0,
        retries: int = 3,
        multipart_threshold: int = 8 * _MIB,
        part_size: int = 5 * _MIB,
        concurrency: int = 4,
        max_size: int = MAX_OBJECT_BYTES,
    ) -> None:
        try:
            from obstore.store import S3Store
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendUnavailable(
                "s3:// object stores need the 'obstore' package: pip install 'clawstate[s3]'"
            ) from exc
        self.url = url
        self.bucket = bucket
        self.prefix = prefix
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.concurrency = concurrency
        self.max_size = max_size
        config: dict[str, Any] = {"region": region}
        if endpoint:
            config["endpoint"] = endpoint
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        if session_token:
            config["session_token"] = session_token
        try:
            self._store: S3Store = S3Store(
                bucket,
                prefix=prefix or None,
                config=config,  # type: ignore[arg-type]
                client_options={
                    "allow_http": bool(endpoint and endpoint.startswith("http://")),
                    "timeout": timedelta(seconds=timeout),
                    "connect_timeout": timedelta(seconds=min(timeout, 5.0)),
                },
                retry_config={
                    "max_retries": retries,
                    "retry_timeout": timedelta(seconds=timeout),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=2),
                        "base": 2,
                    },
                },
            )
        except Exception as exc:
            raise InvalidRequest("url", f"obstore refused the S3 settings: {_safe(exc)}") from None

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.url!r})"

    # -- errors ---------------------------------------------------------------------

    def _fail(self, exc: BaseException, name: str) -> NoReturn:
        """Translate an obstore exception; never leaks the credentials (obstore does not
        print them, and the message is cut to its first line)."""
        if isinstance(exc, ClawStateError):
            raise exc
        from obstore import exceptions as oe

        if isinstance(exc, FileNotFoundError):  # obstore's "not found" (not NotFoundError)
            raise ObjectNotFound(name) from None
        if isinstance(exc, oe.InvalidPathError):
            raise InvalidRequest("name", f"{name!r} is not a valid S3 key: {_safe(exc)}") from None
        if isinstance(exc, PermissionError | oe.PermissionDeniedError | oe.UnauthenticatedError):
            raise BackendUnavailable(
                f"object store {self.url}: the S3 server refused the credentials: {_safe(exc)}"
            ) from None
        raise BackendUnavailable(f"object store {self.url}: {name!r}: {_safe(exc)}") from None

    # -- writes ---------------------------------------------------------------------

    def put(self, name: str, data: Data, *, content_type: str | None = None) -> ObjectInfo:
        import obstore

        check_name(name)
        content_type = check_content_type(content_type)
        attributes: Any = {"Content-Type": content_type} if content_type else None
        counter = LimitedCounter(self.max_size)
        guarded = Guarded(counter.add(c) for c in chunks(data, _MIB))
        source: Iterator[bytes] = guarded
        # Read up to the threshold: a small object is one request, checked by its MD5.
        head: list[bytes] = []
        buffered = 0
        for chunk in source:
            head.append(chunk)
            buffered += len(chunk)
            if buffered > self.multipart_threshold:
                break
        try:
            if buffered <= self.multipart_threshold:
                body = b"".join(head)
                result = obstore.put(
                    self._store, name, body, attributes=attributes, use_multipart=False
                )
                etag = (result.get("e_tag") or "").strip('"')
                md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
                if len(etag) == 32 and "-" not in etag and etag != md5:
                    raise IntegrityError(
                        f"object store {self.url}: {name!r}: the server stored other bytes than "
                        f"were sent (etag {etag}, md5 {md5})"
                    )
                return ObjectInfo(name, len(body), etag or md5)
            stream: Iterator[bytes] = itertools.chain(head, source)
            del head
            result = obstore.put(
                self._store,
                name,
                stream,
                attributes=attributes,
                use_multipart=True,
                chunk_size=self.part_size,
                max_concurrency=self.concurrency,
            )
            meta = obstore.head(self._store, name)
        except Exception as exc:
            if guarded.error is not None:
                raise guarded.error from None  # the caller's source broke, not the store
            self._fail(exc, name)
        if meta["size"] != counter.size:
            raise IntegrityError(
                f"object store {self.url}: {name!r}: sent {counter.size} bytes, "
                f"the server holds {meta['size']}"
            )
        return ObjectInfo(name, meta["size"], (meta.get("e_tag") or "").strip('"'))

    def delete(self, name: str) -> bool:
        """S3 deletes are idempotent and say nothing; a HEAD first tells whether one existed."""
        import obstore

        check_name(name)
        existed = self.head(name) is not None
        try:
            obstore.delete(self._store, name)
        except Exception as exc:
            self._fail(exc, name)
        return existed

    # -- reads ----------------------------------------------------------------------

    def head(self, name: str) -> ObjectInfo | None:
        import obstore

        check_name(name)
        try:
            meta = obstore.head(self._store, name)
        except FileNotFoundError:
            return None
        except Exception as exc:
            self._fail(exc, name)
        return ObjectInfo(name, meta["size"], (meta.get("e_tag") or "").strip('"'))

    def get(self, name: str) -> bytes:
        import obstore

        check_name(name)
        try:
            return bytes(obstore.get(self._store, name).bytes())
        except Exception as exc:
            self._fail(exc, name)

    def get_range(self, name: str, start: int, end: int) -> bytes:
        import obstore

        check_name(name)
        start, end = check_range(start, end)
        info = self.head(name)
        if info is None:
            raise ObjectNotFound(name)
        end = min(end, info.size)
        if start >= end:
            return b""
        try:
            return bytes(obstore.get_range(self._store, name, start=start, end=end))
        except Exception as exc:
            self._fail(exc, name)

    def open(self, name: str) -> IO[bytes]:
        """A buffered reader over the response body, fetched in 1 MiB chunks as read."""
        import io

        import obstore

        check_name(name)
        try:
            result = obstore.get(self._store, name)
        except Exception as exc:
            self._fail(exc, name)

        def body() -> Iterator[bytes]:
            stream = result.stream(min_chunk_size=_MIB)
            while True:
                try:
                    chunk = next(stream)
                except StopIteration:
                    return
                except Exception as exc:
                    self._fail(exc, name)
                yield bytes(chunk)

        return io.BufferedReader(IterReader(body()), buffer_size=_MIB)

    def list(self, prefix: str = "", limit: int = 1000, cursor: str | None = None) -> ObjectPage:
        """The server's listing order (UTF-8 byte order on AWS S3; SeaweedFS walks its
        directory tree, so ``p/x`` comes before ``p-x``); ``cursor`` is the last name of
        the previous page and is passed as S3's ``start-after``, so paging returns every
        object once in either order."""
        import obstore

        prefix = check_prefix(prefix)
        limit = check_limit(limit)
        if cursor is not None:
            check_name(cursor, "cursor")
        # obstore matches prefixes by whole segments: ask for the segment, filter the rest.
        segment = prefix.rpartition("/")[0]
        # S3's start-after is the cursor; one before the prefix would only skip keys
        # the filter below skips anyway.
        offset = cursor if cursor is not None and cursor >= prefix else None
        found: list[ObjectInfo] = []
        try:
            stream = obstore.list(
                self._store, segment or None, offset=offset, chunk_size=min(limit + 1, 1000)
            )
            for batch in stream:
                for meta in batch:
                    path = meta["path"]
                    if not path.startswith(prefix):
                        # No early stop: SeaweedFS lists "p/…" before "p-x" (a tree
                        # walk), so byte order cannot tell that the prefix is done.
                        continue
                    found.append(
                        ObjectInfo(path, meta["size"], (meta.get("e_tag") or "").strip('"'))
                    )
                else:
                    if len(found) <= limit:
                        continue
                break
        except Exception as exc:
            self._fail(exc, prefix)
        more = len(found) > limit
        items = found[:limit]
        return ObjectPage(items, items[-1].name if more and items else None)

    def close(self) -> None:
        return None


def _safe(exc: BaseException) -> str:
    """The first line of a driver message, cut short (obstore's are multi-line debug dumps)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
