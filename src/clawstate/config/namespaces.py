"""``[namespaces.<name>]``: how one namespace stores its values, and how a policy is
built from options, over ``[namespaces."*"]`` or any other base.

Adding a namespace option (cache policy, backend routing…) takes two lines here: a
field on :class:`NamespacePolicy` and its check in ``_NAMESPACE_OPTIONS``.  TOML
parsing, environment and argument layering, inheritance from ``[namespaces."*"]``,
error messages and :func:`validate_namespace_options` then handle it; an import-time
check refuses a field without a check.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from clawstate.errors import ConfigError

from ._common import (
    _DEFAULT_TABLE,
    CACHE_MODES,
    DEFAULT_BACKEND,
    MAX_NAMESPACE_LEN,
    MAX_TTL_SECONDS,
    NAMESPACE_NAME_RE,
    CacheConsistency,
    CacheMode,
    ErrorFactory,
    Serializer,
    _Check,
    _dotted,
    _seconds_text,
    _show,
    _unknown,
)
from .checks import (
    _backend_name_check,
    _bool_check,
    _cache_l2_check,
    _check_fields_match,
    _choice_check,
    _coerce,
    _duration_check,
    _int_range_check,
    _normalize,
    _paths_check,
    _Setting,
    _size_check,
)
from .limits import Limits


class NamespacePolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False
):
    """How one namespace stores its values.

    ``compress_above``: values larger than this many encoded bytes are compressed
    (``None`` never compresses; ``"off"`` in TOML), at zstd ``compression_level`` 1..22.
    ``encrypt``: values are encrypted with the keyring's current key.  ``default_ttl``:
    seconds a value lives when a write gives no TTL (``None``: forever).
    ``changelog_values``: the change log records new values, not just keys and versions,
    so that point-in-time recovery can replay them.  ``backend``: the name of the
    ``[backends.<name>]`` table holding this namespace (``"default"``: ``store.url``).
    ``indexes``: dotted paths of value fields the backend should index for queries
    (PostgreSQL expression indexes; ignored where the backend has no indexes).

    The ``cache*`` options are the namespace's cache policy (docs/cache.md): ``cache``
    the mode (``"none"``, ``"read-through"``, ``"write-through"``, ``"write-back"`` —
    which acknowledges writes *before* they are durable), ``cache_l1_bytes`` the
    in-process tier's budget, ``cache_l2`` a Redis URL for the tier shared by processes
    (``None``: none), ``cache_ttl`` how long an entry may be served, ``cache_negative_ttl``
    how long a miss is remembered (``None`` or 0: never), ``cache_consistency``
    ``"eventual"`` (invalidated from the change log within the propagation delay) or
    ``"strong"`` (every read checks the change log's watermark first), and
    ``cache_flush_delay`` the longest a write-back write waits before its batch flushes.
    """

    serializer: Serializer = "msgpack"
    compress_above: int | None = 4096
    compression_level: int = 3
    encrypt: bool = False
    default_ttl: float | None = None
    changelog_values: bool = False
    backend: str = DEFAULT_BACKEND
    indexes: tuple[str, ...] = ()
    cache: CacheMode = "none"
    cache_l1_bytes: int = 64 * 1024 * 1024
    cache_l2: str | None = None
    cache_ttl: float = 300.0
    cache_negative_ttl: float | None = 30.0
    cache_consistency: CacheConsistency = "eventual"
    cache_flush_delay: float = 0.1

    def __post_init__(self) -> None:
        _normalize(self, _POLICY_FIELDS)


#: One check per :class:`NamespacePolicy` field; a new field needs its entry here.
_NAMESPACE_OPTIONS: Final[Mapping[str, _Check]] = {
    "serializer": _choice_check(("msgpack", "json")),
    "compress_above": _size_check(minimum=0, optional=True),
    "compression_level": _int_range_check(1, 22),
    "encrypt": _bool_check,
    "default_ttl": _duration_check(
        allow_zero=False, maximum=MAX_TTL_SECONDS, note=" (the fixed maximum)", optional=True
    ),
    "changelog_values": _bool_check,
    "backend": _backend_name_check,
    "indexes": _paths_check,
    # the cache policy: docs/cache.md
    "cache": _choice_check(CACHE_MODES),
    "cache_l1_bytes": _size_check(minimum=0),
    "cache_l2": _cache_l2_check,
    "cache_ttl": _duration_check(
        allow_zero=False, maximum=MAX_TTL_SECONDS, note=" (the fixed maximum)"
    ),
    "cache_negative_ttl": _duration_check(
        allow_zero=True, maximum=MAX_TTL_SECONDS, note=" (the fixed maximum)", optional=True
    ),
    "cache_consistency": _choice_check(("eventual", "strong")),
    "cache_flush_delay": _duration_check(
        allow_zero=False, maximum=60, note=" (write-back must flush within a minute)"
    ),
}

_POLICY_FIELDS: Final = {n: (f"NamespacePolicy.{n}", c) for n, c in _NAMESPACE_OPTIONS.items()}


def _ttl_problem(policy: NamespacePolicy, limits: Limits) -> str | None:
    ttl = policy.default_ttl
    if ttl is not None and ttl > limits.max_ttl_seconds:
        return (
            f"must be <= limits.max_ttl_seconds ({_seconds_text(limits.max_ttl_seconds)}), "
            f"got {_seconds_text(ttl)}"
        )
    return None


def check_namespace_name(
    name: object,
    limits: Limits | None = None,
    *,
    field: str = "namespace",
    error: ErrorFactory = ConfigError,
) -> str:
    """Return ``name`` if it is a valid namespace name, else raise ``error(field, …)``.

    Valid: ``[A-Za-z0-9][A-Za-z0-9_.:-]*``, at most ``limits.max_namespace_len``
    characters (128 without ``limits``).
    """
    max_len = limits.max_namespace_len if limits is not None else MAX_NAMESPACE_LEN
    problem = _namespace_name_problem(name, max_len)
    if problem:
        raise error(field, problem)
    assert isinstance(name, str)  # no problem means it is a str
    return name


def _namespace_name_problem(name: object, max_len: int) -> str | None:
    if not isinstance(name, str) or not NAMESPACE_NAME_RE.fullmatch(name):
        return (
            f"invalid namespace name {_show(name)}: it must start with a letter or digit "
            "and contain only letters, digits and _ . : -"
        )
    if len(name) > max_len:
        return (
            f"namespace name is {len(name)} characters, more than "
            f"limits.max_namespace_len ({max_len})"
        )
    return None


def _build_policy(
    name: str,
    settings: Mapping[str, _Setting],
    base: NamespacePolicy,
    limits: Limits,
    error: ErrorFactory,
    name_origin: str = "",
) -> NamespacePolicy:
    prefix = _dotted("namespaces", name)
    if name != _DEFAULT_TABLE:
        problem = _namespace_name_problem(name, limits.max_namespace_len)
        if problem:
            raise error(prefix, problem + name_origin)
    values: dict[str, Any] = {}
    for option, setting in settings.items():
        field_name = f"{prefix}.{_dotted(option)}"
        check = _NAMESPACE_OPTIONS.get(option)
        if check is None:
            raise error(field_name, _unknown("option", option, _NAMESPACE_OPTIONS) + setting.origin)
        values[option] = _coerce(field_name, setting, check, error)
    policy = msgspec.structs.replace(base, **values) if values else base
    problem = _ttl_problem(policy, limits)
    if problem:
        ttl = settings.get("default_ttl")
        origin = ttl.origin if ttl else f" (inherited from {_dotted('namespaces', _DEFAULT_TABLE)})"
        raise error(f"{prefix}.default_ttl", problem + origin)
    return policy


def validate_namespace_options(
    name: str,
    options: Mapping[str, Any],
    base: NamespacePolicy,
    limits: Limits,
    *,
    error: ErrorFactory = ConfigError,
) -> NamespacePolicy:
    """``base`` with ``options`` applied, checked as strictly as ``[namespaces.<name>]``.

    For options given in code (``store.namespace("carts", encrypt=True)``): values are
    Python objects (``None`` unsets ``compress_above``/``default_ttl``), ``name`` is checked
    too (``"*"`` builds the default policy), and every problem is raised as
    ``error(field, message)`` with ``field`` in the form ``namespaces.carts.encrypt``.  The
    store passes a factory producing ``InvalidRequest``.
    """
    settings = {option: _Setting(value, "", Path()) for option, value in options.items()}
    return _build_policy(name, settings, base, limits, error)


_check_fields_match(NamespacePolicy, _NAMESPACE_OPTIONS)
