"""Key-encryption keys (KEKs): where they live, how they are checked and rotated.

clawstate encrypts every value under its own random data key (DEK) and stores
that DEK *wrapped* under a long-lived key-encryption key from this keyring (see
:mod:`clawstate.codec`).  Each KEK has a short id (``kid``) that is written in
the clear into every encrypted value, so a reader knows which KEK unwraps it.
Keeping the kid → key mapping here, apart from the codec, is what makes key
rotation cheap: :meth:`Keyring.rotate` adds a new primary KEK, new writes use
it, and old values stay readable (and can be re-wrapped in the background)
because the old KEKs stay in the ring.

A keyring is one small JSON document::

    {"primary": "k1", "keys": {"k1": "<base64 of 32 random bytes>", ...}}

It comes from a file (``file:<path>`` or a bare path; created on first use
with mode 0600, written atomically, and created or rotated under an advisory
lock on ``<path>.lock`` so concurrent processes never lose each other's keys)
or from an environment variable (``env:VARNAME``, read-only: rotation needs a
writable source).

The document is validated strictly and every problem is a
:class:`~clawstate.errors.ConfigError`, because a keyring that half-loads is
worse than none: a mistyped key would make every value written with it
unreadable.  Key material never appears in an exception message or a repr.

**Never delete a key from the ring** while values wrapped under it may
exist; rotate, re-wrap (``Codec.rewrap``), and only then retire it.

A store never lets ``from_source(create=True)`` stand in for a keyring it lost:
each backend records the kids its values are sealed under, a store whose keyring
lacks one of them does not open, and a new file is only made for a store that
records none (:class:`clawstate.store.Store`, docs/configuration.md "The keyring
belongs to the store").  Where the file is when no source is configured is
decided by the configuration, from the store, never the working directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from clawstate.errors import ConfigError, IntegrityError

__all__ = ["KEY_BYTES", "Keyring"]

#: Length of every key-encryption key: AES-256.
KEY_BYTES = 32

#: A kid is written into every encrypted value (1-byte length prefix), shown in
#: logs and ``check`` reports, and used in file names by operators: keep it short
#: and boring.
_KID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

#: A keyring document is a few hundred bytes; refuse to slurp something huge
#: that was pointed at by mistake.
_MAX_DOCUMENT_BYTES = 1 << 20

#: ``scheme:`` prefixes we refuse instead of treating as a file name, so that a
#: typo such as ``envv:KEYS`` or a future ``kms:…`` is an error, not a new file.
#: One-letter prefixes are left alone: ``C:\\keys.json`` is a Windows path.
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    """The on-disk / in-env shape of a keyring."""

    primary: str
    keys: dict[str, str]


_DOC_DECODER = msgspec.json.Decoder(_Document)


def _check_kid(kid: object, where: str = "") -> str:
    if not isinstance(kid, str) or _KID_RE.fullmatch(kid) is None:
        shown = repr(kid)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ConfigError(
            "keyring",
            f"key id {shown}{where} is invalid: use 1-64 characters from A-Z a-z 0-9 . _ : -, "
            "starting with a letter or digit",
        )
    return kid


def _new_kid(taken: Mapping[str, bytes]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    while True:
        kid = f"k-{stamp}-{secrets.token_hex(2)}"
        if kid not in taken:
            return kid


class Keyring:
    """A set of 32-byte KEKs by id, one of which is the primary (used for new writes).

    Build one with :meth:`from_source` (file or environment), :meth:`generate`
    (a fresh in-memory ring, handy in tests) or directly from a mapping::

        Keyring({"k1": os.urandom(32)}, "k1")

    Reads are lock-free: the ``(primary_id, keys)`` pair is swapped as one
    object, so a concurrent :meth:`rotate` is never seen half-done.
    """

    __slots__ = ("__weakref__", "_lock", "_source", "_state")

    def __init__(
        self,
        keys: Mapping[str, bytes],
        primary_id: str,
        *,
        source: str | None = None,
    ) -> None:
        checked: dict[str, bytes] = {}
        for kid, key in keys.items():
            _check_kid(kid)
            if not isinstance(key, bytes | bytearray | memoryview):
                raise ConfigError("keyring", f"key {kid!r} must be bytes, not {type(key).__name__}")
            raw = bytes(key)
            if len(raw) != KEY_BYTES:
                raise ConfigError(
                    "keyring",
                    f"key {kid!r} is {len(raw)} bytes; AES-256 needs exactly {KEY_BYTES}",
                )
            checked[kid] = raw
        if not checked:
            raise ConfigError("keyring", "the keyring holds no keys")
        if primary_id not in checked:
            raise ConfigError(
                "keyring",
                f"primary {primary_id!r} is not among the keys ({', '.join(checked)})",
            )
        self._state: tuple[str, dict[str, bytes]] = (primary_id, checked)
        self._source = source
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def generate(cls, kid: str | None = None) -> Keyring:
        """A new in-memory keyring holding one fresh random key (the primary)."""
        kid = _check_kid(kid) if kid is not None else _new_kid({})
        return cls({kid: os.urandom(KEY_BYTES)}, kid)

    @classmethod
    def from_json(cls, document: str | bytes, *, source: str | None = None) -> Keyring:
        """Parse a keyring document (``{"primary": ..., "keys": {kid: base64}}``)."""
        where = f" in {source}" if source else ""
        try:
            doc = _DOC_DECODER.decode(document)
        except msgspec.ValidationError as exc:
            raise ConfigError("keyring", f"bad keyring document{where}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ConfigError("keyring", f"keyring{where} is not valid JSON: {exc}") from None
        keys: dict[str, bytes] = {}
        for kid, text in doc.keys.items():
            _check_kid(kid, where)
            try:
                keys[kid] = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                # ValueError: non-ASCII text.  Never echo the text: it is key material.
                raise ConfigError(
                    "keyring", f"key {kid!r}{where} is not valid standard base64"
                ) from None
            if len(keys[kid]) != KEY_BYTES:
                raise ConfigError(
                    "keyring",
                    f"key {kid!r}{where} is {len(keys[kid])} bytes after base64 decoding; "
                    f"AES-256 needs exactly {KEY_BYTES}",
                )
        if not keys:
            raise ConfigError("keyring", f"the keyring{where} holds no keys")
        if doc.primary not in keys:
            raise ConfigError(
                "keyring",
                f"primary {doc.primary!r}{where} is not among the keys ({', '.join(keys)})",
            )
        return cls(keys, doc.primary, source=source)

    @classmethod
    def from_source(cls, source: str, *, create: bool = True) -> Keyring:
        """Load the keyring named by ``source``.

        ``"env:VARNAME"`` reads the JSON document from an environment variable;
        ``"file:<path>"`` or a bare path reads a JSON file.  A missing file is
        created (with one fresh key, mode 0600, parent directories made) when
        ``create`` is true, else it is a :class:`ConfigError`.
        """
        if not isinstance(source, str) or not source.strip():
            raise ConfigError("keyring.source", "no keyring source given")
        if source.startswith("env:"):
            var = source[4:]
            if not var:
                raise ConfigError("keyring.source", "'env:' needs a variable name")
            text = os.environ.get(var)
            if text is None:
                raise ConfigError("keyring.source", f"environment variable {var} is not set")
            return cls.from_json(text, source=source)
        if source.startswith("file:"):
            raw_path = source[5:]
            if raw_path.startswith("///"):  # file:///abs, as in a URL
                raw_path = raw_path[2:]
            elif raw_path.startswith("//"):
                raise ConfigError("keyring.source", f"file: keyrings cannot name a host: {source}")
        else:
            scheme = _SCHEME_RE.match(source)
            if scheme is not None:
                raise ConfigError(
                    "keyring.source",
                    f"unknown keyring source scheme {scheme.group(1)!r}: "
                    "use 'file:<path>', 'env:<VARNAME>' or a plain path",
                )
            raw_path = source
        if not raw_path:
            raise ConfigError("keyring.source", "'file:' needs a path")
        path = Path(raw_path).expanduser().absolute()
        normalized = f"file:{path}"
        try:
            return cls._load_file(path, normalized)
        except FileNotFoundError:
            if not create:
                raise ConfigError("keyring.source", f"keyring file {path} does not exist") from None
        with _file_lock(path):
            # Another process may have created it while we waited for the lock.
            try:
                return cls._load_file(path, normalized)
            except FileNotFoundError:
                pass
            ring = cls.generate()
            ring._source = normalized
            _write_atomically(path, ring._document())
            return ring

    @classmethod
    def _load_file(cls, path: Path, source: str) -> Keyring:
        """Read and parse ``path``; ``FileNotFoundError`` passes through."""
        try:
            with path.open("rb") as fh:
                data = fh.read(_MAX_DOCUMENT_BYTES + 1)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ConfigError(
                "keyring.source", f"cannot read keyring file {path}: {exc.strerror or exc}"
            ) from None
        if len(data) > _MAX_DOCUMENT_BYTES:
            raise ConfigError(
                "keyring", f"keyring file {path} is larger than {_MAX_DOCUMENT_BYTES} bytes"
            )
        return cls.from_json(data, source=source)

    # -- reading --------------------------------------------------------------------

    @property
    def primary_id(self) -> str:
        """The id of the key new values are wrapped under."""
        return self._state[0]

    @property
    def source(self) -> str | None:
        """Where the ring was loaded from (``file:<abs path>``, ``env:VAR``), or None."""
        return self._source

    def primary(self) -> tuple[str, bytes]:
        """``(kid, key)`` of the primary key."""
        kid, keys = self._state
        return kid, keys[kid]

    def get(self, kid: str) -> bytes:
        """The key with id ``kid``; :class:`IntegrityError` if the ring does not hold it."""
        try:
            return self._state[1][kid]
        except (KeyError, TypeError):
            raise IntegrityError(
                f"key id {kid!r} is not in the keyring (it holds {', '.join(self.ids())}); "
                "was a retired key removed too early?"
            ) from None

    def ids(self) -> list[str]:
        """Every key id, oldest first (file order)."""
        return list(self._state[1])

    def __contains__(self, kid: object) -> bool:
        return kid in self._state[1]

    def __len__(self) -> int:
        return len(self._state[1])

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __repr__(self) -> str:
        primary, keys = self._state
        src = f", source={self._source!r}" if self._source else ""
        return f"Keyring(primary={primary!r}, ids={list(keys)!r}{src})"

    # -- rotation -------------------------------------------------------------------

    def rotate(self) -> str:
        """Add a fresh random key, make it the primary, persist, and return its id.

        For a file source the file is re-read under an exclusive lock first and
        merged, so two processes rotating at once never drop each other's key
        (losing a KEK loses every value wrapped under it).  Sources that cannot
        be written (``env:``) raise :class:`ConfigError`; an in-memory ring
        (no source) just rotates in memory.
        """
        with self._lock:
            source = self._source
            if source is None:
                keys = dict(self._state[1])
                kid = _new_kid(keys)
                keys[kid] = os.urandom(KEY_BYTES)
                self._state = (kid, keys)
                return kid
            if not source.startswith("file:"):
                raise ConfigError(
                    "keyring.source",
                    f"cannot rotate: the keyring source {source} is read-only; "
                    "move the keyring to a file, or generate a new key and update it by hand",
                )
            path = Path(source[5:])
            with _file_lock(path):
                keys = dict(self._state[1])
                try:
                    on_disk = self._load_file(path, source)._state[1]
                except FileNotFoundError:
                    on_disk = {}
                for other_kid, other_key in on_disk.items():
                    mine = keys.get(other_kid)
                    if mine is None:
                        keys[other_kid] = other_key
                    elif not secrets.compare_digest(mine, other_key):
                        raise ConfigError(
                            "keyring",
                            f"key {other_kid!r} in {path} differs from the one in memory; "
                            "refusing to rotate",
                        )
                kid = _new_kid(keys)
                keys[kid] = os.urandom(KEY_BYTES)
                _write_atomically(path, _document(kid, keys))
                self._state = (kid, keys)
                return kid

    def _document(self) -> bytes:
        primary, keys = self._state
        return _document(primary, keys)


def _document(primary: str, keys: Mapping[str, bytes]) -> bytes:
    body = {
        "primary": primary,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in keys.items()},
    }
    return msgspec.json.format(msgspec.json.encode(body), indent=2) + b"\n"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``<path>.lock`` (POSIX); a no-op where unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    _make_parent(path)
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            "keyring.source", f"cannot lock keyring file {path}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            "keyring.source",
            f"cannot create directory {path.parent}: {exc.strerror or exc}",
        ) from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600: temp file, fsync, rename, fsync dir.

    A crash leaves either the old file or the new one, never a torn keyring.
    """
    _make_parent(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(
            "keyring.source", f"cannot write keyring file {path}: {exc.strerror or exc}"
        ) from None
    if hasattr(os, "O_DIRECTORY"):
        try:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # pragma: no cover - exotic filesystems
            return
        try:
            os.fsync(dfd)
        except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
            pass
        finally:
            os.close(dfd)
