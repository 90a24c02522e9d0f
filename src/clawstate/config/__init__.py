"""clawstate's configuration: ``clawstate.toml``, then ``CLAWSTATE_*`` variables, then ``open()``.

Why it is built this way:

* **One place decides every setting.** The rest of clawstate reads typed, frozen
  :class:`Config` / :class:`Limits` / :class:`NamespacePolicy` records and never
  parses a string again; codecs, backends and the server take plain values from here
  (``codec.py`` builds its own ``CodecPolicy`` out of a :class:`NamespacePolicy`).
* **Layers, lowest first: file < environment < keyword arguments.** The checked-in
  file sets the baseline, the environment adjusts one deployment (containers, CI), and
  code that passes an argument to ``clawstate.open()`` has the last word.
* **A mistake fails at open(), loudly and precisely.** Every problem is a
  :class:`~clawstate.errors.ConfigError` whose ``field`` is the TOML dotted name of the
  setting (``namespaces.carts.serializer``, ``limits.max_value_bytes``) and whose message
  says what was expected, what was found and where it came from.  Unknown tables, options
  and ``CLAWSTATE_*`` variables are errors too: a typo silently ignored is a setting
  silently not applied, found out in production.
* **Some limits only go down.** Key size (1024 bytes), namespace name length (128) and
  TTL (10 years) are baked into storage layouts and the wire protocol, so configuration
  may lower them but never raise them.
* **Relative paths follow the file.** A relative ``sqlite:///`` path or ``file:`` keyring
  in ``clawstate.toml`` resolves against the file's directory, so the same file means the
  same database whatever the working directory of the process; values from the
  environment or from arguments resolve against the working directory.
* **The keyring follows the store.** With no ``[keyring] source``, the keyring is beside
  the config file, else beside the SQLite file — never in the working directory, where a
  ``cd`` would silently swap it for another (see ``urls._default_keyring``).

Adding a namespace option (cache policy, backend routing…) takes two lines in
:mod:`clawstate.config.namespaces`: a field on :class:`NamespacePolicy` and its check in
``_NAMESPACE_OPTIONS``.  TOML parsing, environment and argument layering, inheritance
from ``[namespaces."*"]``, error messages and :func:`validate_namespace_options` then
handle it; an import-time check refuses a field without a check.

The package, each module importing only those above it:

* ``_common``: fixed ceilings, names and value types; how a value is quoted back;
* ``units``: durations and sizes (:func:`parse_duration`, :func:`parse_size`);
* ``urls``: storage URLs and keyring sources, and anchoring their relative paths;
* ``checks``: the option checks every table is built from;
* ``limits``: ``[limits]`` (:class:`Limits`);
* ``namespaces``: ``[namespaces.<name>]`` (:class:`NamespacePolicy`, the name rule,
  :func:`validate_namespace_options`);
* ``record``: :class:`Config` with ``[store]``, ``[keyring]``, ``[audit]``, ``[backends]``;
* ``loading``: file < environment < arguments (:func:`load_config`).

Every name is imported from ``clawstate.config``; the modules are its layout, not its API.
"""

from __future__ import annotations

# ``_name as _name``: private names other parts of clawstate import from here (the cache
# redacts URLs, ``memoize`` checks its L2 URL as ``cache_l2`` is checked, the tests hold
# the option tables against the records), re-exported on purpose.
from ._common import (
    BACKEND_NAME_RE,
    CACHE_MODES,
    CONFIG_ENV_VAR,
    CONFIG_FILENAME,
    DEFAULT_BACKEND,
    DEFAULT_KEYRING,
    DEFAULT_URL,
    MAX_KEY_BYTES,
    MAX_NAMESPACE_LEN,
    MAX_TTL_SECONDS,
    NAMESPACE_NAME_RE,
    NON_CONFIG_ENV_PREFIXES,
    NON_CONFIG_ENV_VARS,
    URL_SCHEMES,
    CacheConsistency,
    CacheMode,
    Durability,
    ErrorFactory,
    Serializer,
)
from ._common import _Invalid as _Invalid
from .checks import _cache_l2_check as _cache_l2_check
from .limits import _LIMIT_OPTIONS as _LIMIT_OPTIONS
from .limits import Limits
from .loading import ENV_VARS, load_config
from .namespaces import _NAMESPACE_OPTIONS as _NAMESPACE_OPTIONS
from .namespaces import (
    NamespacePolicy,
    check_namespace_name,
    validate_namespace_options,
)
from .record import Config
from .units import parse_duration, parse_size
from .urls import ParsedUrl, parse_url
from .urls import _redact as _redact

__all__ = [
    "BACKEND_NAME_RE",
    "CACHE_MODES",
    "CONFIG_ENV_VAR",
    "CONFIG_FILENAME",
    "DEFAULT_BACKEND",
    "DEFAULT_KEYRING",
    "DEFAULT_URL",
    "ENV_VARS",
    "MAX_KEY_BYTES",
    "MAX_NAMESPACE_LEN",
    "MAX_TTL_SECONDS",
    "NAMESPACE_NAME_RE",
    "NON_CONFIG_ENV_PREFIXES",
    "NON_CONFIG_ENV_VARS",
    "URL_SCHEMES",
    "CacheConsistency",
    "CacheMode",
    "Config",
    "Durability",
    "ErrorFactory",
    "Limits",
    "NamespacePolicy",
    "ParsedUrl",
    "Serializer",
    "check_namespace_name",
    "load_config",
    "parse_duration",
    "parse_size",
    "parse_url",
    "validate_namespace_options",
]
