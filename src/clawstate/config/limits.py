"""``[limits]``: the bounds every request is checked against, and their checks.

A field of :class:`Limits` and its entry in ``_LIMIT_OPTIONS`` go together; the module
refuses to import when they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from clawstate.errors import ConfigError

from ._common import MAX_KEY_BYTES, MAX_NAMESPACE_LEN, MAX_TTL_SECONDS, _Check, _dotted
from .checks import (
    _check_fields_match,
    _count_check,
    _duration_check,
    _normalize,
    _optional,
    _size_check,
)

#: ``limits.max_query_scan`` under ``clawstate serve`` when the configuration leaves it
#: unset: a server must not let one request read a whole large namespace silently.
SERVER_MAX_QUERY_SCAN: Final = 100_000

#: Upper bounds of the limits an operator may raise: past them a limit stops bounding
#: anything (a batch of 10**30 writes, a filter nested 10**6 deep that the recursive
#: parser cannot take, a page the server would build in memory), so a config asking
#: for more is refused, naming the bound.
MAX_VALUE_BYTES: Final = 1024 * 1024 * 1024
MAX_BATCH: Final = 100_000
MAX_QUERY_DEPTH: Final = 64
MAX_QUERY_LIMIT: Final = 1_000_000

#: The largest ``max_query_scan`` accepted: more rows than any store holds (2**53, so
#: that the bound survives a JSON double), and a huge integer is refused, not carried.
MAX_QUERY_SCAN: Final = 2**53


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Bounds every request is checked against before anything is written.

    ``max_key_bytes`` (UTF-8 bytes, at most 1024), ``max_namespace_len`` (at most 128) and
    ``max_ttl_seconds`` (at most 10 years) may be lowered, never raised.  ``max_batch``
    bounds the writes of one ``put_many`` or transaction; ``default_query_limit`` is the
    page size when a query gives none and may not exceed ``max_query_limit``.
    ``max_query_scan`` refuses a query that no index serves and that would read more
    rows than that (``InvalidRequest``, field ``query``, naming the index that would
    serve it): unset (``None``) it is off embedded and :data:`SERVER_MAX_QUERY_SCAN`
    under ``clawstate serve``; ``0`` turns it off everywhere.
    """

    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = 16 * 1024 * 1024
    max_batch: int = 1000
    max_query_depth: int = 8
    max_query_limit: int = 10_000
    default_query_limit: int = 1_000
    max_namespace_len: int = MAX_NAMESPACE_LEN
    max_ttl_seconds: float = float(MAX_TTL_SECONDS)
    max_query_scan: int | None = None

    def __post_init__(self) -> None:
        _normalize(self, _LIMIT_FIELDS)
        _check_query_limits(self.default_query_limit, self.max_query_limit)


_LIMIT_OPTIONS: Final[Mapping[str, _Check]] = {
    "max_key_bytes": _size_check(
        minimum=1, maximum=MAX_KEY_BYTES, note=" (the fixed maximum; it may only be lowered)"
    ),
    "max_value_bytes": _size_check(
        minimum=1, maximum=MAX_VALUE_BYTES, note=" (a value is one row and one message)"
    ),
    "max_batch": _count_check(
        minimum=1, maximum=MAX_BATCH, note=" (one batch is one transaction held in memory)"
    ),
    "max_query_depth": _count_check(
        minimum=1, maximum=MAX_QUERY_DEPTH, note=" (filters are parsed recursively)"
    ),
    "max_query_limit": _count_check(minimum=1, maximum=MAX_QUERY_LIMIT),
    "default_query_limit": _count_check(minimum=1, maximum=MAX_QUERY_LIMIT),
    "max_namespace_len": _count_check(
        minimum=1, maximum=MAX_NAMESPACE_LEN, note=" (the fixed maximum; it may only be lowered)"
    ),
    "max_query_scan": _optional(
        _count_check(minimum=0, maximum=MAX_QUERY_SCAN, note=" (0 turns the bound off)")
    ),
    "max_ttl_seconds": _duration_check(
        allow_zero=False,
        maximum=MAX_TTL_SECONDS,
        note=" (the fixed maximum; it may only be lowered)",
    ),
}

_LIMIT_FIELDS: Final = {n: (_dotted("limits", n), c) for n, c in _LIMIT_OPTIONS.items()}


def _check_query_limits(default: int, maximum: int, origin: str = "") -> None:
    if default > maximum:
        raise ConfigError(
            "limits.default_query_limit",
            f"must be <= limits.max_query_limit ({maximum}), got {default}{origin}",
        )


_check_fields_match(Limits, _LIMIT_OPTIONS)
