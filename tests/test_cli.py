"""The CLI as a user meets it: every command's --help carries an example, the
example runs, docs/cli.md documents it, and errors exit with a named field."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    ["projections", "retry"],
    ["projections", "skip"],
    ["worker"],
    ["locks", "acquire"],
    ["locks", "get"],
    ["locks", "release"],
    ["timers", "schedule"],
    ["timers", "ls"],
    ["timers", "get"],
    ["timers", "cancel"],
    ["machines", "define"],
    ["machines", "create"],
    ["machines", "fire"],
    ["machines", "get"],
    ["machines", "history"],
    ["machines", "ls"],
    ["machines", "show"],
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


#: The id in ``token revoke``'s example: the test revokes the token ``token create``'s
#: example made instead (revoking an unknown id exits 1).
EXAMPLE_TOKEN_ID = "0123456789abcdef"


def test_every_command_has_a_documented_example_that_runs(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    created = ""
    for command in COMMANDS:
        example = _example(command, tmp_path)
        assert example in docs, f"docs/cli.md lacks the example of {' '.join(command)}"
        argv = shlex.split(example)[1:]
        if tuple(command) in LONG_RUNNING:
            _run_until_ready(argv, tmp_path, example)
            continue
        if command == ["token", "revoke"]:
            assert created and EXAMPLE_TOKEN_ID in argv, example
            argv = [created if a == EXAMPLE_TOKEN_ID else a for a in argv]
        if command[:2] == ["projections", "retry"]:
            _stop_a_projection(f"sqlite:///{tmp_path / 'state.db'}", argv[-1], tmp_path)
        out = _cli(argv, tmp_path)
        assert out.returncode == 0, f"{example!r} failed: {out.stdout}{out.stderr}"
        if command == ["token", "create"]:
            created = json.loads(out.stdout)["id"]


#: A projection whose handler fails on every event, so ``projections retry|skip`` have
#: a stuck projection to act on (run in a child, with the test's environment).
_STOP_A_PROJECTION = """
import sys
import clawstate
from clawstate.events import FailurePolicy, Projection, ProjectionStopped

class Poisoned(Projection):
    name = sys.argv[2]
    types = ()
    failure = FailurePolicy(retries=0)

    def handle_event(self, event, view):
        raise ValueError("poison")

options = {"token": sys.argv[3]} if sys.argv[3] else {}
with clawstate.open(sys.argv[1], **options) as store:
    store.events.append("poison", [clawstate.Event("Poison")])
    try:
        store.events.projection_runner([Poisoned()]).run_until_idle()
    except ProjectionStopped:
        pass
    else:
        raise SystemExit("the projection did not stop")
"""


def _stop_a_projection(url: str, name: str, cwd: Path, token: str = "") -> None:
    """Leave projection ``name`` stopped at a failing event in the store at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    if url.startswith("sqlite"):
        env = _env(cwd)
    out = subprocess.run(
        [sys.executable, "-c", _STOP_A_PROJECTION, url, name, token],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


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


# -- the command itself: version, help order, exit codes, durations ---------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    import clawstate

    out = _cli(["--version"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"clawstate {clawstate.__version__}"
    assert not (tmp_path / ".clawstate").exists()  # no store was opened


def test_help_lists_commands_in_the_order_a_user_meets_them(tmp_path: Path) -> None:
    from clawstate.cli import HELP_ORDER

    lines = _cli(["--help"], tmp_path).stdout.splitlines()
    start = [line.strip() for line in lines].index("Commands:") + 1
    listed = [line.split()[0] for line in lines[start:] if line.startswith("  ")]
    assert listed == list(HELP_ORDER)
    assert listed.index("events") < listed.index("stats")  # typer alone lists groups last


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("1800", 1800), ("30m", 1800), ("2h", 7200), ("1d", 86400)]
)
def test_ttl_takes_seconds_or_a_duration(tmp_path: Path, ttl: str, seconds: int) -> None:
    out = _cli(["put", "n", "k", "1", "--ttl", ttl], tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["expires_at"] - doc["updated_at"] == pytest.approx(seconds, abs=1)


@pytest.mark.parametrize(
    "args",
    [
        ["put", "n", "k", "1", "--ttl", "5 parsecs"],
        ["put", "n", "k", "1", "--ttl", "-5m"],
        ["worker", "--once", "--sweep-interval", "soon"],
        ["serve", "--graceful-timeout", "1 fortnight"],
    ],
    ids=["ttl-unit", "ttl-negative", "sweep-interval", "graceful-timeout"],
)
def test_a_bad_duration_exits_2_naming_the_option(tmp_path: Path, args: list[str]) -> None:
    out = _cli(args, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    field = {"put": "ttl", "worker": "sweep_interval", "serve": "graceful_timeout"}[args[0]]
    assert f"InvalidRequest: {field}: " in out.stderr and "30s" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--url", "nosuch://x", "get", "n", "k"],
        ["--config", "missing.toml", "stats"],
        ["--url", "sqlite:///{tmp}/typo/x.db", "get", "n", "k"],  # "no store at …"
    ],
    ids=["scheme", "config-file", "no-store"],
)
def test_a_config_error_exits_2(tmp_path: Path, args: list[str]) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = _cli(args, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("error: ConfigError: ") and out.stderr.count("\n") == 1


def test_revoking_an_unknown_token_exits_1(tmp_path: Path) -> None:
    made = _cli(["token", "create", "--scope", "metrics"], tmp_path)
    assert made.returncode == 0, made.stderr
    out = _cli(["token", "revoke", "0123456789abcdef"], tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert json.loads(out.stdout)["revoked"] is False and "not found" in out.stderr
    real = _cli(["token", "revoke", json.loads(made.stdout)["id"]], tmp_path)
    assert real.returncode == 0 and json.loads(real.stdout)["revoked"] is True


# -- projections from the current directory ------------------------------------------------

PROJECTION_MODULE = """
from clawstate.events.projections import Projection


class Orders(Projection):
    name = "orders-seen"
    types = ("OrderPlaced",)

    def handle_event(self, event, view):
        view.put(event.stream, {"total": event.data["total"]})
"""


def test_worker_imports_a_projection_from_the_current_directory(tmp_path: Path) -> None:
    """The console script's sys.path starts at its bin directory, not the current one:
    ``--projection myapp.x:Y`` must still import ``./myapp/x.py`` (as ``python -m`` does)."""
    script = Path(sys.executable).with_name("clawstate")
    assert script.exists(), f"the console script is not installed beside {sys.executable}"
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "x.py").write_text(PROJECTION_MODULE)
    appended = _cli(["events", "append", "order-1", "OrderPlaced", '{"total": 9.5}'], tmp_path)
    assert appended.returncode == 0, appended.stderr
    out = subprocess.run(
        [
            str(script),
            "worker",
            "--once",
            "--sweep-interval",
            "0",
            "--projection",
            "myapp.x:Orders",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["handled"] == 1
    got = _cli(["get", "orders-seen", "order-1", "--value"], tmp_path)
    assert json.loads(got.stdout) == {"total": 9.5}


# -- progress bars ----------------------------------------------------------------------------


def test_progress_bars_stay_off_stderr_when_it_is_not_a_terminal(tmp_path: Path) -> None:
    """Captured (as in scripts and CI), stderr carries no bar and no control characters."""
    assert _cli(["put", "n", "k", "1"], tmp_path).returncode == 0
    assert _cli(["events", "append", "s-1", "Happened"], tmp_path).returncode == 0
    spec = "clawstate.events.projections:EventCounts"
    for args in (
        ["check", "--deep"],
        ["keys", "rotate"],
        ["index", "n"],
        ["projections", "rebuild", "event-counts", "--run", spec],
        ["worker", "--once", "--projection", spec],
    ):
        out = _cli(args, tmp_path)
        assert out.returncode == 0, (args, out.stderr)
        json.loads(out.stdout.splitlines()[-1])
        assert "\x1b" not in out.stderr and "━" not in out.stderr, (args, out.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--deep"],
        [
            "projections",
            "rebuild",
            "event-counts",
            "--run",
            "clawstate.events.projections:EventCounts",
        ],
        ["worker", "--once", "--projection", "clawstate.events.projections:EventCounts"],
    ],
    ids=["check", "rebuild", "worker"],
)
def test_progress_bars_show_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    import io

    from rich.console import Console
    from typer.testing import CliRunner

    from clawstate.cli import _common, app

    for name in list(os.environ):
        if name.startswith("CLAWSTATE_"):
            monkeypatch.delenv(name)
    for name, value in _env(tmp_path).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    assert runner.invoke(app, ["put", "n", "k", "1"]).exit_code == 0
    for i in range(3):
        assert runner.invoke(app, ["events", "append", f"s-{i}", "Happened"]).exit_code == 0
    screen = io.StringIO()
    monkeypatch.setattr(
        _common, "err_console", Console(file=screen, force_terminal=True, width=100)
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    label = {"check": "checking values", "projections": "rebuilding", "worker": "catching up"}
    assert label[args[0]] in screen.getvalue()
    assert "\x1b" in screen.getvalue()  # drawn as a live bar


# -- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", ["40", "60", "200"])
def test_stats_table_headers_are_never_cut(tmp_path: Path, columns: str) -> None:
    assert _cli(["put", "a-rather-long-namespace-name", "k", "1"], tmp_path).returncode == 0
    env = {**_env(tmp_path), "COLUMNS": columns}
    out = subprocess.run(
        [sys.executable, "-m", "clawstate.cli", "stats"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "namespace" in line and "┃" in line)
    cells = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert cells == [
        "namespace",
        "backend",
        "items",
        "bytes",
        "serializer",
        "compress>",
        "encrypted",
    ]
    assert "…" not in out.stdout


# -- against a server -------------------------------------------------------------------------

EXAMPLE_PROJECTION = "clawstate.events.projections:EventCounts"
#: Every command over ``--url http://…``: True if it works there, else it must refuse in
#: one line, exit 2, saying it is local-only.
OVER_HTTP: list[tuple[list[str], bool]] = [
    (["put", "carts", "u42", '{"total": 1}', "--ttl", "30m"], True),
    (["get", "carts", "u42"], True),
    (["scan", "carts"], True),
    (["query", "carts", '{"filter": {"EQ": {"total": 1}}}'], True),
    (["watch", "carts", "--from-seq", "0", "--timeout", "0.5"], True),
    (["stats"], True),
    (["stats", "--json"], True),
    (["check", "--deep"], True),
    (["delete", "carts", "u42"], True),
    (["demo"], True),
    (["events", "append", "order-1", "OrderPlaced", '{"total": 9.5}'], True),
    (["events", "read", "order-1"], True),
    (["events", "tail", "--from-position", "0", "--timeout", "0.5"], True),
    (["projections", "status"], True),
    (["projections", "status", "--json"], True),
    (["projections", "retry", "order-totals"], True),
    (["projections", "skip", "order-totals"], True),
    (["locks", "acquire", "cli-job", "--ttl", "1m", "--owner", "cli"], True),
    (["locks", "get", "cli-job"], True),
    (["locks", "release", "cli-job", "--token", "1"], True),
    (["timers", "schedule", "cli-t", "--handler", "myapp.jobs:remind", "--after", "1h"], True),
    (["timers", "ls", "--prefix", "cli-"], True),
    (["timers", "get", "cli-t"], True),
    (["timers", "cancel", "cli-t"], True),
    (
        [
            "machines",
            "define",
            "cli-order",
            '{"initial": "pending", "states": ["pending", "paid"], '
            '"transitions": [{"event": "pay", "from": "pending", "to": "paid"}]}',
        ],
        True,
    ),
    (["machines", "create", "cli-order", "o1", "--data", '{"total": 9}'], True),
    (["machines", "fire", "cli-order", "o1", "pay", "--expected-version", "1"], True),
    (["machines", "get", "cli-order", "o1"], True),
    (["machines", "history", "cli-order", "o1"], True),
    (["machines", "ls"], True),
    (["machines", "show", "cli-order", "--dot"], True),
    (["projections", "rebuild", "event-counts"], False),
    (["projections", "rebuild", "event-counts", "--run", EXAMPLE_PROJECTION], False),
    (["worker", "--once"], False),
    (["keys", "rotate"], False),
    (["index", "carts"], False),
    (["token", "create", "--scope", "metrics"], False),
    (["token", "list"], False),
    (["token", "revoke", "0123456789abcdef"], False),
    (["audit", "verify"], False),
    (["audit", "seal"], False),
    (["audit", "prune", "--keep-days", "90"], False),
    (["serve", "--port", "0"], False),
]


@pytest.fixture(scope="module")
def server() -> Any:
    from services import require_module

    require_module("litestar")
    from clawstate.server.testing import ServerProcess

    with ServerProcess() as proc:
        yield proc


def _all_commands() -> set[tuple[str, ...]]:
    import typer

    from clawstate.cli import app

    found: set[tuple[str, ...]] = set()

    def walk(group: Any, path: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, (*path, name))
            else:
                found.add((*path, name))

    walk(typer.main.get_command(app), ())
    return found


def test_every_command_is_tried_over_http() -> None:
    every = _all_commands()
    tried = {tuple(args[:2]) if tuple(args[:2]) in every else (args[0],) for args, _ in OVER_HTTP}
    assert tried == every


@pytest.mark.parametrize(
    ("args", "works"), OVER_HTTP, ids=lambda v: " ".join(v) if isinstance(v, list) else str(v)
)
def test_over_http_a_command_works_or_says_it_is_local_only(
    server: Any, tmp_path: Path, args: list[str], works: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["CLAWSTATE_TOKEN"] = server.admin_token
    env["COLUMNS"] = "200"
    if args[:2] in (["projections", "retry"], ["projections", "skip"]):
        # Something to retry or skip: a projection stopped on the server (run here).
        _stop_a_projection(server.url, args[2], tmp_path, server.admin_token)
    out = subprocess.run(
        [sys.executable, "-m", "clawstate.cli", "--url", server.url, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in out.stderr, out.stderr
    if works:
        assert out.returncode == 0, out.stdout + out.stderr
    else:
        assert out.returncode == 2, out.stdout + out.stderr
        assert out.stderr.count("\n") == 1 and "is local-only" in out.stderr, out.stderr
        assert out.stdout == ""
    assert _tree_names(tmp_path) == []  # nothing local was created


def _tree_names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
