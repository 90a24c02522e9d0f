"""Crash test: SIGKILL a writing process at random moments, then prove nothing acknowledged
was lost, no transaction is partly visible, and `clawstate check` passes.

Runs >= 50 kill cycles (CLAWSTATE_TEST_CRASH_CYCLES overrides) against one database
file in the default `process` durability mode, and checks the whole store after every
kill: every acknowledged put by key and value, every acknowledged transaction whole, the
compare-and-set counter exactly (the acknowledged increments, plus at most the one in
flight), and nothing that was never written.  The `slow` variant runs 200 cycles.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import clawstate
from _backends import ROOT, child_env, read_acks, start_crash_writer
from crash import writer

CYCLES = int(os.environ.get("CLAWSTATE_TEST_CRASH_CYCLES", "50"))
SEED = int(os.environ.get("CLAWSTATE_TEST_CRASH_SEED", "7"))


class Oracle:
    """What the store must hold after each kill, from the child's acknowledgement logs.

    Every writer thread in the child is sequential, so each cycle has at most one write
    of each kind in flight at the kill: a put, an increment or a transaction that may
    have committed without its acknowledgement reaching the log.  The oracle therefore
    knows the store's contents *exactly*, up to those in-flight writes: every
    acknowledged write must be present with its value, nothing else may be, and a write
    seen committed once must stay committed on every later reopen.
    """

    def __init__(self) -> None:
        self.puts: dict[str, dict[str, object]] = {}  # key -> value (acked or seen committed)
        self.tx: set[str] = set()  # transaction ids (acked or seen committed)
        self.counter: int | None = None  # the counter's value at the last reopen
        self.acks = 0  # acknowledged writes of all kinds, to prove the child wrote

    def check_cycle(self, store: clawstate.Store, logs: Path, cycle: int) -> None:
        """Compare the reopened store with cycle ``cycle``'s logs; raise on any mismatch."""
        put_acks = read_acks(logs / f"put-{cycle}.log")
        assert [d["i"] for d in put_acks] == list(range(len(put_acks))), "put log out of order"
        for doc in put_acks:
            self.puts[str(doc["key"])] = writer.put_value(cycle, int(doc["i"]))
        in_flight_put = writer.put_key(cycle, len(put_acks))

        stored = {item.key: item.value for item in _scan(store, "puts")}
        lost = [k for k in self.puts if k not in stored]
        assert not lost, f"acknowledged or committed puts lost: {lost[:5]} of {len(lost)}"
        wrong = [k for k, v in self.puts.items() if stored[k] != v]
        assert not wrong, f"puts with the wrong value: {wrong[:5]}"
        extra = set(stored) - set(self.puts)
        assert extra <= {in_flight_put}, f"puts nobody wrote: {sorted(extra)[:5]}"
        if in_flight_put in stored:  # committed without an ack: it must survive from now on
            assert stored[in_flight_put] == writer.put_value(cycle, len(put_acks))
            self.puts[in_flight_put] = stored[in_flight_put]

        tx_acks = [str(d["tid"]) for d in read_acks(logs / f"tx-{cycle}.log")]
        assert tx_acks == [writer.tx_id(cycle, i) for i in range(len(tx_acks))]
        self.tx.update(tx_acks)
        a_keys = _all_keys(store, "tx-a")
        b_keys = _all_keys(store, "tx-b")
        assert a_keys == b_keys, f"partial transactions visible: {sorted(a_keys ^ b_keys)[:5]}"
        missing = self.tx - a_keys
        assert not missing, f"acknowledged or committed transactions lost: {sorted(missing)[:5]}"
        in_flight_tx = writer.tx_id(cycle, len(tx_acks))
        assert a_keys - self.tx <= {in_flight_tx}, f"unknown: {sorted(a_keys - self.tx)[:5]}"
        self.tx = a_keys

        # The counter: this cycle's acks are exactly the increments after the value seen
        # at the last reopen, and the value now is the last of them, or one more (the
        # increment in flight at the kill).  Nothing lost, nothing invented.
        cas_acks = [int(d["n"]) for d in read_acks(logs / f"cas-{cycle}.log")]
        first = 0 if self.counter is None else self.counter + 1
        assert cas_acks == list(range(first, first + len(cas_acks))), (
            f"acknowledged increments are not consecutive from {first}: {cas_acks[:5]}..."
        )
        counter = store.namespace("counter").get("c")
        if counter is None:
            assert self.counter is None and not cas_acks, "an acknowledged counter was lost"
        else:
            acked = cas_acks[-1] if cas_acks else self.counter
            allowed = {first} if acked is None else {acked, acked + 1}
            n = counter.value["n"]
            assert n in allowed, f"counter is {n}; acknowledged increments allow {allowed}"
            assert n == counter.version - 1, "counter value and version disagree"
            self.counter = n
        self.acks += len(put_acks) + len(tx_acks) + len(cas_acks)

        report = store.check()
        assert report.ok, report.problems


def _run(tmp_path: Path, cycles: int, seed: int) -> None:
    db = tmp_path / "state.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(seed)
    oracle = Oracle()
    for cycle in range(cycles):
        child = start_crash_writer(str(db), logs, cycle)
        time.sleep(rng.uniform(0.01, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL

        # Reopen after every kill: recovery must show every acknowledged write, by key
        # and value, and nothing that was never written.
        with clawstate.open(f"sqlite:///{db}", sweep_interval=0) as store:
            oracle.check_cycle(store, logs, cycle)

    assert oracle.puts and oracle.tx and oracle.counter, "the child never got a write acked"
    cli = subprocess.run(
        [sys.executable, "-m", "clawstate.cli", "--url", f"sqlite:///{db}", "check"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout)["ok"] is True


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    _run(tmp_path, CYCLES, SEED)


@pytest.mark.slow
def test_sigkill_loses_nothing_acknowledged_long(tmp_path: Path) -> None:
    """The same, over many more cycles (a larger database, more kill points)."""
    _run(tmp_path, int(os.environ.get("CLAWSTATE_TEST_CRASH_SLOW_CYCLES", "200")), SEED + 1)


def _all_keys(store: clawstate.Store, namespace: str) -> set[str]:
    return {item.key for item in _scan(store, namespace)}


def _scan(store: clawstate.Store, namespace: str) -> list[clawstate.Item]:
    ns = store.namespace(namespace)
    items: list[clawstate.Item] = []
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        items.extend(page.items)
        cursor = page.cursor
        if cursor is None:
            return items


def _ack_log(logs: Path, name: str, cycle: int, docs: list[dict[str, object]]) -> None:
    with (logs / f"{name}-{cycle}.log").open("a") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")


def _cycle_zero(store: clawstate.Store, logs: Path) -> None:
    """What a child of cycle 0 leaves: 5 acked puts, counter 0..3, 3 transactions."""
    puts = store.namespace("puts")
    for i in range(5):
        puts.put(writer.put_key(0, i), writer.put_value(0, i))
    _ack_log(logs, "put", 0, [{"key": writer.put_key(0, i), "i": i} for i in range(5)])
    counter = store.namespace("counter")
    for n in range(4):
        counter.put("c", {"n": n})
    _ack_log(logs, "cas", 0, [{"n": n} for n in range(4)])
    for i in range(3):
        with store.transaction() as tx:
            tx.namespace("tx-a").put(writer.tx_id(0, i), {})
            tx.namespace("tx-b").put(writer.tx_id(0, i), {})
    _ack_log(logs, "tx", 0, [{"tid": writer.tx_id(0, i)} for i in range(3)])


def _bump_counter(store: clawstate.Store, by: int) -> None:
    ns = store.namespace("counter")
    for _ in range(by):
        cur = ns.get("c")
        assert cur is not None
        ns.put("c", {"n": cur.value["n"] + 1})


#: Each way a recovery could go wrong, and the words the oracle must say about it.
DAMAGE: dict[str, tuple[Callable[[clawstate.Store], object], str]] = {
    "lost put": (lambda s: s.namespace("puts").delete(writer.put_key(0, 2)), "puts lost"),
    "wrong value": (
        lambda s: s.namespace("puts").put(writer.put_key(0, 2), {"i": -1}),
        "wrong value",
    ),
    "invented put": (lambda s: s.namespace("puts").put("p-0-9", {}), "nobody wrote"),
    "invented increment": (lambda s: _bump_counter(s, 2), "counter is"),
    "lost counter": (lambda s: s.namespace("counter").delete("c"), "counter was lost"),
    "half a transaction": (
        lambda s: s.namespace("tx-b").delete(writer.tx_id(0, 1)),
        "partial transactions",
    ),
    "lost transaction": (
        lambda s: (
            s.namespace("tx-a").delete(writer.tx_id(0, 1)),
            s.namespace("tx-b").delete(writer.tx_id(0, 1)),
        ),
        "transactions lost",
    ),
}


class TestTheOracleFails:
    """The crash test's oracle is shown to fail on every kind of damage it exists to see,
    and to accept exactly the writes that may be in flight at a kill."""

    @pytest.mark.parametrize("damage", sorted(DAMAGE))
    def test_it_names_the_damage(self, damage: str, tmp_path: Path) -> None:
        harm, words = DAMAGE[damage]
        with clawstate.open(f"sqlite:///{tmp_path / 's.db'}", sweep_interval=0) as store:
            _cycle_zero(store, tmp_path)
            harm(store)
            with pytest.raises(AssertionError, match=words):
                Oracle().check_cycle(store, tmp_path, 0)

    def test_it_accepts_the_writes_in_flight(self, tmp_path: Path) -> None:
        with clawstate.open(f"sqlite:///{tmp_path / 's.db'}", sweep_interval=0) as store:
            _cycle_zero(store, tmp_path)
            store.namespace("puts").put(writer.put_key(0, 5), writer.put_value(0, 5))
            _bump_counter(store, 1)
            with store.transaction() as tx:
                tx.namespace("tx-a").put(writer.tx_id(0, 3), {})
                tx.namespace("tx-b").put(writer.tx_id(0, 3), {})
            oracle = Oracle()
            oracle.check_cycle(store, tmp_path, 0)
            assert oracle.counter == 4 and writer.put_key(0, 5) in oracle.puts

    def test_a_write_seen_committed_must_stay(self, tmp_path: Path) -> None:
        with clawstate.open(f"sqlite:///{tmp_path / 's.db'}", sweep_interval=0) as store:
            _cycle_zero(store, tmp_path)
            store.namespace("puts").put(writer.put_key(0, 5), writer.put_value(0, 5))
            oracle = Oracle()
            oracle.check_cycle(store, tmp_path, 0)
            store.namespace("puts").delete(writer.put_key(0, 5))
            with pytest.raises(AssertionError, match="puts lost"):
                oracle.check_cycle(store, tmp_path, 1)

    def test_increments_must_follow_the_value_seen(self, tmp_path: Path) -> None:
        """An ack log that skips a number (a lost increment later re-done) is refused."""
        with clawstate.open(f"sqlite:///{tmp_path / 's.db'}", sweep_interval=0) as store:
            _cycle_zero(store, tmp_path)
            oracle = Oracle()
            oracle.check_cycle(store, tmp_path, 0)
            _bump_counter(store, 2)
            _ack_log(tmp_path, "cas", 1, [{"n": 5}])
            with pytest.raises(AssertionError, match="not consecutive"):
                oracle.check_cycle(store, tmp_path, 1)
