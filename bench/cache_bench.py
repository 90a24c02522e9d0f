"""The cache (issue 6): L1-hit gets, a zipf workload, cross-process invalidation delay.

Cases:

* ``l1_hit`` — ``Namespace.get`` answered from L1 vs ``diskcache.Cache.get`` (warm)
  and a bare ``cachetools.TTLCache`` lookup (``cache[key]``, the in-memory floor).
  Targets: ≥ 5× DiskCache, ≥ 0.5× TTLCache.  Context: the same get without a cache.
* ``zipf`` — reads of keys drawn from zipf(s=1.1) over 1 M keys (quick: 20 k) stored
  in SQLite, with L1 sized to 10% of the data (as the cache charges it: encoded value
  + key + per-entry overhead), vs the same store uncached.  Target: ≥ 3× uncached;
  the L1 hit ratio is reported.  Context: 90% reads / 10% write-through puts.
* ``invalidation`` — the delay from a commit in one process to the moment another
  process's cached read-through (eventual) get stops returning the old value, on
  SQLite, PostgreSQL and Redis (those two when they open at the test URLs; a note
  otherwise).  p50 / p99 / max over many writes.  No target: reported.

``python -m bench.cache_bench writer URL N PAUSE`` is the child writer of ``invalidation``.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import clawstate

from .harness import (
    ROOT,
    Case,
    Peer,
    Settings,
    Table,
    comparison_table,
    fmt_int,
    fmt_ratio,
    fresh_dir,
    interleave,
    time_loop,
)
from .kv_sqlite import make_value

__all__ = ["CASES"]

AREA = "cache"
POSTGRES_URL = os.environ.get(
    "CLAWSTATE_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLAWSTATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _small_value(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"user-{i:08d}", "tags": ["a", "b"], "score": i % 997 / 7}


# -- 1. L1 hits ----------------------------------------------------------------------------


def case_l1_hit(settings: Settings) -> list[Table]:
    import cachetools
    import diskcache

    n_keys = settings.n(10_000, 500)
    n_gets = settings.n(300_000, 5_000)
    value = make_value()
    keys = [f"key-{i:08d}" for i in range(n_keys)]
    rng = random.Random(6)
    order = [rng.choice(keys) for _ in range(n_gets)]
    dc_order = order[: max(1, n_gets // 6)]  # DiskCache is ~10× slower: fewer ops, same rate
    with fresh_dir(settings, "cache-l1") as tmp:
        cached = clawstate.open(
            f"sqlite:///{tmp}/c.db",
            sweep_interval=0,
            namespaces={"*": {"cache": "read-through", "cache_ttl": 3600}},
        )
        plain = clawstate.open(f"sqlite:///{tmp}/p.db", sweep_interval=0)
        dc = diskcache.Cache(str(tmp / "dc"))
        tc: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=n_keys * 2, ttl=3600)
        try:
            for store in (cached, plain):
                ns = store.namespace("b")
                for i in range(0, n_keys, 1000):
                    ns.put_many({k: value for k in keys[i : i + 1000]})
            for k in keys:
                dc.set(k, value)
                tc[k] = value
            cget = cached.namespace("b").get
            pget = plain.namespace("b").get
            for k in keys:  # warm: every key in L1, every page in SQLite's cache
                assert cget(k) is not None
                pget(k)
                dc.get(k)

            def loop(get: Any, ks: list[str]) -> Any:
                def run() -> None:
                    for k in ks:
                        get(k)

                return run

            def ttl_lookup() -> None:
                for k in order:
                    tc[k]

            trials = [
                ("clawstate L1 hit", lambda: time_loop(n_gets, loop(cget, order))),
                ("DiskCache get", lambda: time_loop(len(dc_order), loop(dc.get, dc_order))),
                ("cachetools.TTLCache[key]", lambda: time_loop(n_gets, ttl_lookup)),
                ("clawstate, no cache", lambda: time_loop(len(dc_order), loop(pget, dc_order))),
            ]
            m = interleave(trials, settings)
            hit_ratio = cached.stats()["cache"]["namespaces"]["b"]["l1"]["hit_ratio"]
        finally:
            cached.close()
            plain.close()
            dc.close()
    return [
        comparison_table(
            "cache.l1_hit",
            "6a. Cache: L1-hit gets",
            f"{fmt_int(n_gets)} `get`s per round of random keys among {fmt_int(n_keys)}, every "
            "key already in L1 (read-through, SQLite behind it); each returns the ~1 KiB "
            "document as an Item. DiskCache `get` (warm, unpickles) and a bare "
            "`cachetools.TTLCache` subscript on the same keys and the same dict object.",
            m["clawstate L1 hit"],
            [
                Peer(m["DiskCache get"], 5.0),
                Peer(m["cachetools.TTLCache[key]"], 0.5, "the in-memory floor"),
                Peer(m["clawstate, no cache"], None, "SQLite read + decode"),
            ],
            unit="get",
            subject_note=f"L1 hit ratio {hit_ratio}",
        )
    ]


# -- 2. zipf ------------------------------------------------------------------------------


def zipf_sampler(n: int, s: float, seed: int) -> Any:
    """Ranks 0..n-1 drawn with P(rank k) ∝ 1/(k+1)^s (inverse CDF by bisection)."""
    cumulative = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))
    total = cumulative[-1]
    rng = random.Random(seed)

    def draw(count: int) -> list[int]:
        return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]

    return draw


def case_zipf(settings: Settings) -> list[Table]:
    n_keys = settings.n(1_000_000, 20_000)
    n_ops = settings.n(300_000, 10_000)
    keys = [f"user:{i:08d}" for i in range(n_keys)]
    shuffled = keys[:]
    random.Random(11).shuffle(shuffled)  # rank -> key: popular keys spread over the file
    draw = zipf_sampler(n_keys, 1.1, 7)
    # A fresh stream of draws for the warm-up and for every round (the same streams for
    # both systems): replaying one stream would only test the keys it happened to draw.
    streams = [[shuffled[r] for r in draw(n_ops)] for _ in range(settings.rounds + 1)]
    writes = set(random.Random(3).sample(range(n_ops), n_ops // 10))
    with fresh_dir(settings, "cache-zipf") as tmp:
        url = f"sqlite:///{tmp}/z.db"
        with clawstate.open(url, sweep_interval=0) as loader:
            ns = loader.namespace("z")
            for i in range(0, n_keys, 1000):
                ns.put_many({keys[j]: _small_value(j) for j in range(i, min(i + 1000, n_keys))})
            stored = sum(len(st.value) for st in loader.backend.iter_items("z"))
        from clawstate.cache._l1 import ENTRY_OVERHEAD

        data_bytes = stored + sum(len(k) for k in keys) + n_keys * ENTRY_OVERHEAD
        budget = data_bytes // 10
        cached = clawstate.open(
            url,
            sweep_interval=0,
            namespaces={
                "z": {"cache": "write-through", "cache_l1_bytes": budget, "cache_ttl": 3600}
            },
        )
        plain = clawstate.open(url, sweep_interval=0)
        try:
            cns, pns = cached.namespace("z"), plain.namespace("z")

            def reads(ns: Any, round_of: itertools.count[int]) -> Any:
                get = ns.get

                def run() -> None:
                    for k in streams[next(round_of) % len(streams)]:
                        get(k)

                return run

            def mixed(ns: Any) -> Any:
                get, put = ns.get, ns.put

                def run() -> None:
                    for i, k in enumerate(streams[-1]):
                        if i in writes:
                            put(k, {"id": i})
                        else:
                            get(k)

                return run

            c_rounds, p_rounds = itertools.count(), itertools.count()
            reads(cns, c_rounds)()  # warm the cache (and SQLite's pages) with stream 0
            reads(pns, p_rounds)()
            before = cached.stats()["cache"]["namespaces"]["z"]["l1"]
            m = interleave(
                [
                    (
                        "clawstate + L1 (10% of data)",
                        lambda: time_loop(n_ops, reads(cns, c_rounds)),
                    ),
                    ("clawstate, no cache", lambda: time_loop(n_ops, reads(pns, p_rounds))),
                ],
                settings,
            )
            after = cached.stats()["cache"]["namespaces"]["z"]["l1"]
            hits = after["hits"] - before["hits"]
            lookups = hits + after["misses"] - before["misses"]
            hit_ratio = hits / lookups if lookups else 0.0
            mixed_settings = Settings(settings.quick, max(1, settings.rounds // 2), settings.tmpdir)
            mx = interleave(
                [
                    ("cached, 10% writes", lambda: time_loop(n_ops, mixed(cns))),
                    ("uncached, 10% writes", lambda: time_loop(n_ops, mixed(pns))),
                ],
                mixed_settings,
            )
            entries = after["entries"]
        finally:
            cached.close()
            plain.close()
    table = comparison_table(
        "cache.zipf",
        f"6b. Cache: zipf(1.1) reads over {fmt_int(n_keys)} keys, L1 = 10% of the data",
        f"{fmt_int(n_ops)} `get`s per round, keys drawn from zipf(s=1.1) over {fmt_int(n_keys)} "
        f"keys (~100-byte documents in SQLite; rank→key shuffled). L1 budget "
        f"{budget / 2**20:,.1f} MiB = 10% of {data_bytes / 2**20:,.1f} MiB as the cache charges "
        f"it; {fmt_int(entries)} entries held. Every round draws a fresh stream (the same streams "
        "for both systems); the cache is warmed with one untimed stream; the uncached store "
        "reads the same file.",
        m["clawstate + L1 (10% of data)"],
        [Peer(m["clawstate, no cache"], 3.0)],
        unit="get",
        subject_note=f"L1 hit ratio {hit_ratio:.1%}",
        notes=[
            f"Context, 90% reads / 10% write-through puts: cached "
            f"{fmt_int(mx['cached, 10% writes'].rate)} ops/s vs uncached "
            f"{fmt_int(mx['uncached, 10% writes'].rate)} ops/s = "
            f"{fmt_ratio(mx['cached, 10% writes'].rate / mx['uncached, 10% writes'].rate)} "
            "(every put is a durable commit either way)."
        ],
    )
    return [table]


# -- 3. cross-process invalidation ---------------------------------------------------------


def child_writer(url: str, count: int, pause: float) -> None:
    with clawstate.open(url, sweep_interval=0) as store:
        ns = store.namespace("inv")
        ns.put("k", 0)
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(1, count + 1):
            time.sleep(pause)
            ns.put("k", i)
            print(i, repr(time.time()), flush=True)


def _measure_delay(url: str, count: int, pause: float) -> list[float]:
    reader = clawstate.open(
        url, sweep_interval=0, namespaces={"inv": {"cache": "read-through", "cache_ttl": 3600}}
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.cache_bench", "writer", url, str(count), str(pause)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen: dict[int, float] = {}
    stop = threading.Event()
    try:
        assert child.stdout is not None and child.stdin is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(child.stderr.read() if child.stderr else "writer failed")
        ns = reader.namespace("inv")

        def poll() -> None:
            while not stop.is_set():
                item = ns.get("k")
                if item is not None and item.value not in seen:
                    seen[item.value] = time.time()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=120)
        time.sleep(0.5)
        if child.returncode != 0:
            raise RuntimeError(err)
    finally:
        stop.set()
        reader.close()
    committed = {int(i): float(t) for i, t in (line.split() for line in out.splitlines())}
    # Write i stops being served stale when any value >= i is first returned (the poller
    # may skip values that were overwritten before it looked).
    first_fresh: dict[int, float] = {}
    best = float("inf")
    for value in sorted(seen, reverse=True):
        best = min(best, seen[value])
        first_fresh[value] = best
    delays = []
    for i, t in committed.items():
        later = [first_fresh[v] for v in first_fresh if v >= i]
        if later:
            delays.append(max(0.0, min(later) - t))
    return sorted(delays)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def case_invalidation(settings: Settings) -> list[Table]:
    count = settings.n(300, 20)
    pause = 0.01
    rows: list[list[str]] = []
    notes: list[str] = []
    tag = secrets.token_hex(4)
    with fresh_dir(settings, "cache-inv") as tmp:
        targets = [
            ("SQLite", f"sqlite:///{tmp}/inv.db", None),
            ("PostgreSQL", f"{POSTGRES_URL}?schema=clawbench_cache_{tag}", _drop_pg_schema),
            ("Redis", f"{REDIS_URL}?prefix=clawbench:cache:{tag}:", _drop_redis_prefix),
        ]
        for name, url, cleanup in targets:
            try:
                with clawstate.open(url, sweep_interval=0):
                    pass
            except Exception as exc:  # not installed, not reachable, not implemented yet
                notes.append(f"{name}: not measured — the backend did not open ({exc}).")
                rows.append([name, "—", "—", "—", "—", "not measured"])
                continue
            try:
                delays = _measure_delay(url, count, pause)
            except Exception as exc:
                notes.append(f"{name}: measurement failed ({exc}).")
                rows.append([name, "—", "—", "—", "—", "failed"])
                continue
            finally:
                if cleanup is not None:
                    cleanup(url, tag)
            ms = [d * 1000 for d in delays]
            rows.append(
                [
                    name,
                    fmt_int(len(ms)),
                    f"{statistics.median(ms):.1f}",
                    f"{_pct(ms, 0.99):.1f}",
                    f"{ms[-1]:.1f}",
                    "",
                ]
            )
    return [
        Table(
            "6c. Cache: cross-process invalidation delay",
            f"A child process commits `k` = 1..{count} ({pause * 1000:.0f} ms apart, uncached); "
            "this process reads `k` in a loop through a read-through, eventual cache whose "
            "TTL is an hour, so only the change-log tailer can make it see a new value. "
            "Delay = the time the new value is first returned − the child's commit time "
            "(same clock). No target: reported.",
            ["backend", "writes", "p50 ms", "p99 ms", "max ms", "note"],
            rows,
            [
                *notes,
                "SQLite has no server to push changes: other processes' commits are seen by "
                "polling the file every 50 ms, which bounds its delay. `consistency = "
                '"strong"` reads catch up with the log before answering (no stale window, '
                "one watermark query per read).",
            ],
        )
    ]


def _drop_pg_schema(url: str, tag: str) -> None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS clawbench_cache_{tag} CASCADE")
    except Exception:
        pass


def _drop_redis_prefix(url: str, tag: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"clawbench:cache:{tag}:*", count=1000):
            client.unlink(key)
        client.close()
    except Exception:
        pass


CASES = [
    Case(AREA, "l1_hit", "Cache: L1-hit gets", case_l1_hit),
    Case(AREA, "zipf", "Cache: zipf reads, L1 = 10%", case_zipf),
    Case(AREA, "invalidation", "Cache: cross-process invalidation delay", case_invalidation),
]

if __name__ == "__main__":
    if sys.argv[1] == "writer":
        child_writer(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
