"""``clawstate serve`` over HTTP: GET and durable PUT against the framework's ceiling.

What is measured, on this machine, with the load generator on the same box:

* the **ceiling**: the same stack (Litestar on uvicorn, uvloop, httptools, the same
  corked protocol) answering an empty handler — what the framework alone costs;
* **GET** of a 1 KiB item (random keys among 1,000 preloaded), with a bearer token;
* **durable PUT** of a 1 KiB JSON value (random keys among 100,000): acknowledged
  after its commit, in the store's default ``process`` durability.

All three run with 64 connections, one after another in rotating order per round, for
1 and 2 uvicorn workers (the workers share the SQLite file).  The load generator is
``wrk`` (``apt-get install -y wrk``); without it, a small open-loop-free asyncio
generator in this file stands in (labelled as such: it is slower than wrk and caps the
figures).  Rates are the best round; p99 is wrk's latency distribution of that round.
Errors are non-2xx answers plus socket errors; the target is zero.

Run alone: ``.venv/bin/python -m bench.run --only server_http``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import ROOT, Case, Settings, Table, fmt_int, fmt_ratio
from .kv_sqlite import make_value

__all__ = ["CASES", "ceiling_app"]

AREA = "server_http"
CONNECTIONS = 64
KEYS = 1000


def _ceiling() -> Any:
    from litestar import Litestar, get
    from litestar.response import Response

    @get("/empty", sync_to_thread=False)
    def empty() -> Response[bytes]:
        return Response(b"", media_type="application/json")

    return Litestar(
        [empty],
        openapi_config=None,
        logging_config=None,
        signature_namespace={"Response": Response},
    )


def ceiling_app() -> Any:
    """uvicorn factory: the framework's empty handler."""
    return _ceiling()


@dataclass
class Run:
    rate: float
    p99_ms: float
    errors: int
    requests: int


# -- load generators -------------------------------------------------------------------


def _wrk(url: str, script: Path | None, seconds: float) -> Run:
    args = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
    if script is not None:
        args[1:1] = ["-s", str(script)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return Run(rate, p99_ms, errors, requests)


async def _py_load(
    host: str, port: int, requests: list[bytes], seconds: float
) -> Run:  # pragma: no cover - used only without wrk
    """Fallback generator: 64 keep-alive connections, each sending its next request
    when the previous answer arrived (closed loop), raw HTTP/1.1 over asyncio."""
    latencies: list[float] = []
    errors = 0
    done = 0
    deadline = time.perf_counter() + seconds

    async def conn(i: int) -> None:
        nonlocal errors, done
        reader, writer = await asyncio.open_connection(host, port)
        n = i
        while time.perf_counter() < deadline:
            req = requests[n % len(requests)]
            n += CONNECTIONS
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            done += 1
            if not 200 <= status < 300:
                errors += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn(i) for i in range(CONNECTIONS)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    return Run(done / elapsed, p99, errors, done)


# -- servers ---------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_ceiling(workers: int) -> tuple[subprocess.Popen[Any], str]:
    port = _free_port()
    code = (
        "import uvicorn\n"
        "from clawstate.server.transport import CorkedHttpToolsProtocol\n"
        f"uvicorn.run('bench.server_http:ceiling_app', factory=True, host='127.0.0.1', "
        f"port={port}, workers={workers}, loop='uvloop', http=CorkedHttpToolsProtocol, "
        "access_log=False, log_level='warning', server_header=False, date_header=False)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/empty", proc)
    return proc, url


def _start_clawstate(workers: int, root: Path) -> tuple[subprocess.Popen[Any], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clawstate.cli",
            "--url",
            f"sqlite:///{root / 'state.db'}",
            "serve",
            "--port",
            "0",
            "--workers",
            str(workers),
            "--rate-limit",
            "0",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = token = ""
    while not (url and token):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"clawstate serve exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        if line.startswith("clawstate serve: "):
            url = line.split(": ", 1)[1].strip()
        elif line.startswith("admin token (shown once"):
            token = line.rsplit(" ", 1)[1].strip()
    _wait(url + "/healthz", proc)
    return proc, url, token


def _prefill(url: str, token: str, body: bytes) -> None:
    import httpx

    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}) as c:
        for i in range(KEYS):
            r = c.put(
                f"/v1/namespaces/bench/items/k{i}",
                content=body,
                headers={"content-type": "application/json"},
            )
            r.raise_for_status()


def _scripts(root: Path, token: str, body: bytes) -> tuple[Path, Path]:
    (root / "value.json").write_bytes(body)
    get = root / "get.lua"
    get.write_text(
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "request = function()\n"
        '  return wrk.format("GET", "/v1/namespaces/bench/items/k" .. '
        f"math.random(0, {KEYS - 1}))\n"
        "end\n"
    )
    put = root / "put.lua"
    put.write_text(
        'wrk.method = "PUT"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{root / "value.json"}", "r"); wrk.body = f:read("*a"); f:close()\n'
        "request = function()\n"
        '  return wrk.format("PUT", "/v1/namespaces/bench/items/k" .. math.random(0, 99999))\n'
        "end\n"
    )
    return get, put


def _py_requests(kind: str, port: int, token: str, body: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(KEYS):
        if kind == "empty":
            out.append(b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\n")
        elif kind == "get":
            out.append(
                f"GET /v1/namespaces/bench/items/k{i} HTTP/1.1\r\nhost: x\r\n"
                f"authorization: Bearer {token}\r\n\r\n".encode()
            )
        else:
            out.append(
                f"PUT /v1/namespaces/bench/items/p{i} HTTP/1.1\r\nhost: x\r\n"
                f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
    return out


def _measure(workers: int, settings: Settings) -> tuple[dict[str, list[Run]], str]:
    seconds = 1.0 if settings.quick else 5.0
    rounds = settings.rounds
    body = json.dumps(make_value(1024)).encode()
    have_wrk = shutil.which("wrk") is not None
    root = Path(tempfile.mkdtemp(prefix="clawbench-http-", dir=settings.tmpdir))
    ceiling, curl = _start_ceiling(workers)
    claw, url, token = _start_clawstate(workers, root)
    results: dict[str, list[Run]] = {"ceiling": [], "get": [], "put": []}
    try:
        _prefill(url, token, body)
        get_lua, put_lua = _scripts(root, token, body)

        def run(kind: str) -> Run:
            if have_wrk:
                if kind == "ceiling":
                    return _wrk(curl + "/empty", None, seconds)
                return _wrk(url, get_lua if kind == "get" else put_lua, seconds)
            target = curl if kind == "ceiling" else url
            host, port = target.split("//")[1].split(":")
            reqs = _py_requests("empty" if kind == "ceiling" else kind, int(port), token, body)
            return asyncio.run(_py_load(host, int(port), reqs, seconds))

        # warm both servers (imports, caches, SQLite pages) untimed
        if not settings.quick:
            for kind in ("ceiling", "get", "put"):
                run(kind)
        order = ["ceiling", "get", "put"]
        for r in range(rounds):
            shift = r % len(order)
            for kind in order[shift:] + order[:shift]:
                results[kind].append(run(kind))
    finally:
        _stop(claw)
        _stop(ceiling)
        shutil.rmtree(root, ignore_errors=True)
    return results, "wrk" if have_wrk else "python asyncio generator (wrk not installed)"


def _best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


def case_http(settings: Settings) -> list[Table]:
    tables: list[Table] = []
    for workers in (1, 2) if not settings.quick else (1,):
        results, generator = _measure(workers, settings)
        ceiling = _best(results["ceiling"])
        rows: list[list[str]] = []
        for kind, label, absolute in (
            ("ceiling", "Litestar empty handler (the ceiling)", None),
            ("get", "**clawstate GET** 1 KiB item", 12000),
            ("put", "**clawstate durable PUT** 1 KiB value", 6000),
        ):
            best = _best(results[kind])
            errors = sum(r.errors for r in results[kind])
            ratio = best.rate / ceiling.rate
            if absolute is None:
                target, met = "—", "—"
            else:
                ok = best.rate >= absolute and ratio >= 0.6 and best.p99_ms < 20 and errors == 0
                target = f"≥ {absolute:,}/s, ≥ 0.6×, p99 < 20 ms, 0 errors"
                met = "yes" if ok else "**no**"
            rows.append(
                [
                    label,
                    fmt_int(best.rate),
                    f"{best.p99_ms:.1f}",
                    str(errors),
                    "—" if absolute is None else fmt_ratio(ratio),
                    target,
                    met,
                ]
            )
        tables.append(
            Table(
                f"HTTP API, {workers} uvicorn worker{'s' if workers > 1 else ''}",
                f"{CONNECTIONS} connections, 1 KiB values, load generator: {generator} on the "
                "same 2-core machine (it takes CPU from the server).  Rows ran interleaved, "
                f"{settings.rounds} round(s) of {1 if settings.quick else 5} s each; best round.",
                ["system", "req/s", "p99 ms", "errors", "÷ ceiling", "target", "met"],
                rows,
                notes=[
                    "Ceiling = the same framework and server (Litestar, uvicorn, uvloop, "
                    "httptools, corked writes) answering an empty handler: the ratio is what "
                    "the store, auth, metrics and encoding cost on top.",
                    "Durable = acknowledged after the SQLite commit (WAL, synchronous=NORMAL: "
                    'survives a killed process; `durability="power"` adds an fsync).',
                ],
            )
        )
    return tables


CASES = [Case(AREA, "http", "HTTP API: GET / PUT vs the framework ceiling", case_http)]


if __name__ == "__main__":  # pragma: no cover - manual runs
    from .harness import Settings as _S

    for t in case_http(_S(quick="--quick" in sys.argv, rounds=2)):
        print(t.render())
