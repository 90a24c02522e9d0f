"""What the routes share: :class:`ServerState` (one per worker process), the rate
limiter, and :class:`Ctx` (what the guard resolved for one request)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import tempfile
import time
from typing import Any

from ..aio import AsyncStore
from ..errors import ClawStateError
from ..store import Store
from .audit import AuditLog
from .auth import Principal, TokenStore
from .metrics import Metrics
from .notify import Feeds
from .settings import ServerSettings

__all__ = ["Ctx", "RateLimiter", "ServerState"]

log = logging.getLogger("clawstate.server")


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last


class RateLimiter:
    """Token buckets by key (token id, or client address for failed logins)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate: float, burst: float) -> float:
        """0.0 when allowed, else seconds until one request would be."""
        now = time.monotonic()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            b = self._buckets[key] = _Bucket(burst, now)
        else:
            b.tokens = min(burst, b.tokens + (now - b.last) * rate)
            b.last = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / rate


class ServerState:
    """Everything the routes share.  One per process (per worker).

    The store is reached through ONE :class:`AsyncStore`: its pool runs every blocking
    call (``run``), and its write batcher group-commits the plain puts of one event-loop
    iteration (``clawstate._batch``; the shared commits are counted in ``metrics``)."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self.metrics = Metrics()
        self.astore = AsyncStore(
            store, max_workers=settings.threads, on_shared_commit=self.metrics.shared_commit
        )
        self.run = self.astore.run
        self.tokens = TokenStore(store, cache_ttl=settings.token_cache_ttl)
        self.audit = AuditLog(store, failure_interval=settings.audit_interval)
        self.limiter = RateLimiter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        #: the encoded OpenAPI document, built at its first request
        self.openapi: bytes | None = None
        #: the SSE streams' shared reads and open cursors (notify.py)
        self.feeds = Feeds()
        self._tasks: list[asyncio.Task[None]] = []
        #: TEST-ONLY: the stores ``POST /_test/stores`` opened, by id (see control.py)
        self.test_stores: dict[str, AsyncStore] = {}
        self.test_ids = itertools.count(1)
        self._test_root: str | None = None
        inline = settings.inline_reads
        if inline is None:
            inline = all(b.name in ("sqlite", "memory") for b in store.backends.values())
        self.inline_reads = inline

    def test_root(self) -> str:
        """TEST-ONLY: the directory test stores live in — ``CLAWSTATE_TEST_STORE_DIR``
        (ServerProcess sets it to its own temp dir), else a temp dir of this process."""
        if self._test_root is None:
            self._test_root = os.environ.get("CLAWSTATE_TEST_STORE_DIR") or tempfile.mkdtemp(
                prefix="clawstate-test-stores-"
            )
        return self._test_root

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        # Seal an old unkeyed audit chain and learn the head now: a chain sealed under a
        # key the keyring lacks stops the server here (ConfigError naming the key id),
        # not at the first admin action.
        await self.run(self._audit_startup)
        self.audit.start()
        # Learn the store's namespaces before the first request: until then every
        # existing namespace would be counted under the overflow label.
        await self._refresh_metric_namespaces()
        self._tasks.append(self.loop.create_task(self._sync_metrics()))
        if self._audit_retention():
            self._tasks.append(self.loop.create_task(self._prune_audit()))

    def _audit_startup(self) -> None:
        from .audit import seal

        seal(self.store)
        n, digest = self.audit.load_head()
        self.metrics.set_audit_head(n, digest)
        self.audit._export(n, digest)

    def _audit_retention(self) -> dict[str, Any]:
        cfg = self.store.config
        keep = {
            "keep_days": getattr(cfg, "audit_keep_days", None),
            "keep_records": getattr(cfg, "audit_keep_records", None),
        }
        return {k: v for k, v in keep.items() if v is not None}

    async def _prune_audit(self) -> None:
        from .audit import prune

        while True:
            try:
                report = await self.run(prune, self.store, **self._audit_retention())
                if report.pruned:
                    log.info(
                        "audit pruned",
                        extra={"pruned": report.pruned, "audit_checkpoint": report.checkpoint},
                    )
            except ClawStateError as exc:
                log.error("audit prune failed: %s", exc)
            await asyncio.sleep(self.settings.audit_prune_interval)

    def _metric_namespaces(self) -> list[str]:
        return [*self.store.namespaces(), *self.store.config.namespaces]

    async def _refresh_metric_namespaces(self) -> None:
        try:
            await self.run(self.metrics.refresh_namespaces, self._metric_namespaces)
        except ClawStateError:
            pass  # keep the last known set; the next round retries

    async def _sync_metrics(self) -> None:
        while True:
            self.metrics.sync_commits(self.store.backends)
            await self._refresh_metric_namespaces()
            await asyncio.sleep(5.0)

    def begin_shutdown(self) -> None:
        """Called from the signal handler: end SSE streams so the drain can finish."""
        self.stopping = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.feeds.stop_all)

    async def shutdown(self) -> None:
        self.stopping = True
        await self.audit.close()
        for task in self._tasks:
            task.cancel()
        self.feeds.stop_all()
        for s in self.test_stores.values():
            await s.close()
        self.test_stores.clear()


class Ctx:
    """What the guard resolved for one request: who, and against which store (the
    server's, or a test store): ``store`` for sync calls, ``astore`` its async face."""

    __slots__ = ("astore", "principal", "store")

    def __init__(self, principal: Principal | None, astore: AsyncStore) -> None:
        self.principal = principal
        self.astore = astore
        self.store = astore.sync
