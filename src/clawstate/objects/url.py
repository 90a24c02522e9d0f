"""Build an :class:`~.base.ObjectStore` from its URL, checking every part of it.

``file:<dir>`` (relative to ``base_dir``, the store's directory) or ``file:///abs``;
``s3://bucket[/prefix]?endpoint=http://127.0.0.1:8333&region=us-east-1`` with optional
``access_key_id``, ``secret_access_key``, ``session_token``, ``timeout`` (seconds),
``retries``, ``multipart_threshold``, ``part_size``, ``concurrency`` and ``max_size``
(bytes).  Credentials and endpoint not in the URL come from ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL``.  A bad URL is an
:class:`~clawstate.errors.InvalidRequest` whose ``field`` names the part
(``url.endpoint``, ``url.part_size``…); the message never repeats a secret.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ..errors import InvalidRequest
from .base import MAX_OBJECT_BYTES, ObjectStore, check_name
from .filestore import FileObjectStore
from .s3 import S3ObjectStore

__all__ = ["open_object_store", "redact"]

_MIB = 1024 * 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_SECRETS = ("secret_access_key", "session_token")
#: option -> (minimum, maximum): S3 parts are 5 MiB .. 5 GiB, at most 10,000 of them.
_INT_OPTIONS: dict[str, tuple[int, int]] = {
    "retries": (0, 20),
    "multipart_threshold": (5 * _MIB, 5 * 1024 * _MIB),
    "part_size": (5 * _MIB, 5 * 1024 * _MIB),
    "concurrency": (1, 64),
    "max_size": (0, MAX_OBJECT_BYTES),
}
_S3_KEYS = {
    "endpoint",
    "region",
    "access_key_id",
    *_SECRETS,
    "timeout",
    *_INT_OPTIONS,
}


def redact(url: str) -> str:
    """``url`` with secret query values replaced by ``***`` (for logs and errors)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = []
    for item in parts.query.split("&"):
        key, sep, value = item.partition("=")
        pairs.append(f"{key}{sep}{'***' if unquote(key) in _SECRETS and value else value}")
    return urlunsplit(parts._replace(query="&".join(pairs)))


def open_object_store(
    url: str, base_dir: str | os.PathLike[str] = ".", *, env: Mapping[str, str] | None = None
) -> ObjectStore:
    """The object store ``url`` names; ``base_dir`` anchors a relative ``file:`` path."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest("url", "must be a non-empty string such as 'file:objects'")
    if "\x00" in url or any(ord(c) < 0x20 for c in url):
        raise InvalidRequest("url", "must not contain NUL or control characters")
    environ = os.environ if env is None else env
    scheme = url.partition(":")[0].lower()
    if scheme == "file":
        return _file(url, Path(base_dir))
    if scheme == "s3":
        return _s3(url, environ)
    raise InvalidRequest(
        "url", f"unknown object store scheme {scheme!r}; use 'file:<dir>' or 's3://bucket?...'"
    )


def _file(url: str, base: Path) -> FileObjectStore:
    rest = url[len("file:") :]
    if rest.startswith("//"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequest("url", f"file URLs name a local path, not host {parts.netloc!r}")
        rest = unquote(parts.path)
    if not rest:
        raise InvalidRequest("url", "a file: URL needs a directory, e.g. 'file:.clawstate/objects'")
    if "?" in rest or "#" in rest:
        raise InvalidRequest("url", "file: URLs take no query or fragment")
    path = Path(rest)
    root = path if path.is_absolute() else base / path
    return FileObjectStore(root, url=url)


def _s3(url: str, environ: Mapping[str, str]) -> S3ObjectStore:
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise InvalidRequest("url", f"cannot parse the query: {exc}") from None
    if parts.fragment:
        raise InvalidRequest("url", "s3:// URLs take no fragment")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "url", "put credentials in access_key_id= / secret_access_key= or AWS_* variables"
        )
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidRequest(
            "url.bucket",
            f"{bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -, starting and ending "
            "with a letter or digit)",
        )
    prefix = unquote(parts.path).strip("/")
    if prefix:
        check_name(prefix, "url.prefix")
    unknown = sorted(set(query) - _S3_KEYS)
    if unknown:
        raise InvalidRequest(
            f"url.{unknown[0]}", f"unknown option; known: {', '.join(sorted(_S3_KEYS))}"
        )
    opts: dict[str, str] = {}
    for key, values in query.items():
        if len(values) != 1:
            raise InvalidRequest(f"url.{key}", "given more than once")
        opts[key] = values[0]

    endpoint = opts.get("endpoint") or environ.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None:
        endpoint = _check_endpoint(endpoint)
    region = (
        opts.get("region")
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    if not _REGION.match(region):
        raise InvalidRequest("url.region", f"{region!r} is not a region name (a-z 0-9 -)")
    timeout = 30.0
    if "timeout" in opts:
        try:
            timeout = float(opts["timeout"])
        except ValueError:
            raise InvalidRequest("url.timeout", "must be a number of seconds") from None
        if not 0.1 <= timeout <= 3600:  # also refuses NaN
            raise InvalidRequest("url.timeout", "must be between 0.1 and 3600 seconds", limit=3600)
    ints: dict[str, int] = {}
    for key, (low, high) in _INT_OPTIONS.items():
        if key in opts:
            raw = opts[key]
            if not re.fullmatch(r"[0-9]{1,16}", raw):
                raise InvalidRequest(f"url.{key}", f"must be a whole number, got {raw[:20]!r}")
            value = int(raw)
            if not low <= value <= high:
                raise InvalidRequest(
                    f"url.{key}", f"must be between {low} and {high}, got {value}", limit=high
                )
            ints[key] = value
    access = opts.get("access_key_id") or environ.get("AWS_ACCESS_KEY_ID") or None
    secret = opts.get("secret_access_key") or environ.get("AWS_SECRET_ACCESS_KEY") or None
    token = opts.get("session_token") or environ.get("AWS_SESSION_TOKEN") or None
    if (access is None) != (secret is None):
        raise InvalidRequest(
            "url.secret_access_key" if secret is None else "url.access_key_id",
            "an access key id and a secret access key go together",
        )
    return S3ObjectStore(
        url=redact(url),
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        region=region,
        access_key_id=access,
        secret_access_key=secret,
        session_token=token,
        timeout=timeout,
        **ints,
    )


def _check_endpoint(endpoint: str) -> str:
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest("url.endpoint", f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("url.endpoint", "must start with http:// or https://")
    if not parts.hostname:
        raise InvalidRequest("url.endpoint", "names no host")
    if parts.username or parts.password:
        raise InvalidRequest("url.endpoint", "must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidRequest("url.endpoint", "must be scheme://host[:port] only")
    if port == 0:
        raise InvalidRequest("url.endpoint", "port 0 is not a server's port")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host):
            raise InvalidRequest("url.endpoint", f"{host!r} is not a host name") from None
    return f"{parts.scheme}://{parts.netloc}"
