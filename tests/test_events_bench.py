"""Smoke test of the event-store benchmarks: ``--quick`` runs every case and renders
its tables (no timing assertions: the figures live in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services import require_module

ROOT = Path(__file__).resolve().parent.parent
TITLES = [
    "### E1a. Single appends with an expected-version check, one writer, `power`",
    "### E1b. Single appends with an expected-version check, one writer, `process`",
    "### E2. 8 concurrent writers, single appends, `power`",
    "### E3. Batched appends: 5 events per call, `process`",
    "### E4. Reading the global log",
    "### E5a. Loading",
    "### E5b. Loading",
]
#: The area is run through bench.run whether or not bench/run.py lists it yet.
RUNNER = (
    "import sys, bench.run as r\n"
    "if 'bench.events_sqlite' not in r.AREAS:\n"
    "    r.AREAS.append('bench.events_sqlite')\n"
    "sys.exit(r.main(sys.argv[1:]))\n"
)


@pytest.mark.timeout(180)
def test_quick_run_renders_every_events_table(tmp_path: Path) -> None:
    require_module("eventsourcing")
    out = tmp_path / "benchmarks.md"
    args = ["--quick", "--only", "events_sqlite", "--write", str(out), "--tmpdir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for title in TITLES:
        assert title in text, title
    assert "| **clawstate (power)** |" in text
    assert "eventsourcing recorder" in text and "raw sqlite3 NORMAL" in text
    assert "mean group-commit batch" in text
    # Every case removed its stores.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]
