"""Crash test: SIGKILL a writing process at random moments, then prove nothing acknowledged
was lost, no transaction is partly visible, and `clawstate check` passes.

Runs >= 50 kill cycles (CLAWSTATE_TEST_CRASH_CYCLES overrides) against one database
file in the default `process` durability mode.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import clawstate

CYCLES = int(os.environ.get("CLAWSTATE_TEST_CRASH_CYCLES", "50"))
ROOT = Path(__file__).resolve().parent.parent


def _read_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line torn by the kill was never a completed acknowledgement
    return out


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(int(os.environ.get("CLAWSTATE_TEST_CRASH_SEED", "7")))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    acked_puts: dict[str, int] = {}
    max_cas = 0
    acked_tx: set[str] = set()
    for cycle in range(CYCLES):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.writer", str(db), str(logs), str(cycle)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.01, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL

        for doc in _read_log(logs / f"put-{cycle}.log"):
            acked_puts[str(doc["key"])] = int(doc["i"])  # type: ignore[call-overload]
        for doc in _read_log(logs / f"cas-{cycle}.log"):
            max_cas = max(max_cas, int(doc["n"]))  # type: ignore[call-overload]
        for doc in _read_log(logs / f"tx-{cycle}.log"):
            acked_tx.add(str(doc["tid"]))

        # Reopen after every kill: recovery must see every acknowledged write.
        with clawstate.open(f"sqlite:///{db}", sweep_interval=0) as store:
            if cycle % 10 == 9 or cycle == CYCLES - 1:
                _verify(store, acked_puts, max_cas, acked_tx)

    assert acked_puts and acked_tx and max_cas > 0, "the child never got a write acknowledged"
    cli = subprocess.run(
        [sys.executable, "-m", "clawstate.cli", "--url", f"sqlite:///{db}", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["ok"] is True


def _verify(
    store: clawstate.Store, acked_puts: dict[str, int], max_cas: int, acked_tx: set[str]
) -> None:
    puts = store.namespace("puts")
    found = puts.get_many(list(acked_puts)[-1000:]) if acked_puts else {}
    for key in list(acked_puts)[-1000:]:
        assert key in found, f"acknowledged put {key} was lost"
        assert found[key].value["i"] == acked_puts[key]
    assert puts.count() >= len(acked_puts)
    counter = store.namespace("counter").get("c")
    assert counter is not None
    assert counter.value["n"] >= max_cas, "an acknowledged compare-and-set was lost"
    assert counter.value["n"] == counter.version - 1, "counter value and version disagree"
    a_keys = _all_keys(store, "tx-a")
    b_keys = _all_keys(store, "tx-b")
    assert a_keys == b_keys, f"partial transactions visible: {sorted(a_keys ^ b_keys)[:5]}"
    missing = acked_tx - a_keys
    assert not missing, f"acknowledged transactions lost: {sorted(missing)[:5]}"
    report = store.check()
    assert report.ok, report.problems


def _all_keys(store: clawstate.Store, namespace: str) -> set[str]:
    ns = store.namespace(namespace)
    keys: set[str] = set()
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        keys.update(item.key for item in page.items)
        cursor = page.cursor
        if cursor is None:
            return keys
