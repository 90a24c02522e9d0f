"""What every ``clawstate`` command shares: the store options, opening the store,
errors and exit codes, JSON in and out, durations, and progress bars.

This module imports no other module of :mod:`clawstate.cli`; the command modules
(:mod:`.kv`, :mod:`.ops`, :mod:`.admin`, :mod:`.events`, :mod:`.projections`)
import it, and :mod:`clawstate.cli` mounts them.  That keeps the package free of
import circles: the options live here, not in the module that builds the app.

Exit status (``docs/cli.md``): ``0`` success; ``1`` not found, conflict, integrity
problem; ``2`` bad input or configuration (:class:`InvalidRequest`,
:class:`ConfigError`, a local-only command pointed at a server); ``3`` backend
unavailable.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeGuard

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import _open
from ..api import StoreAPI
from ..config import Config, load_config, parse_duration
from ..errors import (
    BackendUnavailable,
    ClawStateError,
    ConfigError,
    InvalidRequest,
)
from ..store import Store
from ..types import Change, Item

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_UNAVAILABLE",
    "console",
    "err_console",
    "exit_code",
    "fail",
    "item_doc",
    "jsonable",
    "local_store",
    "parse_json",
    "parse_seconds",
    "parse_value",
    "print_json",
    "progress_bar",
    "state",
    "store",
]

#: Not found, version conflict, integrity problem.
EXIT_FAILED = 1
#: Bad input or configuration: the message names the field.
EXIT_BAD_INPUT = 2
#: The backend (or server) cannot be reached.
EXIT_UNAVAILABLE = 3

console = Console(stderr=False)
err_console = Console(stderr=True)


class State:
    """The root command's options (``--url``, ``--config``), read by every command."""

    url: str | None = None
    config: str | None = None


state = State()


def exit_code(exc: ClawStateError) -> int:
    """The exit status of an error, as ``docs/cli.md`` lists them."""
    if isinstance(exc, InvalidRequest | ConfigError):
        return EXIT_BAD_INPUT
    if isinstance(exc, BackendUnavailable):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def fail(exc: ClawStateError) -> NoReturn:
    """Print ``exc`` as one unwrapped line and exit with its status.

    One line: a message (and a path in it) must survive grep and copy-paste.
    """
    err_console.print(
        f"error: {type(exc).__name__}: {exc}", markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(exit_code(exc))


def _open_store(create: bool) -> StoreAPI:
    try:
        return _open.open(state.url, config=state.config, sweep_interval=0, create=create)
    except ClawStateError as exc:
        fail(exc)


@contextmanager
def store(*, create: bool = True) -> Iterator[StoreAPI]:
    """The store the options name.  Read commands pass ``create=False``: on a missing
    store they fail with "no store at …" and create nothing (a typo in ``--url``
    must not leave a directory behind); write commands and ``serve`` create it.

    The store may be a remote one (``--url http://…``): the data commands use only
    the API both share.  Commands that need the store itself use :func:`local_store`.
    """
    opened = _open_store(create)
    try:
        yield opened
    except ClawStateError as exc:
        fail(exc)
    finally:
        opened.close()


def configured() -> Config:
    """The configuration the options name (``--url``, ``--config``, ``CLAWSTATE_*``),
    read without opening the store: for commands that need a setting first."""
    try:
        if state.url is None:
            return load_config(state.config)
        return load_config(state.config, url=state.url)
    except ClawStateError as exc:
        fail(exc)


def names_a_server(url: str) -> bool:
    """Whether ``url`` is a server's (``http(s)://``) rather than a store's."""
    return url.startswith(("http://", "https://"))


def is_local(opened: object) -> TypeGuard[Store]:
    """Whether ``opened`` is the store itself rather than a client of a server."""
    return isinstance(opened, Store)


def refuse_remote(command: str, why: str) -> NoReturn:
    """The one-line answer of a local-only command pointed at a server (exit 2)."""
    fail(
        InvalidRequest(
            "url",
            f"`clawstate {command}` is local-only ({why}); run it where the store is, "
            "with --url naming the database, not an http(s):// server",
        )
    )


@contextmanager
def local_store(command: str, why: str, *, create: bool = True) -> Iterator[Store]:
    """:func:`store`, refusing a remote store in one line before doing anything.

    ``command`` names the command (``"keys rotate"``), ``why`` says in a few words
    what it needs that a server does not offer, so the user knows where to run it.
    """
    with store(create=create) as opened:
        if not is_local(opened):
            refuse_remote(command, why)
        yield opened


def print_table(table: Table) -> None:
    """Print ``table`` on stdout with every header whole: on a terminal too narrow for
    the headers, the table is drawn wider than the terminal (which wraps the lines)
    rather than cut, since a cut header (``compr…``) leaves a column unexplained.
    Give the columns ``min_width=len(header)`` (:func:`add_columns`)."""
    needed = Measurement.get(console, console.options.update_width(10_000), table).minimum
    console.print(table, width=max(console.width, needed), crop=False)


def add_columns(table: Table, headers: tuple[str, ...], right: set[str]) -> None:
    """Add columns whose headers are never cut or wrapped (values fold instead)."""
    for header in headers:
        table.add_column(
            header,
            justify="right" if header in right else "left",
            min_width=len(header),
            overflow="fold",
        )


def parse_seconds(text: str, field: str) -> float:
    """Seconds from ``--ttl 1800``, ``--ttl 30m``, ``2h``, ``1d`` (the configuration's
    duration syntax, :func:`clawstate.config.parse_duration`); bad text exits 2 naming
    ``field``."""
    try:
        return parse_duration(text, field=field)
    except ConfigError as exc:
        fail(InvalidRequest(field, str(exc).removeprefix(f"{exc.field}: ")))


def jsonable(value: Any) -> Any:
    """Top-level bytes as ``{"$bytes": base64}``; anything else unchanged."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def item_doc(item: Item) -> dict[str, Any]:
    """An item as the CLI prints it."""
    return {
        "namespace": item.namespace,
        "key": item.key,
        "value": jsonable(item.value),
        "version": item.version,
        "etag": item.etag,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "expires_at": item.expires_at,
    }


def change_doc(change: Change) -> dict[str, Any]:
    """A change-log entry as ``watch`` prints it."""
    return {
        "seq": change.seq,
        "namespace": change.namespace,
        "key": change.key,
        "op": change.op,
        "version": change.version,
        "ts": change.ts,
    }


def _bytes_doc(value: Any) -> Any:
    """``json.dumps``'s fallback: nested bytes (msgpack namespaces) print as top-level
    bytes do, ``{"$bytes": base64}``, instead of crashing the command."""
    if isinstance(value, bytes | bytearray | memoryview):
        return jsonable(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _finite(doc: Any) -> Any:
    """``doc`` with NaN and infinities as None: how HTTP's JSON shows them."""
    if isinstance(doc, float) and not -math.inf < doc < math.inf:
        return None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc


def dumps(doc: Any) -> str:
    """JSON text, always valid JSON: ``json.dumps`` alone would print ``NaN``.

    New values cannot hold NaN or infinities (they are refused on every path), but
    values stored before that policy are read unchanged; they print as ``null``,
    exactly as a JSON reader over HTTP sees them.
    """
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False, default=_bytes_doc)
    except ValueError:
        return json.dumps(_finite(doc), ensure_ascii=False, allow_nan=False, default=_bytes_doc)


def print_json(doc: Any) -> None:
    """One JSON document (or JSON line) on stdout, flushed: ``watch`` output is live."""
    sys.stdout.write(dumps(doc) + "\n")
    sys.stdout.flush()


def parse_json(text: str, field: str) -> Any:
    """JSON from the command line, parsed exactly as the HTTP API parses a JSON body
    (:func:`clawstate._wire.decode_body`): ``NaN``, ``1e999`` and duplicate object
    names are refused, naming ``field``, instead of being read as Python's ``json``
    would (NaN, inf, the last duplicate)."""
    from .._wire import JSON, decode_body

    return decode_body(text.encode("utf-8", "surrogateescape"), JSON, field)


def parse_value(text: str, raw: bool) -> Any:
    """A ``put`` value: JSON (``-`` reads stdin), or the text itself with ``--raw``."""
    if text == "-":
        text = sys.stdin.read()
    if raw:
        return text
    try:
        return parse_json(text, "value")
    except InvalidRequest as exc:
        if "is not valid JSON" in str(exc):  # perhaps plain text: point at --raw
            why = str(exc).split(": ", 1)[1]
            exc = InvalidRequest("value", f"{why}; pass --raw to store a string")
        fail(exc)


def json_object(text: str, field: str) -> dict[str, Any]:
    """A JSON object argument (``-`` reads stdin), strict as HTTP; else exit 2."""
    if text == "-":
        text = sys.stdin.read()
    try:
        value = parse_json(text, field)
    except InvalidRequest as exc:
        fail(exc)
    if not isinstance(value, dict):
        fail(InvalidRequest(field, f"must be a JSON object, got {type(value).__name__}"))
    return value


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar on stderr, shown only when stderr is a terminal.

    Yields ``report(done, total)`` (``total`` None while unknown).  Piped or captured
    output (scripts, CI, tests) gets no bar and no control characters: stdout stays
    the command's JSON alone, and stderr only errors.
    """
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield report
