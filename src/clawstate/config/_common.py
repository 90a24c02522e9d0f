"""What every part of the configuration shares: the fixed ceilings and names, the value
types, the :class:`_Invalid` signal a check raises, and how a value is quoted back.

A check raises :class:`_Invalid` with a message that does not name the field, because
only its caller knows whether the value came from ``[limits]``, ``CLAWSTATE_LIMITS_*``
or a keyword argument; ``_show`` quotes the value TOML-style so that the message reads
as the user wrote it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

from clawstate.errors import ClawStateError

# --------------------------------------------------------------------------- constants

#: Fixed ceilings.  Storage layouts and the wire protocol are built around them, so the
#: matching limits may be lowered but never raised.
MAX_KEY_BYTES: Final = 1024
MAX_NAMESPACE_LEN: Final = 128
MAX_TTL_SECONDS: Final = 10 * 365 * 86400

#: What a namespace name looks like (matched with ``fullmatch``).  Names starting with
#: ``_`` are left to clawstate's own namespaces.
NAMESPACE_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
#: Names of ``[backends.<name>]`` tables; ``default`` is the ``store.url`` backend.
BACKEND_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_BACKEND: Final = "default"

CONFIG_FILENAME: Final = "clawstate.toml"
CONFIG_ENV_VAR: Final = "CLAWSTATE_CONFIG"
DEFAULT_URL: Final = "sqlite:///.clawstate/state.db"
DEFAULT_KEYRING: Final = "file:.clawstate/keyring.json"

#: ``CLAWSTATE_*`` variables that are not configuration, so :func:`load_config` does not
#: refuse them as typos.  A module that reads a variable of its own adds it here at
#: import time: ``NON_CONFIG_ENV_VARS.add("CLAWSTATE_MY_FLAG")``.
NON_CONFIG_ENV_VARS: set[str] = {"CLAWSTATE_REQUIRE_SERVICES", "CLAWSTATE_TOKEN"}
#: Prefixes of variables that belong to clawstate's own test and benchmark
#: harnesses, never to the configuration.
NON_CONFIG_ENV_PREFIXES: tuple[str, ...] = ("CLAWSTATE_TEST_", "CLAWSTATE_BENCH_")

#: URL schemes :func:`parse_url` accepts (``postgres`` is read as ``postgresql``).
URL_SCHEMES: Final = (
    "sqlite",
    "memory",
    "postgresql",
    "postgres",
    "redis",
    "rediss",
    "http",
    "https",
)

_ENV_PREFIX: Final = "CLAWSTATE_"
_DEFAULT_TABLE: Final = "*"
_OFF_WORDS: Final = frozenset({"off", "none", "never"})

Serializer = Literal["msgpack", "json"]
Durability = Literal["process", "power"]
#: A namespace's cache mode (see docs/cache.md); ``"none"`` keeps the cache out of the way.
CacheMode = Literal["none", "read-through", "write-through", "write-back"]
CacheConsistency = Literal["eventual", "strong"]
CACHE_MODES: Final = ("none", "read-through", "write-through", "write-back")

#: Builds the exception to raise from ``(field, message)``: :class:`ConfigError` for
#: configuration, a factory producing ``InvalidRequest`` for options given in code.
ErrorFactory = Callable[[str, str], ClawStateError]

#: A check takes a raw value (TOML, environment string or Python object) and returns the
#: typed value, or raises :class:`_Invalid` with a message that does not name the field.
_Check = Callable[[object], Any]


class _Invalid(Exception):
    """A value failed a check; whoever knows the field's name turns it into an error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- formatting


_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(*parts: str) -> str:
    """A TOML dotted key, quoting parts that are not bare keys: ``namespaces."*".encrypt``."""
    return ".".join(p if _BARE_KEY_RE.fullmatch(p) else json.dumps(p) for p in parts)


def _show(value: object) -> str:
    """A value as the user wrote it, TOML-flavoured: ``"xml"``, ``true``, ``-1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return repr(value)


def _seconds_text(seconds: float) -> str:
    """``315360000`` -> ``"10y"``: limits quoted back in the unit a person would use."""
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    known = list(known)
    message = f"unknown {kind} (known: {', '.join(known)})"
    close = difflib.get_close_matches(name, known, n=1)
    return message + (f"; did you mean {close[0]}?" if close else "")


def _off(value: object) -> bool:
    """``None`` or ``"off"``/``"none"``/``"never"``: how TOML, which has no null, says "unset"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _OFF_WORDS)
