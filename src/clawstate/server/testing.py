"""Run ``clawstate serve`` as a subprocess for tests, and point store factories at it.

:class:`ServerProcess` starts a real server (``python -m clawstate.cli serve --port 0``)
on 127.0.0.1 over the store you name, reads the URL and the bootstrap admin token it
prints, waits for ``/readyz`` and stops it with SIGTERM (checking it drains and exits 0).

With ``test_control=True`` the process gets ``CLAWSTATE_TEST_CONTROL=1`` — the TEST-ONLY
switch that enables ``POST /_test/stores`` (a fresh, empty store per conformance test,
chosen per request by the ``Clawstate-Test-Store`` header) and the per-request test clock
(``Clawstate-Test-Clock``, sent by a client opened with ``clock=``).  Never set that
variable on a real server (it logs a warning at start).  Everything else — the write
batching above all — runs exactly as in production.

:meth:`ServerProcess.store_factory` builds the ``store_factory(clock=None, **options)``
the conformance suites expect.  Its ``options`` are the test's store settings
(``namespaces=`` policies, ``limits=``, ``idempotency_window=``…), declared when the test
store is created and validated like a ``clawstate.toml``: that is how a test over HTTP
gets a namespace policy, since no request may set one.  Settings that name a place
(``url``, ``keyring``, a ``cache_l2`` URL) are refused by the server: a test store is
always a fresh SQLite file, with its own keyring, in the server's own directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServerProcess"]


class ServerProcess:
    """A ``clawstate serve`` subprocess (see the module docstring)."""

    def __init__(
        self,
        store_url: str | None = None,
        *,
        workers: int = 1,
        test_control: bool = False,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="clawstate-serve-")
        self.dir = Path(self._tmp.name)
        self.store_url = store_url or f"sqlite:///{self.dir / 'state.db'}"
        self.workers = workers
        self.test_control = test_control
        self.extra_args = extra_args or []
        self.env = env or {}
        self.certfile = certfile
        self.keyfile = keyfile
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.url = ""
        self.admin_token = ""
        self.proc: subprocess.Popen[str] | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.exit_code: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
        env.update(self.env)
        env["CLAWSTATE_TEST_STORE_DIR"] = str(self.dir)
        if self.test_control:
            env["CLAWSTATE_TEST_CONTROL"] = "1"
        args = [
            sys.executable,
            "-m",
            "clawstate.cli",
            "--url",
            self.store_url,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--workers",
            str(self.workers),
            *self.extra_args,
        ]
        if self.certfile and self.keyfile:
            args += ["--certfile", self.certfile, "--keyfile", self.keyfile]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.cwd or self.dir,
        )
        threading.Thread(
            target=self._pump, args=(self.proc.stderr, self.stderr_lines), daemon=True
        ).start()
        deadline = time.monotonic() + self.startup_timeout
        assert self.proc.stdout is not None
        while not self.url or (self.admin_token == "" and time.monotonic() < deadline):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"clawstate serve exited early:\n{''.join(self.stderr_lines)}")
            self.stdout_lines.append(line)
            if line.startswith("clawstate serve: "):
                self.url = line.split(": ", 1)[1].strip()
            elif line.startswith("admin token (shown once"):
                self.admin_token = line.rsplit(" ", 1)[1].strip()
            elif line.startswith("admin token:"):
                self.admin_token = "-"
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self.stdout_lines), daemon=True
        ).start()
        self.wait_ready(deadline)
        return self

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for line in iter(stream.readline, ""):
            sink.append(line)

    def wait_ready(self, deadline: float) -> None:
        verify = not self.url.startswith("https")
        while True:
            try:
                r = httpx.get(self.url + "/readyz", timeout=2.0, verify=verify)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"clawstate serve died:\n{''.join(self.stderr_lines)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"clawstate serve never became ready:\n{''.join(self.stderr_lines)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the drain; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.exit_code = self.proc.wait()
        else:
            self.exit_code = self.proc.returncode
        self.proc = None
        return self.exit_code

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def logs(self) -> str:
        return "".join(self.stderr_lines)

    # -- clients -----------------------------------------------------------------------

    def admin(self) -> httpx.Client:
        """An httpx client with the admin token (for raw HTTP tests)."""
        return httpx.Client(
            base_url=self.url,
            headers={"authorization": f"Bearer {self.admin_token}"},
            timeout=30.0,
            verify=not self.url.startswith("https"),
        )

    def new_test_store(self, options: dict[str, Any]) -> str:
        """TEST-ONLY: a fresh, empty store on the server; its id for the header."""
        import json

        with self.admin() as http:
            r = http.post(
                "/_test/stores",
                content=json.dumps(options),
                headers={"content-type": "application/json"},
            )
        if r.status_code != 201:
            from .._wire import error_from_problem

            raise error_from_problem(r.json(), r.status_code)
        return str(r.json()["id"])

    def drop_test_store(self, sid: str) -> None:
        with self.admin() as http:
            http.delete(f"/_test/stores/{sid}")

    def store_factory(
        self,
        opened: list[Any],
        *,
        asynchronous: bool = False,
        defaults: dict[str, Any] | None = None,
    ) -> Callable[..., Any]:
        """``factory(clock=None, **options)`` → a client on a fresh server-side store.

        A ``keyring=`` option (a path on the test's side, as the suites pass for an
        in-process store) is not sent: the server gives each test store its own."""
        from .. import _open

        def factory(clock: Callable[[], float] | None = None, **options: Any) -> Any:
            options.pop("keyring", None)
            sid = self.new_test_store({**(defaults or {}), **options})
            opener = _open.open_async if asynchronous else _open.open
            store = opener(
                self.url,
                token=self.admin_token,
                clock=clock,
                headers={"clawstate-test-store": sid},
            )
            opened.append((store, sid))
            return store

        return factory
