"""Smoke test of the benchmark driver: ``--quick`` runs and writes every table.

No timing assertions: figures live in docs/benchmarks.md, produced by ``make bench``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TITLES = [
    "### Targets at a glance",
    "### 1a. Durable single puts, one thread — overwrite, `process`",
    "### 1b. Durable single puts, one thread — insert, `process`",
    "### 1c. Durable single puts, one thread — overwrite, `power`",
    "### 2a. 8 threads putting concurrently, `process`",
    "### 2b. 8 threads putting concurrently, `power`",
    "### 3. Batched puts",
    "### 4. Point gets, warm, random keys",
    "### 5. Peak RSS with",
    "### 7. Wake-ups, stop and the write-back loss window",
    "### 8a. `close()` wakes a blocked follower",
    "### 8b. Idle followers: CPU and threads",
    "### 8c. Fan-out: SSE watchers of one namespace on `clawstate serve`",
    "### Q1. SQLite growth table: one namespace growing with `put_many`",
    "### Q2. Indexed EQ query, limit 100: clawstate vs raw sqlite3",
    "### Q3. Unindexed query with evenly spread matches vs the full-scan cost",
    "### Q4. `stats()` at each size",
    "### Q5. PostgreSQL: indexed EQ query vs raw psycopg",
    "### Q6a. Writes with 2 declared indexes: `put_many` of 1,000",
    "### Q6b. Writes with 2 declared indexes: single puts",
    "### L1. Redis: uncontended lock acquire + release",
    "### L2. SQLite: uncontended lock acquire + release",
    "### L3. PostgreSQL: uncontended lock acquire + release",
    "### M1. State machine transitions, one thread: SQLite",
    "### M2. State machine transitions, one thread: PostgreSQL",
]


@pytest.mark.timeout(400)
def test_quick_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nHand-written intro.\n\n## Analysis\n\nKept.\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--write",
            str(out),
            "--tmpdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # --write sends the report to the file only
    text = out.read_text()
    for title in TITLES:
        assert title in text, title
    assert text.count("<!-- bench:start -->") == 1
    assert text.count("<!-- bench:end -->") == 1
    assert text.startswith("# Benchmarks\n\nHand-written intro.")
    assert "## Analysis\n\nKept." in text
    assert "| **clawstate (process)** |" in text
    assert "mean group-commit batch" in text
    assert "quick mode" in text
    # Only the temp dirs' parent is left behind: every case removed its stores.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]


def test_rerun_replaces_only_the_generated_block(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.harness import MARK_END, MARK_START, merge_generated
    finally:
        sys.path.remove(str(ROOT))
    first = merge_generated(None, "one")
    assert first == f"# Benchmarks\n\n{MARK_START}\none\n{MARK_END}\n"
    edited = first + "\n## Analysis\n\nnotes\n"
    second = merge_generated(edited, "two")
    assert second == f"# Benchmarks\n\n{MARK_START}\ntwo\n{MARK_END}\n\n## Analysis\n\nnotes\n"
    assert merge_generated("# Mine\n", "x").endswith(f"# Mine\n\n{MARK_START}\nx\n{MARK_END}\n")
