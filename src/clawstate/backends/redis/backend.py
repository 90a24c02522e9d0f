"""The Redis backend class (see the package docstring for the design)."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from ...errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    InvalidRequest,
    VersionConflict,
)
from ...types import Change, QueryPlan
from .._apply import idempotency_scope
from .._group_commit import GroupCommitter
from .._keyorder import prefix_upper_bound
from ..base import (
    OP_DELETE,
    OP_NAMES,
    OP_PUT,
    OP_REWRAP,
    BackendOptions,
    Capabilities,
    Decoder,
    Outcome,
    Progress,
    QueryResult,
    StoredItem,
    SweepResult,
    WriteUnit,
)
from .persistence import persistence_mode
from .scripts import _BOUNDS, _COUNT, _GET_MANY, _SCAN, _SWEEP, _WRITE, SCRIPTS, Script

if TYPE_CHECKING:
    from ...config import ParsedUrl
    from ...query import Query

__all__ = [
    "DEFAULT_MAX_QUERY_SCAN",
    "DEFAULT_PREFIX",
    "SCHEMA_VERSION",
    "RedisBackend",
    "persistence_mode",
]

DEFAULT_PREFIX = "clawstate:"
DEFAULT_MAX_QUERY_SCAN = 10_000
SCHEMA_VERSION = 1
#: The native expiry of an idempotency record outlives its logical window by this much.
IDEMPOTENCY_GRACE = 3600.0
#: The most expired items, idempotency records and log entries one sweep call removes.
SWEEP_MAX_EXPIRE = 10_000
SWEEP_MAX_IDEMPOTENCY = 10_000
SWEEP_MAX_TRIM = 50_000
#: How long one XREAD BLOCK waits at most (must stay below the socket timeout).
WATCH_BLOCK = 1.0
#: A per-thread connection idle this long is probed (no round trip) before use.
IDLE_PROBE = 1.0
_PAGE = 1000
_URL_PARAMS = (
    "prefix",
    "max_query_scan",
    "socket_timeout",
    "connect_timeout",
    "ssl_ca_certs",
    "ssl_cert_reqs",
)

T = TypeVar("T")

#: Bumped in a forked child: per-thread connections inherited from the parent are
#: never used there (the socket belongs to the parent).
_fork_generation = [0]
os.register_at_fork(after_in_child=lambda: _fork_generation.__setitem__(0, _fork_generation[0] + 1))


class _Conn(Protocol):
    """The part of redis-py's Connection used on the hot path (redis-py leaves it untyped)."""

    def pack_command(self, *args: Any) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def disconnect(self, *args: Any) -> None: ...


_OPS = {OP_PUT: b"0", OP_DELETE: b"1", OP_REWRAP: b"3"}
_OP_NAMES_BY_CODE: dict[bytes, str] = {b"0": "put", b"1": "delete", b"2": "expire"}
_HASH_FIELDS = ("v", "ver", "seq", "c", "u", "x")


def _num(x: float) -> str:
    """A float as the exact text Lua's ``tonumber`` reads back to the same double."""
    return repr(float(x))


def _text(b: bytes | str) -> str:
    return b.decode() if isinstance(b, bytes) else b


def _glob_escape(s: str) -> str:
    """``s`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)


class RedisBackend:
    """Backend over one Redis server, every key under ``prefix`` (see the module docstring)."""

    name = "redis"
    capabilities = Capabilities(durable=False, multi_process=True, native_query=False)

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

    def ensure_index(
        self, namespace: str, fields: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        """No value indexes on Redis: ``query()`` scans, bounded by ``max_query_scan``
        (issue #12 may add some); nothing is created."""
        return []

    # -- plumbing --------------------------------------------------------------------

    def _open(self) -> None:
        """Check the server, the schema marker and persistence; load the scripts."""
        try:
            info = self._r.info("server")
            version = str(info.get("redis_version", "0"))
            major_minor = tuple(int(x) for x in version.split(".")[:2])
            if major_minor < (7, 0):
                raise ConfigError(
                    "store.url",
                    f"{self._where} runs Redis {version}; clawstate needs Redis 7.0 or newer "
                    "(script flags, XTRIM MINID, exclusive XRANGE)",
                )
            self.server_version = version
            mode = str(info.get("redis_mode", "standalone"))
            if mode != "standalone":
                raise ConfigError(
                    "store.url",
                    f"{self._where} runs in {mode} mode; clawstate's Redis backend needs a "
                    "standalone (or primary/replica) server: one script touches a store's "
                    "items, indexes and log together",
                )
            if self._create:
                self._r.hsetnx(self._k_meta, "schema", SCHEMA_VERSION)
            found = int(cast(bytes, self._r.hget(self._k_meta, "schema")) or 0)
            if not found:  # create=False, and no store under this prefix: write nothing
                raise ConfigError(
                    "store.url",
                    f"no store at {self._where} under prefix {self.prefix!r} (its "
                    f"{self._k_meta!r} hash is missing); a command that writes (put, serve…) "
                    "creates it",
                )
            if found > SCHEMA_VERSION:
                raise ConfigError(
                    "store.url",
                    f"the keys under prefix {self.prefix!r} have schema version {found}; this "
                    f"clawstate understands up to {SCHEMA_VERSION} — upgrade clawstate",
                )
            for script in SCRIPTS:
                self._r.script_load(script.source)
            summary, durable, _ = self._persistence()
        except redis.AuthenticationError as exc:
            self._r.close()
            raise ConfigError("store.url", f"{self._where}: authentication failed: {exc}") from exc
        except RedisError as exc:
            self._r.close()
            raise self._translate(exc, "open") from exc
        except ClawStateError:
            self._r.close()
            raise
        self.persistence = summary
        self.capabilities = Capabilities(durable=durable, multi_process=True, native_query=False)

    def _persistence(self) -> tuple[str, bool, dict[str, Any]]:
        info = self._r.info("persistence")
        config: dict[str, str] | None
        try:
            config = {}
            for name in ("appendonly", "appendfsync", "save"):
                got = cast(dict[str, str], self._r.config_get(name))
                config.update({_text(k): _text(v) for k, v in got.items()})
        except redis.ResponseError:  # CONFIG renamed or refused (managed services)
            config = None
        return persistence_mode(config, info)

    def _translate(self, exc: RedisError, what: str) -> ClawStateError:
        """Turn a driver error into the clawstate tree (the backend's edge)."""
        if self._closed:
            return BackendUnavailable("the store is closed")
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return BackendUnavailable(f"{what}: {self._where} is unreachable: {exc}")
        return BackendUnavailable(f"{what}: {self._where} refused: {exc}")

    def _evalsha(self, script: Script, args: Sequence[Any]) -> Any:
        """EVALSHA ``script``; on NOSCRIPT (the server lost its cache) load it and retry once."""
        try:
            return self._call("EVALSHA", script.sha, 1, self._k_log, *args)
        except NoScriptError:
            self._call("SCRIPT", "LOAD", script.source)
            return self._call("EVALSHA", script.sha, 1, self._k_log, *args)

    def _conn(self) -> _Conn:
        """This thread's own connection (opened on first use, outside the pool)."""
        local = self._local
        conn: _Conn | None = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is None or local.generation != _fork_generation[0]:
            if self._closed:
                raise BackendUnavailable("the store is closed")
            pool = self._r.connection_pool
            conn = cast(_Conn, pool.connection_class(**pool.connection_kwargs))
            local.conn, local.generation = conn, _fork_generation[0]
            with self._conns_lock:
                self._conns.add(conn)
        elif now - local.last > IDLE_PROBE:
            # A socket the server closed while we were idle (a restart, a timeout) would
            # fail the next command after sending it — ambiguous for a write.  A poll
            # without a round trip finds it first; a fresh connection replaces it.
            try:
                if conn.can_read(0):  # data nobody asked for: not ours to read
                    conn.disconnect()
            except (RedisError, OSError):
                conn.disconnect()
        local.last = now
        return conn

    def _call(self, *args: Any) -> Any:
        """One command on this thread's connection, its raw reply (no response callbacks).

        The hot path: redis-py's client layer (pool checkout, retry wrapper, callbacks)
        costs about as much as a localhost round trip, and every thread has its own
        connection, as with the SQLite backend.  A reply that was not read completely
        (an error, an interrupt) drops the connection, so the next command cannot read
        a stale reply; an error *reply* leaves it usable.
        """
        conn = self._conn()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        """Run a read; retry once on a broken connection (reads are safe to repeat)."""
        if self._closed:
            raise BackendUnavailable("the store is closed")
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError):
            if self._closed:
                raise BackendUnavailable("the store is closed") from None
        except RedisError as exc:
            raise self._translate(exc, what) from exc
        try:
            return fn()
        except RedisError as exc:
            raise self._translate(exc, what) from exc

    def _ik(self, namespace: str, key: str) -> str:
        return f"{self.prefix}i:{namespace}/{key}"

    # -- writes ----------------------------------------------------------------------

    def write(self, unit: WriteUnit) -> list[Outcome]:
        if self._closed:
            raise BackendUnavailable("the store is closed")
        return self._committer.submit(unit)

    def _run_batch(self, units: list[WriteUnit]) -> list[list[Outcome] | BaseException]:
        """Commit ``units`` in ONE script call; each unit succeeds or fails on its own."""
        results: list[list[Outcome] | BaseException | None] = [None] * len(units)
        args: list[Any] = [self.prefix, 0]
        sent: list[int] = []
        for i, unit in enumerate(units):
            problem = self._encode_unit(unit, args)
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
                    results[i] = self._decode_reply(units[i], reply)
        return cast(list[list[Outcome] | BaseException], results)

    @staticmethod
    def _encode_unit(unit: WriteUnit, args: list[Any]) -> ClawStateError | None:
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
            if w.op != OP_DELETE and w.value is None:
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
        now = unit.now
        idem = idempotency_scope(unit)
        if idem is None:
            args += (_num(now), b"", b"", b"", 0, len(unit.writes))
        else:
            expires = (
                unit.idempotency_expires_at if unit.idempotency_expires_at is not None else now
            )
            ttl_ms = max(1, int((expires - now + IDEMPOTENCY_GRACE) * 1000))
            args += (_num(now), idem, unit.fingerprint, _num(expires), ttl_ms, len(unit.writes))
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

    @staticmethod
    def _items(namespace: str, flat: list[Any], now: float | None) -> list[StoredItem]:
        """Items from a script's flat reply (7 fields each), the expired ones dropped
        unless ``now`` is None."""
        out: list[StoredItem] = []
        for i in range(0, len(flat), 7):
            x = flat[i + 6]
            expires = float(x) if x else None
            if now is not None and expires is not None and expires <= now:
                continue
            out.append(
                StoredItem(
                    namespace,
                    flat[i].decode(),
                    flat[i + 1],
                    int(flat[i + 2]),
                    int(flat[i + 3]),
                    float(flat[i + 4]),
                    float(flat[i + 5]),
                    expires,
                )
            )
        return out

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

    def _scan(
        self,
        namespace: str,
        prefix: str,
        after: str | None,
        limit: int,
        now: float | None,
    ) -> list[StoredItem]:
        if after is not None and after.encode() >= prefix.encode():
            low = "(" + after
        else:
            low = "[" + prefix if prefix else "-"
        upper = prefix_upper_bound(prefix) if prefix else None
        high = "+" if upper is None else "(" + upper
        args = [self.prefix, namespace, low, high, limit, "" if now is None else _num(now)]
        flat = cast(list[Any], self._read("scan", lambda: self._evalsha(_SCAN, args)))
        return self._items(namespace, flat, now)

    def scan(
        self, namespace: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[StoredItem]:
        if limit <= 0:
            return []
        return self._scan(namespace, prefix, after, limit, now)

    def _iter(self, namespace: str, now: float | None) -> Iterator[StoredItem]:
        after: str | None = None
        while True:
            page = self._scan(namespace, "", after, _PAGE, now)
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].key

    def iter_items(self, namespace: str) -> Iterator[StoredItem]:
        return self._iter(namespace, None)

    def query(
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool = False,
        max_scan: int | None = None,
    ) -> QueryResult:
        from ...query import run_query

        live = self.count(namespace, now)
        if live > self.max_query_scan:
            raise InvalidRequest(
                "query",
                f"namespace {namespace!r} holds {live} items, more than max_query_scan "
                f"({self.max_query_scan}): on Redis a query scans every item of the namespace "
                "and filters in Python; raise ?max_query_scan= in the store URL knowingly, or "
                "keep queryable namespaces on PostgreSQL or SQLite",
                limit=self.max_query_scan,
            )
        rows = ((it.key, decode(it), it) for it in self._iter(namespace, now))
        run = run_query(query, rows, key_ordered=True, max_read=max_scan)
        plan = QueryPlan("redis", "scan", run.rows_read, run.early_exit)
        return QueryResult(run.items, run.token, plan)

    def count(self, namespace: str, now: float) -> int:
        args = [self.prefix, namespace, _num(now)]
        return int(self._read("count", lambda: self._evalsha(_COUNT, args)))

    # -- change log ------------------------------------------------------------------

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        out: list[Change] = []
        start = f"(0-{after_seq}" if after_seq > 0 else "-"
        want = namespace.encode() if namespace is not None else None
        batch = limit if namespace is None else max(limit, 500)
        while len(out) < limit:
            rows = cast(
                list[list[Any]],
                self._read(
                    "changes",
                    partial(self._call, "XRANGE", self._k_log, start, "+", "COUNT", batch),
                ),
            )
            for entry_id, fields in rows:
                f = dict(zip(fields[::2], fields[1::2], strict=True))
                ns = f[b"ns"]
                if want is not None and ns != want:
                    continue
                out.append(
                    Change(
                        int(entry_id[2:]),
                        ns.decode(),
                        f[b"key"].decode(),
                        _OP_NAMES_BY_CODE[f[b"op"]],  # type: ignore[arg-type]
                        int(f[b"ver"]),
                        float(f[b"ts"]),
                    )
                )
                if len(out) >= limit:
                    break
            if len(rows) < batch:
                break
            start = "(" + rows[-1][0].decode()
        return out

    def _bounds(self) -> tuple[int, int]:
        got = cast(list[int], self._read("last_seq", lambda: self._evalsha(_BOUNDS, [self.prefix])))
        return int(got[0]), int(got[1])

    def last_seq(self) -> int:
        """The newest log entry's ID: the sweep never trims it, so it is the last seq."""
        top = self._read(
            "last_seq", partial(self._call, "XREVRANGE", self._k_log, "+", "-", "COUNT", 1)
        )
        return int(top[0][0][2:]) if top else 0

    def first_seq(self) -> int:
        first, last = self._bounds()
        return first if first else last + 1

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """``XREAD BLOCK`` on the log: returns as soon as an entry after ``after_seq`` exists.

        The newest log entry is never trimmed and its ID is the last seq, so "an entry
        after ``after_seq`` exists" is exactly "a change after ``after_seq`` committed".
        """
        deadline = time.monotonic() + timeout
        start = f"0-{max(after_seq, 0)}"
        while True:
            if self._closed:
                return False
            block = min(deadline - time.monotonic(), self._block)
            if block <= 0:
                return self.last_seq() > after_seq
            try:
                got = self._pooled(
                    "XREAD",
                    "COUNT",
                    1,
                    "BLOCK",
                    max(1, int(block * 1000)),
                    "STREAMS",
                    self._k_log,
                    start,
                )
            except RedisError as exc:
                if self._closed:
                    return False
                raise self._translate(exc, "watch") from exc
            if got:
                return True

    # -- maintenance -----------------------------------------------------------------

    def sweep(self, now: float, changelog_before: float) -> SweepResult:
        args = [
            self.prefix,
            _num(now),
            _num(changelog_before),
            SWEEP_MAX_EXPIRE,
            SWEEP_MAX_IDEMPOTENCY,
            SWEEP_MAX_TRIM,
        ]
        if self._closed:
            raise BackendUnavailable("the store is closed")
        try:
            got = cast(list[int], self._evalsha(_SWEEP, args))
        except RedisError as exc:
            raise self._translate(exc, "sweep") from exc
        return SweepResult(expired=int(got[0]), idempotency_keys=int(got[1]), changes=int(got[2]))

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

    def namespaces(self) -> list[str]:
        got = cast(
            set[bytes], self._read("namespaces", lambda: self._r.smembers(self._k_namespaces))
        )
        return sorted(_text(n) for n in got)

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

    def check(self) -> tuple[list[str], dict[str, int]]:
        return self._read("check", self._check)

    def _check(self) -> tuple[list[str], dict[str, int]]:
        r = self._r
        p = self.prefix
        problems: list[str] = []
        first, last = self._bounds()
        if r.exists(self._k_log):
            generated = _text(r.xinfo_stream(self._k_log)["last-generated-id"])
            if generated != f"0-{last}":
                problems.append(
                    f"the change log generated ID {generated} but its newest entry is 0-{last}: "
                    "the newest entry must never be trimmed"
                )
        names = self.namespaces()
        # One pass over the keyspace: every item hash and key index under the prefix.
        hashes: dict[str, set[str]] = {}
        indexed: set[str] = set()
        item_tag, index_tag = f"{p}i:".encode(), f"{p}k:".encode()
        for raw in r.scan_iter(match=_glob_escape(p) + "[ik]:*", count=1000):
            name = cast(bytes, raw)
            if name.startswith(item_tag):
                raw_ns, sep, raw_key = name[len(item_tag) :].partition(b"/")
                if sep:
                    hashes.setdefault(raw_ns.decode(), set()).add(raw_key.decode())
            elif name.startswith(index_tag):
                indexed.add(name[len(index_tag) :].decode())
        for ns in sorted(indexed - set(names)):
            problems.append(f"namespace {ns!r} has a key index but is missing from {p}namespaces")
        items = logged = 0
        for ns in names:
            members = [_text(m) for m in cast(list[bytes], r.zrange(f"{p}k:{ns}", 0, -1))]
            scores = {
                _text(m): float(sc)
                for m, sc in cast(list[Any], r.zrange(f"{p}x:{ns}", 0, -1, withscores=True))
            }
            member_set = set(members)
            for key in sorted(hashes.get(ns, set()) - member_set):
                problems.append(f"{ns}/{key}: item hash missing from the key index")
            for key in sorted(set(scores) - member_set):
                problems.append(f"{ns}/{key}: in the expiry index but not in the key index")
            total_bytes = 0
            with_seq: list[tuple[str, int, int]] = []
            for start in range(0, len(members), _PAGE):
                chunk = members[start : start + _PAGE]
                pipe = r.pipeline(transaction=False)
                for key in chunk:
                    pipe.hmget(self._ik(ns, key), "ver", "seq", "c", "u", "x", "n")
                    pipe.hstrlen(self._ik(ns, key), "v")
                got = pipe.execute()
                for j, key in enumerate(chunk):
                    h, length = got[2 * j], int(got[2 * j + 1])
                    where = f"{ns}/{key}"
                    if h[0] is None:
                        problems.append(f"{where}: in the key index but its item hash is missing")
                        continue
                    items += 1
                    total_bytes += length
                    ver, seq = int(h[0]), int(h[1])
                    if ver < 1 or seq < 1 or float(h[3]) < float(h[2]):
                        problems.append(f"{where}: impossible metadata (version/seq/timestamps)")
                    if seq > last:
                        problems.append(f"{where}: seq {seq} is beyond the last seq {last}")
                    if h[5] is None or int(h[5]) != length:
                        problems.append(f"{where}: its length field disagrees with its value")
                    if h[4] is None:
                        if key in scores:
                            problems.append(f"{where}: in the expiry index but has no expiry")
                    elif scores.get(key) != float(h[4]):
                        problems.append(f"{where}: expiry index disagrees with the item")
                    if first and seq >= first:
                        with_seq.append((key, ver, seq))
            counted = int(cast(bytes, r.hget(self._k_bytes, ns)) or 0)
            if counted != total_bytes:
                problems.append(
                    f"{ns}: the byte counter says {counted} but the values hold {total_bytes}"
                )
            # Each item's last write must be its retained change-log entry.
            for start in range(0, len(with_seq), _PAGE):
                batch = with_seq[start : start + _PAGE]
                pipe = r.pipeline(transaction=False)
                for _, _, seq in batch:
                    pipe.xrange(self._k_log, f"0-{seq}", f"0-{seq}")
                for (key, ver, _), entries in zip(batch, pipe.execute(), strict=True):
                    logged += 1
                    if not entries:
                        problems.append(f"{ns}/{key}: no change-log entry for its seq")
                        continue
                    f = entries[0][1]
                    found = (f[b"ns"].decode(), f[b"key"].decode(), int(f[b"ver"]), f[b"op"])
                    if found != (ns, key, ver, b"0"):
                        problems.append(f"{ns}/{key}: no matching change-log row")
        for ns in sorted(set(hashes) - set(names)):
            problems.append(f"namespace {ns!r} has item hashes but is missing from {p}namespaces")
        rows = int(r.xlen(self._k_log))
        if first and rows != last - first + 1:
            problems.append(
                f"the change log misses {last - first + 1 - rows} seqs between its first "
                f"({first}) and last ({last}): retention trims only from the front"
            )
        problems += self._check_log_items(set(names))
        return problems, {"items": items, "changes": rows, "log_matched": logged}

    def _check_log_items(self, names: set[str]) -> list[str]:
        """The reverse direction: each key's newest retained log entry is what the items
        hold — a put: the item at exactly that seq and version; a delete or expire (every
        purge logs one): no item.  True whatever retention trimmed, since it trims a
        prefix and never the newest entry."""
        r = self._r
        problems: list[str] = []
        newest: dict[tuple[str, str], tuple[int, int, bytes]] = {}
        start = "-"
        ops = {str(op).encode() for op in OP_NAMES}
        while True:
            entries = cast(list[Any], r.xrange(self._k_log, start, "+", count=_PAGE))
            for entry_id, f in entries:
                seq = int(_text(entry_id)[2:])
                try:
                    where = (f[b"ns"].decode(), f[b"key"].decode())
                    op, ver = f[b"op"], int(f[b"ver"])
                except (KeyError, ValueError, UnicodeDecodeError):
                    problems.append(f"change-log entry {seq} is malformed")
                    continue
                if op not in ops or ver < 1:
                    problems.append(f"change-log entry {seq} has an impossible op or version")
                if where[0] not in names:
                    problems.append(f"change-log entry {seq} belongs to no namespace")
                newest[where] = (seq, ver, op)
            if len(entries) < _PAGE:
                break
            start = "(" + _text(entries[-1][0])
        found = list(newest.items())
        put = str(OP_PUT).encode()
        for begin in range(0, len(found), _PAGE):
            batch = found[begin : begin + _PAGE]
            pipe = r.pipeline(transaction=False)
            for (ns, key), _ in batch:
                pipe.hmget(self._ik(ns, key), "ver", "seq")
            for ((ns, key), (seq, ver, op)), held in zip(batch, pipe.execute(), strict=True):
                where_key = f"{ns}/{key}"
                if op != put:
                    if held[0] is not None:
                        problems.append(
                            f"{where_key}: exists although its newest change-log entry is a "
                            "delete or expire"
                        )
                elif held[0] is None:
                    problems.append(
                        f"{where_key}: last written by a put in the change log but has no item "
                        "(and no later delete or expire)"
                    )
                elif (int(held[1]), int(held[0])) != (seq, ver):
                    problems.append(
                        f"{where_key}: differs from its newest change-log entry (log: seq {seq} "
                        f"v{ver}, item: seq {int(held[1])} v{int(held[0])})"
                    )
        return problems

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
