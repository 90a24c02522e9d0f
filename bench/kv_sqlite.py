"""Key/value on the embedded SQLite backend vs DiskCache and raw ``sqlite3``.

Systems (each behind the small :class:`KV` adapter interface):

* ``clawstate`` — ``clawstate.open("sqlite:///…", sweep_interval=0, durability=…)``,
  namespace ``b``; values go through its codec (msgpack) — the codec is timed.
* ``DiskCache`` — ``diskcache.Cache(dir)`` with its defaults (WAL,
  ``synchronous=NORMAL``); it is given the dict itself and pickles it — timed.
* raw ``sqlite3`` — one ``kv`` table, WAL, the same ``synchronous`` as the clawstate
  mode under test and clawstate's cache/mmap pragmas; values are
  ``json.dumps(value).encode()`` inside the timed loop (``json.loads`` on reads).
  ``+ change log`` also writes the row clawstate's change log holds
  (``changes(seq INTEGER PRIMARY KEY, key, op, version, ts)``) in the same
  transaction: the same work as clawstate.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import clawstate

from .harness import (
    Case,
    Measurement,
    Peer,
    Sample,
    Settings,
    Table,
    batch_delta,
    comparison_table,
    fmt_bytes,
    fmt_int,
    fmt_ratio,
    fresh_dir,
    interleave,
    run_child,
    threaded_sample,
    time_loop,
)

__all__ = ["CASES", "KV", "ClawKV", "DiskCacheKV", "RawKV", "make_value"]

AREA = "kv_sqlite"
PREFILL_BATCH = 1000


# -- the value ---------------------------------------------------------------------------


def make_value(size: int = 1024) -> dict[str, Any]:
    """A realistic JSON document whose ``json.dumps`` is exactly ``size`` bytes."""
    value: dict[str, Any] = {
        "id": 424242,
        "user": "user-00042",
        "active": True,
        "score": 98.25,
        "tags": ["alpha", "beta", "gamma", "delta"],
        "address": {"street": "12 Long Road", "city": "Springfield", "zip": "12345"},
        "items": [
            {"sku": f"SKU-{i:05d}", "qty": i + 1, "price": round(9.99 + i, 2), "gift": i % 2 == 0}
            for i in range(8)
        ],
        "note": "",
    }
    pad = size - len(json.dumps(value))
    value["note"] = "x" * max(pad, 0)
    return value


VALUE = make_value(1024)


def value_sizes() -> tuple[int, int]:
    """(json bytes, msgpack bytes) of :data:`VALUE`."""
    import msgspec

    return len(json.dumps(VALUE).encode()), len(msgspec.msgpack.encode(VALUE))


# -- adapters ----------------------------------------------------------------------------


class KV(Protocol):
    """What a case does to a system; each ``*_each`` is the tight loop being timed."""

    name: str

    def prefill(self, keys: Sequence[str], value: Any) -> None: ...

    def put_each(self, keys: Sequence[str], value: Any) -> None: ...

    def put_batch(self, pairs: list[tuple[str, Any]]) -> None: ...

    def get_each(self, keys: Sequence[str]) -> None: ...

    def for_thread(self) -> KV: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class ClawKV:
    """clawstate on SQLite; thread-safe, so every thread shares it."""

    def __init__(self, path: Path, durability: str = "process") -> None:
        self.name = f"clawstate ({durability})"
        self.store = clawstate.open(
            f"sqlite:///{path / 'state.db'}", sweep_interval=0, durability=durability
        )
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
        gc: dict[str, float] = self.store.stats()["backends"]["default"]["group_commit"]
        return gc

    def close(self) -> None:
        self.store.close()


class DiskCacheKV:
    """DiskCache ``Cache`` with its default settings (WAL, synchronous=NORMAL)."""

    def __init__(self, path: Path) -> None:
        import diskcache

        self.name = "DiskCache"
        self.cache = diskcache.Cache(str(path / "dc"))

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        cset = self.cache.set
        for start in range(0, len(keys), PREFILL_BATCH):
            with self.cache.transact():
                for k in keys[start : start + PREFILL_BATCH]:
                    cset(k, value)

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        cset = self.cache.set
        for k in keys:
            cset(k, value)

    def put_batch(self, pairs: list[tuple[str, Any]]) -> None:
        cset = self.cache.set
        with self.cache.transact():
            for k, v in pairs:
                cset(k, v)

    def get_each(self, keys: Sequence[str]) -> None:
        cget = self.cache.get
        for k in keys:
            cget(k)

    def for_thread(self) -> KV:
        return self

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.cache.close()


_RAW_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
    "version INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, "
    "op INTEGER NOT NULL, version INTEGER NOT NULL, ts REAL NOT NULL)",
)
_RAW_UPSERT = (
    "INSERT INTO kv (key, value, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = kv.version + 1, "
    "updated_at = excluded.updated_at"
)
_RAW_UPSERT_RET = _RAW_UPSERT + " RETURNING version"
_RAW_LOG = "INSERT INTO changes (key, op, version, ts) VALUES (?, 0, ?, ?)"
_RAW_GET = "SELECT value FROM kv WHERE key = ?"


class RawKV:
    """Hand-written ``sqlite3``: the floor a clawstate write is measured against."""

    def __init__(self, path: Path, synchronous: str = "NORMAL", changelog: bool = False) -> None:
        self.path = path
        self.synchronous = synchronous
        self.changelog = changelog
        self.name = f"raw sqlite3 {synchronous}" + (" + change log" if changelog else "")
        self.conn = sqlite3.connect(
            str(path / "raw.db"), isolation_level=None, check_same_thread=False, timeout=60.0
        )
        c = self.conn
        c.execute("PRAGMA busy_timeout = 60000")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute(f"PRAGMA synchronous = {synchronous}")
        c.execute("PRAGMA cache_size = -65536")
        c.execute("PRAGMA mmap_size = 268435456")
        c.execute("PRAGMA temp_store = MEMORY")
        for stmt in _RAW_SCHEMA:
            c.execute(stmt)

    def prefill(self, keys: Sequence[str], value: Any) -> None:
        for start in range(0, len(keys), PREFILL_BATCH):
            self.put_batch([(k, value) for k in keys[start : start + PREFILL_BATCH]])

    def put_each(self, keys: Sequence[str], value: Any) -> None:
        ex = self.conn.execute
        dumps = json.dumps
        now = time.time
        if self.changelog:
            for k in keys:
                data = dumps(value).encode()
                t = now()
                ex("BEGIN IMMEDIATE")
                version = ex(_RAW_UPSERT_RET, (k, data, t, t)).fetchone()[0]
                ex(_RAW_LOG, (k, version, t))
                ex("COMMIT")
        else:
            for k in keys:
                data = dumps(value).encode()
                t = now()
                ex("BEGIN IMMEDIATE")
                ex(_RAW_UPSERT, (k, data, t, t))
                ex("COMMIT")

    def put_batch(self, pairs: list[tuple[str, Any]]) -> None:
        ex = self.conn.execute
        dumps = json.dumps
        t = time.time()
        ex("BEGIN IMMEDIATE")
        if self.changelog:
            for k, v in pairs:
                version = ex(_RAW_UPSERT_RET, (k, dumps(v).encode(), t, t)).fetchone()[0]
                ex(_RAW_LOG, (k, version, t))
        else:
            self.conn.executemany(_RAW_UPSERT, [(k, dumps(v).encode(), t, t) for k, v in pairs])
        ex("COMMIT")

    def get_each(self, keys: Sequence[str]) -> None:
        ex = self.conn.execute
        loads = json.loads
        for k in keys:
            loads(ex(_RAW_GET, (k,)).fetchone()[0])

    def for_thread(self) -> KV:
        """A second connection: sqlite3 connections are one per thread."""
        return RawKV(self.path, self.synchronous, self.changelog)

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.conn.close()


Factory = Callable[[Path], KV]


def claw(durability: str = "process") -> Factory:
    return lambda p: ClawKV(p, durability)


def diskcache_kv() -> Factory:
    return DiskCacheKV


def raw(synchronous: str = "NORMAL", changelog: bool = False) -> Factory:
    return lambda p: RawKV(p, synchronous, changelog)


@contextlib.contextmanager
def open_systems(
    factories: Sequence[Factory], settings: Settings, label: str
) -> Iterator[list[KV]]:
    """Each system in its own fresh temp dir for the whole case; closed, then removed."""
    with contextlib.ExitStack() as stack:
        kvs: list[KV] = []
        for factory in factories:
            path = stack.enter_context(fresh_dir(settings, label))
            kv = factory(path)
            stack.callback(kv.close)
            kvs.append(kv)
        yield kvs


# -- key sets ----------------------------------------------------------------------------


def warm_keys(n: int, prefix: str = "key") -> list[str]:
    return [f"{prefix}-{i:08d}" for i in range(n)]


def cycle_shuffled(keys: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` keys drawn by walking shuffled copies of ``keys`` (each key hit evenly)."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        batch = list(keys)
        rng.shuffle(batch)
        out.extend(batch[: n - len(out)])
    return out


def new_keys(n: int, seed: int) -> list[str]:
    """``n`` fresh random keys (inserts land all over the B-tree, not only at its end)."""
    rng = random.Random(seed)
    return [f"new-{seed}-{rng.getrandbits(64):016x}" for _ in range(n)]


def _table_from(
    case: str,
    title: str,
    intro: str,
    ms: dict[str, Measurement],
    names: list[str],
    targets: list[float | None],
    *,
    unit: str = "op",
    subject_note: str = "",
    peer_notes: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> Table:
    subject = ms[names[0]]
    peer_notes = list(peer_notes) or [""] * len(targets)
    peers = [
        Peer(ms[n], t, note) for n, t, note in zip(names[1:], targets, peer_notes, strict=True)
    ]
    return comparison_table(
        f"{case}: {title}",
        title,
        intro,
        subject,
        peers,
        unit=unit,
        subject_note=subject_note,
        notes=notes,
    )


# -- case 1: single durable puts from one thread -----------------------------------------


def _single_put_trial(
    kv: KV, variant: str, n_ops: int, keys: Sequence[str]
) -> Callable[[], Sample]:
    """One round: ``n_ops`` puts, one commit each; every system gets the same keys."""
    seeds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        seed = next(seeds)
        ops = cycle_shuffled(keys, n_ops, seed) if variant == "overwrite" else new_keys(n_ops, seed)
        before = kv.stats()
        sample = time_loop(len(ops), lambda: kv.put_each(ops, VALUE))
        return Sample(sample.ops, sample.seconds, batch_delta(before, kv.stats()))

    return trial


def case_single_put(settings: Settings) -> list[Table]:
    n_warm = settings.n(10_000, 500)
    keys = warm_keys(n_warm)
    process_peers: list[tuple[Factory, float | None]] = [
        (diskcache_kv(), 2.0),
        (raw("NORMAL"), 0.8),
        (raw("NORMAL", True), None),
    ]
    plans: list[tuple[str, str, int, list[tuple[Factory, float | None]]]] = [
        ("process", "overwrite", settings.n(8_000, 300), process_peers),
        ("process", "insert", settings.n(8_000, 300), process_peers),
        (
            "power",
            "overwrite",
            settings.n(1_500, 100),
            [(raw("FULL"), None), (raw("FULL", True), None)],
        ),
    ]
    tables: list[Table] = []
    for mode, variant, n_ops, peers in plans:
        factories = [claw(mode), *(f for f, _ in peers)]
        with open_systems(factories, settings, "put") as kvs:
            for kv in kvs:
                kv.prefill(keys, VALUE)
                warm = cycle_shuffled(keys, max(n_ops // 4, 50), 0)
                kv.put_each(warm if variant == "overwrite" else new_keys(len(warm), 0), VALUE)
            names = [kv.name for kv in kvs]
            ms = interleave(
                [(kv.name, _single_put_trial(kv, variant, n_ops, keys)) for kv in kvs], settings
            )
        what = (
            f"overwriting random keys of a warm set of {fmt_int(n_warm)}"
            if variant == "overwrite"
            else f"inserting new random keys next to a warm set of {fmt_int(n_warm)} "
            "(the set grows round by round, alike for every system)"
        )
        sync = "NORMAL" if mode == "process" else "FULL"
        notes: list[str] = []
        if "DiskCache" in ms:
            dc, plain = ms["DiskCache"], ms[names[2]]
            notes.append(
                f"For scale: {plain.system} ÷ DiskCache = {fmt_ratio(plain.rate / dc.rate)} — "
                "about the most any store doing one SQLite commit per put can reach."
            )
        tables.append(
            _table_from(
                "single_put",
                f"1{'abc'[len(tables)]}. Durable single puts, one thread — {variant}, `{mode}`",
                f"{fmt_int(n_ops)} `put`s per round, {what}; one commit per put; WAL, "
                f"`synchronous={sync}` for every system.",
                ms,
                names,
                [t for _, t in peers],
                unit="put",
                notes=notes,
            )
        )
    return tables


# -- case 2: eight threads ----------------------------------------------------------------


def _concurrent_trial(
    kv: KV, threads: int, per_thread: int, own: list[list[str]]
) -> Callable[[], Sample]:
    """One round: ``threads`` threads, each putting ``per_thread`` of its own keys."""
    seeds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        seed = next(seeds)
        handles = [kv.for_thread() for _ in range(threads)]
        ops = [cycle_shuffled(own[t], per_thread, seed * 100 + t) for t in range(threads)]
        warm = [cycle_shuffled(own[t], 20, seed * 100 + 50 + t) for t in range(threads)]
        timed = [functools.partial(handles[t].put_each, ops[t], VALUE) for t in range(threads)]
        # the warm-up opens each thread's connection, untimed
        untimed = [functools.partial(handles[t].put_each, warm[t], VALUE) for t in range(threads)]
        try:
            return threaded_sample(threads * per_thread, timed, warm=untimed, stats=kv.stats)
        finally:
            for h in handles:
                if h is not kv:
                    h.close()

    return trial


def case_concurrent_put(settings: Settings) -> list[Table]:
    threads = 8
    n_warm = settings.n(1_250, 100)
    own = [warm_keys(n_warm, f"t{t}") for t in range(threads)]
    tables: list[Table] = []
    plans: list[tuple[str, int, float | None]] = [
        ("process", settings.n(1_500, 50), 3.0),
        ("power", settings.n(300, 20), None),
    ]
    for mode, per_thread, target in plans:
        sync = "NORMAL" if mode == "process" else "FULL"
        with open_systems([claw(mode), raw(sync), raw(sync)], settings, "conc") as kvs:
            for kv in kvs:
                kv.prefill([k for keys in own for k in keys], VALUE)
            subject, peer, solo = kvs
            names = [subject.name, peer.name, f"{solo.name}, 1 thread"]
            trials = [
                (names[0], _concurrent_trial(subject, threads, per_thread, own)),
                (names[1], _concurrent_trial(peer, threads, per_thread, own)),
                (
                    names[2],
                    _concurrent_trial(
                        solo, 1, threads * per_thread, [[k for keys in own for k in keys]]
                    ),
                ),
            ]
            ms = interleave(trials, settings)
        m = ms[names[0]]
        mean_batch = m.extra("mean_batch")
        largest = max(s.extra.get("largest_batch", 0.0) for s in m.samples)
        tables.append(
            _table_from(
                "concurrent_put",
                f"2{'ab'[len(tables)]}. {threads} threads putting concurrently, `{mode}`",
                f"{threads} threads × {fmt_int(per_thread)} `put`s per round, each thread "
                f"overwriting its own {fmt_int(n_warm)} keys in random order; clawstate shares "
                "one store (group commit); raw sqlite3 gives each thread its own connection "
                "and commits every put (`BEGIN IMMEDIATE`, `busy_timeout` 60 s). Time = first "
                f"thread's start to last thread's end. `synchronous={sync}`.",
                ms,
                names,
                [target, None],
                unit="put",
                subject_note=f"mean group-commit batch {mean_batch:.1f} (largest {largest:.0f})",
                peer_notes=["8 connections", "the same puts from one thread: contention cost"],
            )
        )
    return tables


# -- case 3: put_many ---------------------------------------------------------------------


def _batch_trial(kv: KV, keys: Sequence[str], batch: int, batches: int) -> Callable[[], Sample]:
    seeds = iter(range(1, 1_000_000))

    def trial() -> Sample:
        order = cycle_shuffled(keys, batch * batches, next(seeds))
        chunks = [[(k, VALUE) for k in order[i * batch : (i + 1) * batch]] for i in range(batches)]

        def loop() -> None:
            for chunk in chunks:
                kv.put_batch(chunk)

        return time_loop(batch * batches, loop)

    return trial


def case_put_many(settings: Settings) -> list[Table]:
    batch = settings.n(1_000, 100)
    batches = settings.n(20, 3)
    n_warm = settings.n(10_000, 500)
    keys = warm_keys(n_warm)
    factories = [claw("process"), raw("NORMAL"), raw("NORMAL", True), diskcache_kv()]
    with open_systems(factories, settings, "many") as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
            kv.put_batch([(k, VALUE) for k in cycle_shuffled(keys, batch, 0)])  # warm-up
        names = [kv.name for kv in kvs]
        ms = interleave([(kv.name, _batch_trial(kv, keys, batch, batches)) for kv in kvs], settings)
    per_batch = ms[names[0]].us_per_op * batch / 1000
    return [
        _table_from(
            "put_many",
            f"3. Batched puts: {fmt_int(batch)} items per atomic batch, `process`",
            f"{batches} batches per round overwriting random keys of a warm set of "
            f"{fmt_int(n_warm)}. clawstate `put_many`; raw sqlite3 `executemany` of the "
            "upsert in one transaction (`+ change log`: a per-row upsert `RETURNING version` "
            "plus the log insert, since `executemany` cannot return rows); DiskCache `set` "
            "inside `transact()`.",
            ms,
            names,
            [0.7, None, None],
            unit="item",
            subject_note=f"{per_batch:,.2f} ms per batch",
            peer_notes=["executemany", "execute per row", "set in transact()"],
        )
    ]


# -- case 4: point gets -------------------------------------------------------------------


def _get_trial(kv: KV, ops: list[str]) -> Callable[[], Sample]:
    return lambda: time_loop(len(ops), lambda: kv.get_each(ops))


def case_get(settings: Settings) -> list[Table]:
    n_keys = settings.n(100_000, 2_000)
    n_ops = settings.n(50_000, 2_000)
    keys = warm_keys(n_keys)
    rng = random.Random(4)
    ops = [rng.choice(keys) for _ in range(n_ops)]
    with open_systems([claw("process"), diskcache_kv(), raw("NORMAL")], settings, "get") as kvs:
        for kv in kvs:
            kv.prefill(keys, VALUE)
        for kv in kvs:  # warm: every key read once, in random order
            kv.get_each(cycle_shuffled(keys, n_keys, 7))
        names = [kv.name for kv in kvs]
        ms = interleave([(kv.name, _get_trial(kv, ops)) for kv in kvs], settings)
    return [
        _table_from(
            "get",
            "4. Point gets, warm, random keys",
            f"{fmt_int(n_ops)} `get`s per round of random keys among {fmt_int(n_keys)} "
            "(each key read once before timing). Every system returns the decoded dict "
            "(clawstate: msgpack, DiskCache: pickle, raw: `json.loads`).",
            ms,
            names,
            [1.0, None],
            unit="get",
            peer_notes=["", "SELECT + json.loads"],
        )
    ]


# -- case 5: peak RSS with 1M keys ---------------------------------------------------------


def case_rss(settings: Settings) -> list[Table]:
    n = settings.n(1_000_000, 5_000)
    results: dict[str, dict[str, Any]] = {}
    for system in ("clawstate", "diskcache"):
        with fresh_dir(settings, "rss") as d:
            results[system] = run_child("bench.kv_sqlite_rss", system, str(n), str(d))
    claw_r, dc = results["clawstate"], results["diskcache"]
    headers = [
        "system",
        "peak RSS (VmHWM)",
        "RSS before load",
        "peak − before",
        "ru_maxrss",
        "files on disk",
        "load items/s",
        "clawstate ÷ this (peak RSS)",
        "clawstate ÷ this (disk)",
    ]
    rows: list[list[str]] = []
    for label, r in (("**clawstate (process)**", claw_r), ("DiskCache", dc)):
        peer = r is not claw_r
        rows.append(
            [
                label,
                fmt_bytes(r["peak_rss"]),
                fmt_bytes(r["rss_before"]),
                fmt_bytes(r["peak_rss"] - r["rss_before"]),
                fmt_bytes(r["ru_maxrss"]),
                fmt_bytes(r["disk_bytes"]),
                fmt_int(r["items"] / r["seconds"]),
                fmt_ratio(claw_r["peak_rss"] / r["peak_rss"]) if peer else "—",
                fmt_ratio(claw_r["disk_bytes"] / r["disk_bytes"]) if peer else "—",
            ]
        )
    return [
        Table(
            "5. Peak RSS with 1M keys loaded"
            if not settings.quick
            else f"5. Peak RSS with {fmt_int(n)} keys loaded",
            f"A fresh subprocess per system loads {fmt_int(n)} keys (`key-00000000`… in order) "
            f"with small values ({claw_r['value_bytes']}-byte JSON dicts) in atomic batches of "
            "1,000 (clawstate `put_many`; DiskCache `set` inside `transact()`), then reports "
            "its peak RSS and the size of its files after closing the store. Context only, no "
            "target; lower is better, so a ratio below 1× favours clawstate.",
            headers,
            rows,
            notes=[
                "Peak RSS is the child's `VmHWM` (/proc/self/status). `ru_maxrss` is shown "
                "too, but Linux carries it over from the parent across fork+exec, so it "
                "reads max(child peak, the bench runner's peak at spawn time); this case runs "
                "first, while the runner is small, to keep the two equal.",
                "clawstate's files include its change log (one row per write) — the history "
                "`watch()` replays; DiskCache keeps none.",
                "Both set SQLite's page cache and mmap (clawstate: 64 MiB cache, 256 MiB mmap; "
                "DiskCache: 32 MiB cache, 64 MiB mmap); mmap'd pages that were touched count "
                "in RSS.",
            ],
        )
    ]


CASES = [
    Case(AREA, "single_put", "Durable single puts, one thread", case_single_put),
    Case(AREA, "concurrent_put", "8 threads putting concurrently", case_concurrent_put),
    Case(AREA, "put_many", "Batched puts", case_put_many),
    Case(AREA, "get", "Point gets", case_get),
    Case(AREA, "rss", "Peak RSS with 1M keys", case_rss, run_first=True),
]
