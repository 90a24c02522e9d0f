"""``clawstate events …`` and ``clawstate projections …``: the event store from a shell.

Two typer apps that ``cli.py`` mounts (``app.add_typer(events_app, name="events")``,
``app.add_typer(projections_app, name="projections")``).  They reuse the main
command's store options and error handling (``--url`` / ``--config``, exit
status 2 for bad input, 1 for a conflict, 3 for an unavailable backend), which
is why :mod:`clawstate.cli` is imported when a command runs rather than at
import time: ``cli.py`` imports this module while it is being built.
Events print as JSON lines, one per event.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._validate import parse_int
from .errors import InvalidRequest
from .types import ANY, NO_STREAM, STREAM_EXISTS, Event, ExpectedVersion, RecordedEvent

if TYPE_CHECKING:
    from .events.projections import Projection
    from .store import Store

__all__ = ["events_app", "projections_app", "worker"]

events_app = typer.Typer(
    help="The event store: append to streams, read them, follow the global log.\n\n"
    "Example:  clawstate events tail --from-position 0 --timeout 1",
    no_args_is_help=True,
    rich_markup_mode=None,
)
projections_app = typer.Typer(
    help="CQRS projections: their checkpoints and lag; reset and rebuild.\n\n"
    "Example:  clawstate projections status --json",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@contextmanager
def _store(*, create: bool = True) -> Iterator[Store]:
    from . import cli

    with cli._store(create=create) as store:
        yield store


def _fail(exc: InvalidRequest) -> Any:
    from . import cli

    return cli._fail(exc)


def _print(doc: Any) -> None:
    from . import cli

    cli._print_json(doc)  # one printer: always valid JSON (no NaN)


def _json_object(text: str, field: str) -> dict[str, Any]:
    from . import cli

    if text == "-":
        text = sys.stdin.read()
    try:
        value = cli.parse_json(text, field)  # strict, as HTTP: no NaN, 1e999, duplicates
    except InvalidRequest as exc:
        _fail(exc)
    if not isinstance(value, dict):
        _fail(InvalidRequest(field, f"must be a JSON object, got {type(value).__name__}"))
    return value  # type: ignore[no-any-return]


def _expected(text: str) -> ExpectedVersion:
    for sentinel in (ANY, NO_STREAM, STREAM_EXISTS):
        if text == sentinel:
            return sentinel
    if not text.isascii() or not text.lstrip("-").isdigit():
        _fail(
            InvalidRequest(
                "expected_version",
                f"must be a version number, any, no_stream or stream_exists; got {text!r}",
            )
        )
    try:
        return parse_int(text, "expected_version")
    except InvalidRequest as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


def event_doc(event: RecordedEvent) -> dict[str, Any]:
    """An event as the CLI (and JSON consumers) print it."""
    return {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "id": event.id,
        "recorded_at": event.recorded_at,
        "schema_version": event.schema_version,
    }


@events_app.command("append")
def append(
    stream: Annotated[str, typer.Argument(help="Stream name")],
    type: Annotated[str, typer.Argument(help="Event type")],
    data: Annotated[str, typer.Argument(help="Event data: a JSON object, or - for stdin")] = "{}",
    metadata: Annotated[
        str | None, typer.Option(help="Metadata JSON object (correlation_id, causation_id…)")
    ] = None,
    expected_version: Annotated[
        str,
        typer.Option(
            "--expected-version", help="A version number, any, no_stream or stream_exists"
        ),
    ] = "any",
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id (a UUID); a retry with it applies once")
    ] = None,
    schema_version: Annotated[
        int, typer.Option("--schema-version", help="Schema version of the data")
    ] = 1,
) -> None:
    """Append one event to a stream; prints its version and global position.

    \b
    Example:
      clawstate events append order-1 OrderPlaced '{"total": 9.5}' --expected-version no_stream
    """
    payload = _json_object(data, "data")
    meta = None if metadata is None else _json_object(metadata, "metadata")
    expected = _expected(expected_version)
    with _store() as store:
        kwargs: dict[str, Any] = {"schema_version": schema_version}
        if event_id is not None:
            kwargs["id"] = event_id
        event = Event(type, payload, meta, **kwargs)
        result = store.events.append(stream, [event], expected_version=expected)
        _print({"stream": stream, "version": result.version, "position": result.position})


@events_app.command("read")
def read(
    stream: Annotated[str, typer.Argument(help="Stream name")],
    from_version: Annotated[
        int | None, typer.Option("--from-version", help="First version (backwards: last)")
    ] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest first")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many events")] = None,
) -> None:
    """Print a stream's events as JSON lines, oldest first.

    \b
    Example:
      clawstate events read order-1
    """
    with _store(create=False) as store:
        for event in store.events.read(stream, from_version, backwards=backwards, limit=limit):
            _print(event_doc(event))


@events_app.command("tail")
def tail(
    from_position: Annotated[
        str,
        typer.Option(
            "--from-position", help="Start after this global position, or end (only new events)"
        ),
    ] = "end",
    stream_prefix: Annotated[
        str, typer.Option("--stream-prefix", help="Only streams starting with this")
    ] = "",
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Only this event type (repeatable)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Durable subscription name: resume after its checkpoint")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many idle seconds")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
) -> None:
    """Follow the global log as JSON lines: past events after --from-position, then live ones.

    \b
    Example:
      clawstate events tail --from-position 0 --timeout 1
    """
    from .events.store import EventFilter

    start: int | str = from_position
    if from_position != "end":
        try:
            start = parse_int(from_position, "from_position")
        except InvalidRequest as exc:
            _fail(exc)
    flt = EventFilter(stream_prefix, tuple(types or ())) if stream_prefix or types else None
    with _store(create=False) as store:
        seen = 0
        sub = store.events.subscribe(start, filter=flt, name=name, timeout=timeout)
        try:
            for event in sub:
                _print(event_doc(event))
                seen += 1
                if count is not None and seen >= count:
                    sub.commit()
                    break
        except KeyboardInterrupt:
            pass
        finally:
            sub.close()


def _load_projection(spec: str) -> Projection:
    from .events.projections import Projection

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        _fail(InvalidRequest("run", f"must be module:Class, got {spec!r}"))
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        _fail(InvalidRequest("run", f"cannot load {spec!r}: {exc}"))
    projection = target() if isinstance(target, type) else target
    if not isinstance(projection, Projection):
        _fail(InvalidRequest("run", f"{spec!r} is not a clawstate Projection"))
    return projection  # type: ignore[no-any-return]


@projections_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Show every projection's checkpoint and lag (events and seconds behind the log).

    \b
    Example:
      clawstate projections status --json
    """
    import msgspec

    with _store(create=False) as store:
        rows = store.events.projection_status()
        last = store.events.last_position
    if as_json:
        _print({"last_position": last, "projections": [msgspec.structs.asdict(r) for r in rows]})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"clawstate projections (log at position {last})")
    for col in ("projection", "read model", "position", "events", "lag (events)", "lag (s)"):
        table.add_column(col, justify="left" if col in ("projection", "read model") else "right")
    for r in rows:
        table.add_row(
            r.name,
            r.namespace,
            str(r.position),
            str(r.events),
            str(r.lag_events),
            f"{r.lag_seconds:.1f}",
        )
    Console().print(table)


@projections_app.command("rebuild")
def rebuild(
    name: Annotated[str, typer.Argument(help="Projection name")],
    run: Annotated[
        str | None,
        typer.Option(help="module:Class of the projection, to replay it now (else a reset)"),
    ] = None,
) -> None:
    """Reset a projection (checkpoint and read model) and, with --run, replay it from zero.

    Without --run, the next runner (e.g. ``clawstate worker``) rebuilds it.  Stop
    other runners of the projection first.

    \b
    Example:
      clawstate projections rebuild event-counts --run clawstate.events.projections:EventCounts
    """
    from .events.projections import reset_projection

    projection = None if run is None else _load_projection(run)
    if projection is not None and projection.name != name:
        _fail(InvalidRequest("run", f"{run!r} is the projection {projection.name!r}, not {name!r}"))
    with _store() as store:
        if projection is None:
            removed = reset_projection(store.events, name)
            _print({"name": name, "removed": removed, "handled": 0})
            return
        runner = store.events.projection_runner([projection])
        removed = runner.reset(name)
        handled = runner.run_until_idle()
        _print({"name": name, "removed": removed, "handled": handled})


def worker(
    projection: Annotated[
        list[str] | None,
        typer.Option(
            "--projection",
            "-p",
            help="module:Class of a projection to run (repeat for several)",
        ),
    ] = None,
    sweep_interval: Annotated[
        float | None,
        typer.Option(
            "--sweep-interval",
            help="Seconds between sweeps (default: the store's sweep_interval; 0: no sweep)",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(help="Events per projection page")] = 500,
    idle_wait: Annotated[
        float, typer.Option("--idle-wait", help="Longest wait for a commit before re-checking")
    ] = 1.0,
    once: Annotated[
        bool,
        typer.Option("--once", help="Catch up and sweep once, print what was done, exit"),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
) -> None:
    """Run projections and the sweep until SIGTERM or Ctrl-C (or, with --once, one pass).

    Each projection's read-model writes commit with its checkpoint; several workers
    may run the same projections (a page is committed by one of them only).  The
    sweep removes expired items, old change-log rows and the events stream metadata
    hides.  Logs are JSON lines on stderr.

    \b
    Example:
      clawstate worker --once --projection clawstate.events.projections:EventCounts
    """
    import signal
    import threading

    from . import cli
    from .config import load_config
    from .errors import ClawStateError
    from .server.logs import configure_logging
    from .worker import Worker

    projections = [_load_projection(spec) for spec in projection or ()]
    if sweep_interval is None:
        # The CLI's store never sweeps by itself (sweep_interval=0): read the configured
        # interval the way the store would have, and run the sweep here instead.
        try:
            url: dict[str, Any] = {"url": cli._state.url} if cli._state.url else {}
            sweep_interval = load_config(cli._state.config, **url).sweep_interval
        except ClawStateError as exc:
            cli._fail(exc)
    configure_logging(log_level)
    with _store() as store:
        w = Worker(
            store,
            projections,
            sweep_interval=sweep_interval,
            batch=batch,
            idle_wait=idle_wait,
        )
        if once:
            _print(w.run_once())
            return
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        w.run(stop)
        _print(w.status())
