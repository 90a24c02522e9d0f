"""JSON in and out of the query package, strictly.

In: a query text with a duplicate key (``{"EQ": …, "EQ": …}`` would smuggle a second
operator past the one-key rule) or a ``NaN``/``Infinity`` constant is refused.  Out:
fingerprints and page tokens spell integers past 64 bits in hex, because ``str()`` of a
huge int is capped (CVE-2020-10735) and the token must round-trip whatever the value.
"""

from __future__ import annotations

import json
from typing import Any, Final

from clawstate.errors import InvalidRequest


class _JSONReject(ValueError):
    """Raised from the json hooks; turned into InvalidRequest by parse_query."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JSONReject(f"duplicate key {_show(key)} in a JSON object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _JSONReject(f"{name} is not valid JSON")


def _load_json(doc: str | bytes | bytearray | memoryview) -> Any:
    try:
        text = bytes(doc).decode("utf-8") if not isinstance(doc, str) else doc
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _JSONReject as exc:
        raise InvalidRequest("query", str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("query", f"not valid JSON: {exc}") from None


def _show(value: Any, width: int = 60) -> str:
    """A short repr of client input for error messages (never raises, never huge)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints past the str() digit limit, deep nesting
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 1] + "…"


_INT64: Final = 1 << 63


def _json_number(x: int | float) -> Any:
    """A number for json.dumps: ints past 64 bits as ``{"int": hex}``.

    Decimal str() of an int is capped at 4300 digits (CVE-2020-10735); hex is not.
    """
    if isinstance(x, int) and not -_INT64 <= x < _INT64:
        return {"int": format(x, "x")}
    return x
