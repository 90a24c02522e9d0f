"""Running the server: uvicorn (uvloop + httptools), workers, TLS, graceful shutdown.

Why the process model looks like this:

* The parent binds the listening socket (so ``--port 0`` works and the printed URL is
  the real one), bootstraps the first admin token, then either serves in-process
  (one worker) or starts N worker processes that share the socket — the kernel spreads
  connections between them.  Workers over one SQLite file share state through the file
  (WAL, group commit per process); over PostgreSQL through the database.
* With several workers the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
  directory first, so ``/metrics`` on any worker reports all of them.
* Graceful shutdown: on SIGTERM/SIGINT uvicorn stops accepting, lets in-flight requests
  finish (up to ``graceful_timeout`` seconds), then runs the app's shutdown (flushing the
  audit log).  Server-sent-event streams never finish on their own, so the signal first
  tells the app to end them (``ServerState.begin_shutdown``), with a final ``end`` event
  that carries the position to resume from.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from types import FrameType
from typing import Any

__all__ = ["bootstrap_admin_token", "serve"]


def bootstrap_admin_token(store: Any) -> str | None:
    """On a store without tokens, create an admin token and return its plaintext (the
    only time it exists outside the caller's hands: the store keeps its hash)."""
    from .auth import TokenStore

    tokens = TokenStore(store)
    if tokens.count() > 0:
        return None
    plaintext, _ = tokens.create(["admin"], note="bootstrap admin token (first start)")
    return plaintext


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(
    sock: socket.socket,
    url: str | None,
    config: str | None,
    settings_doc: dict[str, Any],
    certfile: str | None,
    keyfile: str | None,
    log_level: str,
    graceful_timeout: float,
) -> None:
    """One server process: open the store, build the app, serve until told to stop."""
    import msgspec
    import uvicorn

    from .. import _open
    from .app import ServerSettings, create_app
    from .logs import configure_logging

    configure_logging(log_level)
    settings = msgspec.convert(settings_doc, ServerSettings)
    store = _open.open_local(url, config=config)
    app = create_app(store, settings)
    state = app.state

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state.begin_shutdown()
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after draining, so the process would die of
            # it; a drained shutdown is a success: exit 0 instead.
            self._captured_signals.clear()

    from .transport import CorkedHttpToolsProtocol

    cfg = uvicorn.Config(
        app,
        loop="uvloop",
        http=CorkedHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=log_level,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        timeout_graceful_shutdown=int(graceful_timeout),
        server_header=False,
        date_header=False,
        backlog=2048,
        timeout_keep_alive=30,
    )
    try:
        _Server(cfg).run(sockets=[sock])
    finally:
        store.close()


def serve(
    url: str | None = None,
    *,
    config: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8720,
    workers: int = 1,
    certfile: str | None = None,
    keyfile: str | None = None,
    settings: Any = None,
    log_level: str = "info",
    graceful_timeout: float = 30.0,
    announce: Any = None,
) -> None:
    """Serve the store at ``url`` (or ``config``) until SIGINT/SIGTERM.

    ``announce(url, admin_token_or_None)`` is called once the socket listens (the CLI
    prints them); the admin token is only ever non-None on a store's first start.
    """
    import msgspec

    from .. import _open
    from .app import ServerSettings

    if (certfile is None) != (keyfile is None):
        from ..errors import ConfigError

        raise ConfigError("tls", "give both --certfile and --keyfile, or neither")
    settings = settings or ServerSettings()
    store = _open.open(url, config=config, sweep_interval=0)
    try:
        admin = bootstrap_admin_token(store)
    finally:
        store.close()
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    scheme = "https" if certfile else "http"
    shown_host = f"[{host}]" if ":" in host else host
    if announce is not None:
        announce(f"{scheme}://{shown_host}:{bound}", admin)
    doc = msgspec.to_builtins(settings)
    args = (sock, url, config, doc, certfile, keyfile, log_level, graceful_timeout)
    if workers <= 1:
        _worker(*args)
        return
    metrics_dir = tempfile.mkdtemp(prefix="clawstate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=args, name=f"clawstate-worker-{i}") for i in range(workers)
    ]
    for p in procs:
        p.start()

    def forward(sig: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        for p in procs:
            p.join()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(p.exitcode not in (0, None, -signal.SIGTERM) for p in procs):
        sys.exit(1)
