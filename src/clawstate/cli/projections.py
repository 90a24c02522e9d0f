"""``clawstate projections …`` and ``clawstate worker``: run, inspect and rebuild
CQRS projections (and the sweep).

``--projection`` / ``--run`` take ``module:Class`` and import it the way
``python -m`` would: from the current directory first, so ``myapp.x:Y`` works from
a project's root under the installed ``clawstate`` script too.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InvalidRequest
from ._common import (
    add_columns,
    configured,
    fail,
    is_local,
    local_store,
    names_a_server,
    parse_seconds,
    print_json,
    print_table,
    refuse_remote,
    store,
)
from .ops import run_with_bar

if TYPE_CHECKING:
    from ..events.projections import Projection, ProjectionRunner

__all__ = ["load_projection", "projections_app", "worker"]

projections_app = typer.Typer(
    help="CQRS projections: their checkpoints, lag and failures; reset, rebuild, retry "
    "and skip.\n\n"
    "Example:  clawstate projections status --json",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def load_projection(spec: str, field: str = "projection") -> Projection:
    """The projection ``module:attr`` names (a Projection class, built with no
    arguments, or an instance), imported with the current directory on the path."""
    from ..events.projections import Projection

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        fail(InvalidRequest(field, f"must be module:Class, got {spec!r}"))
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # The console script's sys.path starts at its own bin directory; ``python -m``
        # and ``python -c`` put the current directory first.  Do as they do.
        sys.path.insert(0, cwd)
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        fail(InvalidRequest(field, f"cannot load {spec!r}: {exc}"))
    projection = target() if isinstance(target, type) else target
    if not isinstance(projection, Projection):
        fail(InvalidRequest(field, f"{spec!r} is not a clawstate Projection"))
    return projection


def _load_machine(spec: str) -> None:
    """Register the class-based machine ``module:Class`` (current directory on the
    path, as for projections) so this process can run its guards and actions."""
    from ..errors import ClawStateError
    from ..machines.definition import load_class

    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        load_class(spec)
    except ClawStateError as exc:
        fail(exc)


def _caught_up(runner: ProjectionRunner, last: int) -> tuple[int, int | None]:
    """Progress of a catch-up run: the slowest projection's position of ``last``."""
    rows = runner.status()
    return (min((r.position for r in rows), default=last), max(last, 1))


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
    from rich.table import Table

    with store(create=False) as opened:
        rows = opened.events.projection_status()
        last = opened.events.last_position
    if as_json:
        print_json(
            {"last_position": last, "projections": [msgspec.structs.asdict(r) for r in rows]}
        )
        return
    table = Table(title=f"clawstate projections (log at position {last})")
    headers = ("projection", "read model", "position", "events", "lag (events)", "lag (s)")
    add_columns(table, (*headers, "failing at", "error"), set(headers[2:]) | {"failing at"})
    for r in rows:
        stuck = "" if r.stuck_position is None else str(r.stuck_position)
        if stuck and r.stopped:
            stuck += " (stopped)"
        table.add_row(
            r.name,
            r.namespace,
            str(r.position),
            str(r.events),
            str(r.lag_events),
            f"{r.lag_seconds:.1f}",
            stuck,
            r.last_error or "",
        )
    print_table(table)


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
    other runners of the projection first.  A terminal shows a progress bar.

    \b
    Example:
      clawstate projections rebuild event-counts --run clawstate.events.projections:EventCounts
    """
    from ..events.projections import reset_projection

    projection = None if run is None else load_projection(run, "run")
    if projection is not None and projection.name != name:
        fail(InvalidRequest("run", f"{run!r} is the projection {projection.name!r}, not {name!r}"))
    with store() as opened:
        if not is_local(opened):
            # A remote runner cannot reset a projection yet: the checkpoint and the read
            # model are emptied through the store's own system namespaces.
            refuse_remote("projections rebuild", "it resets the checkpoint in the store")
        if projection is None:
            removed = reset_projection(opened.events, name)
            print_json({"name": name, "removed": removed, "handled": 0})
            return
        runner = opened.events.projection_runner([projection])
        removed = runner.reset(name)
        last = opened.events.last_position
        handled = run_with_bar(
            f"rebuilding {name}", runner.run_until_idle, lambda: _caught_up(runner, last)
        )
        print_json({"name": name, "removed": removed, "handled": handled})


@projections_app.command("retry")
def retry(name: Annotated[str, typer.Argument(help="Projection name")]) -> None:
    """Let a projection stopped at a failing event try that event again.

    Fix the cause first (the handler, or what it needs); its attempts then start
    over and the next runner of the projection (e.g. ``clawstate worker``) tries the
    event at once, applying its failure policy afresh.  ``projections status`` shows
    the error and the stuck position.  Prints the projection's status.

    \b
    Example:
      clawstate projections retry order-totals
    """
    import msgspec

    from ..events.projections import retry_projection

    with store(create=False) as opened:
        # A remote store's RemoteEvents has the surface these read (store, _read_rows,
        # _clock), as ProjectionRunner does over HTTP; the parameter names EventStore only.
        events = opened.events
        print_json(msgspec.structs.asdict(retry_projection(events, name)))  # type: ignore[arg-type]


@projections_app.command("skip")
def skip(name: Annotated[str, typer.Argument(help="Projection name")]) -> None:
    """Move a stuck projection past its failing event without applying it.

    The event and its error are kept in the projection's dead-letter namespace
    (``dead-letters`` unless its FailurePolicy names another; key
    ``NAME/POSITION``, ``reason: skipped``) and the checkpoint moves past it, in
    one transaction.  Prints that dead-letter record.

    \b
    Example:
      clawstate projections skip order-totals
    """
    from ..events.projections import skip_projection

    with store(create=False) as opened:
        print_json(skip_projection(opened.events, name))  # type: ignore[arg-type]  # as retry


def worker(
    projection: Annotated[
        list[str] | None,
        typer.Option(
            "--projection",
            "-p",
            help="module:Class of a projection to run (repeat for several)",
        ),
    ] = None,
    machine: Annotated[
        list[str] | None,
        typer.Option(
            "--machine",
            help="module:Class of a class-based state machine whose timeouts and actions "
            "this worker fires (repeat for several)",
        ),
    ] = None,
    sweep_interval: Annotated[
        str | None,
        typer.Option(
            "--sweep-interval",
            help="Time between sweeps: 30s, 5m… (default: the store's sweep_interval; 0: none)",
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
    timers: Annotated[
        bool,
        typer.Option(
            "--timers/--no-timers",
            help="Fire due durable timers (docs/timers.md); --no-timers leaves them to "
            "another worker",
        ),
    ] = True,
    timer_handler: Annotated[
        list[str] | None,
        typer.Option(
            "--timer-handlers",
            help="Allow-list: a module whose functions may run as timer handlers (repeat "
            "for several; default: any importable function — see the trust model in "
            "docs/timers.md)",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
) -> None:
    """Run projections, the sweep and the timers until SIGTERM or Ctrl-C (or --once).

    Each projection's read-model writes commit with its checkpoint; several workers
    may run the same projections (a page is committed by one of them only).  The
    sweep removes expired items, old change-log rows and the events stream metadata
    hides.  Logs are JSON lines on stderr.  Local-only: a server sweeps itself.

    \b
    Example:
      clawstate worker --once --projection clawstate.events.projections:EventCounts
      clawstate worker --once --timer-handlers myapp.jobs
    """
    import signal
    import threading

    from ..server.logs import configure_logging
    from ..worker import Worker

    projections = [load_projection(spec) for spec in projection or ()]
    for spec in machine or ():
        _load_machine(spec)
    interval = None if sweep_interval is None else parse_seconds(sweep_interval, "sweep_interval")
    config = configured()
    if names_a_server(config.url):
        refuse_remote("worker", "it sweeps the store and commits read models beside it")
    if interval is None:
        # The CLI's store never sweeps by itself (sweep_interval=0): use the configured
        # interval the store would have used, and run the sweep here instead.
        interval = config.sweep_interval
    configure_logging(log_level)
    with local_store("worker", "it sweeps the store and commits read models beside it") as opened:
        w = Worker(
            opened,
            projections,
            sweep_interval=interval,
            batch=batch,
            idle_wait=idle_wait,
            timers=timers,
            timer_handlers=timer_handler,
        )
        if timers:
            cwd = os.getcwd()
            if cwd not in sys.path and "" not in sys.path:
                sys.path.insert(0, cwd)  # handlers import as projections do
        if once:
            runner = w.runner
            last = opened.events.last_position
            if runner is None:
                print_json(w.run_once())
            else:
                print_json(
                    run_with_bar("catching up", w.run_once, lambda: _caught_up(runner, last))
                )
            return
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        w.run(stop)
        print_json(w.status())
