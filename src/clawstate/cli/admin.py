"""Running and guarding a server: ``serve``, ``token …`` and ``audit …``.

``serve`` and the token and audit commands act on the store itself (its token
namespace and its audit chain, keyed from its keyring), so against a server
(``--url http://…``) the token and audit commands are local-only: each says so in
one line, pointing at the server's admin route that does the same over HTTP.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import typer

from ..errors import ClawStateError, InvalidRequest
from ..store import Store
from ._common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    configured,
    err_console,
    fail,
    local_store,
    names_a_server,
    parse_seconds,
    print_json,
    refuse_remote,
    state,
)

__all__ = ["audit_app", "serve", "token_app"]

token_app = typer.Typer(
    help="Bearer tokens for `clawstate serve` (stored as hashes in the store).\n\n"
    "Example:  clawstate token create --scope 'ns:carts:rw' --ttl 30d",
    no_args_is_help=True,
    rich_markup_mode=None,
)
audit_app = typer.Typer(
    help="The server's hash-chained audit log.\n\nExample:  clawstate audit verify",
    no_args_is_help=True,
    rich_markup_mode=None,
)

#: Why the token commands are local-only, and what to use over HTTP instead.
_TOKENS_LOCAL = "tokens live in the store; over HTTP use /v1/admin/tokens"
_AUDIT_LOCAL = "the audit chain is keyed from the store's keyring"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port)")] = 8720,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the port")] = 1,
    certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM)")] = None,
    keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM)")] = None,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", help="Requests/s per token per worker (0: off)")
    ] = 1000.0,
    max_body: Annotated[
        str, typer.Option("--max-body", help="Largest request body read (e.g. 32MiB)")
    ] = "32MiB",
    public_metrics: Annotated[
        bool, typer.Option("--public-metrics", help="Serve /metrics without a token")
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="One JSON log line per request")
    ] = False,
    threads: Annotated[
        int, typer.Option(help="Store threads per worker (in-flight store calls)")
    ] = 8,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
    graceful_timeout: Annotated[
        str,
        typer.Option("--graceful-timeout", help="How long to drain on shutdown (30s, 2m…)"),
    ] = "30s",
) -> None:
    """Serve the store over HTTP until Ctrl-C (SIGTERM drains in-flight requests).

    On a store's first start an admin token is created and printed once; only its
    hash is kept.  See docs/server.md.

    \b
    Example:
      clawstate serve --port 8720
    """
    from ..config import parse_size

    graceful = parse_seconds(graceful_timeout, "graceful_timeout")
    if names_a_server(configured().url):
        refuse_remote("serve", "it serves a store, not another server")
    try:
        from ..server import ServerSettings
        from ..server import serve as run_server
    except ImportError as exc:
        err_console.print(
            f"error: the server needs the 'server' extra ({exc.name} is missing): "
            "pip install 'clawstate[server]'",
            markup=False,
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from None

    def announce(url: str, admin: str | None) -> None:
        # Plain writes, not rich: a wrapped line would split the token.
        lines = [f"clawstate serve: {url}"]
        if admin is not None:
            lines.append(f"admin token (shown once; only its hash is stored): {admin}")
        else:
            lines.append(
                "admin token: created on first start; make another with "
                "`clawstate token create --scope admin`"
            )
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    try:
        settings = ServerSettings(
            max_body_bytes=parse_size(max_body, field="max_body"),
            rate_limit=rate_limit or None,
            public_metrics=public_metrics,
            access_log=access_log,
            threads=threads,
        )
        run_server(
            state.url,
            config=state.config,
            host=host,
            port=port,
            workers=workers,
            certfile=certfile,
            keyfile=keyfile,
            settings=settings,
            log_level=log_level,
            graceful_timeout=graceful,
            announce=announce,
        )
    except ClawStateError as exc:
        fail(exc)
    except OSError as exc:
        err_console.print(f"error: cannot listen on {host}:{port}: {exc}", markup=False)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def _audit_cli(store: Store, action: str, **detail: Any) -> None:
    """Admin actions taken from the shell go into the same audit chain as the server's."""
    import getpass
    import time

    from ..server.audit import append

    append(
        store,
        [
            {
                "action": action,
                "status": 200,
                "actor": f"cli:{getpass.getuser()}",
                "route": "cli",
                "ts": time.time(),
                "detail": detail,
            }
        ],
    )


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="ns:<glob>:<read|write|rw|admin>, events:<glob>:<action>, admin or metrics",
        ),
    ],
    ttl: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d or 12h (default: none)")
    ] = None,
    note: Annotated[str, typer.Option(help="What the token is for")] = "",
    rate: Annotated[
        float | None, typer.Option(help="Requests/s for this token (default: the server's)")
    ] = None,
) -> None:
    """Create a token and print it once as JSON; the store keeps only its hash.

    \b
    Example:
      clawstate token create --scope 'ns:carts:rw' --scope 'events:orders-*:read' --ttl 30d
    """
    from ..server.auth import TokenStore

    with local_store("token create", _TOKENS_LOCAL) as opened:
        plaintext, rec = TokenStore(opened).create(list(scope), ttl=ttl, note=note, rate=rate)
        _audit_cli(opened, "token.create", id=rec.id, scopes=rec.scopes)
        print_json(
            {"id": rec.id, "token": plaintext, "scopes": rec.scopes, "expires_at": rec.expires_at}
        )


@token_app.command("list")
def token_list() -> None:
    """List tokens as JSON: ids, scopes, expiry, revocation (never secrets or hashes).

    \b
    Example:
      clawstate token list
    """
    import msgspec

    from ..server.auth import TokenStore

    with local_store("token list", _TOKENS_LOCAL, create=False) as opened:
        tokens = TokenStore(opened).list()
        _audit_cli(opened, "token.list")
        print_json(msgspec.to_builtins(tokens))


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id")]) -> None:
    """Revoke a token by id and print whether it was; exit status 1 if there is no
    token with that id (a typo must not look like a revocation).

    \b
    Example:
      clawstate token revoke 0123456789abcdef
    """
    from ..server.auth import TokenStore

    with local_store("token revoke", _TOKENS_LOCAL) as opened:
        revoked = TokenStore(opened).revoke(token_id)
        _audit_cli(opened, "token.revoke", id=token_id[:64], revoked=revoked)
        print_json({"id": token_id, "revoked": revoked})
    if not revoked:
        err_console.print(f"not found: token {token_id!r}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's MAC chain (keyed from the store's keyring); exit status 1
    if it is broken, naming the first bad record.  Compare the printed seq and head
    with a copy kept elsewhere (the server logs them, /metrics exports them).

    \b
    Example:
      clawstate audit verify
    """
    import msgspec

    from ..server.audit import verify

    why = f"{_AUDIT_LOCAL}; over HTTP use /v1/admin/audit/verify"
    with local_store("audit verify", why, create=False) as opened:
        report = verify(opened)
    print_json(msgspec.to_builtins(report))
    if not report.ok:
        where = "" if report.first_bad is None else f" at record {report.first_bad}"
        err_console.print(
            f"error: the audit log is broken{where}: {report.problems[0]}", markup=False
        )
        raise typer.Exit(EXIT_FAILED)
    if report.records and not report.keyed:
        err_console.print(
            "warning: the audit log is an unkeyed hash chain (this store has no keyring): "
            "anyone able to write the database could have rewritten it",
            markup=False,
        )


@audit_app.command("seal")
def audit_seal() -> None:
    """Pin an audit log written before the chain was keyed under the keyring's MAC
    (one ``audit.keyed`` record); a no-op on a keyed or empty log.

    \b
    Example:
      clawstate audit seal
    """
    from ..server.audit import seal

    with local_store("audit seal", _AUDIT_LOCAL, create=False) as opened:
        sealed = seal(opened)
    print_json({"sealed": sealed})


@audit_app.command("prune")
def audit_prune(
    keep_days: Annotated[
        float | None,
        typer.Option(help="Delete records older than this many days (default: [audit] keep_days)"),
    ] = None,
    keep_records: Annotated[
        int | None,
        typer.Option(help="Keep at most this many newest records (default: [audit] keep_records)"),
    ] = None,
) -> None:
    """Apply the audit log's retention: delete the oldest records and leave a sealed
    checkpoint (number and MAC of the last one deleted) that `audit verify` checks.
    The part deleted is verified first; a broken chain is not pruned (exit status 1).

    \b
    Example:
      clawstate audit prune --keep-days 90
    """
    import msgspec

    from ..server.audit import prune

    with local_store("audit prune", _AUDIT_LOCAL, create=False) as opened:
        days = keep_days if keep_days is not None else opened.config.audit_keep_days
        records = keep_records if keep_records is not None else opened.config.audit_keep_records
        if days is not None and not (math.isfinite(days) and 0 < days <= 36500):
            fail(InvalidRequest("keep_days", f"must be > 0 and <= 36500 days, got {days}"))
        if records is not None and records < 1:
            fail(InvalidRequest("keep_records", f"must be >= 1, got {records}"))
        if days is None and records is None:
            fail(
                InvalidRequest(
                    "keep_days",
                    "give --keep-days or --keep-records (or set [audit] keep_days / "
                    "keep_records in clawstate.toml)",
                )
            )
        report = prune(opened, keep_days=days, keep_records=records)
    print_json(msgspec.to_builtins(report))
