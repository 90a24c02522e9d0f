"""``python -m bench.ab`` (the A/B of two source trees that docs/benchmarks.md quotes)
runs: here both sides are this tree, on one cheap path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ab_times_both_trees_and_prints_the_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.ab", ".", ".", "--passes", "1", "--only", "SQLite point get"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "| path | before | after | change |"
    row = lines[-1]
    assert row.startswith("| SQLite point get | ")
    before, after = (cell.strip() for cell in row.strip("|").split("|")[1:3])
    assert before.endswith("/s") and after.endswith("/s")
    assert float(before[:-2].replace(",", "")) > 0 and float(after[:-2].replace(",", "")) > 0
