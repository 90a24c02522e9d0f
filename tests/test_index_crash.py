"""A kill during an index backfill on Redis and PostgreSQL (SQLite's is in
test_sqlite_query.py): the child building the index is SIGKILLed mid-build, then the
next build finishes it, and the index answers exactly as the evaluator does over what
the store holds.  Nothing may be lost or double-counted by a half-built index.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import clawstate
from _backends import (
    ROOT,
    child_env,
    drop_prefix,
    drop_schema,
    new_prefix,
    new_schema,
    pg_probe,
    pg_url,
    redis_client,
    redis_url,
)
from clawstate.query import parse_query, run_query
from services import require

NS = "orders"
INDEXED: dict[str, Any] = {NS: {"indexes": ["user", "total"]}}

_CHILD = """
import sys, clawstate
store = clawstate.open(sys.argv[1], namespaces={"orders": {"indexes": ["user", "total"]}})
def progress(done, total):
    print(f"progress {done} {total}", flush=True)
print("building", flush=True)
store.build_indexes("orders", progress=progress)
print("built", flush=True)
"""


@pytest.fixture(params=["redis", "postgres"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "redis":
        require("redis", lambda: redis_client().ping())
        prefix = new_prefix()
        try:
            yield redis_url(prefix)
        finally:
            drop_prefix(redis_client(), prefix)
    else:
        require("postgresql", pg_probe)
        schema = new_schema("cs_ixkill")
        try:
            yield pg_url(schema)
        finally:
            drop_schema(schema)


def _fill(url: str, n: int) -> dict[str, Any]:
    rows = {f"o{i:06d}": {"user": f"u{i % 97}", "total": i % 1013} for i in range(n)}
    with clawstate.open(url) as store:
        ns = store.namespace(NS)
        items = list(rows.items())
        for start in range(0, n, 1000):
            ns.put_many(dict(items[start : start + 1000]))
    return rows


def _kill_mid_build(url: str, wait_for: Callable[[str], bool]) -> str:
    """Start the building child, SIGKILL it once ``wait_for(line)`` says so (or when it
    ends first); the last line it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    last = ""
    try:
        for line in child.stdout:
            last = line.strip()
            if wait_for(last):
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
    return last


@pytest.mark.parametrize("kill_after", [1, 2])
def test_a_killed_backfill_is_finished_by_the_next_build(url: str, kill_after: int) -> None:
    rows = _fill(url, 12_000)
    seen: list[int] = []

    def after_progress(line: str) -> bool:
        if line.startswith("progress"):
            done = int(line.split()[1])
            if done > 0:
                seen.append(done)
        return len(seen) >= kill_after or line == "built"

    last = _kill_mid_build(url, after_progress)
    assert last != "", "the child printed nothing before the kill"
    if url.startswith("redis") or kill_after == 1:
        # Redis backfills in chunks of 500 (reported each); PostgreSQL reports each of
        # the two indexes as it completes, so the first report is between them.
        assert last != "built", "the kill landed after the build"
    with clawstate.open(url, namespaces=INDEXED) as store:
        # A write after the kill, before the index is finished: the build must keep it.
        store.namespace(NS).put("late", {"user": "u5", "total": 7})
        rows["late"] = {"user": "u5", "total": 7}
        names = store.build_indexes(NS)
        assert len(names) == 2
        ns = store.namespace(NS)
        for doc in (
            {"filter": {"EQ": {"user": "u5"}}, "page": {"limit": 40}},
            {"filter": {"GTE": {"total": 1000}}, "page": {"limit": 40}},
            {"filter": {"IN": {"user": ["u1", "u96"]}}, "sort": [{"key": "total"}]},
        ):
            token: str | None = None
            pages = 0
            while True:
                page = ns.query(
                    {**doc, "page": {**doc.get("page", {}), "token": token}}, explain=True
                )
                want = run_query(
                    parse_query({**doc, "page": {**doc.get("page", {}), "token": token}}),
                    [(k, v, k) for k, v in sorted(rows.items())],
                )
                assert [it.key for it in page.items] == want.items, doc
                assert page.cursor == want.token
                assert page.plan is not None and page.plan.strategy == "index", page.plan
                token = page.cursor
                pages += 1
                if token is None:
                    break
            assert pages >= 1
        assert store.check().ok, store.check().problems


def test_the_child_can_finish_when_not_killed(url: str) -> None:
    """The harness itself: unkilled, the child reports progress and finishes (so the
    kills above do land in a build that would otherwise have completed)."""
    _fill(url, 2_000)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, url],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == "building" and lines[-1] == "built"
