"""The CLI as a user meets it: every command's --help carries an example, the
example runs, docs/cli.md documents it, and errors exit with a named field."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: In the order their examples build on each other (put before get, delete last).
COMMANDS = [
    ["put"],
    ["get"],
    ["scan"],
    ["query"],
    ["watch"],
    ["stats"],
    ["check"],
    ["keys", "rotate"],
    ["delete"],
    ["demo"],
    ["token", "create"],
    ["token", "list"],
    ["token", "revoke"],
    ["audit", "verify"],
    ["audit", "seal"],
    ["audit", "prune"],
    ["events", "append"],
    ["events", "read"],
    ["events", "tail"],
    ["projections", "rebuild"],
    ["projections", "status"],
    ["worker"],
    ["serve"],
]
#: Commands that run until stopped: their example is started, must come up, and is
#: stopped with SIGTERM (a graceful shutdown exits 0).  ``--port 8720`` runs on a free
#: port instead, so a busy 8720 cannot fail the test.
LONG_RUNNING = {("serve",)}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["CLAWSTATE_URL"] = f"sqlite:///{tmp_path / 'state.db'}"
    env["CLAWSTATE_KEYRING"] = f"file:{tmp_path / 'keys.json'}"
    env["COLUMNS"] = "200"
    return env


def _cli(
    args: list[str], tmp_path: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _example(command: list[str], tmp_path: Path) -> str:
    out = _cli([*command, "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.strip() == "Example:" for line in lines), f"{command}: no example in --help"
    example = lines[[line.strip() for line in lines].index("Example:") + 1].strip()
    assert example.startswith("clawstate " + " ".join(command)), example
    return example


def test_every_command_has_a_documented_example_that_runs(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        example = _example(command, tmp_path)
        assert example in docs, f"docs/cli.md lacks the example of {' '.join(command)}"
        argv = shlex.split(example)[1:]
        if tuple(command) in LONG_RUNNING:
            _run_until_ready(argv, tmp_path, example)
            continue
        out = _cli(argv, tmp_path)
        assert out.returncode == 0, f"{example!r} failed: {out.stdout}{out.stderr}"


def _run_until_ready(argv: list[str], tmp_path: Path, example: str) -> None:
    import signal
    import time

    argv = ["0" if a == "8720" else a for a in argv]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawstate.cli", *argv],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("clawstate serve: http://"), (example, first, proc.stderr)
        url = first.split(": ", 1)[1].strip()
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, f"{example!r} never became ready"
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, f"{example!r} did not stop cleanly ({code})"


def test_put_get_round_trip_prints_json(tmp_path: Path) -> None:
    put = _cli(["put", "cfg", "feature", '{"on": true, "pct": 25}'], tmp_path)
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["version"] == 1
    got = _cli(["get", "cfg", "feature", "--value"], tmp_path)
    assert json.loads(got.stdout) == {"on": True, "pct": 25}
    piped = _cli(["put", "cfg", "other", "-"], tmp_path, stdin="[1, 2, 3]")
    assert piped.returncode == 0
    assert json.loads(_cli(["get", "cfg", "other", "--value"], tmp_path).stdout) == [1, 2, 3]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["put", "cfg", "k", "{not json"], 2, "value"),
        (["put", "cfg", "k", "1", "--ttl", "-5"], 2, "ttl"),
        (["put", "bad name!", "k", "1"], 2, "namespace"),
        (["get", "cfg", "missing"], 1, "not found"),
        (["query", "cfg", '{"filter": {"LIKE": {"a": 1}}}'], 2, "query.filter"),
    ],
)
def test_errors_name_the_field_and_exit_nonzero(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    # The store exists (read commands on a missing one say "no store at …": test_check.py).
    assert _cli(["put", "seed", "k", "1"], tmp_path).returncode == 0
    out = _cli(args, tmp_path)
    assert out.returncode == code, out.stdout + out.stderr
    assert needle in out.stderr


def test_conflict_exits_1_and_changes_nothing(tmp_path: Path) -> None:
    assert _cli(["put", "cfg", "k", "1"], tmp_path).returncode == 0
    out = _cli(["put", "cfg", "k", "2", "--if-version", "7"], tmp_path)
    assert out.returncode == 1
    assert "VersionConflict" in out.stderr
    assert json.loads(_cli(["get", "cfg", "k", "--value"], tmp_path).stdout) == 1


def test_put_keeps_the_expiry_only_when_asked(tmp_path: Path) -> None:
    """A put without --ttl drops an existing expiry (as Redis SET does); --keep-ttl keeps it."""
    assert _cli(["put", "n", "k", "1", "--ttl", "3600"], tmp_path).returncode == 0
    out = _cli(["put", "n", "k", "2", "--keep-ttl"], tmp_path)
    assert out.returncode == 0, out.stderr
    kept = json.loads(out.stdout)["expires_at"]
    assert kept is not None
    out = _cli(["put", "n", "k", "3"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["expires_at"] is None
    out = _cli(["put", "n", "k", "4", "--keep-ttl", "--ttl", "5"], tmp_path)
    assert out.returncode == 2 and "keep_ttl" in out.stderr
