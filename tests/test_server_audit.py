"""The audit log as an attacker meets it: every way of rewriting it without the key is
caught by ``verify`` (and ``clawstate audit verify`` exits 1 naming the first bad
record); pruning leaves a checkpoint that keeps it verifiable; old unkeyed chains stay
readable and get pinned; a flood of bad tokens costs a bounded number of records; the
head reaches the logs and ``/metrics`` so an outside copy can be compared.

docs/server.md, "Audit log: tamper model", lists what is and is not detected; each
"detected" line has a test here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import require_module

require_module("litestar")

from litestar.testing import TestClient  # noqa: E402

import clawstate  # noqa: E402
from clawstate.errors import ConfigError, IntegrityError  # noqa: E402
from clawstate.keyring import Keyring  # noqa: E402
from clawstate.server.app import ServerSettings, create_app  # noqa: E402
from clawstate.server.audit import (  # noqa: E402
    AUDIT_NAMESPACE,
    CHECKPOINT,
    GENESIS,
    HEAD,
    AuditLog,
    _canonical,
    _mac,
    _pointer,
    append,
    audit_key,
    prune,
    read_head,
    seal,
    verify,
)
from clawstate.server.auth import TokenStore  # noqa: E402
from clawstate.store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with clawstate.open(
        f"sqlite:///{tmp_path / 'state.db'}", keyring=f"file:{tmp_path / 'keys.json'}"
    ) as s:
        s._keyring_for(True)  # the store's keyring exists (as after any keyed append)
        yield s


def _fill(store: Store, n: int, *, start_ts: float | None = None) -> None:
    for i in range(n):
        entry: dict[str, Any] = {"action": "token.create", "status": 200, "i": i}
        if start_ts is not None:
            entry["ts"] = start_ts + i
        append(store, [entry])


def _records(store: Store) -> dict[str, Any]:
    ns = store._system_namespace(AUDIT_NAMESPACE)
    return {it.key: it.value for it in ns.scan(limit=10_000).items}


def _raw_put(store: Store, key: str, value: Any) -> None:
    """What someone with write access to the database (but not the keyring) can do."""
    store._system_namespace(AUDIT_NAMESPACE).put(key, value)


def _raw_delete(store: Store, key: str) -> None:
    store._system_namespace(AUDIT_NAMESPACE).delete(key)


def _key(n: int) -> str:
    return f"{n:020d}"


def _legacy_chain(store: Store, n: int) -> None:
    """Records as the pre-keyed server wrote them: sha256 chain, unkeyed head."""
    prev = GENESIS
    for i in range(1, n + 1):
        rec: dict[str, Any] = {"action": "denied", "status": 401, "n": i, "prev": prev}
        rec["hash"] = prev = hashlib.sha256(prev.encode() + _canonical(rec)).hexdigest()
        _raw_put(store, _key(i), rec)
    _raw_put(store, HEAD, {"n": n, "hash": prev})


# -- the chain is keyed -------------------------------------------------------------------


def test_a_fresh_chain_is_keyed_and_verifies(store: Store) -> None:
    _fill(store, 5)
    report = verify(store)
    assert report.ok, report.problems
    assert (report.records, report.seq, report.keyed, report.first_bad) == (5, 5, True, None)
    recs = _records(store)
    assert all("mac" in recs[_key(i)] and "kid" in recs[_key(i)] for i in range(1, 6))
    assert read_head(store) == (5, report.head)


def test_the_mac_key_is_derived_not_the_keyring_key(store: Store) -> None:
    _fill(store, 1)
    ring = store._keyring_for(False)
    assert ring is not None
    kid, raw = ring.primary()
    derived = audit_key(ring, kid)
    assert derived != raw and len(derived) == 32


class TestTamperingWithoutTheKey:
    """Each way someone with database access but without the keyring can rewrite the
    log; every one must make ``verify`` fail and name where."""

    N = 8

    @pytest.fixture(autouse=True)
    def _chain(self, store: Store) -> None:
        _fill(store, self.N)
        assert verify(store).ok

    def test_edit_one_record(self, store: Store) -> None:
        rec = _records(store)[_key(3)]
        _raw_put(store, _key(3), {**rec, "actor": "someone-else"})
        report = verify(store)
        assert not report.ok and report.first_bad == 3
        assert report.problems[0].startswith("record 3:")

    def test_edit_one_record_and_recompute_an_unkeyed_hash(self, store: Store) -> None:
        rec = dict(_records(store)[_key(3)])
        rec["actor"] = "someone-else"
        rec.pop("mac")
        rec.pop("kid")
        rec["hash"] = hashlib.sha256(str(rec["prev"]).encode() + _canonical(rec)).hexdigest()
        _raw_put(store, _key(3), rec)
        report = verify(store)
        assert not report.ok and report.first_bad == 3

    def test_truncate_the_tail_and_point_the_head_at_the_new_end(self, store: Store) -> None:
        recs = _records(store)
        for n in range(6, self.N + 1):
            _raw_delete(store, _key(n))
        head = dict(recs[HEAD])
        head.update(n=5, hash=recs[_key(5)]["mac"])  # the MAC of the head cannot be redone
        _raw_put(store, HEAD, head)
        report = verify(store)
        assert not report.ok
        assert any("head" in p and "MAC" in p for p in report.problems)

    def test_truncate_the_tail_with_an_unkeyed_head(self, store: Store) -> None:
        recs = _records(store)
        for n in range(6, self.N + 1):
            _raw_delete(store, _key(n))
        _raw_put(store, HEAD, {"n": 5, "hash": recs[_key(5)]["mac"]})
        assert not verify(store).ok

    def test_truncate_the_tail_keeping_the_old_head(self, store: Store) -> None:
        _raw_delete(store, _key(self.N))
        report = verify(store)
        assert not report.ok and any("chain ends at" in p for p in report.problems)

    def test_rechain_with_another_key(self, store: Store, tmp_path: Path) -> None:
        forged = Keyring.generate(store._keyring_for(False).primary_id)  # type: ignore[union-attr]
        edited = {**_records(store)[_key(2)], "actor": "forger"}
        _raw_put(store, _key(2), edited)
        self._rechain(store, forged)
        report = verify(store)
        assert not report.ok and report.first_bad == 1

    def test_rechain_as_an_unkeyed_chain(self, store: Store) -> None:
        prev = GENESIS
        recs = _records(store)
        for n in range(1, self.N + 1):
            rec = {k: v for k, v in recs[_key(n)].items() if k not in ("mac", "kid")}
            rec["prev"] = prev
            rec["hash"] = prev = hashlib.sha256(prev.encode() + _canonical(rec)).hexdigest()
            _raw_put(store, _key(n), rec)
        _raw_put(store, HEAD, {"n": self.N, "hash": prev})
        report = verify(store)
        assert not report.ok  # an unsealed unkeyed chain never passes
        assert any("unkeyed" in p for p in report.problems)

    def test_delete_a_record_in_the_middle(self, store: Store) -> None:
        _raw_delete(store, _key(4))
        report = verify(store)
        assert not report.ok and report.first_bad == 5

    def test_insert_a_record(self, store: Store) -> None:
        recs = _records(store)
        _raw_put(store, _key(self.N + 1), {**recs[_key(self.N)], "n": self.N + 1})
        assert not verify(store).ok

    def test_delete_the_head(self, store: Store) -> None:
        _raw_delete(store, HEAD)
        report = verify(store)
        assert not report.ok and any("head is missing" in p for p in report.problems)

    def test_forge_a_checkpoint_to_hide_a_prefix(self, store: Store) -> None:
        recs = _records(store)
        for n in range(1, 4):
            _raw_delete(store, _key(n))
        _raw_put(
            store,
            CHECKPOINT,
            {"n": 3, "hash": recs[_key(3)]["mac"], "kid": recs[_key(3)]["kid"], "mac": "0" * 64},
        )
        report = verify(store)
        assert not report.ok and any("checkpoint" in p for p in report.problems)

    def test_delete_a_prefix_without_a_checkpoint(self, store: Store) -> None:
        for n in range(1, 4):
            _raw_delete(store, _key(n))
        report = verify(store)
        assert not report.ok and report.first_bad == 4

    @staticmethod
    def _rechain(store: Store, ring: Keyring) -> None:
        kid = ring.primary_id
        key = audit_key(ring, kid)
        prev = GENESIS
        recs = _records(store)
        n = 0
        for k in sorted(r for r in recs if r.isdigit()):
            n += 1
            rec = {x: v for x, v in recs[k].items() if x != "mac"}
            rec.update(prev=prev, kid=kid)
            rec["mac"] = prev = _mac(key, prev, rec)
            _raw_put(store, k, rec)
        _raw_put(store, HEAD, _pointer(key, kid, HEAD, n, prev))


def test_someone_with_the_keyring_can_rewrite_it(store: Store) -> None:
    """The documented limit: the MAC is only as secret as the keyring."""
    _fill(store, 4)
    ring = store._keyring_for(False)
    assert ring is not None
    _raw_put(store, _key(2), {**_records(store)[_key(2)], "actor": "insider"})
    TestTamperingWithoutTheKey._rechain(store, ring)
    assert verify(store).ok


def test_a_missing_keyring_never_starts_a_second_chain(tmp_path: Path) -> None:
    """The chain's key id is recorded like an encrypted value's: the store does not
    open without it, and no keyring is made in its place."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with clawstate.open(url, keyring=f"file:{tmp_path / 'keys.json'}") as s:
        _fill(s, 2)
        kid = s._keyring_for(False).primary_id  # type: ignore[union-attr]
    os.rename(tmp_path / "keys.json", tmp_path / "keys.saved")
    with pytest.raises(ConfigError) as err:
        clawstate.open(url, keyring=f"file:{tmp_path / 'keys.json'}")
    assert kid in str(err.value)
    assert not (tmp_path / "keys.json").exists()  # nothing made in its place


def test_a_keyring_without_the_chains_key_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with clawstate.open(url, keyring=f"file:{tmp_path / 'keys.json'}") as s:
        _fill(s, 2)
        ring = s._keyring_for(False)
        assert ring is not None
        s._keyring = Keyring.generate("other")  # a keyring that lacks the chain's key
        with pytest.raises(ConfigError, match=ring.primary_id):
            append(s, [{"action": "x"}])
        with pytest.raises(ConfigError, match=ring.primary_id):
            seal(s)
        report = verify(s)
        assert not report.ok and report.first_bad == 1
        assert read_head(s)[0] == 2  # nothing written


def test_a_store_with_no_keyring_at_all_keeps_an_unkeyed_chain(store: Store) -> None:
    """A database URL opened without config or keyring= has no place for a keyring:
    the audit log still works, as the documented unkeyed hash chain."""
    import msgspec

    store.config = msgspec.structs.replace(store.config, keyring=None)
    store._keyring = None
    append(store, [{"action": "token.create"}])
    append(store, [{"action": "token.list"}])
    report = verify(store)
    assert report.ok and not report.keyed and report.legacy_records == 2
    assert seal(store) is False
    with pytest.raises(ConfigError, match="keyring"):
        prune(store, keep_records=1)


# -- old unkeyed chains -------------------------------------------------------------------


class TestLegacyChains:
    def test_an_unsealed_legacy_chain_is_reported_not_passed(self, store: Store) -> None:
        _legacy_chain(store, 4)
        report = verify(store)
        assert not report.ok and report.legacy_records == 4
        assert "audit seal" in report.problems[-1]

    def test_seal_pins_it_and_it_verifies(self, store: Store) -> None:
        _legacy_chain(store, 4)
        assert seal(store) is True
        assert seal(store) is False  # once
        report = verify(store)
        assert report.ok, report.problems
        assert (report.records, report.legacy_records, report.keyed) == (5, 4, True)
        pin = _records(store)[_key(5)]
        assert pin["action"] == "audit.keyed" and pin["legacy"]["n"] == 4

    def test_appending_seals_it_first(self, store: Store) -> None:
        _legacy_chain(store, 3)
        assert append(store, [{"action": "token.list"}]) == [5]
        assert verify(store).ok

    def test_a_sealed_legacy_record_cannot_be_edited(self, store: Store) -> None:
        _legacy_chain(store, 4)
        seal(store)
        rec = dict(_records(store)[_key(2)])
        rec["status"] = 200
        rec["hash"] = hashlib.sha256(str(rec["prev"]).encode() + _canonical(rec)).hexdigest()
        _raw_put(store, _key(2), rec)
        report = verify(store)
        assert not report.ok and report.first_bad == 3  # record 3 no longer links

    def test_a_broken_legacy_chain_stays_broken_after_sealing(self, store: Store) -> None:
        _legacy_chain(store, 3)
        _raw_put(store, _key(2), {**_records(store)[_key(2)], "status": 200})
        seal(store)
        report = verify(store)
        assert not report.ok and report.first_bad == 2


# -- retention ------------------------------------------------------------------------------


class TestPrune:
    def test_keep_records_leaves_a_checkpoint_that_verifies(self, store: Store) -> None:
        _fill(store, 20)
        report = prune(store, keep_records=5)
        assert (report.pruned, report.checkpoint) == (15, 15)
        v = verify(store)
        assert v.ok, v.problems
        assert (v.records, v.checkpoint, v.seq) == (5, 15, 20)
        append(store, [{"action": "after"}])
        assert verify(store).ok

    def test_keep_days(self, store: Store) -> None:
        now = time.time()
        _fill(store, 6, start_ts=now - 10 * 86400)  # ts: 10 days ago, +1 s each
        _fill(store, 3)
        report = prune(store, keep_days=5, now=now)
        assert report.pruned == 6
        assert verify(store).ok

    def test_each_limit_prunes_on_its_own(self, store: Store) -> None:
        now = time.time()
        _fill(store, 4, start_ts=now - 10 * 86400)
        _fill(store, 10)
        assert prune(store, keep_days=5, keep_records=8, now=now).pruned == 6

    def test_pruning_in_chunks_and_again(self, store: Store) -> None:
        _fill(store, 30)
        for keep in (25, 12, 12, 1):
            prune(store, keep_records=keep)
            assert verify(store).ok
        v = verify(store)
        assert (v.records, v.checkpoint) == (1, 29)

    def test_a_broken_prefix_is_not_pruned(self, store: Store) -> None:
        _fill(store, 10)
        _raw_put(store, _key(3), {**_records(store)[_key(3)], "actor": "x"})
        with pytest.raises(IntegrityError, match="record 3"):
            prune(store, keep_records=2)
        assert _key(1) in _records(store)  # nothing deleted
        assert verify(store).first_bad == 3

    def test_moving_the_checkpoint_without_the_key_is_caught(self, store: Store) -> None:
        _fill(store, 10)
        prune(store, keep_records=6)
        recs = _records(store)
        cp = dict(recs[CHECKPOINT])
        _raw_delete(store, _key(5))
        cp.update(n=5, hash=recs[_key(5)]["mac"])
        _raw_put(store, CHECKPOINT, cp)
        report = verify(store)
        assert not report.ok and any("checkpoint" in p for p in report.problems)

    def test_deleting_the_checkpoint_is_caught(self, store: Store) -> None:
        _fill(store, 10)
        prune(store, keep_records=6)
        _raw_delete(store, CHECKPOINT)
        report = verify(store)
        assert not report.ok and report.first_bad == 5

    def test_pruning_a_legacy_chain_seals_it_first(self, store: Store) -> None:
        _legacy_chain(store, 6)
        prune(store, keep_records=2)
        v = verify(store)
        assert v.ok, v.problems
        assert v.checkpoint == 5


# -- the CLI --------------------------------------------------------------------------------


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["CLAWSTATE_URL"] = f"sqlite:///{tmp_path / 'state.db'}"
    env["CLAWSTATE_KEYRING"] = f"file:{tmp_path / 'keys.json'}"
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("tamper", "bad"),
    [
        ("edit", 3),
        ("truncate", None),
        ("rechain", 1),
        ("delete", 5),
    ],
)
def test_cli_verify_exits_1_and_names_the_first_bad_record(
    store: Store, tmp_path: Path, tamper: str, bad: int | None
) -> None:
    _fill(store, 6)
    recs = _records(store)
    if tamper == "edit":
        _raw_put(store, _key(3), {**recs[_key(3)], "actor": "x"})
    elif tamper == "truncate":
        _raw_delete(store, _key(6))
        _raw_put(store, HEAD, {**recs[HEAD], "n": 5, "hash": recs[_key(5)]["mac"]})
    elif tamper == "rechain":
        TestTamperingWithoutTheKey._rechain(store, Keyring.generate("k1"))
    else:
        _raw_delete(store, _key(4))
    store.close()
    out = _cli(["audit", "verify"], tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert not report["ok"] and report["first_bad"] == bad
    if bad is not None:
        assert f"record {bad}" in out.stderr
    else:
        assert "head" in out.stderr


def test_cli_prune_seal_and_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with clawstate.open(url, keyring=f"file:{tmp_path / 'keys.json'}") as s:
        s._keyring_for(True)
        _legacy_chain(s, 5)
    assert _cli(["audit", "verify"], tmp_path).returncode == 1  # unsealed
    sealed = _cli(["audit", "seal"], tmp_path)
    assert sealed.returncode == 0 and json.loads(sealed.stdout) == {"sealed": True}
    missing = _cli(["audit", "prune"], tmp_path)
    assert missing.returncode == 2 and "keep_days" in missing.stderr
    for bad in (["--keep-days", "0"], ["--keep-days", "nan"], ["--keep-records", "0"]):
        out = _cli(["audit", "prune", *bad], tmp_path)
        assert out.returncode == 2, (bad, out.stderr)
    pruned = _cli(["audit", "prune", "--keep-records", "2"], tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["checkpoint"] == 4
    ok = _cli(["audit", "verify"], tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["checkpoint"] == 4


def test_config_audit_retention(tmp_path: Path) -> None:
    (tmp_path / "clawstate.toml").write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[keyring]\nsource = "file:{tmp_path / "keys.json"}"\n'
        "[audit]\nkeep_records = 3\n"
    )
    with clawstate.open(config=str(tmp_path / "clawstate.toml")) as s:
        assert s.config.audit_keep_records == 3
        _fill(s, 7)
    env_args = ["--config", str(tmp_path / "clawstate.toml"), "audit", "prune"]
    out = _cli(env_args, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pruned"] == 4
    for bad in ("0", "-1", '"x"', "true"):
        (tmp_path / "bad.toml").write_text(f"[audit]\nkeep_records = {bad}\n")
        with pytest.raises(ConfigError, match=r"audit\.keep_records"):
            clawstate.open(f"sqlite:///{tmp_path / 'b.db'}", config=str(tmp_path / "bad.toml"))
    for bad in ("0", "-1", "nan", "inf", "1e9", '"x"'):
        (tmp_path / "bad.toml").write_text(f"[audit]\nkeep_days = {bad}\n")
        with pytest.raises(ConfigError, match=r"audit\.keep_days"):
            clawstate.open(f"sqlite:///{tmp_path / 'b.db'}", config=str(tmp_path / "bad.toml"))


# -- failed authentications are aggregated --------------------------------------------------

BAD_HEADERS: list[dict[str, str]] = [
    {},
    {"authorization": "Basic dXNlcjpwYXNz"},
    {"authorization": "Bearer nonsense"},
    {"authorization": "Bearer cst_0123456789abcdef_" + "A" * 43},
]


def _app(store: Store, **settings: Any) -> Any:
    return create_app(store, ServerSettings(**settings))


def test_600_bad_tokens_add_a_bounded_number_of_records(store: Store) -> None:
    """The issue's figure: 600 bad-token requests added 234 records before."""
    TokenStore(store).create(["admin"])
    before = read_head(store)[0]
    app = _app(store, audit_interval=3600.0)
    with TestClient(app) as client:
        codes = set()
        for i in range(600):
            r = client.get("/v1/info", headers=BAD_HEADERS[i % len(BAD_HEADERS)])
            codes.add(r.status_code)
        assert codes <= {401, 429} and 401 in codes
    # shutdown flushed the interval: ONE record for the one client address
    recs = [v for k, v in _records(store).items() if k.isdigit() and v["n"] > before]
    failed = [r for r in recs if r["action"] == "auth.failed"]
    assert len(recs) <= 2 and len(failed) == 1
    assert failed[0]["count"] == 600
    assert sum(failed[0]["reasons"].values()) == 600
    assert set(failed[0]["reasons"]) == {"missing", "malformed", "unknown"}
    assert verify(store).ok


def test_failures_are_written_per_interval(store: Store) -> None:
    TokenStore(store).create(["admin"])
    app = _app(store, audit_interval=0.2, auth_failure_rate=1e9)
    with TestClient(app) as client:
        for _ in range(50):
            client.get("/v1/info")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(
                isinstance(v, dict) and v.get("action") == "auth.failed"
                for v in _records(store).values()
            ):
                break
            time.sleep(0.05)
        for _ in range(30):
            client.get("/v1/info")
    failed = [v for v in _records(store).values() if v.get("action") == "auth.failed"]
    assert len(failed) >= 2  # one interval ended while the server ran, then shutdown
    assert sum(r["count"] for r in failed) == 80


def test_many_addresses_are_bounded_too(store: Store) -> None:
    async def flood() -> None:
        log = AuditLog(store, failure_interval=3600, max_addresses=10)
        for i in range(5000):
            log.note_failure(f"10.0.{i // 256}.{i % 256}", "unknown")
        await log.close()

    asyncio.run(flood())
    failed = [v for v in _records(store).values() if v.get("action") == "auth.failed"]
    assert len(failed) == 11
    assert sum(r["count"] for r in failed) == 5000
    assert next(r for r in failed if r["remote"] == "_other")["count"] == 4990


# -- the head leaves the database -------------------------------------------------------------


def test_head_is_exported_to_logs_and_metrics(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    admin, _ = TokenStore(store).create(["admin"])
    auth = {"authorization": f"Bearer {admin}"}
    _fill(store, 3)
    app = _app(store)
    app.state.audit.head_every = 2
    with caplog.at_level(logging.INFO, logger="clawstate.server.audit"):
        with TestClient(app) as client:
            for _ in range(4):
                assert client.get("/v1/admin/stats", headers=auth).status_code == 200
            report = client.get("/v1/admin/audit/verify", headers=auth).json()
            text = client.get("/metrics", headers=auth).text
    assert report["ok"]
    heads = [r for r in caplog.records if r.getMessage() == "audit head"]
    seqs = [int(getattr(r, "audit_seq", -1)) for r in heads]
    assert seqs and seqs[0] == 3  # at startup
    assert max(seqs) >= report["seq"] - 1 and seqs == sorted(seqs)
    n, digest = read_head(store)
    assert f"clawstate_audit_head_seq {float(n)}" in text
    assert f'clawstate_audit_head_info{{hash="{digest[:16]}"}} 1.0' in text


def test_server_start_seals_a_legacy_chain_and_prunes(store: Store, tmp_path: Path) -> None:
    _legacy_chain(store, 6)
    TokenStore(store).create(["admin"])
    import msgspec

    store.config = msgspec.structs.replace(store.config, audit_keep_records=3)
    with TestClient(_app(store)):
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and store._system_namespace(AUDIT_NAMESPACE).get(CHECKPOINT) is None
        ):
            time.sleep(0.05)
    v = verify(store)
    assert v.ok, v.problems
    assert v.checkpoint == 4 and v.records == 3


def test_server_refuses_to_start_without_the_chains_key(store: Store) -> None:
    _fill(store, 2)
    TokenStore(store).create(["admin"])
    store._keyring = Keyring.generate("other")  # a keyring that lacks the chain's key
    with pytest.raises(BaseException) as err:  # the test client wraps it in a group
        with TestClient(_app(store)):
            pass
    assert any(
        isinstance(e, ConfigError) and "audit log is sealed" in str(e) for e in _leaves(err.value)
    )


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc
