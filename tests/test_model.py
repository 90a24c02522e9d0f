"""Model-based test: random sequences of operations against a plain-dict model.

A Hypothesis ``RuleBasedStateMachine`` drives a real store (memory and SQLite,
a fresh SQLite file per example) and a dict model side by side: puts with and
without TTL, compare-and-set with the right or a wrong version, create-only
puts, deletes, clock jumps, sweeps, transactions of 1–4 writes across two
namespaces (some with a failing condition, which must apply nothing), scans
that follow cursors to the end, and deletes followed by a re-create whose old
versions must then fail every version check (no ABA).  The model gives versions
as the stores must: a put over an expired row goes on at its version + 1, a key
with no row starts at its namespace's version floor + 1 (the highest version a
deleted or swept key of it had), and the machine asserts that no key is ever given
a version it had before.  After every step every key the run touched
must read back exactly as the model says (value and version), counts must
agree, the change log must have grown by exactly the writes applied, and
``Store.check()`` must find nothing wrong.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import clawstate
from clawstate import Item, VersionConflict
from clawstate.testing import FakeClock

NAMESPACES = ("alpha", "beta")
#: A small alphabet with 1-, 2-, 3- and 4-byte UTF-8 characters: keys collide
#: often and prefixes are shared, and scans must order them by UTF-8 bytes.
#: U+FFFD sorts *after* U+1F600 in UTF-16 (surrogate pairs) but before it in
#: UTF-8, so an ordering by UTF-16 code units is caught.
ALPHABET = "ab\u00e9\u20ac\ufffd\U0001f600"

namespaces = st.sampled_from(NAMESPACES)
keys = st.text(alphabet=ALPHABET, min_size=1, max_size=3)
prefixes = st.text(alphabet=ALPHABET, max_size=2)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(max_size=5),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(0, 9), max_size=3),
)
ttls = st.one_of(st.none(), st.sampled_from([1, 5, 30]), st.floats(0.25, 60.0))
versions = st.integers(1, 6)
#: How a conditional write in a transaction is built: None (unconditional),
#: "right" (if_version = the current version, or if_absent when there is none: it
#: always holds), "wrong" (a version that is not current: it always fails),
#: "absent" (create-only: holds only when there is no live item).  Weighted so
#: that most transactions commit and some fail.
put_conditions = st.sampled_from([None, None, None, "right", "right", "wrong", "absent"])
delete_conditions = st.sampled_from([None, None, "right", "right", "wrong"])


@dataclass
class Entry:
    """What the model knows about one stored row (live or expired-but-unswept)."""

    value: Any
    version: int
    expires_at: float | None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


Model = dict[tuple[str, str], Entry]


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, backend: str) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="clawstate-model-")
        url = "memory://" if backend == "memory" else f"sqlite:///{self.tmp}/state.db"
        self.clock = FakeClock()
        self.store = clawstate.open(url, clock=self.clock, sweep_interval=0)
        self.model: Model = {}
        #: per namespace, the highest version a removed key had (the version floor)
        self.floors: dict[str, int] = {}
        #: every version each key was ever given: none may come back (no ABA)
        self.given: dict[tuple[str, str], set[int]] = {}
        self.touched: set[tuple[str, str]] = set()
        #: the change log's expected last seq: one per applied write, one per purge
        self.seq = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- model helpers ---------------------------------------------------------------

    def live(self, model: Model, ns: str, key: str) -> Entry | None:
        entry = model.get((ns, key))
        return entry if entry is not None and entry.live(self.clock()) else None

    def expires(self, ttl: float | None) -> float | None:
        return None if ttl is None else self.clock() + float(ttl)

    def condition_for(
        self, model: Model, ns: str, key: str, condition: str | None
    ) -> tuple[int | None, bool]:
        """(if_version, if_absent) for a write under ``condition`` (see put_conditions)."""
        current = self.live(model, ns, key)
        if condition == "right":
            return (None, True) if current is None else (current.version, False)
        if condition == "wrong":
            return (1 if current is None else current.version + 3), False
        return None, condition == "absent"

    def note_version(self, ns: str, key: str, version: int) -> None:
        """A store gave ``key`` this version: it must be new for the key, and higher."""
        given = self.given.setdefault((ns, key), set())
        assert version not in given, f"{ns}/{key}: version {version} given twice"
        assert version > max(given, default=0), (ns, key, version, sorted(given))
        given.add(version)

    def stage_put(
        self,
        model: Model,
        floors: dict[str, int],
        ns: str,
        key: str,
        value: Any,
        ttl: float | None,
        if_version: int | None,
        if_absent: bool,
    ) -> int | None:
        """Apply a put to ``model``; its new version, or None if its condition fails."""
        current = self.live(model, ns, key)
        if if_absent and current is not None:
            return None
        if if_version is not None and (current is None or current.version != if_version):
            return None
        stored = model.get((ns, key))  # live, or expired and not yet swept
        version = floors.get(ns, 0) + 1 if stored is None else stored.version + 1
        model[(ns, key)] = Entry(value, version, self.expires(ttl))
        return version

    def stage_delete(
        self, model: Model, floors: dict[str, int], ns: str, key: str, if_version: int | None
    ) -> bool | None:
        """Apply a delete to ``model``; whether it removed something, None if refused."""
        current = self.live(model, ns, key)
        if if_version is not None and (current is None or current.version != if_version):
            return None
        if current is None:
            return False
        del model[(ns, key)]
        floors[ns] = max(floors.get(ns, 0), current.version)
        return True

    # -- rules -----------------------------------------------------------------------

    @rule(ns=namespaces, key=keys, value=values, ttl=ttls)
    def put(self, ns: str, key: str, value: Any, ttl: float | None) -> None:
        self.touched.add((ns, key))
        expected = self.stage_put(self.model, self.floors, ns, key, value, ttl, None, False)
        item = self.store.namespace(ns).put(key, value, ttl=ttl)
        assert item.version == expected
        self.note_version(ns, key, item.version)
        assert item.expires_at == self.model[(ns, key)].expires_at
        self.seq += 1

    @rule(ns=namespaces, key=keys, value=values, right=st.booleans(), guess=versions)
    def cas_put(self, ns: str, key: str, value: Any, right: bool, guess: int) -> None:
        self.touched.add((ns, key))
        current = self.live(self.model, ns, key)
        if_version = current.version if (right and current is not None) else guess
        expected = self.stage_put(self.model, self.floors, ns, key, value, None, if_version, False)
        handle = self.store.namespace(ns)
        if expected is None:
            with pytest.raises(VersionConflict) as info:
                handle.put(key, value, if_version=if_version)
            assert info.value.key == key
            assert info.value.expected == if_version
            assert info.value.actual == (None if current is None else current.version)
        else:
            assert handle.put(key, value, if_version=if_version).version == expected
            self.note_version(ns, key, expected)
            self.seq += 1

    @rule(ns=namespaces, key=keys, value=values, ttl=ttls)
    def put_if_absent(self, ns: str, key: str, value: Any, ttl: float | None) -> None:
        self.touched.add((ns, key))
        expected = self.stage_put(self.model, self.floors, ns, key, value, ttl, None, True)
        handle = self.store.namespace(ns)
        if expected is None:
            with pytest.raises(VersionConflict):
                handle.put(key, value, ttl=ttl, if_absent=True)
        else:
            assert handle.put(key, value, ttl=ttl, if_absent=True).version == expected
            self.note_version(ns, key, expected)
            self.seq += 1

    @rule(ns=namespaces, key=keys, condition=delete_conditions)
    def delete(self, ns: str, key: str, condition: str | None) -> None:
        self.touched.add((ns, key))
        if_version, _ = self.condition_for(self.model, ns, key, condition)
        if condition == "right" and if_version is None:
            if_version = 1  # nothing live: a delete cannot be made create-only, so it fails
        expected = self.stage_delete(self.model, self.floors, ns, key, if_version)
        handle = self.store.namespace(ns)
        if expected is None:
            with pytest.raises(VersionConflict):
                handle.delete(key, if_version=if_version)
        else:
            assert handle.delete(key, if_version=if_version) is expected
            self.seq += int(expected)

    @rule(ns=namespaces, key=keys, value=values, in_tx=st.booleans())
    def delete_and_recreate(self, ns: str, key: str, value: Any, in_tx: bool) -> None:
        """Delete a key (creating it first if need be), re-create it, and prove that no
        version of an earlier incarnation passes a version check against the new one."""
        self.touched.add((ns, key))
        handle = self.store.namespace(ns)
        if self.live(self.model, ns, key) is None:
            created = self.stage_put(self.model, self.floors, ns, key, value, None, None, False)
            assert created is not None
            assert handle.put(key, value).version == created
            self.note_version(ns, key, created)
            self.seq += 1
        assert self.stage_delete(self.model, self.floors, ns, key, None) is True
        if in_tx:
            with self.store.transaction() as tx:
                tx.namespace(ns).delete(key)
        else:
            assert handle.delete(key) is True
        expected = self.stage_put(self.model, self.floors, ns, key, value, None, None, False)
        assert expected is not None
        assert handle.put(key, value).version == expected
        self.seq += 2
        old = sorted(self.given.get((ns, key), set()))
        self.note_version(ns, key, expected)
        before = self.store.last_seq
        for version in old:
            with pytest.raises(VersionConflict) as info:
                handle.put(key, "stale", if_version=version)
            assert info.value.actual == expected
            with pytest.raises(VersionConflict):
                handle.delete(key, if_version=version)
        assert self.store.last_seq == before

    @rule(seconds=st.one_of(st.sampled_from([0.0, 0.25, 1.0, 5.0, 30.0]), st.floats(0, 40)))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        now = self.clock()
        expired = [k for k, e in self.model.items() if not e.live(now)]
        for k in expired:
            gone = self.model.pop(k)
            self.floors[k[0]] = max(self.floors.get(k[0], 0), gone.version)
        result = self.store.sweep()
        assert result["expired"] == len(expired)
        self.seq += len(expired)

    @rule(
        writes=st.lists(
            st.one_of(
                st.tuples(st.just("put"), namespaces, keys, values, ttls, put_conditions),
                st.tuples(
                    st.just("delete"), namespaces, keys, st.none(), st.none(), delete_conditions
                ),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def transaction(
        self, writes: list[tuple[str, str, str, Any, float | None, str | None]]
    ) -> None:
        staged = dict(self.model)
        staged_floors = dict(self.floors)
        expected: list[int | bool] = []
        failed = False
        applied = 0
        plan: list[tuple[str, str, str, Any, float | None, int | None, bool]] = []
        for kind, ns, key, value, ttl, condition in writes:
            self.touched.add((ns, key))
            if_version, if_absent = self.condition_for(staged, ns, key, condition)
            if kind == "delete":
                if_absent = False  # deletes have no create-only form: None == unconditional
            plan.append((kind, ns, key, value, ttl, if_version, if_absent))
            if failed:
                continue
            outcome: int | bool | None
            if kind == "put":
                outcome = self.stage_put(
                    staged, staged_floors, ns, key, value, ttl, if_version, if_absent
                )
                applied += outcome is not None
            else:
                outcome = self.stage_delete(staged, staged_floors, ns, key, if_version)
                applied += outcome is True
            if outcome is None:
                failed = True
            else:
                expected.append(outcome)
        before = self.store.last_seq

        def run() -> list[Item | bool]:
            with self.store.transaction() as tx:
                for kind, ns, key, value, ttl, if_version, if_absent in plan:
                    if kind == "put":
                        tx.namespace(ns).put(
                            key, value, ttl=ttl, if_version=if_version, if_absent=if_absent
                        )
                    else:
                        tx.namespace(ns).delete(key, if_version=if_version)
            return tx.result

        if failed:
            with pytest.raises(VersionConflict):
                run()
            assert self.store.last_seq == before
            return
        result = run()
        got = [r.version if isinstance(r, Item) else r for r in result]
        assert got == expected
        for (kind, ns, key, *_), r in zip(plan, result, strict=True):
            if kind == "put":
                assert isinstance(r, Item)
                self.note_version(ns, key, r.version)
        self.model = staged
        self.floors = staged_floors
        self.seq += applied

    @rule(ns=namespaces, prefix=prefixes, limit=st.integers(1, 5))
    def scan(self, ns: str, prefix: str, limit: int) -> None:
        now = self.clock()
        want = sorted(
            (
                (key, e.value, e.version)
                for (n, key), e in self.model.items()
                if n == ns and key.startswith(prefix) and e.live(now)
            ),
            key=lambda row: utf8(row[0]),
        )
        got: list[tuple[str, Any, int]] = []
        cursor: str | None = None
        for _ in range(len(want) + 2):
            page = self.store.namespace(ns).scan(prefix=prefix, limit=limit, cursor=cursor)
            assert len(page.items) <= limit
            got.extend((it.key, it.value, it.version) for it in page.items)
            cursor = page.cursor
            if cursor is None:
                break
        assert cursor is None, "scan did not reach its last page"
        assert got == want

    @rule(ns=namespaces, wanted=st.lists(keys, max_size=5))
    def get_many(self, ns: str, wanted: list[str]) -> None:
        got = self.store.namespace(ns).get_many(wanted)
        want = {}
        for key in wanted:
            entry = self.live(self.model, ns, key)
            if entry is not None:
                want[key] = (entry.value, entry.version)
        assert {k: (it.value, it.version) for k, it in got.items()} == want

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def every_key_matches_the_model(self) -> None:
        for ns, key in self.touched:
            item = self.store.namespace(ns).get(key)
            entry = self.live(self.model, ns, key)
            if entry is None:
                assert item is None, (ns, key, item)
            else:
                assert item is not None, (ns, key)
                assert (item.value, item.version) == (entry.value, entry.version), (ns, key)
                assert item.expires_at == entry.expires_at

    @invariant()
    def counts_match_the_model(self) -> None:
        now = self.clock()
        for ns in NAMESPACES:
            want = sum(1 for (n, _), e in self.model.items() if n == ns and e.live(now))
            assert self.store.namespace(ns).count() == want

    @invariant()
    def change_log_grew_by_the_writes_applied(self) -> None:
        assert self.store.last_seq == self.seq

    @invariant()
    def store_is_sound(self) -> None:
        report = self.store.check()
        assert report.ok, report.problems


MODEL_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_store_matches_dict_model(backend: str) -> None:
    run_state_machine_as_test(lambda: StoreMachine(backend), settings=MODEL_SETTINGS)
