"""``file:<dir>``: objects as files under one directory (the embedded default).

A ``put`` streams into ``<dir>/.tmp/<random>``, fsyncs it, renames it over the target
and fsyncs the target's directory: after a crash a reader finds the old object or the
whole new one, and a leftover temp file is never listed (``.tmp/`` is reserved) and is
removed by :meth:`FileObjectStore.sweep_temp`.  Names are checked before any path is
built, and the resolved path is checked to stay under the root, so no name reaches
outside it.  A name cannot be both an object and a "directory" of others (``a`` and
``a/b``): S3 allows it, a filesystem does not, and the store refuses the second.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import BackendUnavailable, InvalidRequest
from .base import (
    MAX_OBJECT_BYTES,
    Data,
    Guarded,
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

__all__ = ["FileObjectStore"]

_CHUNK = 1024 * 1024
_TMP = ".tmp"


class FileObjectStore:
    """Objects as files under ``root``; see the module docstring for the guarantees."""

    def __init__(self, root: Path, *, url: str | None = None, max_size: int = MAX_OBJECT_BYTES):
        self.root = Path(root).resolve()
        self.url = url or f"file:{self.root}"
        self.max_size = max_size
        try:
            (self.root / _TMP).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(
                f"object store {self.url}: cannot create {self.root}: {exc}"
            ) from None

    def __repr__(self) -> str:
        return f"FileObjectStore({self.url!r})"

    # -- paths ----------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        check_name(name)
        path = self.root.joinpath(*name.split("/"))
        # Belt and braces: a symlink planted inside the root must not lead outside it.
        real = path.parent.resolve()
        if real != self.root and self.root not in real.parents:
            raise InvalidRequest("name", f"{name!r} resolves outside the object store")
        return path

    def _info(self, name: str, st: os.stat_result) -> ObjectInfo:
        # A rename gives every write a new inode and mtime: the etag changes on each put.
        return ObjectInfo(name, st.st_size, f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}")

    # -- writes ---------------------------------------------------------------------

    def put(self, name: str, data: Data, *, content_type: str | None = None) -> ObjectInfo:
        """Stream ``data`` into a temp file, fsync, rename into place, fsync the directory.

        ``content_type`` is checked but not kept: a file has no place for it.
        """
        path = self._path(name)
        check_content_type(content_type)
        counter = LimitedCounter(self.max_size)
        source = Guarded(chunks(data, _CHUNK))
        tmp = self.root / _TMP / f"{secrets.token_hex(12)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                with os.fdopen(fd, "wb", buffering=0) as out:
                    for chunk in source:
                        view = memoryview(counter.add(chunk))
                        while view:
                            view = view[out.write(view) or 0 :]
                    os.fsync(out.fileno())
                self._place(tmp, path, name)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            st = path.stat()
        except OSError as exc:
            if source.error is exc:
                raise  # the caller's source broke, not the store
            raise self._translate(exc, name) from exc
        return self._info(name, st)

    def _place(self, tmp: Path, path: Path, name: str) -> None:
        for _ in range(3):  # a concurrent delete may prune the parent between mkdir and rename
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise InvalidRequest(
                    "name", f"{name!r} is under an existing object (a file store cannot hold both)"
                ) from None
            try:
                if path.is_dir():
                    raise InvalidRequest(
                        "name",
                        f"{name!r} is a prefix of existing objects (a file store cannot hold both)",
                    )
                os.replace(tmp, path)
            except FileNotFoundError:
                continue
            _fsync_dir(path.parent)
            return
        raise BackendUnavailable(f"object store {self.url}: {name!r}: directory kept vanishing")

    def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except IsADirectoryError:
            return False
        except OSError as exc:
            raise self._translate(exc, name) from exc
        _fsync_dir(path.parent)
        self._prune(path.parent)
        return True

    def _prune(self, directory: Path) -> None:
        """Remove directories a delete left empty (a racing put recreates what it needs)."""
        while directory != self.root:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # -- reads ----------------------------------------------------------------------

    def _stat(self, name: str) -> os.stat_result | None:
        try:
            st = self._path(name).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._translate(exc, name) from exc
        return st if stat.S_ISREG(st.st_mode) else None

    def head(self, name: str) -> ObjectInfo | None:
        st = self._stat(name)
        return None if st is None else self._info(name, st)

    def open(self, name: str) -> IO[bytes]:
        path = self._path(name)
        try:
            if path.is_dir():
                raise ObjectNotFound(name)
            return path.open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise self._translate(exc, name) from exc

    def get(self, name: str) -> bytes:
        with self.open(name) as f:
            try:
                return f.read()
            except OSError as exc:
                raise self._translate(exc, name) from exc

    def get_range(self, name: str, start: int, end: int) -> bytes:
        start, end = check_range(start, end)
        with self.open(name) as f:
            try:
                end = min(end, os.fstat(f.fileno()).st_size)  # never allocate past the end
                if end <= start:
                    return b""
                f.seek(start)
                return f.read(end - start)
            except OSError as exc:
                raise self._translate(exc, name) from exc

    def list(self, prefix: str = "", limit: int = 1000, cursor: str | None = None) -> ObjectPage:
        """Walk only the directories that can hold ``prefix``, in name order."""
        prefix = check_prefix(prefix)
        limit = check_limit(limit)
        if cursor is not None:
            check_name(cursor, "cursor")
        found: list[ObjectInfo] = []
        # Start at the deepest directory the prefix names whole.
        head, _, _ = prefix.rpartition("/")
        start_dir = self.root.joinpath(*head.split("/")) if head else self.root
        try:
            for name, st in _sorted_walk(start_dir, head):
                if not name.startswith(prefix) or (cursor is not None and name <= cursor):
                    continue
                found.append(self._info(name, st))
                if len(found) > limit:
                    break
        except OSError as exc:
            raise self._translate(exc, prefix) from exc
        more = len(found) > limit
        items = found[:limit]
        return ObjectPage(items, items[-1].name if more and items else None)

    # -- errors ---------------------------------------------------------------------

    def _translate(self, exc: OSError, name: str) -> Exception:
        if exc.errno in (errno.ENAMETOOLONG,):
            return InvalidRequest("name", f"{name!r} is too long for this filesystem")
        return BackendUnavailable(f"object store {self.url}: {name!r}: {exc.strerror or exc}")

    def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Remove uploads in flight older than ``older_than`` seconds (left by a crash)."""
        import time

        removed = 0
        cutoff = time.time() - older_than
        for entry in os.scandir(self.root / _TMP):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def close(self) -> None:
        return None


def _sorted_walk(directory: Path, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(name, stat)`` of every file under ``directory`` in byte-wise name order.

    Sorting each level by ``name + "/"`` for directories gives the global order S3 uses
    (``a/b`` after ``a-c``, since ``/`` sorts after ``-``).
    """
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    keyed: list[tuple[bytes, os.DirEntry[str], bool]] = []
    for entry in entries:
        if not rel and entry.name == _TMP:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        keyed.append(((entry.name + "/" if is_dir else entry.name).encode(), entry, is_dir))
    keyed.sort(key=lambda k: k[0])
    for _, entry, is_dir in keyed:
        name = f"{rel}/{entry.name}" if rel else entry.name
        if is_dir:
            yield from _sorted_walk(Path(entry.path), name)
        elif entry.is_file(follow_symlinks=False):
            yield name, entry.stat(follow_symlinks=False)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
