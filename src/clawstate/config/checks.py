"""Option checks: each takes a raw value (TOML, environment string or Python object) and
returns the typed value, or raises :class:`._common._Invalid`.

The check builders (``_size_check``, ``_duration_check``…) are shared by every table, so
one bound reads the same whether it guards ``[limits]``, ``[namespaces.X]`` or
``[store]``.  ``_normalize`` runs the same checks on records built in code, so a
``Limits(...)`` can never hold what the loader would have refused; ``_Setting`` and
``_coerce`` carry a raw value's origin into the error message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from clawstate.errors import ConfigError

from ._common import (
    BACKEND_NAME_RE,
    ErrorFactory,
    _Check,
    _Invalid,
    _off,
    _seconds_text,
    _show,
)
from .units import _DURATION_HINT, _SIZE_HINT, _duration_value, _size_value
from .urls import _URL_EXAMPLES, _keyring_path, _parse_url, _redact


def _above(kind: str, minimum: int, value: object, *, strict: bool = False) -> _Invalid:
    if strict:
        bound = f"> {minimum}"
    elif minimum == 1:
        bound = "> 0"  # reads better than ">= 1" for whole numbers
    else:
        bound = f">= {minimum}"
    return _Invalid(f"must be a {kind} {bound}, got {_show(value)}")


def _below(kind: str, maximum: str, note: str, value: object) -> _Invalid:
    return _Invalid(f"must be a {kind} <= {maximum}{note}, got {_show(value)}")


_N = TypeVar("_N", int, float)


def _read(
    read: Callable[[object], _N], kind: str, hint: str, value: object, *, optional: bool
) -> _N:
    """``read(value)``; for an option that may be unset, the error says "off" would do."""
    try:
        return read(value)
    except _Invalid as exc:
        if not optional:
            raise
        raise _Invalid(f'must be a {kind} ({hint}) or "off", got {_show(value)}') from exc


def _size_check(
    *, minimum: int, maximum: int | None = None, note: str = "", optional: bool = False
) -> _Check:
    def check(value: object) -> int | None:
        if optional and _off(value):
            return None
        size = _read(_size_value, "size", _SIZE_HINT, value, optional=optional)
        if size < minimum:
            raise _above("size", minimum, value)
        if maximum is not None and size > maximum:
            raise _below("size", f"{maximum} bytes", note, value)
        return size

    return check


def _count_check(*, minimum: int, maximum: int | None = None, note: str = "") -> _Check:
    def check(value: object) -> int:
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                raise _Invalid(f"must be a whole number, got {_show(value)}") from None
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise _Invalid(f"must be a whole number, got {_show(value)}")
        if number < minimum:
            raise _above("whole number", minimum, value)
        if maximum is not None and number > maximum:
            raise _below("whole number", str(maximum), note, value)
        return number

    return check


def _int_range_check(minimum: int, maximum: int) -> _Check:
    def check(value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (minimum <= value <= maximum)
        ):
            raise _Invalid(
                f"must be a whole number from {minimum} to {maximum}, got {_show(value)}"
            )
        return value

    return check


def _duration_check(
    *,
    allow_zero: bool,
    maximum: float | None = None,
    note: str = "",
    optional: bool = False,
) -> _Check:
    def check(value: object) -> float | None:
        if optional and _off(value):
            return None
        seconds = _read(_duration_value, "duration", _DURATION_HINT, value, optional=optional)
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise _above("duration", 0, value, strict=not allow_zero)
        if maximum is not None and seconds > maximum:
            raise _below("duration", _seconds_text(maximum), note, value)
        return seconds

    return check


def _choice_check(choices: tuple[str, ...]) -> _Check:
    quoted = [json.dumps(c) for c in choices]
    wanted = (
        " or ".join(quoted)
        if len(quoted) == 2
        else "one of " + ", ".join(quoted[:-1]) + " or " + quoted[-1]
    )

    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _Invalid(f"must be {wanted}, got {_show(value)}")
        return value

    return check


def _bool_check(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _backend_name_check(value: object) -> str:
    if not isinstance(value, str) or not BACKEND_NAME_RE.fullmatch(value):
        raise _Invalid(
            f"must be the name of a [backends.<name>] table (letters, digits, _ and -), "
            f"got {_show(value)}"
        )
    return value


def _paths_check(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Invalid(
            f'must be a list of dotted paths like ["status", "customer.id"], got {_show(value)}'
        )
    paths: list[str] = []
    for path in value:
        if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
            raise _Invalid(f'must hold dotted paths like "customer.id", got {_show(path)}')
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def _cache_l2_check(value: object) -> str | None:
    """``cache_l2``: a ``redis://`` / ``rediss://`` URL, or false/"off" for no shared tier."""
    if value is False or _off(value) or value == "false":
        return None
    if not isinstance(value, str):
        raise _Invalid(
            f'must be a Redis URL such as "redis://127.0.0.1:6379/0", or false, got {_show(value)}'
        )
    parsed = _parse_url(value)
    if parsed.scheme not in ("redis", "rediss"):
        raise _Invalid(
            f"must be a redis:// or rediss:// URL (the shared cache tier is Redis), "
            f"got {_show(_redact(value))}"
        )
    return value


def _url_check(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a URL such as {_URL_EXAMPLES}, got {_show(value)}")
    _parse_url(value)
    return value


def _keyring_check(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f'must be "file:<path>" or "env:<VARIABLE>", got {_show(value)}')
    if value.startswith("env:"):
        if not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
            raise _Invalid(f'must be "env:<VARIABLE>" with a variable name, got {_show(value)}')
        return value
    _keyring_path(value)
    return value


def _optional_keyring_check(value: object) -> str | None:
    """``Config.keyring``: a source, or None for "none configured and no default place"."""
    return None if value is None else _keyring_check(value)


def _optional(check: _Check) -> _Check:
    """``check``, or None for an unset (``"off"``) value."""

    def optional(value: object) -> Any:
        return None if _off(value) else check(value)

    return optional


def _days_check(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"must be a number of days > 0, got {_show(value)}")
    try:
        days = float(value)
    except ValueError:
        raise _Invalid(f"must be a number of days > 0, got {_show(value)}") from None
    if not (0 < days <= 36500):  # also refuses NaN and infinity
        raise _Invalid(f"must be a number of days > 0 and <= 36500, got {_show(value)}")
    return days


def _normalize(record: msgspec.Struct, checks: Mapping[str, tuple[str, _Check]]) -> None:
    """Check every field of a freshly built record, storing the typed value back.

    ``Limits(max_value_bytes="1MiB")`` thus holds ``1048576``, and a record built in code
    can never hold what the configuration loader would have refused.
    """
    for name, (field_name, check) in checks.items():
        value = getattr(record, name)
        try:
            typed = check(value)
        except _Invalid as exc:
            raise ConfigError(field_name, exc.message) from None
        if typed is not value:
            msgspec.structs.force_setattr(record, name, typed)


def _check_fields_match(record: type[msgspec.Struct], options: Mapping[str, _Check]) -> None:
    """Refuse, at import time, a record field without its check (or a check without a field)."""
    if set(record.__struct_fields__) != set(options):
        raise RuntimeError(  # pragma: no cover - a programming error, caught by any test
            f"clawstate.config: {record.__name__} fields and their checks differ: "
            f"{sorted(set(record.__struct_fields__) ^ set(options))}"
        )


class _Setting(NamedTuple):
    """One raw value and where it came from."""

    value: object
    #: Appended to error messages: ``" (in /srv/app/clawstate.toml)"``.
    origin: str
    #: The directory relative paths in ``value`` resolve against.
    base_dir: Path


def _coerce(
    field_name: str, setting: _Setting, check: _Check, error: ErrorFactory = ConfigError
) -> Any:
    try:
        return check(setting.value)
    except _Invalid as exc:
        raise error(field_name, exc.message + setting.origin) from None
