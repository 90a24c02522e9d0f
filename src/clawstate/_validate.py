"""Input checks shared by every entry point (facade, CLI, later the server).

Each check raises :class:`InvalidRequest` naming the field and the limit, and
runs before anything is written, so a refused request changes nothing.
"""

from __future__ import annotations

from typing import Any

from .config import MAX_KEY_BYTES, MAX_NAMESPACE_LEN, MAX_TTL_SECONDS, Limits
from .config import check_namespace_name as _config_check
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


def check_namespace_name(
    name: Any, max_len: int = MAX_NAMESPACE_LEN, *, system: bool = False
) -> None:
    """Namespace names follow the config's rule (:func:`clawstate.config.check_namespace_name`);
    ``system=True`` also admits the ``_``-prefixed names reserved for clawstate's own use."""
    if system and isinstance(name, str) and name.startswith("_"):
        name = name[1:]
    if type(name) is not str:
        raise InvalidRequest("namespace", f"must be a string, got {type(name).__name__}")
    _config_check(name, Limits(max_namespace_len=max_len), error=InvalidRequest)


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
