"""External services for tests: probe, then skip (on a laptop) or fail (in CI).

``CLAWSTATE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) turns every "service not
reachable" skip into a failure, so CI can never pass by silently skipping the
PostgreSQL, Redis, NATS or S3 tests.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

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
