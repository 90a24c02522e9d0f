"""No test may skip in a way CI cannot see.

CI runs with ``CLAWSTATE_REQUIRE_SERVICES=1``: a missing service, package or binary must
fail there, and may only skip on a laptop.  ``tests/services.py`` is the one place that
decides (``require``, ``require_module``, ``require_binary``); a bare
``pytest.importorskip``, ``pytest.skip`` or ``skipif`` elsewhere would skip in CI too and
leave a green run that did not test what it says.  This test reads every test file and
refuses those forms, and shows that the helpers fail under REQUIRE_SERVICES.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: The only file allowed to skip by itself.
DECIDER = TESTS / "services.py"

#: A skip of a combination that does not exist (not of a missing dependency) is allowed
#: when its line says so with this comment and why, e.g.
#: ``pytest.skip("msgpack has no integers past 64 bits")  # inapplicable: msgpack``.
INAPPLICABLE = "# inapplicable:"

#: Attribute names that skip a test (pytest.importorskip, pytest.skip, pytest.mark.skip,
#: pytest.mark.skipif).  ``pytest.mark.xfail`` is not here: it still runs the test.
SKIPPERS = {"importorskip", "skip", "skipif"}


def _of_pytest(node: ast.Attribute) -> bool:
    """``pytest.skip`` / ``pytest.mark.skipif`` (or ``mark.skip`` of an imported ``mark``),
    not an attribute of our own that happens to be named ``skip`` (``runner.skip(...)``,
    a snippet's ``.skip`` field)."""
    base = node.value
    if isinstance(base, ast.Name):
        return base.id in {"pytest", "mark"}
    return isinstance(base, ast.Attribute) and base.attr == "mark"


def _skips(path: Path) -> list[str]:
    """``file:line: form`` for every use of a skipping pytest attribute in ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SKIPPERS and _of_pytest(node):
            if INAPPLICABLE in lines[node.lineno - 1] and node.attr == "skip":
                continue  # a combination that cannot exist, said so on the line
            found.append(f"{path}:{node.lineno}: .{node.attr}")
    return found


def _test_sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if p != DECIDER)


def test_the_scan_reads_the_whole_suite() -> None:
    names = {p.name for p in _test_sources()}
    assert {"test_crash.py", "test_cache.py", "test_server.py", "writer.py"} <= names


def test_no_test_skips_outside_services() -> None:
    offenders = [hit for path in _test_sources() for hit in _skips(path)]
    assert not offenders, (
        "use tests/services.py (require, require_module, require_binary) so that "
        f"CLAWSTATE_REQUIRE_SERVICES=1 turns the skip into a failure: {offenders}"
    )


@pytest.mark.parametrize(
    "source",
    [
        "import pytest\npytest.importorskip('x')\n",
        "import pytest\nhttpx = pytest.importorskip('httpx')\n",
        "import pytest, shutil\n"
        "@pytest.mark.skipif(shutil.which('redis-server') is None, reason='x')\n"
        "def test_a(): pass\n",
        "import pytest\ndef test_a():\n    pytest.skip('backend has not landed yet')\n",
        "import pytest\n@pytest.mark.skip\ndef test_a(): pass\n",
        "from pytest import mark\n@mark.skipif(True, reason='x')\ndef test_a(): pass\n",
        "import pytest\npytest.importorskip('x')  # inapplicable: not for imports\n",
    ],
)
def test_the_scan_sees_every_form(source: str, tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert _skips(path), source


def test_our_own_attributes_named_skip_are_not_skips(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("def test_a(runner, snippet):\n    runner.skip('totals')\n    snippet.skip\n")
    assert _skips(path) == []


def test_an_inapplicable_combination_may_skip_when_it_says_so(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text(
        "import pytest\ndef test_a():\n"
        "    pytest.skip('msgpack has no big integers')  # inapplicable: msgpack\n"
    )
    assert _skips(path) == []


HELPER_CALLS = [
    "require_module('clawstate_no_such_module')",
    "require_binary('clawstate-no-such-binary')",
    "require('nothing', tcp_probe('127.0.0.1', 1))",
]


@pytest.mark.parametrize("call", HELPER_CALLS)
@pytest.mark.parametrize("required", ["0", "1"])
def test_helpers_skip_on_a_laptop_and_fail_in_ci(call: str, required: str, tmp_path: Path) -> None:
    """Each helper, in a pytest of its own: skipped without the variable, failed with it."""
    (tmp_path / "test_probe.py").write_text(
        f"from services import require, require_binary, require_module, tcp_probe\n\n"
        f"def test_it() -> None:\n    {call}\n"
    )
    env = dict(os.environ, CLAWSTATE_REQUIRE_SERVICES=required, PYTHONPATH=str(TESTS))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if required == "1":
        assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout
        assert "CLAWSTATE_REQUIRE_SERVICES=1 requires it" in proc.stdout
    else:
        assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout
        assert "install it with" in proc.stdout or "start it with" in proc.stdout


def test_a_missing_module_at_module_level_skips_the_file(tmp_path: Path) -> None:
    """``require_module`` replaces a module-level ``importorskip``: it must be allowed
    there (pytest refuses a bare module-level skip)."""
    (tmp_path / "test_probe.py").write_text(
        "from services import require_module\n\n"
        "require_module('clawstate_no_such_module')\n\n"
        "def test_it() -> None:\n    pass\n"
    )
    env = dict(os.environ, CLAWSTATE_REQUIRE_SERVICES="0", PYTHONPATH=str(TESTS))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 5 and "1 skipped" in proc.stdout, proc.stdout  # 5: none ran
