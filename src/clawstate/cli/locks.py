"""``clawstate locks …``: who holds a lock, and leases for shell scripts.

``get`` answers "who holds the nightly report, with which token, for how long";
``acquire`` and ``release`` let a cron job guard itself (take the lease, run, release
by token) and let an operator free a lease by hand.  Every command uses only the
``store.locks`` API a local store and a remote one share, so each works against a
server too (``--url http://…``, with a ``locks:`` scope).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .._validate import INT64_MAX, parse_int
from ..errors import InvalidRequest
from ..types import Lease
from ._common import fail, print_json, store

__all__ = ["lease_doc", "locks_app"]

locks_app = typer.Typer(
    help="Leases with fencing tokens: who holds a lock; take and release one.\n\n"
    "Example:  clawstate locks get nightly-report",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def lease_doc(lease: Lease) -> dict[str, Any]:
    """A lease as the CLI prints it."""
    return {
        "name": lease.name,
        "held": True,
        "owner": lease.owner,
        "token": lease.token,
        "expires_at": lease.expires_at,
    }


def _seconds(text: str) -> float | str:
    """A number of seconds stays a number; anything else goes to the duration parser."""
    try:
        return float(text)
    except ValueError:
        return text


@locks_app.command("get")
def get(name: Annotated[str, typer.Argument(help="Lock name")]) -> None:
    """Print the live lease on a lock (owner, token, expiry), or held: false.

    \b
    Example:
      clawstate locks get nightly-report
    """
    with store(create=False) as opened:
        lease = opened.locks.get(name)
        print_json({"name": name, "held": False} if lease is None else lease_doc(lease))


@locks_app.command("acquire")
def acquire(
    name: Annotated[str, typer.Argument(help="Lock name")],
    ttl: Annotated[str, typer.Option(help='Lease duration: seconds or "10m"')] = "30",
    wait: Annotated[
        str, typer.Option(help='Seconds (or "1m") to wait while it is held; 0: not at all')
    ] = "0",
    owner: Annotated[str | None, typer.Option(help="Holder name (default host/pid/…)")] = None,
) -> None:
    """Take a lease and print it; exits 1 (LockTimeout) if it stays held past --wait.

    The lease outlives this command until its ttl: release it with its token.

    \b
    Example:
      clawstate locks acquire nightly-report --ttl 10m --owner cron
    """
    with store() as opened:
        lease = opened.locks.acquire(name, ttl=_seconds(ttl), wait=_seconds(wait), owner=owner)
        print_json(lease_doc(lease))


@locks_app.command("release")
def release(
    name: Annotated[str, typer.Argument(help="Lock name")],
    token: Annotated[str, typer.Option(help="The lease's fencing token")],
) -> None:
    """Release a lease by its token; released is false if it had expired, was released
    or was taken over (a newer lease is never touched).

    \b
    Example:
      clawstate locks release nightly-report --token 1
    """
    try:
        number = parse_int(token, "token", 1, INT64_MAX)
    except InvalidRequest as exc:
        fail(exc)
    with store() as opened:
        print_json({"released": opened.locks.release(Lease(name, "", number, 0.0))})
