"""``clawstate timers …``: list, inspect, schedule and cancel durable timers.

``ls`` and ``get`` answer "what is scheduled, when, and why did it fail" (a parked
timer shows its ``attempts`` and ``last_error``); ``schedule`` and ``cancel`` let an
operator arm or disarm one by hand.  Every command uses only the ``store.timers`` API
a local store and a remote one share, so each works against a server too
(``--url http://…``, with a ``timers:`` scope).  Firing is ``clawstate worker``'s.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..types import TimerInfo
from ._common import parse_json, print_json, store

__all__ = ["timer_doc", "timers_app"]

timers_app = typer.Typer(
    help="Durable timers: list, inspect, schedule and cancel (the worker fires them).\n\n"
    "Example:  clawstate timers ls --prefix order-",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def timer_doc(info: TimerInfo) -> dict[str, Any]:
    """A timer as the CLI prints it."""
    return {
        "name": info.name,
        "due": info.due,
        "handler": info.handler,
        "payload": info.payload,
        "created_at": info.created_at,
        "attempts": info.attempts,
        "last_error": info.last_error,
    }


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


@timers_app.command("ls")
def ls(
    prefix: Annotated[str, typer.Option(help="Only timers whose name starts with this")] = "",
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
) -> None:
    """Print scheduled timers (JSON lines, in name order), parked ones included.

    \b
    Example:
      clawstate timers ls --prefix order- --limit 20
    """
    with store(create=False) as opened:
        page = opened.timers.list(prefix, limit)
        for info in page.items:
            print_json(timer_doc(info))


@timers_app.command("get")
def get(name: Annotated[str, typer.Argument(help="Timer name")]) -> None:
    """Print one timer, or scheduled: false (never scheduled, fired or cancelled).

    \b
    Example:
      clawstate timers get order-42
    """
    with store(create=False) as opened:
        info = opened.timers.get(name)
        print_json({"name": name, "scheduled": False} if info is None else timer_doc(info))


@timers_app.command("schedule")
def schedule(
    name: Annotated[str, typer.Argument(help="Timer name (re-scheduling replaces it)")],
    handler: Annotated[str, typer.Option(help='What the worker runs: "package.module:function"')],
    at: Annotated[float | None, typer.Option(help="When: Unix seconds")] = None,
    after: Annotated[str | None, typer.Option(help='When: a delay, seconds or "30m"')] = None,
    payload: Annotated[str, typer.Option(help="The handler's payload, as JSON")] = "null",
) -> None:
    """Schedule (or re-schedule) a timer and print it.

    \b
    Example:
      clawstate timers schedule order-42 --handler myapp.jobs:remind --after 30m --payload 42
    """
    value = parse_json(payload, "payload")
    with store() as opened:
        info = opened.timers.schedule(
            name,
            handler=handler,
            at=at,
            after=None if after is None else _number_or_text(after),
            payload=value,
        )
        print_json(timer_doc(info))


@timers_app.command("cancel")
def cancel(name: Annotated[str, typer.Argument(help="Timer name")]) -> None:
    """Cancel a timer; prints cancelled: true, or false if it was not scheduled.

    \b
    Example:
      clawstate timers cancel order-42
    """
    with store(create=False) as opened:
        print_json({"name": name, "cancelled": opened.timers.cancel(name)})
