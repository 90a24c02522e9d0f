"""Durations (``"30s"``, ``"1h30m"``) and sizes (``"16MiB"``) as people write them.

The ``_*_value`` readers only take the text apart and raise :class:`._common._Invalid`;
range checks belong to whoever knows the bound (the option checks in
:mod:`clawstate.config.checks`), and the public ``parse_*`` functions turn the signal
into a :class:`~clawstate.errors.ConfigError` for callers outside the configuration
(the CLI's ``--ttl``, the server's token lifetimes, ``memoize``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final, TypeVar

from clawstate.errors import ConfigError

from ._common import _Invalid, _show

# --------------------------------------------------------------------------- durations


_DURATION_UNITS: Final[Mapping[str, float]] = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_DURATION_TERM_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*")
_DURATION_RE: Final = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w|y)\s*)+")
_NUMBER_RE: Final = re.compile(r"[+-]?\d+(?:\.\d+)?")
_DURATION_HINT: Final = 'seconds, or a string like "30s", "15m", "24h", "7d"'


def _duration_value(value: object) -> float:
    """Seconds from a number or a string (``"90"``, ``"30s"``, ``"1h30m"``); not range-checked."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"must be a duration ({_DURATION_HINT}), got {_show(value)}")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER_RE.fullmatch(text):
            seconds = float(text)
        elif _DURATION_RE.fullmatch(text):
            seconds = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_TERM_RE.findall(text)
            )
        else:
            raise _Invalid(
                f"must be a duration ({_DURATION_HINT}; units: ms, s, m, h, d, w, y), "
                f"got {_show(value)}"
            )
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if not math.isfinite(seconds):
        raise _Invalid(f"must be a finite duration, got {_show(value)}")
    return seconds


_N = TypeVar("_N", int, float)


def _non_negative(read: Callable[[object], _N], kind: str, value: object, field: str) -> _N:
    """``read(value)`` for a caller outside the configuration: below zero is refused, and
    either problem is a :class:`ConfigError` naming ``field``."""
    try:
        number = read(value)
        if number < 0:
            raise _Invalid(f"must be a {kind} >= 0, got {_show(value)}")
    except _Invalid as exc:
        raise ConfigError(field, exc.message) from None
    return number


def parse_duration(value: object, *, field: str = "duration") -> float:
    """Seconds (float) from a number of seconds or a string: ``"500ms"``, ``"30s"``, ``"15m"``,
    ``"24h"``, ``"7d"``, ``"2w"``, ``"10y"`` (365 days), ``"1h30m"``, ``"86400"``.

    Booleans, negative and non-finite values raise :class:`ConfigError` naming ``field``.
    """
    return _non_negative(_duration_value, "duration", value, field)


# --------------------------------------------------------------------------- sizes


_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
_SIZE_HINT: Final = 'bytes, or a string like "4KiB", "16MiB", "1MB"'


def _size_value(value: object) -> int:
    """Bytes from an int or a string (``"4096"``, ``"4KiB"``, ``"1.5MB"``); not range-checked."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(f"must be a size ({_SIZE_HINT}), got {_show(value)}")
    if isinstance(value, int):
        return value
    text = value.strip()
    if _NUMBER_RE.fullmatch(text) and "." not in text:
        return int(text)
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise _Invalid(
            f"must be a size ({_SIZE_HINT}; units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), "
            f"got {_show(value)}"
        )
    size = Decimal(match.group(1)) * _SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise _Invalid(f"must be a whole number of bytes, got {_show(value)} ({size} bytes)")
    return int(size)


def parse_size(value: object, *, field: str = "size") -> int:
    """Bytes (int) from an int or a string: ``"512"``, ``"512B"``, ``"4KiB"``, ``"16MiB"``,
    ``"1MB"`` (10**6), ``"1.5GiB"``.  Units are case-insensitive; ``KiB`` is 1024, ``KB`` 1000.

    Booleans, floats, negative and fractional byte counts raise :class:`ConfigError`
    naming ``field``.
    """
    return _non_negative(_size_value, "size", value, field)
