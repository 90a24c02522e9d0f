""":class:`Config`, the whole configuration as one record, with its ``[store]``,
``[keyring]``, ``[audit]`` and ``[backends.<name>]`` tables.

``Config`` checks what ties its parts together (every namespace names a defined
backend, no default TTL exceeds ``limits.max_ttl_seconds``); each part checks itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from clawstate.errors import ConfigError

from ._common import (
    _DEFAULT_TABLE,
    DEFAULT_BACKEND,
    DEFAULT_KEYRING,
    DEFAULT_URL,
    Durability,
    _Check,
    _dotted,
    _Invalid,
)
from .checks import (
    _backend_name_check,
    _choice_check,
    _count_check,
    _days_check,
    _duration_check,
    _keyring_check,
    _normalize,
    _optional,
    _optional_keyring_check,
    _url_check,
)
from .limits import Limits
from .namespaces import NamespacePolicy, _ttl_problem, check_namespace_name


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything :func:`clawstate.open` needs, validated; build it with :func:`load_config`.

    Durations are seconds.  ``sweep_interval`` 0 disables the background sweep of expired
    items.  ``namespaces`` holds the ``[namespaces.<name>]`` tables (already merged over
    ``default_namespace``, the ``[namespaces."*"]`` table); ask :meth:`policy_for` rather
    than reading it.  ``source`` is the file the configuration was read from, if any.
    Built directly, a ``Config`` keeps relative paths as given; :func:`load_config`
    resolves them.  Treat the ``namespaces`` dict as read-only.
    """

    url: str = DEFAULT_URL
    durability: Durability = "process"
    idempotency_window: float = 86400.0
    sweep_interval: float = 60.0
    changelog_retention: float = 7 * 86400.0
    #: the keyring source; None: none configured and the store has no place for one
    #: (a server store without a config file; see ``urls._default_keyring``)
    keyring: str | None = DEFAULT_KEYRING
    #: ``[audit] keep_days`` / ``keep_records``: the audit log's retention (None: keep all)
    audit_keep_days: float | None = None
    audit_keep_records: int | None = None
    limits: Limits = msgspec.field(default_factory=Limits)
    namespaces: dict[str, NamespacePolicy] = msgspec.field(default_factory=dict)
    default_namespace: NamespacePolicy = msgspec.field(default_factory=NamespacePolicy)
    #: ``[backends.<name>]`` tables: name -> URL.  ``default`` is always ``url``.
    backends: dict[str, str] = msgspec.field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        _normalize(self, _CONFIG_FIELDS)
        for name, url in self.backends.items():
            field_name = _dotted("backends", str(name))
            if name == DEFAULT_BACKEND:
                raise ConfigError(
                    field_name, f'"{DEFAULT_BACKEND}" is the store.url backend; choose another name'
                )
            try:
                _backend_name_check(name)
                _url_check(url)
            except _Invalid as exc:
                raise ConfigError(field_name, exc.message) from None
        known = {DEFAULT_BACKEND, *self.backends}
        for name, policy in (("*", self.default_namespace), *self.namespaces.items()):
            if isinstance(policy, NamespacePolicy) and policy.backend not in known:
                raise ConfigError(
                    _dotted("namespaces", name, "backend"),
                    f"names no backend: {policy.backend!r} (defined: {', '.join(sorted(known))})",
                )
        for name, kind in (("limits", Limits), ("default_namespace", NamespacePolicy)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(name, f"must be a {kind.__name__}")
        problem = _ttl_problem(self.default_namespace, self.limits)
        if problem:
            raise ConfigError(_dotted("namespaces", _DEFAULT_TABLE, "default_ttl"), problem)
        for name, policy in self.namespaces.items():
            prefix = _dotted("namespaces", str(name))
            check_namespace_name(name, self.limits, field=prefix)
            if not isinstance(policy, NamespacePolicy):
                raise ConfigError(prefix, "must be a NamespacePolicy")
            problem = _ttl_problem(policy, self.limits)
            if problem:
                raise ConfigError(f"{prefix}.default_ttl", problem)

    def backend_urls(self) -> dict[str, str]:
        """Every backend by name, ``default`` (``store.url``) first."""
        return {DEFAULT_BACKEND: self.url, **self.backends}

    def policy_for(self, name: str) -> NamespacePolicy:
        """The policy of namespace ``name``: its own table, else ``[namespaces."*"]``."""
        return self.namespaces.get(name, self.default_namespace)


# --------------------------------------------------------------------------- option tables

_STORE_OPTIONS: Final[Mapping[str, _Check]] = {
    "url": _url_check,
    "durability": _choice_check(("process", "power")),
    "idempotency_window": _duration_check(allow_zero=False),
    "sweep_interval": _duration_check(allow_zero=True),
    "changelog_retention": _duration_check(allow_zero=False),
}

_KEYRING_OPTIONS: Final[Mapping[str, _Check]] = {"source": _keyring_check}


#: ``[audit]``: the server audit log's retention (docs/server.md); unset keeps everything.
_AUDIT_OPTIONS: Final[Mapping[str, _Check]] = {
    "keep_days": _optional(_days_check),
    "keep_records": _optional(_count_check(minimum=1)),
}

_CONFIG_FIELDS: Final = {
    **{n: (_dotted("store", n), c) for n, c in _STORE_OPTIONS.items()},
    "keyring": ("keyring.source", _optional_keyring_check),
    **{f"audit_{n}": (_dotted("audit", n), c) for n, c in _AUDIT_OPTIONS.items()},
}
