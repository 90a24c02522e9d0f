"""Shared benchmark machinery: timing in interleaved rounds, RSS, environment, tables.

An area module (``bench/kv_sqlite.py``, ...) exposes ``CASES``: a list of
:class:`Case`.  A case receives a :class:`Settings` and returns
:class:`Table` objects; :mod:`bench.run` renders them into markdown.

Timing discipline (the machine is shared): each system's trial does its own
setup and warm-up untimed, then times only its loop with
:func:`time.perf_counter`; :func:`interleave` runs every system once per round,
rotating the order each round, and a measurement's headline figure is the
*best* round (``--stat median`` for the median): on a shared machine other
jobs only ever add time, so the best round is the least disturbed one.
Ratios are clawstate ÷ peer throughput, both from the same run.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "MARK_END",
    "MARK_START",
    "Case",
    "Check",
    "Measurement",
    "Peer",
    "Sample",
    "Settings",
    "Table",
    "batch_delta",
    "comparison_table",
    "dir_bytes",
    "environment",
    "fmt_bytes",
    "fmt_int",
    "fmt_ratio",
    "fresh_dir",
    "interleave",
    "merge_generated",
    "peak_rss_bytes",
    "peak_rss_hwm_bytes",
    "run_child",
    "threaded_sample",
    "time_loop",
]

MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"
ROOT = Path(__file__).resolve().parent.parent


# -- settings & cases --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every case gets: quick mode, rounds, and where temp dirs go."""

    quick: bool = False
    rounds: int = 5
    tmpdir: str | None = None
    stat: str = "best"

    def n(self, full: int, quick: int) -> int:
        """A size: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Case:
    """One benchmark case: ``--only`` matches ``name`` or ``area.name``.

    ``run_first`` cases run before the others (their report keeps its place):
    memory cases spawn children, and Linux hands a child its parent's peak
    ``ru_maxrss``, so they go while the runner is still small.
    """

    area: str
    name: str
    title: str
    run: Callable[[Settings], list[Table]]
    run_first: bool = False

    @property
    def id(self) -> str:
        return f"{self.area}.{self.name}"


# -- timing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One timed round of one system: ``ops`` operations in ``seconds``."""

    ops: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Measurement:
    """Every round of one system; the headline ``rate`` is the best or the median round."""

    system: str
    samples: list[Sample] = field(default_factory=list)
    stat: str = "best"

    @property
    def rates(self) -> list[float]:
        return [s.rate for s in self.samples]

    @property
    def rate(self) -> float:
        return self.best if self.stat == "best" else self.median

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def us_per_op(self) -> float:
        return 1e6 / self.rate

    def extra(self, name: str) -> float:
        """The median over rounds of a per-round extra figure (e.g. a batch size)."""
        return statistics.median(s.extra[name] for s in self.samples if name in s.extra)


def time_loop(ops: int, loop: Callable[[], object], **extra: float) -> Sample:
    """Time one call of ``loop`` (which performs ``ops`` operations) after a GC pass."""
    gc.collect()
    start = time.perf_counter()
    loop()
    seconds = time.perf_counter() - start
    return Sample(ops, seconds, dict(extra))


Trial = Callable[[], Sample]


def interleave(trials: Sequence[tuple[str, Trial]], settings: Settings) -> dict[str, Measurement]:
    """Run every trial once per round, rotating the order, so drift hits all alike."""
    out = {name: Measurement(name, stat=settings.stat) for name, _ in trials}
    for r in range(settings.rounds):
        shift = r % len(trials)
        for name, trial in [*trials[shift:], *trials[:shift]]:
            out[name].samples.append(trial())
    return out


def batch_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """A round's group-commit figures from a store's stats before and after it.

    ``mean_batch`` is jobs per batch committed during the round; ``largest_batch``
    (when the stats carry it) is the largest batch so far.  Empty when there was no
    ``before`` (a system without group-commit stats).
    """
    if not before:
        return {}
    batches = after["batches"] - before["batches"]
    jobs = after["jobs"] - before["jobs"]
    out = {"mean_batch": jobs / batches if batches else 0.0}
    if "largest_batch" in after:
        out["largest_batch"] = after["largest_batch"]
    return out


def threaded_sample(
    ops: int,
    work: Sequence[Callable[[], object]],
    *,
    warm: Sequence[Callable[[], object]] = (),
    stats: Callable[[], dict[str, float]] | None = None,
) -> Sample:
    """One timed round of ``len(work)`` threads, each running its ``work`` callable.

    The threaded trial loop every concurrent case shares: thread ``t`` first runs
    ``warm[t]`` untimed (e.g. opening its connection), then all threads meet at a
    barrier, where one of them snapshots ``stats()``; then each times its own
    ``work[t]``.  The round's time runs from the first thread's start to the last
    thread's end; its extras are :func:`batch_delta` of the stats around the round.
    An exception in any thread aborts the barrier and is re-raised here.
    """
    threads = len(work)
    barrier = threading.Barrier(threads)
    starts = [0.0] * threads
    ends = [0.0] * threads
    errors: list[BaseException] = []
    before: dict[str, float] = {}

    def worker(t: int) -> None:
        try:
            if warm:
                warm[t]()
            if barrier.wait() == 0 and stats is not None:
                before.update(stats())
            barrier.wait()
            starts[t] = time.perf_counter()
            work[t]()
            ends[t] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    gc.collect()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if errors:
        raise errors[0]
    extra = batch_delta(before, stats()) if stats is not None else {}
    return Sample(ops, max(ends) - min(starts), extra)


@contextlib.contextmanager
def fresh_dir(settings: Settings, label: str) -> Iterator[Path]:
    """A new empty directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"clawbench-{label}-", dir=settings.tmpdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- memory & subprocesses ---------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def peak_rss_hwm_bytes() -> int:
    """This process's own peak RSS (Linux ``VmHWM``; 0 elsewhere).

    Unlike ``ru_maxrss``, which Linux carries over from the parent across
    fork+exec (a child of a big parent reports the parent's peak), ``VmHWM``
    belongs to the current address space only.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def current_rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def dir_bytes(path: Path) -> int:
    """Total size of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_child(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` from the repo root; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- environment -------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, str]:
    """Where and with what the figures were measured."""
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "clawstate": _version("clawstate"),
        "diskcache": _version("diskcache"),
        "msgspec": _version("msgspec"),
        "load": load,
    }


# -- tables ------------------------------------------------------------------------------


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def fmt_bytes(n: float) -> str:
    return f"{n / (1024 * 1024):,.1f} MiB"


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}×"


@dataclass(frozen=True)
class Check:
    """One target: ``subject`` ÷ ``peer`` throughput should reach ``target``."""

    case: str
    subject: str
    peer: str
    ratio: float
    target: float

    @property
    def met(self) -> bool:
        return self.ratio >= self.target


@dataclass
class Table:
    """One rendered table plus the targets it checks."""

    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))))
        lines[-1] += "|"
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Peer:
    """A peer row: its measurement and the target ratio (None: context only)."""

    m: Measurement
    target: float | None = None
    note: str = ""


def comparison_table(
    case: str,
    title: str,
    intro: str,
    subject: Measurement,
    peers: Sequence[Peer],
    *,
    unit: str = "op",
    subject_note: str = "",
    notes: Sequence[str] = (),
) -> Table:
    """Subject first, then each peer with clawstate ÷ peer and its target."""
    stat = subject.stat
    other = "median" if stat == "best" else "best"
    headers = [
        "system",
        f"{unit}s/s ({stat})",
        f"µs/{unit}",
        f"{other} · worst (/s)",
        "clawstate ÷ this",
        "target",
        "met",
        "note",
    ]

    def spread(m: Measurement) -> str:
        alt = m.median if stat == "best" else m.best
        return f"{fmt_int(alt)} · {fmt_int(min(m.rates))}"

    rows = [
        [
            f"**{subject.system}**",
            fmt_int(subject.rate),
            fmt_us(subject.us_per_op),
            spread(subject),
            "—",
            "",
            "",
            subject_note,
        ]
    ]
    checks: list[Check] = []
    for p in peers:
        ratio = subject.rate / p.m.rate
        if p.target is None:
            target, met = "context", "—"
        else:
            check = Check(case, subject.system, p.m.system, ratio, p.target)
            checks.append(check)
            target, met = f"≥ {p.target:g}×", "yes" if check.met else "**no**"
        rows.append(
            [
                p.m.system,
                fmt_int(p.m.rate),
                fmt_us(p.m.us_per_op),
                spread(p.m),
                fmt_ratio(ratio),
                target,
                met,
                p.note,
            ]
        )
    all_notes = list(notes)
    if peers:
        best = max(peers, key=lambda p: p.m.rate)
        all_notes.insert(
            0,
            f"Best peer in this run: {best.m.system} — clawstate ÷ best peer = "
            f"{fmt_ratio(subject.rate / best.m.rate)}.",
        )
    return Table(title, intro, headers, rows, all_notes, checks)


# -- the report file ---------------------------------------------------------------------


def merge_generated(existing: str | None, generated: str, title: str = "# Benchmarks") -> str:
    """``existing`` with the text between the markers replaced by ``generated``.

    Hand-written text outside the markers is kept; a file without markers gets
    the generated block appended; no file gets a title and the block.
    """
    block = f"{MARK_START}\n{generated.strip()}\n{MARK_END}"
    if existing is None or not existing.strip():
        return f"{title}\n\n{block}\n"
    start = existing.find(MARK_START)
    end = existing.find(MARK_END, start + len(MARK_START)) if start >= 0 else -1
    if start < 0 or end < 0:
        return existing.rstrip("\n") + "\n\n" + block + "\n"
    return existing[:start] + block + existing[end + len(MARK_END) :]
