"""Every ```python block of README.md and docs/*.md runs, as written.

A page's blocks run in order in one namespace (a later block may use what an earlier
one defined, as a reader following the page would), in a fresh temporary directory,
so ``clawstate.open()`` is the embedded SQLite store there.  A block that needs more
says so in an HTML comment on the line before its fence, invisible on the rendered page:

- ``<!-- snippet: needs server -->``: runs against a real ``clawstate serve``; the
  block's ``http://127.0.0.1:8720`` is that server's URL, and ``token`` (or the
  placeholder ``"cst_…"``) is its admin token;
- ``<!-- snippet: needs postgres -->`` / ``<!-- snippet: needs redis -->``: the
  service must be reachable (``tests/services.py``: skipped on a laptop without it,
  a failure in CI);
- ``<!-- snippet: skip <reason> -->``: not run (a signature, a fragment); the reason
  is required, so every skip says why.

The CLI's examples are run by ``tests/test_cli.py``.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services import require, require_module, tcp_probe

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_MARK = re.compile(r"<!--\s*snippet:\s*(?P<what>[a-z]+)\s*(?P<arg>.*?)\s*-->")
#: The server address and token placeholder the docs use.
DOC_URL = "http://127.0.0.1:8720"
DOC_TOKEN = '"cst_…"'
SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
}


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    needs: str | None = None  # "server", "postgres", "redis"
    skip: str | None = None  # the reason

    @property
    def where(self) -> str:
        return f"{_shown(self.page)}:{self.line}"


def _shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def snippets(page: Path) -> list[Snippet]:
    """The ```python blocks of ``page``, with the marker before each (if any)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```python":
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{_shown(page)}:{start + 1}: unclosed ```python")
        i += 1
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        mark = _MARK.search(lines[before]) if before >= 0 else None
        needs = skip = None
        if mark is not None:
            what, arg = mark["what"], mark["arg"]
            if what == "skip":
                assert arg, f"{_shown(page)}:{start + 1}: a skip must give its reason"
                skip = arg
            elif what == "needs":
                assert arg in {"server", *SERVICES}, f"unknown snippet need {arg!r}"
                needs = arg
            else:
                raise AssertionError(f"{_shown(page)}:{start}: unknown marker {what!r}")
        found.append(Snippet(page, start + 1, "\n".join(body) + "\n", needs, skip))
    return found


def test_the_extractor_reads_markers(tmp_path: Path) -> None:
    """The extractor itself: a block, a marked block, a skipped one."""
    page = tmp_path / "page.md"
    text = (
        "# t\n\n```python\nx = 1\n```\n\n<!-- snippet: needs redis -->\n"
        "```python\ny = x\n```\n<!-- snippet: skip a signature -->\n\n```python\nf(\n```\n"
        "```text\nnot python\n```\n"
    )
    page.write_text(text, encoding="utf-8")
    got = snippets(page)
    assert [(s.line, s.code, s.needs, s.skip) for s in got] == [
        (3, "x = 1\n", None, None),
        (8, "y = x\n", "redis", None),
        (13, "f(\n", None, "a signature"),
    ]


PAGES_WITH_CODE = [p for p in PAGES if snippets(p)]


def _run(snippet: Snippet, namespace: dict[str, Any]) -> None:
    """Run one block; a top-level ``await`` runs on a fresh event loop."""
    code = compile(
        snippet.code, snippet.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


def _close_all(namespace: dict[str, Any]) -> None:
    """Close the stores a page opened (in its namespace), so no thread outlives the test."""
    for value in list(namespace.values()):
        close = getattr(value, "close", None)
        if type(value).__module__.startswith("clawstate") and callable(close):
            try:
                result = close()
                if inspect.isawaitable(result):
                    asyncio.run(result)  # type: ignore[arg-type]
            except Exception:  # a store the page closed itself, or a subscription
                pass


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    require_module("litestar")
    from clawstate.server.testing import ServerProcess

    with ServerProcess() as proc:
        yield proc


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_snippet_on_the_page_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    for name in list(os.environ):
        if name.startswith("CLAWSTATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    ran = 0
    try:
        for snippet in snippets(page):
            if snippet.skip is not None:
                continue
            code = snippet.code
            if snippet.needs == "server":
                srv = request.getfixturevalue("server")
                namespace["token"] = srv.admin_token
                code = code.replace(DOC_URL, srv.url).replace(DOC_TOKEN, repr(srv.admin_token))
            elif snippet.needs is not None:
                require(snippet.needs, tcp_probe(*SERVICES[snippet.needs]))
            try:
                _run(Snippet(snippet.page, snippet.line, code), namespace)
            except Exception:
                pytest.fail(
                    f"the snippet at {snippet.where} fails as written:\n{traceback.format_exc()}",
                    pytrace=False,
                )
            ran += 1
    finally:
        _close_all(namespace)
    if not ran:
        reasons = "; ".join(sorted({s.skip or "" for s in snippets(page)}))
        why = f"every snippet on the page is marked skip: {reasons}"
        pytest.skip(why)  # inapplicable: each snippet's marker gives its reason
