"""Drive the benchmark cases and render the report.

``python -m bench.run --write docs/benchmarks.md`` (``make bench``) runs every case
and rewrites the part of the file between ``<!-- bench:start -->`` and
``<!-- bench:end -->``, keeping hand-written text outside the markers.
``--quick`` runs tiny sizes (the smoke test); ``--only NAME`` (repeatable) runs
the cases whose name or ``area.name`` matches (with ``--write``, the generated
block then holds only those cases).  Without ``--write`` the report goes to
stdout only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .harness import Case, Settings, Table, environment, fmt_ratio, merge_generated

__all__ = ["AREAS", "all_cases", "main", "render"]

#: One module per area; each exposes ``CASES``.  Later areas append here.
AREAS = [
    "bench.kv_sqlite",
    "bench.group_commit",
    "bench.kv_redis",
    "bench.kv_postgres",
    "bench.events_sqlite",
    "bench.events_postgres",
    "bench.cache_bench",
    "bench.server_http",
    "bench.wakeups",
    "bench.followers",
    "bench.queries",
    "bench.locks",
    "bench.machines",
    "bench.timers",
]


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for module in AREAS:
        cases.extend(importlib.import_module(module).CASES)
    return cases


def select(cases: Sequence[Case], only: Sequence[str]) -> list[Case]:
    if not only:
        return list(cases)
    chosen = [c for c in cases if c.name in only or c.id in only or c.area in only]
    unknown = [o for o in only if not any(o in (c.name, c.id, c.area) for c in cases)]
    if unknown:
        names = ", ".join(c.id for c in cases)
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {names}")
    return chosen


def command_line(argv: Sequence[str]) -> str:
    if list(argv) == ["--write", "docs/benchmarks.md"]:
        return "make bench  # = .venv/bin/python -m bench.run --write docs/benchmarks.md"
    return ".venv/bin/python -m bench.run " + " ".join(argv)


def render(
    results: list[tuple[Case, list[Table], float]],
    settings: Settings,
    argv: Sequence[str],
    env: dict[str, str],
    elapsed: float,
) -> str:
    from .kv_sqlite import value_sizes

    json_size, msgpack_size = value_sizes()
    stat_why = (
        "other jobs on a shared machine only ever add time, so the best round is the least "
        "disturbed one"
        if settings.stat == "best"
        else "the middle of the rounds"
    )
    out: list[str] = [
        "## Generated results",
        "",
        f"Produced by `{command_line(argv)}` on {env['date']}"
        + (" — **quick mode: tiny sizes, not meaningful figures**" if settings.quick else "")
        + f"; the run took {elapsed:,.0f} s.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPUs (nproc) | {env['nproc']} × {env['cpu']} |",
        f"| OS | {env['os']} |",
        f"| Python | {env['python']} |",
        f"| SQLite (sqlite3 module) | {env['sqlite']} |",
        f"| clawstate / diskcache / msgspec | {env['clawstate']} / {env['diskcache']} / "
        f"{env['msgspec']} |",
        f"| load average at start (1/5/15 min) | {env['load']} |",
        "",
        f"Method: every figure is a **ratio clawstate ÷ peer throughput**, both measured in this "
        f"run on this machine (absolute ops/s are shown only to make the ratio checkable). Each "
        f"system runs {settings.rounds} round(s) per case, interleaved and in rotating order "
        "(the machine is shared). Each system gets its own fresh temp directory and store for "
        "the case, loads and warms its data untimed, and each round then times only its loop "
        f"with `time.perf_counter`; the table shows the **{settings.stat}** round ({stat_why}), "
        f"then the {'median' if settings.stat == 'best' else 'best'} and the worst. "
        "Values: one ~1 KiB JSON document, the same dict object for every system "
        f"({json_size} bytes as JSON, {msgpack_size} bytes as msgpack); peers that need bytes "
        "encode it with `json.dumps(value).encode()` inside their timed loop, as clawstate's "
        "loop includes its codec. Stores are closed at the end of each case.",
        "",
    ]
    checks = [chk for _, tables, _ in results for t in tables for chk in t.checks]
    if checks:
        out += [
            "### Targets at a glance",
            "",
            "| table | clawstate | vs peer | ratio | target | met |",
            "|---|---|---|---:|---:|---|",
        ]
        for c in checks:
            out.append(
                f"| {c.case} | {c.subject} | {c.peer} | {fmt_ratio(c.ratio)} | "
                f"≥ {c.target:g}× | {'yes' if c.met else '**no**'} |"
            )
        out.append("")
    for case, tables, seconds in results:
        out.append(f"<!-- case {case.id}: {seconds:.1f} s -->")
        for t in tables:
            out.append(t.render())
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--write", metavar="PATH", help="update this markdown file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", action="append", default=[], metavar="CASE")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per system (5; 1 with --quick)"
    )
    parser.add_argument(
        "--stat", choices=("best", "median"), default="best", help="headline round (best)"
    )
    parser.add_argument("--tmpdir", default=None, help="where the temp stores go")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    cases = all_cases()
    if args.list:
        for c in cases:
            print(f"{c.id:32} {c.title}")
        return 0
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    settings = Settings(quick=args.quick, rounds=max(1, rounds), tmpdir=args.tmpdir, stat=args.stat)
    env = environment()
    chosen = select(cases, args.only)
    done: dict[str, tuple[Case, list[Table], float]] = {}
    started = time.perf_counter()
    for case in sorted(chosen, key=lambda c: not c.run_first):
        print(f"[bench] {case.id} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        tables = case.run(settings)
        seconds = time.perf_counter() - t0
        print(f"[bench] {case.id} done in {seconds:.1f} s", file=sys.stderr, flush=True)
        done[case.id] = (case, tables, seconds)
    results = [done[c.id] for c in chosen]
    report = render(results, settings, argv, env, time.perf_counter() - started)
    if args.write:
        path = Path(args.write)
        existing = path.read_text(encoding="utf-8") if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(merge_generated(existing, report), encoding="utf-8")
        print(f"[bench] wrote {path}", file=sys.stderr)
    else:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
