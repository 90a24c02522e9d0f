"""How one server process behaves: :class:`ServerSettings` (``clawstate serve`` options)."""

from __future__ import annotations

import msgspec

__all__ = ["ServerSettings"]


class ServerSettings(msgspec.Struct, kw_only=True):
    """How this server process behaves; ``clawstate serve`` options map onto these."""

    #: the largest request body read at all (413 before buffering beyond it)
    max_body_bytes: int = 32 * 1024 * 1024
    #: requests per second per token in this process (None: unlimited); tokens may
    #: carry their own rate
    rate_limit: float | None = 1000.0
    #: bucket size: how many requests a token may burst (default 2 × rate)
    rate_burst: float | None = None
    #: failed authentications per second per client address before 429
    auth_failure_rate: float = 100.0
    #: seconds over which failed authentications are counted per client address and
    #: written as ONE audit record (an unauthenticated flood costs bounded records)
    audit_interval: float = 60.0
    #: seconds between runs of the audit retention ([audit] keep_days / keep_records)
    audit_prune_interval: float = 3600.0
    #: seconds between SSE keep-alive comments (the client may ask for less)
    heartbeat: float = 15.0
    #: serve /metrics without a token (for a Prometheus that cannot send one)
    public_metrics: bool = False
    #: point reads on the event loop (None: yes for sqlite and memory backends)
    inline_reads: bool | None = None
    #: seconds a verified token stays cached (revocations elsewhere take this long)
    token_cache_ttl: float = 2.0
    #: threads of the AsyncStore pool (in-flight store calls)
    threads: int = 32
    #: log one JSON line per request (off by default: it costs ~10 µs a request)
    access_log: bool = False
    #: OpenTelemetry spans even without OTEL_* variables (needs the otel extra)
    tracing: bool = False
    #: TEST ONLY: /_test routes and the test clock (set by CLAWSTATE_TEST_CONTROL=1)
    test_control: bool = False
