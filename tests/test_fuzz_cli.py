"""Fuzz pass over the CLI: generated arguments for the data commands.

Why: the CLI is a third way in (after HTTP and the embedded API) and parses its own
text — JSON values, numbers in options, stream names — so it must apply the same
policy: bad input exits with a named error, never a traceback.  Commands run
in-process through Click's ``CliRunner`` (a subprocess per input would cost ~0.5 s).

Oracles, per invocation:

* no exception other than the ``SystemExit`` of a normal exit (``CliRunner`` records
  any other in ``result.exception``: a traceback a user would see);
* the exit status is 0 (done), 1 (not found / failed), 2 (usage or ``InvalidRequest``)
  or 3 (backend unavailable);
* a successful read prints strict JSON (no ``NaN`` / ``Infinity``: one policy for
  non-finite floats on every path);
* a refused write (status != 0) changes nothing: the store's ``last_seq`` and
  ``last_position`` are compared before and after.

``CLAWSTATE_TEST_FUZZ_CLI`` sets the examples in ``make test``;
``CLAWSTATE_TEST_FUZZ_CLI_SLOW`` those of the ``slow`` run.  The count is printed and
appended to ``CLAWSTATE_TEST_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import clawstate
from clawstate.cli import app

FAST_EXAMPLES = int(os.environ.get("CLAWSTATE_TEST_FUZZ_CLI", "150"))
SLOW_EXAMPLES = int(os.environ.get("CLAWSTATE_TEST_FUZZ_CLI_SLOW", "3000"))

NUMBERS = [
    "0",
    "1",
    "-1",
    str(2**63 - 1),
    str(2**63),
    str(2**63 + 1),
    str(10**30),
    "99999999999999999999",
    "1.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "",
    "x",
    "0x10",
]
JSON_TEXTS = [
    "1",
    '{"a": 1}',
    '{"a":1,"a":2}',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "[1e999]",
    '{"a": NaN}',
    str(2**63 + 1),
    str(10**30),
    "[" * 5000 + "]" * 5000,
    '{"a":' * 2000 + "1" + "}" * 2000,
    '"\\ud800"',
    "",
    "{",
    "null",
    '"text"',
    "-",
]
NAMES = ["cz", "cz2", "", "_tokens", "A" * 129, "a b", "\u00e9", "-x", "--", "*"]
KEYS = ["k1", "k2", "", "x" * 1025, "\u00e9", "-", "--help"]
STREAMS = ["cs-1", "", "a" * 1025, "-"]


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, so that most invocations reach the store."""
    return st.sampled_from([True] * 3 + [False]).flatmap(lambda ok: good if ok else bad)


name = mostly(st.sampled_from(NAMES[:2]), st.one_of(st.sampled_from(NAMES), st.text(max_size=6)))
key = mostly(st.sampled_from(KEYS[:2]), st.one_of(st.sampled_from(KEYS), st.text(max_size=6)))
number = mostly(
    st.sampled_from(["1", "2", "5"]), st.one_of(st.sampled_from(NUMBERS), st.integers().map(str))
)
JSON_ANY = st.one_of(
    st.sampled_from(JSON_TEXTS),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
        lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=3), c)),
        max_leaves=6,
    ).map(lambda v: json.dumps(v)),
)
json_text = mostly(
    st.sampled_from(['{"a": 1}', "[1, 2]", '"s"', "3", '{"filter": {"EQ": {"a": 1}}}']),
    JSON_ANY,
)


def opt(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``[flag, value]`` or nothing."""
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]))


@st.composite
def invocations(draw: st.DrawFn) -> tuple[list[str], str | None]:
    cmd = draw(
        st.sampled_from(
            ["put", "put", "get", "delete", "scan", "query", "append", "read", "watch", "stats"]
        )
    )
    stdin: str | None = None
    if cmd == "put":
        value = draw(json_text)
        if value == "-":
            stdin = draw(json_text)
        args = ["put", draw(name), draw(key), value]
        args += draw(opt("--ttl", number)) + draw(opt("--if-version", number))
        args += draw(st.sampled_from([[], ["--if-absent"], ["--raw"]]))
        args += draw(opt("--idempotency-key", st.sampled_from(["i1", "", "k" * 300])))
    elif cmd == "get":
        args = ["get", draw(name), draw(key), *draw(st.sampled_from([[], ["--value"]]))]
    elif cmd == "delete":
        args = ["delete", draw(name), draw(key), *draw(opt("--if-version", number))]
    elif cmd == "scan":
        args = ["scan", draw(name), *draw(opt("--limit", number)), *draw(opt("--prefix", key))]
        args += draw(opt("--cursor", st.sampled_from(["", "abc", "\u00e9", "eyJ4Ijox"])))
    elif cmd == "query":
        args = ["query", draw(name), draw(json_text)]
    elif cmd == "append":
        args = [
            "events",
            "append",
            draw(st.sampled_from(STREAMS)),
            draw(st.sampled_from(["Created", ""])),
        ]
        args += [draw(json_text)]
        args += draw(
            opt(
                "--expected-version",
                st.one_of(number, st.sampled_from(["any", "no_stream", "stream_exists", "ANY"])),
            )
        )
        args += draw(opt("--schema-version", number)) + draw(opt("--metadata", json_text))
        args += draw(
            opt("--id", st.sampled_from(["not-a-uuid", "0190a6f1-5b1c-7000-8000-000000000001"]))
        )
    elif cmd == "read":
        args = ["events", "read", draw(st.sampled_from(STREAMS))]
        args += draw(opt("--from-version", number)) + draw(opt("--limit", number))
        args += draw(st.sampled_from([[], ["--backwards"]]))
    elif cmd == "watch":
        args = ["watch", *draw(st.sampled_from([[], [draw(name)]]))]
        # not 1e999: an infinite timeout is "wait for ever", as documented
        args += ["--timeout", draw(st.sampled_from(["0", "0.01", "-1", "nan", "-inf"]))]
        args += [
            *draw(opt("--from-seq", number)),
            "--count",
            draw(st.sampled_from(["1", "0", "-1", str(2**64)])),
        ]
    else:
        args = ["stats", "--json"]
    return args, stdin


READS = {"get", "scan", "query", "read", "watch", "stats"}


@dataclass
class Ledger:
    name: str
    tried: int = 0
    started: float = field(default_factory=time.monotonic)
    codes: dict[int, int] = field(default_factory=dict)
    failures: dict[str, tuple[list[str], str]] = field(default_factory=dict)

    def fail(self, sig: str, args: list[str], detail: str) -> None:
        old = self.failures.get(sig)
        if old is None or len(repr(args)) < len(repr(old[0])):
            self.failures[sig] = ([a[:80] for a in args], detail)

    def report(self) -> str:
        lines = [f"{len(self.failures)} distinct failure(s) over {self.tried} invocations:"]
        for sig, (args, detail) in self.failures.items():
            lines.append(f"- {sig}\n    args: {args}\n    detail: {detail[:400]}")
        return "\n".join(lines)

    def publish(self) -> None:
        line = {
            "suite": self.name,
            "inputs": self.tried,
            "failures": len(self.failures),
            "seconds": round(time.monotonic() - self.started, 1),
            "exit_codes": dict(sorted(self.codes.items())),
        }
        print(f"\nfuzz {json.dumps(line)}")
        target = os.environ.get("CLAWSTATE_TEST_FUZZ_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")


@dataclass
class Cli:
    runner: CliRunner
    url: str
    env: dict[str, str]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    url = f"sqlite:///{tmp_path}/state.db"
    env = {"CLAWSTATE_URL": url, "CLAWSTATE_KEYRING": f"file:{tmp_path}/keys.json"}
    with clawstate.open(url, keyring=env["CLAWSTATE_KEYRING"]) as store:
        store.namespace("cz").put("k1", {"a": 1})
        store.events.append("cs-1", [clawstate.Event("Created", {"n": 1})])
    yield Cli(CliRunner(), url, env)


def _positions(c: Cli) -> tuple[int, int]:
    with clawstate.open(c.url, keyring=c.env["CLAWSTATE_KEYRING"], sweep_interval=0) as store:
        return store.last_seq, store.events.last_position


def check(c: Cli, args: list[str], stdin: str | None, ledger: Ledger) -> None:
    ledger.tried += 1
    cmd = args[1] if args[0] == "events" else args[0]
    before = _positions(c)
    result = c.runner.invoke(app, args, input=stdin, env=c.env, catch_exceptions=True)
    code = result.exit_code
    ledger.codes[code] = ledger.codes.get(code, 0) + 1
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
        ledger.fail(f"{cmd}: {type(exc).__name__} at {where}", args, repr(exc)[:300])
        return
    if code not in (0, 1, 2, 3):
        ledger.fail(f"{cmd}: exit status {code}", args, result.output[-300:])
    if code == 0 and cmd in READS and cmd != "stats" and "--help" not in args:
        for line in result.stdout.splitlines():
            try:
                msgspec.json.decode(line)
            except msgspec.DecodeError as err:
                ledger.fail(
                    f"{cmd}: printed text that is not strict JSON", args, f"{err}: {line[:200]}"
                )
                break
    if code != 0 and _positions(c) != before:
        ledger.fail(
            f"{cmd}: failed (exit {code}) but changed the store", args, result.output[-300:]
        )


def run_fuzz(c: Cli, ledger: Ledger, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(invocations())
    def one(inv: tuple[list[str], str | None]) -> None:
        check(c, inv[0], inv[1], ledger)

    try:
        one()
    finally:
        ledger.publish()
    assert not ledger.failures, ledger.report()


def test_fuzz_cli(cli: Cli) -> None:
    """Generated arguments for the data commands: exit codes, never a traceback."""
    run_fuzz(cli, Ledger("cli"), FAST_EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_cli_large(cli: Cli, request: pytest.FixtureRequest) -> None:
    """The larger run quoted in docs/reliability.md (``pytest -m slow``)."""
    expr = request.config.getoption("markexpr") or ""
    large = "slow" in expr and "not slow" not in expr
    # make test runs every test: unselected, the large run shrinks instead of skipping
    run_fuzz(cli, Ledger("cli-slow"), SLOW_EXAMPLES if large else FAST_EXAMPLES // 5)


def test_oracle_sees_a_traceback(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a command that raises a bare exception is reported."""
    ledger = Ledger("self-test")

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("boom")

    monkeypatch.setattr("clawstate.cli.kv.print_json", boom)
    check(cli, ["get", "cz", "k1"], None, ledger)
    assert [s for s in ledger.failures if s.startswith("get: ValueError")]
