"""``clawstate events …`` and ``clawstate projections …`` as a user meets them: each
command's --help carries an example, docs/cli.md documents it, the examples run in
order against a fresh store, and errors exit with a named field.

The commands live in ``clawstate.cli.events`` and ``clawstate.cli.projections``;
``clawstate.cli`` mounts them, and the tests run the installed command's module.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    ["events", "append"],
    ["events", "read"],
    ["events", "tail"],
    ["projections", "rebuild"],
    ["projections", "status"],
]


def _cli(
    args: list[str], tmp_path: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["CLAWSTATE_URL"] = f"sqlite:///{tmp_path / 'state.db'}"
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=tmp_path,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _example(command: list[str], tmp_path: Path) -> str:
    out = _cli([*command, "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert "Example:" in lines, f"{command}: no example in --help"
    example = lines[lines.index("Example:") + 1]
    assert example.startswith("clawstate " + " ".join(command)), example
    return example


def test_every_event_command_has_a_documented_example_that_runs(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    outputs = {}
    for command in COMMANDS:
        example = _example(command, tmp_path)
        assert f"`{example}`" in docs, f"docs/cli.md lacks the example of {' '.join(command)}"
        out = _cli(shlex.split(example)[1:], tmp_path)
        assert out.returncode == 0, f"{example!r} failed: {out.stdout}{out.stderr}"
        outputs[" ".join(command)] = out.stdout
    assert json.loads(outputs["events append"]) == {
        "stream": "order-1",
        "version": 1,
        "position": 1,
    }
    [event] = [json.loads(line) for line in outputs["events read"].splitlines()]
    assert (event["type"], event["data"], event["version"]) == ("OrderPlaced", {"total": 9.5}, 1)
    assert [json.loads(line)["position"] for line in outputs["events tail"].splitlines()] == [1]
    assert json.loads(outputs["projections rebuild"])["handled"] == 1
    status = json.loads(outputs["projections status"])
    assert status["projections"][0]["name"] == "event-counts"
    assert status["projections"][0]["lag_events"] == 0


def test_groups_have_an_example_too(tmp_path: Path) -> None:
    for group in ("events", "projections"):
        out = _cli([group, "--help"], tmp_path)
        assert out.returncode == 0 and "Example:" in out.stdout


def test_durable_tail_and_rebuild_without_a_class(tmp_path: Path) -> None:
    for i in range(3):
        assert (
            _cli(["events", "append", f"s-{i}", "Seen", "-"], tmp_path, stdin='{"i": 1}').returncode
            == 0
        )
    first = _cli(
        ["events", "tail", "--from-position", "0", "--name", "t", "--count", "2"], tmp_path
    )
    assert [json.loads(x)["position"] for x in first.stdout.splitlines()] == [1, 2]
    rest = _cli(["events", "tail", "--name", "t", "--timeout", "0.2"], tmp_path)
    assert [json.loads(x)["position"] for x in rest.stdout.splitlines()] == [3]
    filtered = _cli(
        ["events", "tail", "--from-position", "0", "--stream-prefix", "s-1", "--timeout", "0.2"],
        tmp_path,
    )
    assert [json.loads(x)["stream"] for x in filtered.stdout.splitlines()] == ["s-1"]
    run = [
        "projections",
        "rebuild",
        "event-counts",
        "--run",
        "clawstate.events.projections:EventCounts",
    ]
    assert _cli(run, tmp_path).returncode == 0
    reset = _cli(["projections", "rebuild", "event-counts"], tmp_path)
    assert json.loads(reset.stdout) == {"name": "event-counts", "removed": 1, "handled": 0}
    table = _cli(["projections", "status"], tmp_path)
    assert table.returncode == 0 and "clawstate projections" in table.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["events", "append", "s", "T", "{not json"], 2, "data"),
        (["events", "append", "s", "T", "[1]"], 2, "data"),
        (["events", "append", "s", "$T"], 2, "events[0].type"),
        (["events", "append", "s", "T", "--expected-version", "later"], 2, "expected_version"),
        (["events", "append", "s", "T", "--expected-version", "3"], 1, "WrongExpectedVersion"),
        (["events", "append", "s", "T", "--id", "nope"], 2, "events[0].id"),
        (["events", "read", "s", "--limit", "0"], 2, "limit"),
        (["events", "tail", "--from-position", "start"], 2, "from_position"),
        (["projections", "rebuild", "nope"], 2, "name"),
        (["projections", "rebuild", "x", "--run", "nomodule"], 2, "run"),
        (
            ["projections", "rebuild", "x", "--run", "clawstate.events.projections:EventCounts"],
            2,
            "run",
        ),
    ],
)
def test_errors_name_the_field_and_exit_nonzero(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    # The store exists (read commands on a missing one say "no store at …": test_check.py).
    assert _cli(["events", "append", "seed", "T"], tmp_path).returncode == 0
    out = _cli(args, tmp_path)
    assert out.returncode == code, out.stdout + out.stderr
    assert needle in out.stderr
