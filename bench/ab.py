"""A/B of two source trees on the hot paths a full run flagged: is it the code or the box?

``make bench`` compares clawstate with its peers *within* one run; comparing two runs
days apart mixes code changes with how busy the box was.  This times the same paths
in two checkouts, alternating, in fresh processes, on the same box::

    git worktree add /tmp/before 7b45648            # or any clone at the old commit
    .venv/bin/python -m bench.ab /tmp/before .      # three passes, best of 5 rounds

Each measurement runs ``python -c`` with the tree's ``src`` first on ``sys.path`` (the
interpreter and dependencies are this venv's), so only clawstate's code differs.  The
PostgreSQL path needs the test server (``postgresql://root@127.0.0.1:5432/test``) and
is skipped without it.  Prints one Markdown table: best rate of each tree, change.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

#: One measured path: its label and the body run after ``store``/``ns``/``val`` exist.
_SETUP = """
import sys, time, tempfile, uuid, random
sys.path.insert(0, {src!r})
import clawstate
val = {{"name": "x" * 40, "tags": ["a", "b", "c"], "n": 12345,
       "nested": {{"k": "v" * 600, "z": [1, 2, 3]}}}}
"""
_SQLITE = """
d = tempfile.mkdtemp()
store = clawstate.open(f"sqlite:///{d}/s.db", durability="process", sweep_interval=0{opts})
ns = store.namespace("bench")
for i in range(0, 2000, 1000):
    ns.put_many([(f"warm{j:05d}", val) for j in range(i, i + 1000)])
"""
_PG = """
import psycopg
schema = "ab_" + uuid.uuid4().hex[:8]
store = clawstate.open(f"postgresql://root@127.0.0.1:5432/test?schema={schema}")
ns = store.namespace("bench")
for i in range(0, 2000, 1000):
    ns.put_many([(f"warm{j:05d}", val) for j in range(i, i + 1000)])
"""
_TIMED = """
for k in [f"warm{j:05d}" for j in range(2000)]:
    ns.get(k)
best = 0.0
for r in range(5):
    t = time.perf_counter()
    n = _loop(r)
    best = max(best, n / (time.perf_counter() - t))
print(best)
store.close()
"""
_PG_DROP = """
with psycopg.connect("postgresql://root@127.0.0.1:5432/test", autocommit=True) as c:
    c.execute(f"DROP SCHEMA {schema} CASCADE")
"""

PATHS: dict[str, tuple[str, str]] = {
    "SQLite single put, new key": (
        _SQLITE.replace("{opts}", ""),
        "def _loop(r):\n    for i in range(3000): ns.put(f'k{r}-{i:06d}', val)\n    return 3000",
    ),
    "SQLite single put, overwrite": (
        _SQLITE.replace("{opts}", ""),
        "def _loop(r):\n    for i in range(3000): ns.put(f'warm{i % 2000:05d}', val)\n"
        "    return 3000",
    ),
    "SQLite point get": (
        _SQLITE.replace("{opts}", ""),
        "def _loop(r):\n    for i in range(20000): ns.get(f'warm{(i * 7) % 2000:05d}')\n"
        "    return 20000",
    ),
    "L1-hit get": (
        _SQLITE.replace(
            "{opts}", ', namespaces={"*": {"cache": "read-through", "cache_ttl": 3600}}'
        ),
        "def _loop(r):\n    for i in range(200000): ns.get(f'warm{(i * 7) % 2000:05d}')\n"
        "    return 200000",
    ),
    "PostgreSQL point get": (
        _PG,
        "def _loop(r):\n    for i in range(2000): ns.get(f'warm{(i * 7) % 2000:05d}')\n"
        "    return 2000",
    ),
}


def measure(tree: Path, path: str) -> float | None:
    setup, loop = PATHS[path]
    code = _SETUP.format(src=str(tree / "src")) + setup + loop + "\n" + _TIMED
    if "psycopg" in setup:
        code += _PG_DROP
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        print(f"[ab] {tree} / {path}: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("before", type=Path, help="the older checkout")
    parser.add_argument("after", type=Path, help="the newer checkout")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--only", action="append", default=[], choices=sorted(PATHS))
    args = parser.parse_args(argv)
    chosen = args.only or list(PATHS)
    best: dict[tuple[str, str], float] = {}
    for _ in range(max(1, args.passes)):
        for path in chosen:
            for side, tree in (("before", args.before), ("after", args.after)):
                rate = measure(tree.resolve(), path)
                if rate is not None:
                    best[(path, side)] = max(best.get((path, side), 0.0), rate)
    print("| path | before | after | change |")
    print("|---|---:|---:|---:|")
    for path in chosen:
        b, a = best.get((path, "before")), best.get((path, "after"))
        change = f"{(a / b - 1) * 100:+.0f} %" if a and b else "—"
        print(f"| {path} | {b or 0:,.0f}/s | {a or 0:,.0f}/s | {change} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
