"""Smoke test of the PostgreSQL event-store benchmarks: ``--quick`` runs every case of
``bench.events_postgres`` against the test server and renders every table (no timing
assertions: the figures live in docs/benchmarks.md); without a server the area
reports each table as skipped instead of failing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _backends import ROOT, pg_admin, pg_probe
from services import POSTGRES_URL, require, require_module

AREA = "events_postgres"
TITLES = [
    "### E1. PostgreSQL: single appends with an expected-version check, one writer",
    "### E2. PostgreSQL: 8 concurrent writers, single appends",
    "### E3. PostgreSQL: batched appends, 5 events per call",
    "### E4. PostgreSQL: reading the global log",
    "### E5a. PostgreSQL: loading",
    "### E5b. PostgreSQL: loading",
]


def _bench_schemas() -> set[str]:
    with pg_admin() as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'clawbench\\_ev\\_%'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def _run_quick(tmp_path: Path, url: str) -> str:
    out = tmp_path / "benchmarks.md"
    args = ["--quick", "--only", AREA, "--write", str(out), "--tmpdir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=ROOT,
        env={**os.environ, "CLAWSTATE_BENCH_POSTGRES_URL": url},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


@pytest.mark.timeout(180)
def test_quick_run_renders_every_postgres_events_table(tmp_path: Path) -> None:
    require_module("eventsourcing")
    require("postgresql", pg_probe)
    before = _bench_schemas()
    text = _run_quick(tmp_path, POSTGRES_URL)
    for title in TITLES:
        assert title in text, title
    assert "Skipped:" not in text
    assert text.count("| **clawstate** |") >= 4  # E1-E4; E5 names the repository too
    for peer in ("eventsourcing recorder", "eventsourcing Application", "raw psycopg"):
        assert f"| {peer} |" in text, peer
    assert "synchronous_commit = " in text
    assert "mean group-commit batch" in text
    assert "| pg_single_append: E1." in text and "| pg_concurrent_append: E2." in text
    # Every case dropped its schemas and removed its temp dirs.
    assert _bench_schemas() - before == set()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]


@pytest.mark.timeout(60)
def test_without_a_server_every_table_says_skipped(tmp_path: Path) -> None:
    text = _run_quick(tmp_path, "postgresql://root@127.0.0.1:1/test")
    for title in TITLES:
        assert title in text, title
    assert text.count("Skipped: PostgreSQL at `postgresql://root@127.0.0.1:1/test`") == len(TITLES)
    assert "### Targets at a glance" not in text  # nothing measured, nothing checked
