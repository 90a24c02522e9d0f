"""Key/value on the Redis backend vs raw redis-py, against the same Redis server.

Systems (each behind the :class:`bench.kv_sqlite.KV` adapter interface):

* ``clawstate (redis)`` — ``clawstate.open("redis://…?prefix=…", sweep_interval=0)``,
  namespace ``b``; values go through its codec (msgpack) — the codec is timed.  A put
  is one ``EVALSHA`` doing strictly more than a SET: read the item's version, check
  conditions, write the item hash, append a change-log Stream entry (and maintain the
  key index); a get is one ``HMGET`` plus decoding.
* ``raw redis-py SET/GET`` — ``r.set(key, json.dumps(value).encode())`` and
  ``json.loads(r.get(key))``: the target peer (clawstate ≥ 0.8× of it).
* ``raw redis-py Lua, same work`` — context: a hand-written Lua script (``EVALSHA``)
  doing what a clawstate put does on the server — read the version, ``HSET`` the
  item with version/seq/timestamps and ``XADD`` a change-log entry — with JSON
  values; its get is ``HMGET`` + ``json.loads``.  It shows what the extra server work
  costs by itself, without clawstate's Python.

Every system runs against the server at ``CLAWSTATE_BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) under its own fresh key prefix, deleted afterwards.
Without a reachable server each case reports that instead of figures.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis

import clawstate

from .harness import (
    Case,
    Measurement,
    Peer,
    Sample,
    Settings,
    Table,
    comparison_table,
    fmt_int,
    interleave,
    threaded_sample,
    time_loop,
)
from .kv_sqlite import KV, VALUE, cycle_shuffled, warm_keys

__all__ = ["CASES", "ClawRedisKV", "RawConnKV", "RawLuaKV", "RawRedisKV"]

AREA = "kv_redis"
URL = os.environ.get("CLAWSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFILL_BATCH = 1000


def _prefix(label: str) -> str:
    return f"clawbench:{label}:{uuid.uuid4().hex[:10]}:"


def _client() -> redis.Redis:
    return redis.Redis.from_url(URL)


def _drop(prefix: str) -> None:
    client = _client()
    try:
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix) + "*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


# -- adapters ----------------------------------------------------------------------------


class ClawRedisKV:
    """clawstate on Redis; thread-safe, so every thread shares it."""

    def __init__(self) -> None:
        self.name = "clawstate (redis)"
        self.prefix = _prefix("claw")
        sep = "&" if "?" in URL else "?"
        self.store = clawstate.open(f"{URL}{sep}prefix={self.prefix}", sweep_interval=0)
        self.ns = self.store.namespace("b")

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        for start in range(0, len(keys), PREFILL_BATCH):
            self.ns.put_many([(k, value) for k in keys[start : start + PREFILL_BATCH]])

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        put = self.ns.put
        for k in keys:
            put(k, value)

    def put_batch(self, pairs: list[tuple[str, Any]]) -> None:
        self.ns.put_many(pairs)

    def get_each(self, keys: Sequence[str]) -> None:
        get = self.ns.get
        for k in keys:
            get(k)

    def for_thread(self) -> KV:
        return self

    def stats(self) -> dict[str, float]:
        backend = self.store.backend
        gc: dict[str, float] = backend.stats()["group_commit"]
        return gc

    def close(self) -> None:
        self.store.close()
        _drop(self.prefix)


class RawRedisKV:
    """Plain redis-py SET / GET with JSON values: the floor for one round trip."""

    def __init__(self) -> None:
        self.name = "raw redis-py SET/GET"
        self.prefix = _prefix("raw")
        self.r = _client()

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        for start in range(0, len(keys), PREFILL_BATCH):
            self.put_batch([(k, value) for k in keys[start : start + PREFILL_BATCH]])

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        rset = self.r.set
        dumps = json.dumps
        p = self.prefix
        for k in keys:
            rset(p + k, dumps(value).encode())

    def put_batch(self, pairs: list[tuple[str, Any]]) -> None:
        pipe = self.r.pipeline(transaction=True)  # MULTI/EXEC: atomic like put_many
        for k, v in pairs:
            pipe.set(self.prefix + k, json.dumps(v).encode())
        pipe.execute()

    def get_each(self, keys: Sequence[str]) -> None:
        rget = self.r.get
        loads = json.loads
        p = self.prefix
        for k in keys:
            loads(rget(p + k))

    def for_thread(self) -> KV:
        return self

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.r.close()
        _drop(self.prefix)


class RawConnKV(RawRedisKV):
    """SET / GET on one redis-py ``Connection``, skipping the client layer (pool checkout,
    retry wrapper, callbacks) as clawstate's hot path does: context, single thread only."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "raw redis-py Connection SET/GET"
        pool = self.r.connection_pool
        self.conn = pool.connection_class(**pool.connection_kwargs)

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        c = self.conn
        dumps = json.dumps
        p = self.prefix
        for k in keys:
            c.send_packed_command(c.pack_command("SET", p + k, dumps(value).encode()), False)
            c.read_response()

    def get_each(self, keys: Sequence[str]) -> None:
        c = self.conn
        loads = json.loads
        p = self.prefix
        for k in keys:
            c.send_packed_command(c.pack_command("GET", p + k), False)
            loads(c.read_response())

    def close(self) -> None:
        self.conn.disconnect()
        super().close()


_SAME_WORK_LUA = """
local h = redis.call('HMGET', KEYS[1], 'ver', 'c')
local ver, c = 1, ARGV[2]
if h[1] then ver = tonumber(h[1]) + 1; c = h[2] end
local id = redis.call('XADD', KEYS[2], '0-*', 'key', KEYS[1], 'op', '0', 'ver', ver, 'ts', ARGV[2])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'ver', ver, 'seq', string.sub(id, 3), 'c', c,
           'u', ARGV[2])
return {ver, id}
"""


class RawLuaKV:
    """Hand-written redis-py + Lua doing a clawstate put's server work: context only."""

    def __init__(self) -> None:
        self.name = "raw redis-py Lua, same work"
        self.prefix = _prefix("lua")
        self.r = _client()
        self.sha = self.r.script_load(_SAME_WORK_LUA)
        self.log = self.prefix + "log"

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        for start in range(0, len(keys), PREFILL_BATCH):
            self.put_batch([(k, value) for k in keys[start : start + PREFILL_BATCH]])

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        evalsha = self.r.evalsha
        dumps = json.dumps
        now = time.time
        p, sha, log = self.prefix, self.sha, self.log
        for k in keys:
            evalsha(sha, 2, p + k, log, dumps(value).encode(), repr(now()))

    def put_batch(self, pairs: list[tuple[str, Any]]) -> None:
        pipe = self.r.pipeline(transaction=True)
        t = repr(time.time())
        for k, v in pairs:
            pipe.evalsha(self.sha, 2, self.prefix + k, self.log, json.dumps(v).encode(), t)
        pipe.execute()

    def get_each(self, keys: Sequence[str]) -> None:
        hmget = self.r.hmget
        loads = json.loads
        p = self.prefix
        for k in keys:
            loads(hmget(p + k, "v")[0])

    def for_thread(self) -> KV:
        return self

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.r.close()
        _drop(self.prefix)


Factory = Callable[[], KV]


@contextlib.contextmanager
def open_systems(factories: Sequence[Factory]) -> Iterator[list[KV]]:
    """Each system under its own fresh prefix for the whole case; closed (and its keys
    deleted) afterwards."""
    with contextlib.ExitStack() as stack:
        kvs: list[KV] = []
        for factory in factories:
            kv = factory()
            stack.callback(kv.close)
            kvs.append(kv)
        yield kvs


def _unreachable(title: str) -> list[Table] | None:
    """A table saying Redis is not reachable (None when it is)."""
    try:
        client = _client()
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return [
            Table(
                title,
                f"Redis is not reachable at `{URL}` ({type(exc).__name__}); start it with "
                "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''` or set "
                "`CLAWSTATE_BENCH_REDIS_URL`.",
                ["system", "result"],
                [["clawstate (redis)", "not measured"]],
            )
        ]
    return None


def _server_note() -> str:
    client = _client()
    try:
        info = client.info("server")
        probe = _prefix("probe")
        store = clawstate.open(f"{URL}{'&' if '?' in URL else '?'}prefix={probe}", sweep_interval=0)
        try:
            persistence = store.backend.stats()["persistence"]
        finally:
            store.close()
            _drop(probe)
        return f"Redis {info.get('redis_version')} at `{URL}`; persistence: {persistence}."
    finally:
        client.close()


def _table(
    case: str,
    title: str,
    intro: str,
    ms: dict[str, Measurement],
    names: list[str],
    targets: list[float | None],
    *,
    unit: str,
    peer_notes: Sequence[str],
    notes: Sequence[str] = (),
    subject_note: str = "",
) -> Table:
    peers = [
        Peer(ms[n], t, note) for n, t, note in zip(names[1:], targets, peer_notes, strict=True)
    ]
    return comparison_table(
        f"{case}: {title}",
        title,
        intro,
        ms[names[0]],
        peers,
        unit=unit,
        subject_note=subject_note,
        notes=notes,
    )


# -- case 1: single puts ---------------------------------------------------------------------


def case_single_put(settings: Settings) -> list[Table]:
    title = "R1. Single puts, one thread — overwrite"
    if (skip := _unreachable(title)) is not None:
        return skip
    n_warm = settings.n(10_000, 300)
    n_ops = settings.n(8_000, 300)
    keys = warm_keys(n_warm)
    with open_systems([ClawRedisKV, RawRedisKV, RawLuaKV, RawConnKV]) as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
            kv.put_each(cycle_shuffled(keys, max(n_ops // 4, 50), 0), VALUE)
        seeds = iter(range(1, 1_000_000))

        def trial(kv: KV) -> Callable[[], Sample]:
            def run() -> Sample:
                ops = cycle_shuffled(keys, n_ops, next(seeds))
                return time_loop(len(ops), lambda: kv.put_each(ops, VALUE))

            return run

        names = [kv.name for kv in kvs]
        ms = interleave([(kv.name, trial(kv)) for kv in kvs], settings)
    return [
        _table(
            "single_put",
            title,
            f"{fmt_int(n_ops)} `put`s per round overwriting random keys of a warm set of "
            f"{fmt_int(n_warm)}; one round trip per put for every system. {_server_note()}",
            ms,
            names,
            [0.8, None, None],
            unit="put",
            peer_notes=[
                "SET + json.dumps",
                "EVALSHA: HMGET + XADD + HSET",
                "SET on a bare Connection",
            ],
            notes=[
                "A clawstate put does strictly more than a SET, in one EVALSHA: it reads the "
                "item's version and expiry, checks conditions, writes the item hash "
                "(value, version, seq, timestamps, length), appends the change-log Stream "
                "entry, and returns the outcome; the `same work` row is that server work "
                "hand-written, for context.",
                "clawstate's hot path sends its commands on a per-thread redis-py `Connection`, "
                "skipping the client layer (pool checkout, retry wrapper, response callbacks); "
                "the `Connection` row does the same for a plain SET — the floor for one round "
                "trip from Python, context only.",
            ],
        )
    ]


# -- case 2: point gets ------------------------------------------------------------------------


def case_get(settings: Settings) -> list[Table]:
    title = "R2. Point gets, warm, random keys"
    if (skip := _unreachable(title)) is not None:
        return skip
    n_keys = settings.n(20_000, 500)
    n_ops = settings.n(20_000, 500)
    keys = warm_keys(n_keys)
    rng = random.Random(4)
    ops = [rng.choice(keys) for _ in range(n_ops)]
    with open_systems([ClawRedisKV, RawRedisKV, RawLuaKV, RawConnKV]) as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
            kv.get_each(cycle_shuffled(keys, min(n_keys, 2_000), 7))
        names = [kv.name for kv in kvs]
        ms = interleave(
            [
                (kv.name, (lambda kv=kv: time_loop(len(ops), lambda: kv.get_each(ops))))
                for kv in kvs
            ],
            settings,
        )
    return [
        _table(
            "get",
            title,
            f"{fmt_int(n_ops)} `get`s per round of random keys among {fmt_int(n_keys)}. "
            "Every system returns the decoded dict (clawstate: msgpack; raw: `json.loads`).",
            ms,
            names,
            [0.8, None, None],
            unit="get",
            peer_notes=["GET + json.loads", "HMGET v + json.loads", "GET on a bare Connection"],
            notes=[
                "A clawstate get is one `HMGET` of the item hash (value, version, seq, "
                "timestamps, expiry), an expiry check against the store's clock, decoding, "
                "and an `Item`.",
                "Part of clawstate's lead here is decoding: msgpack (clawstate's codec) "
                "against `json.loads` of the same ~1 KiB document in the raw peers, as in the "
                "SQLite tables.",
            ],
        )
    ]


# -- case 3: eight threads ------------------------------------------------------------------


def case_concurrent_put(settings: Settings) -> list[Table]:
    title = "R3. 8 threads putting concurrently"
    if (skip := _unreachable(title)) is not None:
        return skip
    threads = 8
    per_thread = settings.n(1_000, 50)
    n_warm = settings.n(1_000, 100)
    own = [warm_keys(n_warm, f"t{t}") for t in range(threads)]
    with open_systems([ClawRedisKV, RawRedisKV, RawLuaKV]) as kvs:
        for kv in kvs:
            kv.prefill([k for keys in own for k in keys], VALUE)
        seeds = iter(range(1, 1_000_000))

        def trial(kv: KV) -> Callable[[], Sample]:
            def run() -> Sample:
                seed = next(seeds)
                ops = [cycle_shuffled(own[t], per_thread, seed * 100 + t) for t in range(threads)]
                work = [functools.partial(kv.put_each, ops[t], VALUE) for t in range(threads)]
                return threaded_sample(threads * per_thread, work, stats=kv.stats)

            return run

        names = [kv.name for kv in kvs]
        ms = interleave([(kv.name, trial(kv)) for kv in kvs], settings)
    m = ms[names[0]]
    return [
        _table(
            "concurrent_put",
            title,
            f"{threads} threads × {fmt_int(per_thread)} `put`s per round, each thread "
            f"overwriting its own {fmt_int(n_warm)} keys; clawstate shares one store (its "
            "group commit sends every queued unit in one EVALSHA); the raw clients share one "
            "redis-py client (a connection per thread from its pool).",
            ms,
            names,
            [None, None],
            unit="put",
            peer_notes=["SET from 8 threads", "EVALSHA from 8 threads"],
            subject_note=f"mean group-commit batch {m.extra('mean_batch'):.1f}"
            if any("mean_batch" in s.extra for s in m.samples)
            else "",
        )
    ]


# -- case 4: batches -----------------------------------------------------------------------


def case_put_many(settings: Settings) -> list[Table]:
    title = "R4. Batched puts: 1,000 items per atomic batch"
    if (skip := _unreachable(title)) is not None:
        return skip
    batch = settings.n(1_000, 100)
    batches = settings.n(10, 3)
    n_warm = settings.n(10_000, 500)
    keys = warm_keys(n_warm)
    with open_systems([ClawRedisKV, RawRedisKV, RawLuaKV]) as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
        seeds = iter(range(1, 1_000_000))

        def trial(kv: KV) -> Callable[[], Sample]:
            def run() -> Sample:
                order = cycle_shuffled(keys, batch * batches, next(seeds))
                chunks = [
                    [(k, VALUE) for k in order[i * batch : (i + 1) * batch]] for i in range(batches)
                ]

                def loop() -> None:
                    for chunk in chunks:
                        kv.put_batch(chunk)

                return time_loop(batch * batches, loop)

            return run

        names = [kv.name for kv in kvs]
        ms = interleave([(kv.name, trial(kv)) for kv in kvs], settings)
    return [
        _table(
            "put_many",
            title.replace("1,000", fmt_int(batch)),
            f"{batches} batches per round overwriting random keys of a warm set of "
            f"{fmt_int(n_warm)}. clawstate `put_many` (one EVALSHA per batch); raw: a "
            "MULTI/EXEC pipeline of SETs, or of the same-work script calls.",
            ms,
            names,
            [None, None],
            unit="item",
            peer_notes=["MULTI/EXEC of SETs", "MULTI/EXEC of EVALSHAs"],
        )
    ]


CASES = [
    Case(AREA, "single_put", "Redis: single puts, one thread", case_single_put),
    Case(AREA, "get", "Redis: point gets", case_get),
    Case(AREA, "concurrent_put", "Redis: 8 threads putting concurrently", case_concurrent_put),
    Case(AREA, "put_many", "Redis: batched puts", case_put_many),
]
