"""Input checks shared by every entry point (facade, CLI, later the server).

Each check raises :class:`InvalidRequest` naming the field and the limit, and
runs before anything is written, so a refused request changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidRequest

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_TTL_SECONDS",
    "check_key",
    "check_limit",
    "check_namespace_name",
    "check_ttl",
    "check_version",
]

MAX_KEY_BYTES = 1024
MAX_TTL_SECONDS = 10 * 365 * 86400
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*\Z")
_SYSTEM_NAMESPACE_RE = re.compile(r"_[A-Za-z0-9_.:\-]+\Z")


def check_key(key: Any, max_bytes: int = MAX_KEY_BYTES, field: str = "key") -> None:
    """A key is a non-empty str of at most ``max_bytes`` UTF-8 bytes, without NUL."""
    if type(key) is not str:
        raise InvalidRequest(field, f"must be a string, got {type(key).__name__}")
    n = len(key)
    # Fast path: 4 bytes per code point at most, so short keys cannot be too long.
    if n > 0 and n * 4 <= max_bytes and "\x00" not in key and key.isprintable():
        return
    if n == 0:
        raise InvalidRequest(field, "must not be empty")
    if "\x00" in key:
        raise InvalidRequest(field, "must not contain NUL (\\x00)")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(field, "is not valid Unicode (lone surrogate)") from None
    if size > max_bytes:
        raise InvalidRequest(
            field, f"is {size} bytes of UTF-8; the limit is {max_bytes}", limit=max_bytes
        )


def check_namespace_name(name: Any, max_len: int = 128, *, system: bool = False) -> None:
    """Namespace names: ``[A-Za-z0-9][A-Za-z0-9_.:-]*``, at most ``max_len`` characters.

    Names starting with ``_`` are reserved for clawstate's own namespaces.
    """
    if type(name) is not str:
        raise InvalidRequest("namespace", f"must be a string, got {type(name).__name__}")
    if not name or len(name) > max_len:
        raise InvalidRequest(
            "namespace", f"must be 1 to {max_len} characters, got {len(name)}", limit=max_len
        )
    pattern = _SYSTEM_NAMESPACE_RE if system and name.startswith("_") else _NAMESPACE_RE
    if not pattern.match(name):
        raise InvalidRequest(
            "namespace",
            f"{name!r} must start with a letter or digit and use only letters, digits and _.:-"
            + ("" if system else " (names starting with '_' are reserved)"),
        )


def check_ttl(ttl: Any, max_seconds: float = MAX_TTL_SECONDS, field: str = "ttl") -> float:
    """A TTL is a number of seconds, > 0 and at most ``max_seconds`` (10 years)."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise InvalidRequest(field, f"must be a number of seconds, got {type(ttl).__name__}")
    if not ttl > 0:  # also refuses NaN
        raise InvalidRequest(field, f"must be greater than 0, got {ttl!r}")
    if ttl > max_seconds:
        raise InvalidRequest(
            field, f"is {ttl!r} seconds; the limit is {max_seconds:g} (10 years)", limit=max_seconds
        )
    return float(ttl)


def check_version(version: Any, field: str = "if_version") -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidRequest(field, f"must be an integer, got {type(version).__name__}")
    if version < 1:
        raise InvalidRequest(field, f"must be >= 1 (versions start at 1), got {version}")
    return version


def check_limit(limit: Any, maximum: int, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidRequest(field, f"must be an integer, got {type(limit).__name__}")
    if limit < 1 or limit > maximum:
        raise InvalidRequest(field, f"must be between 1 and {maximum}, got {limit}", limit=maximum)
    return limit
