"""The Redis backend class (see the package docstring for the design).

:class:`RedisBackend` is composed, as the PostgreSQL backend is, from one mixin per
job over :class:`~._core.RedisCore` (connections, scripts, key naming):
:mod:`.query` (queries, index backfill), :mod:`.changes` (change log, watch, sweep)
and :mod:`.check` (the integrity check).  This module keeps construction
(``from_url``), the batched Lua writes, point reads and scans, key ids and stats.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ...errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    FencingError,
    InvalidRequest,
    VersionConflict,
)
from .._apply import idempotency_scope
from .._group_commit import GroupCommitter
from ..base import (
    OP_DELETE,
    OP_FENCE,
    OP_NAMES,
    OP_PUT,
    OP_REWRAP,
    BackendOptions,
    Capabilities,
    Outcome,
    StoredItem,
    WriteUnit,
)
from ._core import (
    _PAGE,
    DEFAULT_MAX_QUERY_SCAN,
    DEFAULT_PREFIX,
    SCHEMA_VERSION,
    _Conn,
    _num,
    _text,
)
from .changes import RedisChanges
from .check import RedisCheck
from .indexes import IndexCache, entries_for
from .persistence import persistence_mode
from .query import RedisQueries
from .scripts import _BACKFILL as _BACKFILL  # re-exported: tests identify backfill calls by it
from .scripts import _GET_MANY, _WRITE

if TYPE_CHECKING:
    from ...config import ParsedUrl

__all__ = [
    "DEFAULT_MAX_QUERY_SCAN",
    "DEFAULT_PREFIX",
    "SCHEMA_VERSION",
    "RedisBackend",
    "persistence_mode",
]

#: The native expiry of an idempotency record outlives its logical window by this much.
IDEMPOTENCY_GRACE = 3600.0
#: How long one XREAD BLOCK waits at most (must stay below the socket timeout).
WATCH_BLOCK = 1.0
#: How many times a unit refused for a stale index generation is resent.
_STALE_RETRIES = 5
_URL_PARAMS = (
    "prefix",
    "max_query_scan",
    "socket_timeout",
    "connect_timeout",
    "ssl_ca_certs",
    "ssl_cert_reqs",
)

_OPS = {OP_PUT: b"0", OP_DELETE: b"1", OP_REWRAP: b"3", OP_FENCE: b"5"}
_HASH_FIELDS = ("v", "ver", "seq", "c", "u", "x")


class RedisBackend(RedisQueries, RedisChanges, RedisCheck):
    """Backend over one Redis server, every key under ``prefix`` (see the module docstring).

    The ``_WRITE`` script is looked up in this module's globals at each batch (a test
    swaps it to exercise the NOSCRIPT reload)."""

    name = "redis"
    capabilities = Capabilities(
        durable=False, multi_process=True, native_query=False, documents=True
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        prefix: str = DEFAULT_PREFIX,
        max_query_scan: int = DEFAULT_MAX_QUERY_SCAN,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        ssl_options: dict[str, Any] | None = None,
        max_batch: int = 512,
        create: bool = True,
    ) -> None:
        """``create=False`` opens only a prefix that holds a store (its ``meta`` hash
        has a schema version): otherwise a :class:`ConfigError` "no store at …",
        and no key is written."""
        if not isinstance(prefix, str):
            raise ConfigError("store.url", "the Redis key prefix must be a string")
        if max_query_scan < 1:
            raise ConfigError("store.url", f"max_query_scan must be >= 1, got {max_query_scan}")
        self.prefix = prefix
        self._create = create
        self.max_query_scan = max_query_scan
        self._where = f"redis at {host}:{port}/{db}"
        self._block = min(WATCH_BLOCK, socket_timeout / 2)
        self._closed = False
        kwargs: dict[str, Any] = dict(ssl_options or {})
        if ssl:
            kwargs["ssl"] = True
        self._r = redis.Redis(
            host=host,
            port=port,
            db=db,
            username=username,
            password=password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            # Never resend a command on its own: a lost reply to a write does not say
            # whether it applied.  Reads retry once themselves (see _read).
            retry=Retry(NoBackoff(), 0),
            client_name="clawstate",
            **kwargs,
        )
        p = prefix
        self._k_log = p + "log"
        self._k_namespaces = p + "namespaces"
        self._k_bytes = p + "bytes"
        self._k_meta = p + "meta"
        #: redis-py leaves execute_command untyped; pooled commands go through this
        self._pooled: Callable[..., Any] = self._r.execute_command
        self._local = threading.local()
        self._conns: weakref.WeakSet[_Conn] = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        #: declared indexes per namespace, as this process last read them (indexes.py)
        self._indexes = IndexCache(prefix)
        self._committer: GroupCommitter[WriteUnit, list[Outcome]] = GroupCommitter(
            self._run_batch, max_batch=max_batch
        )
        self._open()

    @classmethod
    def from_url(cls, url: ParsedUrl, options: BackendOptions) -> RedisBackend:
        """The backend a ``redis://`` / ``rediss://`` URL names, under ``options``
        (``create``, ``max_batch``; durability is the server's, see ``stats()``)."""
        params = dict(url.params)
        unknown = sorted(set(params) - set(_URL_PARAMS))
        if unknown:
            raise ConfigError(
                "store.url",
                f"unknown Redis URL parameter(s) {', '.join(unknown)}; known: "
                + ", ".join(_URL_PARAMS),
            )

        def number(name: str, default: float, kind: Callable[[str], float] = float) -> Any:
            raw = params.get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(
                    "store.url", f"the Redis URL parameter {name} must be a number, got {raw!r}"
                ) from None
            if not value > 0:
                raise ConfigError(
                    "store.url", f"the Redis URL parameter {name} must be > 0, got {raw!r}"
                )
            return value

        ssl_options: dict[str, Any] = {}
        if url.scheme == "rediss":
            if "ssl_ca_certs" in params:
                ssl_options["ssl_ca_certs"] = params["ssl_ca_certs"]
            if "ssl_cert_reqs" in params:
                reqs = params["ssl_cert_reqs"]
                if reqs not in ("required", "optional", "none"):
                    raise ConfigError(
                        "store.url",
                        f"ssl_cert_reqs must be required, optional or none, got {reqs!r}",
                    )
                ssl_options["ssl_cert_reqs"] = reqs
        elif "ssl_ca_certs" in params or "ssl_cert_reqs" in params:
            raise ConfigError("store.url", "ssl_* parameters need a rediss:// URL")
        return cls(
            host=url.host or "127.0.0.1",
            port=url.port or 6379,
            db=int(url.database or 0),
            username=url.username,
            password=url.password,
            ssl=url.scheme == "rediss",
            prefix=params.get("prefix", DEFAULT_PREFIX),
            max_query_scan=number("max_query_scan", DEFAULT_MAX_QUERY_SCAN, int),
            socket_timeout=number("socket_timeout", 10.0),
            connect_timeout=number("connect_timeout", 5.0),
            ssl_options=ssl_options,
            max_batch=options.max_batch,
            create=options.create,
        )

    # -- writes ----------------------------------------------------------------------

    def write(self, unit: WriteUnit) -> list[Outcome]:
        if self._closed:
            raise BackendUnavailable("the store is closed")
        return self._committer.submit(unit)

    def _run_batch(self, units: list[WriteUnit]) -> list[list[Outcome] | BaseException]:
        """Commit ``units`` in ONE script call; each unit succeeds or fails on its own.

        A unit the script refused because an index was declared since its entries were
        computed ({'g', ns}: nothing of it applied) is encoded again against the new
        declarations and resent (a declaration is rare, so a few rounds at most)."""
        results: list[list[Outcome] | BaseException | None] = [None] * len(units)
        todo = list(range(len(units)))
        for _ in range(_STALE_RETRIES):
            todo = self._send_units(units, todo, results)
            if not todo:
                break
        for i in todo:
            results[i] = BackendUnavailable(
                "write: the namespace's index declarations kept changing; retry the write"
            )
        return cast(list[list[Outcome] | BaseException], results)

    def _send_units(
        self,
        units: list[WriteUnit],
        todo: list[int],
        results: list[list[Outcome] | BaseException | None],
    ) -> list[int]:
        """Send ``units[i]`` for ``i`` in ``todo``, fill ``results``; return the indexes
        to resend (stale index generation)."""
        args: list[Any] = [self.prefix, 0]
        sent: list[int] = []
        stale: list[int] = []
        for i in todo:
            unit = units[i]
            try:
                problem = self._encode_unit(unit, args)
            except ClawStateError as exc:
                problem = exc
            if problem is not None:
                results[i] = problem
            else:
                sent.append(i)
        if sent:
            args[1] = len(sent)
            try:
                replies = cast(list[list[Any]], self._evalsha(_WRITE, args))
            except RedisError as exc:
                err = self._translate(exc, "write")
                if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                    err = BackendUnavailable(
                        f"{err}; the write may or may not have been applied — retry it with an "
                        "idempotency key to apply it exactly once"
                    )
                for i in sent:
                    results[i] = err
            else:
                for i, reply in zip(sent, replies, strict=True):
                    if reply[0] == b"g":
                        self._indexes.forget(_text(reply[1]))
                        stale.append(i)
                    else:
                        results[i] = self._decode_reply(units[i], reply)
        return stale

    def _encode_unit(self, unit: WriteUnit, args: list[Any]) -> ClawStateError | None:
        """Append ``unit`` to the script's ARGV; an error (nothing appended) if it is malformed."""
        if getattr(unit, "events", None):
            return InvalidRequest(
                "events", "the Redis backend keeps no event store (capabilities.events is False)"
            )
        out: list[Any] = []
        for w in unit.writes:
            code = _OPS.get(w.op)
            if code is None:
                return InvalidRequest("op", f"unknown write op {w.op}")
            if w.op == OP_FENCE:
                if w.if_version is None:
                    return InvalidRequest("fence", "a fencing check needs the token")
            elif w.op != OP_DELETE and w.value is None:
                return InvalidRequest("value", f"a {OP_NAMES.get(w.op, 'rewrap')} needs a value")
            out += (
                code,
                w.namespace,
                w.key,
                b"" if w.value is None else w.value,
                b"" if w.expires_at is None else _num(w.expires_at),
                b"" if w.if_version is None else w.if_version,
                b"1" if w.if_absent else b"",
                b"1" if w.log_value else b"",
                b"" if w.seq is None else w.seq,
                b"1" if w.keep_ttl else b"",
            )
            if w.op == OP_DELETE or w.value is None:
                out += (b"", b"")
            else:
                ix = self._ns_indexes(w.namespace)
                out += (ix.gen, entries_for(ix, w.key, w.value, w.doc) if ix.paths else b"")
        now = unit.now
        idem = idempotency_scope(unit)
        if idem is None:
            args += (_num(now), b"", b"", b"", 0, len(unit.writes), len(out))
        else:
            expires = (
                unit.idempotency_expires_at if unit.idempotency_expires_at is not None else now
            )
            ttl_ms = max(1, int((expires - now + IDEMPOTENCY_GRACE) * 1000))
            args += (
                _num(now),
                idem,
                unit.fingerprint,
                _num(expires),
                ttl_ms,
                len(unit.writes),
                len(out),
            )
        args += out
        return None

    @staticmethod
    def _decode_reply(unit: WriteUnit, reply: list[Any]) -> list[Outcome] | ClawStateError:
        kind = reply[0]
        if kind == b"o":
            flat: bytes = reply[1]
            if not flat:
                return []
            f = flat.split(b"\0")
            return [
                Outcome(
                    f[i].decode(),
                    f[i + 1].decode(),
                    int(f[i + 2]),
                    f[i + 3] == b"1",
                    int(f[i + 4]),
                    int(f[i + 5]),
                    float(f[i + 6]),
                    float(f[i + 7]),
                    float(f[i + 8]) if f[i + 8] else None,
                )
                for i in range(0, len(f), 9)
            ]
        if kind == b"f":
            w = unit.writes[int(reply[1])]
            current = None if reply[2] in (b"", "") else int(reply[2])
            return FencingError(w.key, w.if_version or 0, current)
        if kind == b"c":
            w = unit.writes[int(reply[1])]
            actual = None if reply[3] in (b"", "") else int(reply[3])
            expected: int | str | None = "absent" if reply[2] == b"a" else w.if_version
            return VersionConflict(w.key, expected, actual, namespace=w.namespace)
        idem = unit.idempotency_key
        return InvalidRequest(
            "idempotency_key", f"{idem!r} was already used for a different request"
        )

    # -- reads -----------------------------------------------------------------------

    def get(self, namespace: str, key: str, now: float) -> StoredItem | None:
        ik = self._ik(namespace, key)
        h = cast(
            list[Any],
            self._read("get", lambda: self._call("HMGET", ik, *_HASH_FIELDS)),
        )
        if h[1] is None:
            return None
        x = h[5]
        expires = None if x is None else float(x)
        if expires is not None and expires <= now:
            return None
        return StoredItem(
            namespace, key, h[0], int(h[1]), int(h[2]), float(h[3]), float(h[4]), expires
        )

    def get_many(self, namespace: str, keys: Sequence[str], now: float) -> list[StoredItem]:
        unique = list(dict.fromkeys(keys))
        out: list[StoredItem] = []
        for start in range(0, len(unique), _PAGE):
            chunk = unique[start : start + _PAGE]
            args = [self.prefix, namespace, *chunk]
            flat = cast(list[Any], self._read("get_many", partial(self._evalsha, _GET_MANY, args)))
            out.extend(self._items(namespace, flat, now))
        return out

    def scan(
        self, namespace: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[StoredItem]:
        if limit <= 0:
            return []
        return self._scan(namespace, prefix, after, limit, now)

    def iter_items(self, namespace: str) -> Iterator[StoredItem]:
        return self._iter(namespace, None)

    def version_state(self, namespace: str, key: str) -> tuple[int | None, int]:
        """``(the stored row's version — live or expired, not yet swept — or None, the
        namespace's version floor)``: what a put of ``key`` goes on from (see _apply:
        no ABA).  The write-back cache predicts new versions from it."""
        ik = self._ik(namespace, key)
        ver = self._read("version_state", lambda: self._call("HGET", ik, "ver"))
        floor = self._read(
            "version_state", lambda: self._call("HGET", self.prefix + "floors", namespace)
        )
        return (None if ver is None else int(ver)), (0 if floor is None else int(floor))

    # -- key ids (docs/configuration.md: the keyring belongs to the store) ------------

    def key_ids(self) -> set[str] | None:
        """The key ids recorded in the ``meta`` hash (``kid:<id>`` fields); None when
        the record was never completed (keys written before key ids were recorded)."""
        fields = cast(
            list[bytes], self._read("read the key ids", lambda: self._r.hkeys(self._k_meta))
        )
        names = {_text(f) for f in fields}
        if "kids" not in names:
            return None
        return {n[4:] for n in names if n.startswith("kid:")}

    def record_key_ids(self, kids: Iterable[str]) -> None:
        """Add ``kids`` to the ``meta`` hash and mark the record complete (one HSET:
        idempotent, so the one retry after a broken connection is safe)."""
        now = repr(time.time())
        mapping = {"kid:" + kid: now for kid in kids}
        mapping["kids"] = "recorded"
        fields = cast(Any, mapping)  # redis-py's Mapping is invariant in its key type
        self._read("record the key ids", lambda: self._r.hset(self._k_meta, mapping=fields))

    def stats(self) -> dict[str, Any]:
        def collect() -> dict[str, Any]:
            names = self.namespaces()
            pipe = self._r.pipeline(transaction=False)
            for name in names:
                pipe.zcard(f"{self.prefix}k:{name}")
                pipe.hget(self._k_bytes, name)
            pipe.xlen(self._k_log)
            pipe.info("memory")
            pipe.info("replication")
            pipe.config_get("maxmemory-policy")
            got = pipe.execute(raise_on_error=False)
            per_ns = {
                name: {"items": int(got[2 * i]), "bytes": int(got[2 * i + 1] or 0)}
                for i, name in enumerate(names)
            }
            rows, memory, replication, policy_reply = got[-4:]
            if not isinstance(replication, dict):
                replication = {}
            summary, durable, details = self._persistence()
            first, last = self._bounds()
            policy = (
                _text(next(iter(policy_reply.values()), b"unknown"))
                if isinstance(policy_reply, dict)
                else "unknown"
            )
            warnings = []
            if policy not in ("noeviction", "unknown"):
                warnings.append(
                    f"maxmemory-policy is {policy}: Redis may evict clawstate's keys under memory "
                    "pressure and lose data silently; set it to noeviction"
                )
            if not durable:
                warnings.append(f"persistence: {summary}")
            if replication.get("role") == "slave":
                warnings.append("connected to a replica: writes will fail (READONLY)")
            return {
                "backend": "redis",
                "server": self._where,
                "server_version": self.server_version,
                "prefix": self.prefix,
                "schema_version": SCHEMA_VERSION,
                "persistence": summary,
                "persistence_details": details,
                "durable": durable,
                "maxmemory_policy": policy,
                "role": replication.get("role", "unknown"),
                "replicas": int(replication.get("connected_slaves", 0)),
                "used_memory": int(memory.get("used_memory", 0)) if isinstance(memory, dict) else 0,
                "namespaces": per_ns,
                "bytes_are": "the sum of the stored (encoded) value lengths; Redis's per-key "
                "overhead, the indexes and the change log come on top (see used_memory)",
                "max_query_scan": self.max_query_scan,
                "changelog": {"first_seq": first, "last_seq": last, "rows": int(rows)},
                "group_commit": self._committer.stats(),
                "warnings": warnings,
            }

        return self._read("stats", collect)

    def start_background(self) -> None:
        """No background work of its own (see :meth:`Backend.start_background`)."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._conns_lock:
            conns = list(self._conns)
            self._conns = weakref.WeakSet()
        for conn in conns:
            try:
                conn.disconnect()
            except (RedisError, OSError):
                pass
        try:
            self._r.close()
            self._r.connection_pool.disconnect()
        except RedisError:
            pass
