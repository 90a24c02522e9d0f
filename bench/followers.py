"""Followers of the log: how fast ``close()`` wakes them, what they cost idle, and fan-out.

Three cases, each through public API only (``Store.watch``, ``Watch.close``,
``events.subscribe``, ``Subscription.close``, ``open_async(...).watch``, and HTTP), so
they measure whatever implements the follower underneath:

* **close wake-up** — a thread is blocked in ``next()`` on a watch (or an event
  subscription, or an ``AsyncWatch`` in a task) with nothing to read; another thread
  calls ``close()`` after a random delay; the sample is the time from just before
  ``close()`` to the blocked reader's return.  Per backend (memory, SQLite,
  PostgreSQL, Redis); p50 / p99 / max.
* **idle cost** — 100 followers that wait and receive nothing for 10 s, in a child
  process of their own: the process's CPU seconds per wall second, its thread count
  and RSS.  Per backend and kind (sync watches, one thread each since the sync API
  blocks its caller; ``AsyncWatch``es as tasks on one event loop; event
  subscriptions).
* **fan-out** — N SSE watchers of one namespace on a real ``clawstate serve`` (one
  worker, own process, SQLite store), held by two client processes of raw asyncio
  sockets (so the clients stay cheap); then 10 writes 0.3 s apart.  The latency of a
  change is its receipt by a watcher minus the moment just before its ``PUT`` was
  sent (wall clock, one machine); p50 / p99 over every (watcher, change) pair, plus
  the server's RSS and threads with every watcher connected.

PostgreSQL and Redis rows say "skipped" (and why) when their servers are not
reachable.  Run alone: ``.venv/bin/python -m bench.run --only followers``.  The child
processes are this module's command line (``python -m bench.followers idle|sse ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import clawstate

from .harness import ROOT, Case, Settings, Table, fmt_bytes, fmt_int, fresh_dir

__all__ = ["CASES", "main"]

AREA = "followers"
BACKENDS = ("memory", "SQLite", "PostgreSQL", "Redis")
#: How long a reader may take to notice ``close()`` before the sample counts as lost.
CLOSE_LONG = 5.0
#: How long shutting idle followers down may take.
LONG = 30.0


class Unavailable(Exception):
    """A backend whose server is not reachable: its rows say so instead of figures."""


class Follower(Protocol):
    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


# -- stores per backend ---------------------------------------------------------------------


@contextlib.contextmanager
def backend_url(kind: str, settings: Settings) -> Iterator[str]:
    """A URL of a fresh, empty store on ``kind``; its schema / prefix / file is removed
    afterwards.  Raises :class:`Unavailable` when the server is not reachable."""
    if kind == "memory":
        yield "memory://"
    elif kind == "SQLite":
        with fresh_dir(settings, "follow") as tmp:
            yield f"sqlite:///{tmp / 'follow.db'}"
    elif kind == "PostgreSQL":
        from .kv_postgres import URL, _admin, _reachable

        why = _reachable()
        if why is not None:
            raise Unavailable(f"not reachable at `{URL}` ({why})")
        schema = f"bench_follow_{uuid.uuid4().hex[:8]}"
        try:
            yield f"{URL}{'&' if '?' in URL else '?'}schema={schema}"
        finally:
            with _admin() as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif kind == "Redis":
        from .kv_redis import URL, _client, _drop

        try:
            _client().ping()
        except Exception as exc:  # any failure to reach the server
            raise Unavailable(f"not reachable at `{URL}` ({type(exc).__name__})") from exc
        prefix = f"clawbench:follow:{uuid.uuid4().hex[:10]}:"
        try:
            yield f"{URL}{'&' if '?' in URL else '?'}prefix={prefix}"
        finally:
            _drop(prefix)
    else:
        raise ValueError(kind)


def _pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


# -- a. close() wake-up -------------------------------------------------------------------


def _close_samples(open_follower: Callable[[], Follower], n: int, seed: int) -> list[float]:
    """``n`` rounds: a thread blocks reading a fresh follower; after a random delay
    ``close()`` is called here; the sample runs from just before ``close()`` to the
    reader's return.  A reader still blocked after :data:`LONG` is not a sample."""
    rng = random.Random(seed)
    out: list[float] = []
    for _ in range(n):
        follower = open_follower()
        ended: list[float] = []
        started = threading.Event()

        def read(
            f: Follower = follower, ended: list[float] = ended, started: threading.Event = started
        ) -> None:
            started.set()
            try:
                for _ in f:
                    pass
            finally:
                ended.append(time.perf_counter())

        th = threading.Thread(target=read, daemon=True)
        th.start()
        started.wait(5)
        time.sleep(rng.uniform(0.05, 0.5))  # blocked, at a random phase of any poll
        t0 = time.perf_counter()
        follower.close()
        th.join(CLOSE_LONG)
        if ended:
            out.append(ended[0] - t0)
    return out


def _async_close_samples(
    open_async: Callable[[], clawstate.AsyncStore], n: int, seed: int
) -> list[float]:
    """The same for an ``AsyncWatch`` read by a task; ``close()`` from the loop."""
    rng = random.Random(seed)

    async def run() -> list[float]:
        astore = open_async()
        out: list[float] = []
        try:
            await astore.namespace("w").put("warm", 0)
            for _ in range(n):
                watch = astore.watch(None)
                ended: list[float] = []

                async def read(w: Any = watch, ended: list[float] = ended) -> None:
                    try:
                        async for _ in w:
                            pass
                    finally:
                        ended.append(time.perf_counter())

                task = asyncio.create_task(read())
                await asyncio.sleep(rng.uniform(0.05, 0.5))
                t0 = time.perf_counter()
                watch.close()
                await asyncio.wait([task], timeout=CLOSE_LONG)
                if ended:
                    out.append(ended[0] - t0)
        finally:
            await astore.close()
        return out

    return asyncio.run(run())


def _close_row(label: str, samples: list[float], n: int) -> list[str]:
    if not samples:
        return [label, "–", "–", "–", f"0 of {n}", "never woke"]
    lost = n - len(samples)
    return [
        label,
        _ms(statistics.median(samples)),
        _ms(_pct(samples, 0.99)),
        _ms(max(samples)),
        f"{len(samples)} of {n}",
        f"{lost} still blocked after {CLOSE_LONG:g} s" if lost else "",
    ]


def _close_rows(
    label: str,
    open_store: Callable[[], clawstate.Store],
    open_async: Callable[[], clawstate.AsyncStore],
    n: int,
    seed: int,
) -> list[list[str]]:
    """8a's rows for one store: its ``Watch``, its event subscription, its ``AsyncWatch``."""
    rows: list[list[str]] = []
    store = open_store()
    try:
        store.namespace("w").put("warm", 0)
        watch = _close_samples(functools.partial(store.watch, None), n, seed=seed)
        rows.append(_close_row(f"{label}: `Watch`", watch, n))
        try:
            store.events.append("warm", [clawstate.Event("Warm")])
        except clawstate.ClawStateError:  # Redis keeps no events
            rows.append([f"{label}: event subscription", "–", "–", "–", "0", "no event store"])
        else:
            subscribe = functools.partial(store.events.subscribe, "end")
            sub = _close_samples(subscribe, n, seed=seed + 1)
            rows.append(_close_row(f"{label}: event subscription", sub, n))
    finally:
        store.close()
    awatch = _async_close_samples(open_async, n, seed=seed + 2)
    rows.append(_close_row(f"{label}: `AsyncWatch` (a task)", awatch, n))
    return rows


def case_close_wakeup(settings: Settings, rounds: int | None = None) -> list[Table]:
    n = rounds or settings.n(50, 3)
    rows: list[list[str]] = []
    for i, kind in enumerate(BACKENDS):
        try:
            with backend_url(kind, settings) as url:
                rows += _close_rows(
                    kind,
                    functools.partial(clawstate.open, url, sweep_interval=0),
                    functools.partial(clawstate.open_async, url, sweep_interval=0),
                    n,
                    seed=10 * i,
                )
        except Unavailable as why:
            rows.append([f"{kind}", "–", "–", "–", "0", f"skipped: {why}"])
    rows += _http_close_rows(settings, n)
    return [
        Table(
            "8a. `close()` wakes a blocked follower",
            f"A reader blocked in `next()` with nothing to read; `close()` from another "
            f"thread (the loop, for `AsyncWatch`) after a random 50–500 ms; {n} rounds each. "
            "The sample runs from just before `close()` to the reader's return (ms). HTTP: "
            "the remote store against `clawstate serve` (1 worker, SQLite) on this machine. "
            "Target (issue 11): within 50 ms on every backend and over HTTP.",
            ["follower", "p50 ms", "p99 ms", "max ms", "samples", "note"],
            rows,
        )
    ]


def _http_close_rows(settings: Settings, n: int) -> list[list[str]]:
    from .server_http import _start_clawstate, _stop

    with fresh_dir(settings, "close-http") as root:
        server, url, token = _start_clawstate(1, root)
        try:
            return _close_rows(
                "HTTP",
                functools.partial(clawstate.open, url, token=token),
                functools.partial(clawstate.open_async, url, token=token),
                n,
                seed=100,
            )
        finally:
            _stop(server)


# -- b. idle cost --------------------------------------------------------------------------


def _proc_status(pid: int | str = "self") -> dict[str, int]:
    """``Threads`` and ``VmRSS`` (bytes) of a process, from ``/proc`` (Linux)."""
    out = {"threads": 0, "rss": 0}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
    return out


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far, from ``/proc/PID/stat`` (Linux)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def idle_child(url: str, kind: str, watchers: int, seconds: float) -> dict[str, float]:
    """In a process of its own: ``watchers`` idle followers of ``kind`` for ``seconds``;
    CPU seconds per wall second, threads and RSS of this whole process."""
    base_threads = _proc_status()["threads"]
    if kind == "async":
        return asyncio.run(_idle_async(url, watchers, seconds, base_threads))
    store = clawstate.open(url, sweep_interval=0)
    store.namespace("w").put("warm", 0)
    if kind == "subscription":
        store.events.append("warm", [clawstate.Event("Warm")])
    followers: list[Follower] = [
        store.watch(None) if kind == "watch" else store.events.subscribe("end")
        for _ in range(watchers)
    ]

    def read(f: Follower) -> None:
        for _ in f:
            pass

    threads = [threading.Thread(target=read, args=(f,), daemon=True) for f in followers]
    for th in threads:
        th.start()
    try:
        time.sleep(min(1.0, seconds))  # every follower reached its wait
        cpu0, t0 = _cpu(), time.monotonic()
        time.sleep(seconds)
        return _idle_result(cpu0, t0, base_threads)
    finally:
        for f in followers:
            f.close()
        for th in threads:
            th.join(LONG)
        store.close()


async def _idle_async(url: str, watchers: int, seconds: float, base: int) -> dict[str, float]:
    astore = clawstate.open_async(url, sweep_interval=0)
    await astore.namespace("w").put("warm", 0)
    watches = [astore.watch(None) for _ in range(watchers)]

    async def read(w: Any) -> None:
        async for _ in w:
            pass

    tasks = [asyncio.create_task(read(w)) for w in watches]
    try:
        await asyncio.sleep(min(1.0, seconds))  # every task reached its wait
        cpu0, t0 = _cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        return _idle_result(cpu0, t0, base)
    finally:
        for w in watches:
            w.close()
        await asyncio.wait(tasks, timeout=LONG)
        await astore.close()


def _idle_result(cpu0: float, t0: float, base: int) -> dict[str, float]:
    wall = time.monotonic() - t0
    status = _proc_status()
    return {
        "cpu_per_s": (_cpu() - cpu0) / wall,
        "threads": status["threads"],
        "base_threads": base,
        "rss": status["rss"],
        "wall": wall,
    }


def _run_module(*args: str, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.followers", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.followers {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


IDLE_KINDS = (
    ("watch", "`Watch`es, a thread each"),
    ("async", "`AsyncWatch`es, tasks on one loop"),
    ("subscription", "event subscriptions, a thread each"),
)


def case_idle(
    settings: Settings, watchers: int | None = None, seconds: float | None = None
) -> list[Table]:
    watchers = watchers or settings.n(100, 3)
    seconds = seconds or (0.3 if settings.quick else 10.0)
    rows: list[list[str]] = []
    for backend in BACKENDS:
        for kind, label in IDLE_KINDS:
            name = f"{backend}: {watchers} {label}"
            try:
                with backend_url(backend, settings) as url:
                    if kind == "subscription" and backend == "Redis":
                        rows.append([name, "–", "–", "–", "no event store on Redis"])
                        continue
                    got = _run_module(
                        "idle", url, kind, str(watchers), str(seconds), timeout=seconds + 120
                    )
            except Unavailable as why:
                rows.append([name, "–", "–", "–", f"skipped: {why}"])
                continue
            rows.append(
                [
                    name,
                    f"{got['cpu_per_s'] * 100:,.2f} %",
                    f"{got['threads']:.0f}",
                    fmt_bytes(got["rss"]),
                    "",
                ]
            )
    return [
        Table(
            "8b. Idle followers: CPU and threads",
            f"{watchers} followers that receive nothing for {seconds:g} s, in a process of "
            "their own (the store opened there, nothing else running): process CPU time "
            "(user + system) per wall second (100 % = one core busy), and the process's "
            "threads and RSS at the end (the process had 1 thread before the store opened). "
            "A thread per sync follower is the sync API's (its reader blocks); anything "
            "above that is the follower machinery's own.",
            ["followers", "CPU", "threads", "RSS", "note"],
            rows,
        )
    ]


# -- c. fan-out over SSE -------------------------------------------------------------------

FANOUT_NAMESPACE = "fan"


async def _sse_watcher(
    host: str, port: int, token: str, expect: int, ready: asyncio.Event, got: list[list[Any]]
) -> None:
    """One SSE connection: record (key, receipt time) for each change until ``expect``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"GET /v1/changes?namespace={FANOUT_NAMESPACE}&from_seq=0&heartbeat=60 HTTP/1.1\r\n"
                f"host: {host}:{port}\r\nauthorization: Bearer {token}\r\n"
                "accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace")[:200])
        chunked = b"transfer-encoding: chunked" in head.lower()
        ready.set()
        buf = b""
        seen = 0
        while seen < expect:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
            now = time.time()
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        doc = json.loads(line[6:])
                        if isinstance(doc, dict) and "key" in doc:
                            got.append([doc["key"], now])
                            seen += 1
    finally:
        writer.close()


async def _sse_clients(
    host: str, port: int, token: str, n: int, expect: int, deadline: float
) -> dict[str, Any]:
    readies = [asyncio.Event() for _ in range(n)]
    results: list[list[list[Any]]] = [[] for _ in range(n)]
    tasks = []
    for i in range(n):
        tasks.append(
            asyncio.create_task(_sse_watcher(host, port, token, expect, readies[i], results[i]))
        )
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # do not overrun the server's accept backlog at once
    connect_by = time.monotonic() + 60
    while not all(r.is_set() for r in readies) and time.monotonic() < connect_by:
        await asyncio.sleep(0.05)
        if any(t.done() and t.exception() for t in tasks):
            break
    print(json.dumps({"ready": sum(r.is_set() for r in readies)}), flush=True)
    await asyncio.wait(tasks, timeout=deadline)
    errors = [repr(t.exception())[:200] for t in tasks if t.done() and t.exception()]
    for t in tasks:
        t.cancel()
    received: dict[str, list[float]] = {}
    for per in results:
        for key, at in per:
            received.setdefault(key, []).append(at)
    return {"received": received, "errors": errors[:3], "n_errors": len(errors)}


def sse_child(
    host: str, port: int, token: str, n: int, expect: int, deadline: float, out: Path
) -> None:
    """In a process of its own: ``n`` SSE watchers; prints a ready line, then writes
    what they received to ``out`` (a file: the results run to megabytes)."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_sse_clients(host, port, token, n, expect, deadline))
    out.write_text(json.dumps(result), encoding="utf-8")


def _fanout_run(settings: Settings, watchers: int, writes: int, gap: float) -> list[str]:
    import httpx

    from .server_http import _start_clawstate, _stop

    with fresh_dir(settings, "fanout") as root:
        server, url, token = _start_clawstate(1, root)
        clients: list[subprocess.Popen[str]] = []
        logs: list[Any] = []
        try:
            host, port = url.split("//", 1)[1].rsplit(":", 1)
            procs = 2 if watchers >= 2 else 1
            share = [watchers // procs + (1 if i < watchers % procs else 0) for i in range(procs)]
            deadline = 30.0 + writes * gap
            outs = [root / f"sse-{i}.json" for i in range(procs)]
            logs = [out.with_suffix(".err").open("w") for out in outs]
            for n, out, log in zip(share, outs, logs, strict=True):
                clients.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.followers",
                            "sse",
                            host,
                            port,
                            token,
                            str(n),
                            str(writes),
                            str(deadline),
                            str(out),
                        ],
                        cwd=ROOT,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
            connected = 0
            for c, out in zip(clients, outs, strict=True):
                assert c.stdout is not None
                line = c.stdout.readline()
                if not line:
                    c.wait(30)
                    err = out.with_suffix(".err").read_text()
                    raise RuntimeError(f"SSE client failed: {err[-2000:]}")
                connected += int(json.loads(line)["ready"])
            time.sleep(1.0)  # every stream is parked in its wait
            idle = _proc_status(server.pid)
            peak = dict(idle)
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.1):
                    now = _proc_status(server.pid)
                    peak["rss"] = max(peak["rss"], now["rss"])
                    peak["threads"] = max(peak["threads"], now["threads"])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            sent: dict[str, float] = {}
            cpu0 = _proc_cpu(server.pid)
            with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}) as h:
                for i in range(writes):
                    key = f"w{i}"
                    sent[key] = time.time()
                    h.put(
                        f"/v1/namespaces/{FANOUT_NAMESPACE}/items/{key}",
                        content=b'{"i": %d}' % i,
                        headers={"content-type": "application/json"},
                    ).raise_for_status()
                    time.sleep(gap)
            latencies: list[float] = []
            delivered = 0
            errors: list[str] = []
            for c, out in zip(clients, outs, strict=True):
                c.wait(deadline + 60)
                if c.returncode != 0:
                    err = out.with_suffix(".err").read_text()
                    raise RuntimeError(f"SSE client failed: {err[-2000:]}")
                doc = json.loads(out.read_text(encoding="utf-8"))
                errors += doc["errors"]
                for key, times in doc["received"].items():
                    if key in sent:
                        delivered += len(times)
                        latencies += [t - sent[key] for t in times]
            # The server's CPU for the writes and their fan-out (the idle streams' share
            # of it — keep-alives — is small next to 1,000 deliveries per change).
            cpu = _proc_cpu(server.pid) - cpu0
            stop.set()
            sampler.join()
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
                    c.wait()
            for log in logs:
                log.close()
            _stop(server)
    expected = watchers * writes
    note = f"{delivered:,} of {expected:,} deliveries"
    if connected < watchers:
        note += f"; only {connected} of {watchers} connected"
    if errors:
        note += f"; client errors, e.g. {errors[0]}"
    if not latencies:
        return [fmt_int(watchers), "–", "–", "–", "–", "–", "–", note]
    return [
        fmt_int(watchers),
        _ms(statistics.median(latencies)),
        _ms(_pct(latencies, 0.99)),
        _ms(max(latencies)),
        f"{cpu / max(delivered, 1) * 1e6:.0f}",
        fmt_bytes(peak["rss"]),
        f"{idle['threads']} / {peak['threads']}",
        note,
    ]


def case_fanout(settings: Settings, sizes: Sequence[int] = ()) -> list[Table]:
    sizes = sizes or ([10] if settings.quick else [100, 400, 1000])
    writes = settings.n(10, 3)
    gap = 0.3
    rows = [_fanout_run(settings, n, writes, gap) for n in sizes]
    return [
        Table(
            "8c. Fan-out: SSE watchers of one namespace on `clawstate serve`",
            f"`clawstate serve` (1 worker, its own process, SQLite store); N watchers "
            f"(`GET /v1/changes?namespace=…`, `text/event-stream`) held by 2 client processes "
            f"of raw asyncio sockets on the same machine; then {writes} `PUT`s {gap:g} s apart. "
            "Latency = a watcher's receipt of a change − the moment just before its `PUT` "
            "was sent; p50 / p99 / max over every (watcher, change) pair. Target (issue 11): "
            "1,000 watchers, p99 < 100 ms. Server CPU per delivery = the server process's "
            "user + system CPU from the first `PUT` to the last receipt ÷ (watchers × changes).",
            [
                "watchers",
                "p50 ms",
                "p99 ms",
                "max ms",
                "server CPU µs / delivery",
                "server peak RSS",
                "server threads idle / peak",
                "note",
            ],
            rows,
        )
    ]


CASES = [
    Case(AREA, "close_wakeup", "Followers: close() wake-up latency", case_close_wakeup),
    Case(AREA, "idle", "Followers: idle CPU and threads", case_idle),
    Case(AREA, "fanout", "Followers: SSE fan-out on clawstate serve", case_fanout),
]


def main(argv: Sequence[str] | None = None) -> int:
    """The child processes: ``idle URL KIND N SECONDS`` and
    ``sse HOST PORT TOKEN N EXPECT DEADLINE OUT``; each reports its result as JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "idle":
        url, kind, n, seconds = args[1], args[2], int(args[3]), float(args[4])
        print(json.dumps(idle_child(url, kind, n, seconds)), flush=True)
        return 0
    if args and args[0] == "sse":
        host, port, token = args[1], int(args[2]), args[3]
        sse_child(host, port, token, int(args[4]), int(args[5]), float(args[6]), Path(args[7]))
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
