"""The ``clawstate`` command: the store from a shell.

Every command opens the store named by ``--url`` / ``--config`` (or
``CLAWSTATE_URL`` / ``CLAWSTATE_CONFIG``, else the embedded default), prints
JSON for data and tables for humans, and carries an example in its ``--help``.
Errors print one line naming the field and exit with status 2 (bad input or
configuration), 1 (not found, conflict, integrity problem) or 3 (backend
unavailable).

The package: :mod:`._common` holds what every command shares (options, opening the
store, errors, JSON, durations, progress bars); :mod:`.kv`, :mod:`.events`,
:mod:`.projections`, :mod:`.ops` and :mod:`.admin` hold the commands, and this
module mounts them on :data:`app` in the order ``--help`` lists them.  Only this
module imports the command modules, so there is no import circle.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from . import admin, kv, ops
from ._common import state
from .events import events_app
from .locks import locks_app
from .machines import machines_app
from .projections import projections_app, worker
from .timers import timers_app

__all__ = ["HELP_ORDER", "app", "main"]

#: ``--help`` lists commands in this order: data first (as a user meets the store), then
#: events and their projections, then looking after the store, then running a server.
#: A command missing here is listed last (typer alone would list every group last).
HELP_ORDER = (
    "put",
    "get",
    "delete",
    "scan",
    "query",
    "watch",
    "events",
    "projections",
    "worker",
    "locks",
    "machines",
    "timers",
    "stats",
    "check",
    "index",
    "keys",
    "serve",
    "token",
    "audit",
    "demo",
)


class _Ordered(TyperGroup):
    """The root group, listing its commands in :data:`HELP_ORDER`."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's vendored click.Context
        rank = {name: i for i, name in enumerate(HELP_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda n: rank.get(n, len(rank)))


app = typer.Typer(
    name="clawstate",
    cls=_Ordered,
    help="clawstate: persistent state for distributed apps — from the shell.\n\n"
    "Example:  clawstate put carts u42 '{\"items\": []}' && clawstate get carts u42",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"clawstate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", "-u", help="Store URL (default: CLAWSTATE_URL or the embedded store)"
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Path of clawstate.toml")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    state.url = url
    state.config = config


app.command()(kv.put)
app.command()(kv.get)
app.command()(kv.delete)
app.command()(kv.scan)
app.command()(kv.query)
app.command()(kv.watch)
app.add_typer(events_app, name="events")
app.add_typer(projections_app, name="projections")
app.command("worker")(worker)
app.add_typer(locks_app, name="locks")
app.add_typer(machines_app, name="machines")
app.add_typer(timers_app, name="timers")
app.command()(ops.stats)
app.command()(ops.check)
app.command()(ops.index)
app.add_typer(ops.keys_app, name="keys")
app.command()(admin.serve)
app.add_typer(admin.token_app, name="token")
app.add_typer(admin.audit_app, name="audit")
app.command()(ops.demo)


def main() -> None:
    """Entry point of the ``clawstate`` console script (``pyproject.toml``) and of
    ``python -m clawstate.cli``; both call themselves ``clawstate`` in ``--help``."""
    app(prog_name="clawstate")
