"""Input checks shared by every entry point: the facade, the event store, the CLI,
the server and the HTTP client (which checks before sending, so a bad request fails
the same way locally and remotely).  This module is their one home: an entry point
imports its checks from here, never a private helper of another module.

Each check raises :class:`InvalidRequest` naming the field and the limit, and
runs before anything is written, so a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any, Final

import msgspec

from .codec import _validate as _round_trip_check
from .config import MAX_KEY_BYTES, MAX_NAMESPACE_LEN, MAX_TTL_SECONDS, Limits
from .config import check_namespace_name as _config_check
from .errors import InvalidRequest

__all__ = [
    "INT64_MAX",
    "MAX_KEY_BYTES",
    "MAX_TTL_SECONDS",
    "check_collection",
    "check_event_filter",
    "check_event_json",
    "check_flag",
    "check_int",
    "check_key",
    "check_key_list",
    "check_limit",
    "check_namespace_name",
    "check_pairs",
    "check_position",
    "check_timeout",
    "check_ttl",
    "check_value",
    "check_version",
    "is_integer_text",
    "is_utf8",
    "parse_int",
    "shown",
]

#: The largest seq, position, version or count any entry point accepts.  Every backend
#: stores them as signed 64-bit integers (SQLite INTEGER, PostgreSQL bigint, Redis
#: integers); a larger Python int would reach the driver and fail there as a bare
#: ``OverflowError`` (a 500 over HTTP) instead of an error naming the field.
INT64_MAX: Final = (1 << 63) - 1


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
        raise InvalidRequest(field, f"must be greater than 0, got {shown(ttl)}")
    if ttl > max_seconds:
        raise InvalidRequest(
            field,
            f"is {shown(ttl)} seconds; the limit is {max_seconds:g} (10 years)",
            limit=max_seconds,
        )
    return float(ttl)


def shown(value: Any) -> str:
    """``value`` for an error message, bounded: a hostile 10,000-digit integer or a
    megabyte string must not be echoed back (``str()`` of a huge int even raises)."""
    if type(value) is int:
        digits = value.bit_length() * 30103 // 100000 + 1  # ≈ log10(2) per bit
        if digits > 30:
            return f"an integer of about {digits} digits"
        return str(value)
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    if isinstance(value, str | bytes):
        text = repr(value[:40])
        return text + f" (… {len(value)} long)" if len(value) > 40 else text
    return f"a {type(value).__name__}"


def check_int(value: Any, field: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """The one integer check: an ``int`` (not ``bool``, not ``float``, not ``str``) from
    ``minimum`` to ``maximum`` inclusive, else ``InvalidRequest(field)`` stating the range.

    Every seq, position, version and limit goes through here on every path (embedded,
    HTTP, client, CLI), so they all refuse the same inputs with the same message.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            field,
            f"must be an integer from {minimum} to {maximum}, got {shown(value)}",
            limit=maximum,
        )
    number = int(value)  # an int subclass (IntEnum…): its plain value
    if not minimum <= number <= maximum:
        raise InvalidRequest(
            field,
            f"must be an integer from {minimum} to {maximum}, got {shown(number)}",
            limit=maximum,
        )
    return number


def check_position(value: Any, field: str) -> int:
    """A log position or change seq to read after: 0 (the start) to :data:`INT64_MAX`."""
    return check_int(value, field, 0, INT64_MAX)


def check_timeout(value: Any, field: str = "timeout") -> float:
    """Seconds to wait: a number >= 0 (``inf``: forever); not NaN, not a string."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidRequest(field, f"must be a number of seconds >= 0, got {shown(value)}")
    return float(value) if value < 1e300 else float("inf")  # float(10**400) overflows


def check_version(version: Any, field: str = "if_version") -> int:
    """A version to compare against: versions start at 1 and are 64-bit."""
    return check_int(version, field, 1, INT64_MAX)


def check_limit(limit: Any, maximum: int, field: str = "limit") -> int:
    return check_int(limit, field, 1, maximum)


def is_integer_text(text: str) -> bool:
    """ASCII digits with an optional leading ``-``: the one spelling of an integer in a
    query parameter, a header or a CLI argument.  A framework's lenient parser also
    reads ``"1e3"`` as 1000 — a float's spelling, refused here like ``"1.5"``."""
    digits = text[1:] if text[:1] == "-" else text
    return bool(digits) and digits.isascii() and digits.isdigit()


def parse_int(text: Any, field: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer sent as text (a query parameter, a header such as ``Last-Event-ID``, a
    CLI argument), checked by :func:`check_int`.

    Only ASCII digits with an optional ``-`` are an integer here: ``int()`` would also
    take ``" +1_0 "``, Unicode digits and — slowly — thousands of digits.
    """
    if not isinstance(text, str):
        return check_int(text, field, minimum, maximum)
    if not is_integer_text(text):
        raise InvalidRequest(
            field,
            f"must be an integer from {minimum} to {maximum}, got {shown(text)}",
            limit=maximum,
        )
    digits = text.lstrip("-")
    if len(digits.lstrip("0")) > len(str(max(abs(minimum), abs(maximum)))):
        raise InvalidRequest(
            field,
            f"must be an integer from {minimum} to {maximum}, got {shown(text)}",
            limit=maximum,
        )
    return check_int(int(text), field, minimum, maximum)


def check_flag(value: Any, field: str) -> bool:
    """A flag is ``True`` or ``False`` exactly: ``"yes"``, ``1`` or ``"false"`` (truthy!)
    would otherwise be read by truthiness and silently mean something."""
    if type(value) is not bool:
        raise InvalidRequest(field, f"must be true or false, got {shown(value)}")
    return value


def _not_a_collection(value: Any) -> bool:
    # A str is iterable, so get_many("abc") would read keys "a", "b", "c"; bytes would
    # read ints; a mapping's iteration order is its keys only by accident of the type.
    return (
        value is None
        or isinstance(value, str | bytes | bytearray | memoryview | Mapping)
        or not isinstance(value, Iterable)
    )


def check_collection(value: Any, field: str, what: str) -> None:
    """``value`` is a list-like collection, not a str, bytes, mapping, None or scalar."""
    if _not_a_collection(value):
        raise InvalidRequest(field, f"must be {what}, got {type(value).__name__}")


def check_key_list(
    keys: Any, max_items: int, max_key_bytes: int = MAX_KEY_BYTES, field: str = "keys"
) -> list[str]:
    """A list (tuple, set, iterator…) of at most ``max_items`` valid keys.

    An iterator is read only as far as the limit, so an endless one is refused too.
    """
    if _not_a_collection(keys):
        raise InvalidRequest(field, f"must be a list of keys, got {type(keys).__name__}")
    out = keys if type(keys) is list else list(islice(keys, max_items + 1))
    if len(out) > max_items:
        n = len(out) if out is keys else f"more than {max_items}"
        raise InvalidRequest(field, f"{n} keys; the limit is {max_items}", limit=max_items)
    for key in out:
        check_key(key, max_key_bytes)  # field "key", as get() names it
    return out


def check_pairs(items: Any, max_items: int, field: str = "items") -> list[tuple[Any, Any]]:
    """``(key, value)`` pairs from a mapping or a list of 2-tuples/2-lists, at most
    ``max_items`` of them.  The keys are checked by the caller (it knows its key limit);
    this refuses the shapes that used to escape as ``ValueError``/``TypeError``."""
    if isinstance(items, Mapping):
        pairs: list[Any] = list(items.items())
    elif _not_a_collection(items):
        raise InvalidRequest(
            field,
            f"must be a mapping or a list of (key, value) pairs, got {type(items).__name__}",
        )
    elif type(items) is list or type(items) is tuple:
        pairs = list(items)
    else:
        pairs = list(islice(items, max_items + 1))
    if len(pairs) > max_items:
        sized = isinstance(items, Mapping | list | tuple)
        n = len(pairs) if sized else f"more than {max_items}"
        raise InvalidRequest(field, f"{n} items; the limit is {max_items}", limit=max_items)
    for i, pair in enumerate(pairs):
        if type(pair) is not tuple or len(pair) != 2:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                what = f"{len(pair)} elements" if isinstance(pair, tuple | list) else shown(pair)
                raise InvalidRequest(f"{field}[{i}]", f"must be a (key, value) pair, got {what}")
            pairs[i] = (pair[0], pair[1])
    return pairs


def is_utf8(text: str) -> bool:
    """False for strings with lone surrogates, which no backend can store or compare."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: object, *, json: bool) -> None:
    """Refuse a value that would not round-trip unchanged through the codec (NaN,
    non-string keys in JSON, unsupported types…), naming the path inside it.  The
    walk itself is the codec's (it must match what the codec encodes)."""
    _round_trip_check(value, json)


def check_event_json(i: int, what: str, value: Any) -> bytes:
    """``events[i].data`` / ``.metadata`` checked and encoded as the JSON text the
    event log stores: a dict that round-trips as JSON, else :class:`InvalidRequest`
    naming ``events[i].<what>``."""
    field = f"events[{i}].{what}"
    if type(value) is not dict:
        raise InvalidRequest(field, f"must be a JSON object (dict), got {type(value).__name__}")
    try:
        _round_trip_check(value, True)
        return msgspec.json.encode(value)
    except InvalidRequest as exc:
        reason = str(exc).split(": ", 1)[-1].replace("value at $", "$", 1)
        reason = reason.replace("value has ", "has ", 1)
        raise InvalidRequest(field, reason) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        # Lone surrogates and the like: the round-trip check admits every str.
        raise InvalidRequest(field, f"cannot be encoded as JSON: {exc}") from None


def check_event_filter(flt: Any) -> None:
    """An event filter (``clawstate.events.EventFilter``) or None.  Checked by its
    fields, so this module needs no import of the event store (which imports it)."""
    if flt is None:
        return
    prefix = getattr(flt, "stream_prefix", None)
    types = getattr(flt, "types", None)
    if prefix is None or types is None or isinstance(flt, type):
        raise InvalidRequest("filter", f"must be a clawstate.events.EventFilter, got {flt!r}")
    if not isinstance(prefix, str):
        raise InvalidRequest("filter.stream_prefix", "must be a string")
    if not isinstance(types, tuple) or not all(isinstance(t, str) for t in types):
        raise InvalidRequest("filter.types", "must be a tuple of event type strings")
