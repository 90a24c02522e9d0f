"""Prometheus metrics for ``GET /metrics``.

What is counted, and why these labels:

* ``clawstate_http_requests_total{route,method,status}`` and
  ``clawstate_http_request_duration_seconds{route,method}`` — by route *template*
  (``/v1/namespaces/{namespace}/items/{key}``), never the raw path, so keys do not
  explode the label set (and never reach the metrics store);
* ``clawstate_store_operations_total{namespace,op}`` — what the store was asked to do.
  Namespace names come from callers, so the label set is bounded
  (:class:`NamespaceLabels`): a name is its own label only if the namespace exists
  (the store lists it, or a put just created it) or is configured, at most
  ``max_namespaces`` of them; every other name — a 404 read of a made-up namespace,
  say — counts under ``namespace="_other"``;
* ``method`` labels are the standard HTTP methods, anything else ``OTHER``;
* ``clawstate_audit_head_seq`` and ``clawstate_audit_head_info{hash}`` — the audit
  log's head (record number and the first 16 hex digits of its MAC), read from the
  store when ``/metrics`` is scraped: a copy outside the database to compare with;
* ``clawstate_group_commit_batches_total`` / ``_jobs_total`` — their ratio is the mean
  group-commit batch size (``rate(jobs) / rate(batches)``), read from each backend's
  committer; ``clawstate_group_commit_largest_batch`` the largest seen;
* ``clawstate_server_shared_commits_total{outcome}`` / ``_shared_commit_writes_total`` —
  plain puts batched into one transaction by the server's ``AsyncStore``
  (``clawstate._batch.WriteBatcher``, reported through :meth:`Metrics.shared_commit`);
* ``clawstate_watches_open`` / ``clawstate_subscriptions_open`` — live SSE streams;
* ``clawstate_denied_requests_total{status}`` — 401/403/429 answers.

With several worker processes (``clawstate serve --workers 2``) the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, every
worker writes its samples there, and any worker answering ``/metrics`` aggregates
them all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

__all__ = ["OTHER", "Metrics", "NamespaceLabels"]

#: The one label every namespace outside the known set is counted under.
OTHER = "_other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: Operations that, having succeeded, prove the namespace now exists.
_CREATES = frozenset({"put", "tx_put"})


class NamespaceLabels:
    """Which namespace names may be metric labels.

    Why: ``store_op`` is called with the name a caller sent, and a label per made-up
    name grew ``/metrics`` without bound (4,005 names: 100 KB -> 1.5 MB).  The known
    set is the configured names plus the store's namespaces (refreshed by
    :meth:`refresh`, one cheap listing every few seconds, off the event loop), plus
    those a successful put just created; it never holds more than ``limit`` names.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def refresh(self, names: Iterable[str]) -> None:
        """Replace the known set with ``names`` (system namespaces are left out)."""
        fresh: set[str] = set()
        for name in names:
            if isinstance(name, str) and name and not name.startswith("_"):
                fresh.add(name)
                if len(fresh) >= self.limit:
                    break
        with self._lock:
            self._known = fresh

    def label(self, name: str, op: str) -> str:
        known = self._known
        if name in known:
            return name
        if op in _CREATES and isinstance(name, str) and not name.startswith("_"):
            with self._lock:
                if len(self._known) < self.limit:
                    self._known = self._known | {name}
                    return name
        return OTHER

    def __len__(self) -> int:
        return len(self._known)


class _AuditHead(Collector):
    """The audit head as two families, from whatever :meth:`Metrics.set_audit_head`
    saw last (the /metrics handler reads the store just before rendering)."""

    def __init__(self) -> None:
        self.head: tuple[int, str] | None = None

    def collect(self) -> Iterator[Any]:
        if self.head is None:
            return
        n, digest = self.head
        yield GaugeMetricFamily(
            "clawstate_audit_head_seq",
            "Number of the newest audit record (compare with a copy kept elsewhere).",
            value=n,
        )
        info = InfoMetricFamily(
            "clawstate_audit_head",
            "First 16 hex digits of the newest audit record's MAC.",
            labels=["hash"],
        )
        info.add_metric([digest[:16]], {})
        yield info


_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """The server's metric families, registered once per process."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode samples go to files, not to a registry; the default
        # registry is avoided either way so tests can build several apps in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess else self.registry
        self.requests = Counter(
            "clawstate_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "clawstate_http_request_duration_seconds",
            "Time from request start to the last response byte, by route template.",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.store_ops = Counter(
            "clawstate_store_operations",
            "Store operations the server performed, by namespace and operation.",
            ["namespace", "op"],
            registry=reg,
        )
        self.batches = Counter(
            "clawstate_group_commit_batches",
            "Group commits (transactions) the backend ran; jobs/batches is the mean batch.",
            ["backend"],
            registry=reg,
        )
        self.jobs = Counter(
            "clawstate_group_commit_jobs",
            "Write units committed by group commit.",
            ["backend"],
            registry=reg,
        )
        gauge_mode: dict[str, Any] = {"multiprocess_mode": "max"} if self.multiprocess else {}
        self.largest = Gauge(
            "clawstate_group_commit_largest_batch",
            "Largest group-commit batch seen.",
            ["backend"],
            registry=reg,
            **gauge_mode,
        )
        live: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.watches = Gauge(
            "clawstate_watches_open",
            "Open change-log watches (server-sent event streams).",
            registry=reg,
            **live,
        )
        self.subscriptions = Gauge(
            "clawstate_subscriptions_open",
            "Open event-store subscriptions (server-sent event streams).",
            registry=reg,
            **live,
        )
        self.denied = Counter(
            "clawstate_denied_requests",
            "Requests refused by authentication, authorization or rate limiting.",
            ["status"],
            registry=reg,
        )
        # AsyncStore's write batcher (clawstate._batch): plain puts of one event-loop turn
        # committed as one transaction; "retried_alone" when that commit failed whole.
        self.shared_commits = Counter(
            "clawstate_server_shared_commits",
            "Transactions the server's write batcher committed for several plain puts, "
            "by outcome (committed, or failed whole and retried one by one).",
            ["outcome"],
            registry=reg,
        )
        self.shared_writes = Counter(
            "clawstate_server_shared_commit_writes",
            "Plain puts committed through the server's shared transactions.",
            registry=reg,
        )
        self.namespaces = NamespaceLabels()
        self._audit_head = _AuditHead()
        self.registry.register(self._audit_head)
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._lat_children: dict[tuple[str, str], Any] = {}
        self._op_children: dict[tuple[str, str], Any] = {}
        self._seen_commits: dict[str, tuple[int, int]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "OTHER"  # the method is whatever token the client sent
        key = (route, method, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        lkey = (route, method)
        lat = self._lat_children.get(lkey)
        if lat is None:
            lat = self._lat_children[lkey] = self.latency.labels(route, method)
        lat.observe(seconds)

    def store_op(self, namespace: str, op: str, n: int = 1) -> None:
        """Count ``n`` operations ``op`` on ``namespace`` (a caller-chosen name: it is
        a label only if :class:`NamespaceLabels` knows it, else ``_other``)."""
        label = self.namespaces.label(namespace, op)
        key = (label, op)
        child = self._op_children.get(key)
        if child is None:
            if len(self._op_children) >= 20_000:  # a last bound, whatever the known set
                key = (OTHER, op)
                child = self._op_children.get(key)
            if child is None:
                child = self._op_children[key] = self.store_ops.labels(*key)
        child.inc(n)

    def refresh_namespaces(self, names: Callable[[], Iterable[str]]) -> None:
        """Reload the known namespace set (blocking: call it off the event loop)."""
        self.namespaces.refresh(names())

    def shared_commit(self, committed: bool, writes: int) -> None:
        """Count one shared commit of the AsyncStore's write batcher (its
        ``on_shared_commit`` hook; called on a pool thread)."""
        if committed:
            self.shared_commits.labels("committed").inc()
            self.shared_writes.inc(writes)
        else:
            self.shared_commits.labels("retried_alone").inc()

    def set_audit_head(self, n: int, digest: str) -> None:
        self._audit_head.head = (n, digest)

    def sync_commits(self, backends: dict[str, Any]) -> None:
        """Carry the backends' group-commit counters over (as deltas since last time)."""
        for name, backend in backends.items():
            committer = getattr(backend, "_committer", None)
            stats = getattr(committer, "stats", None)
            if stats is None:
                continue
            data = stats()
            batches, jobs = int(data.get("batches", 0)), int(data.get("jobs", 0))
            seen_b, seen_j = self._seen_commits.get(name, (0, 0))
            if batches > seen_b:
                self.batches.labels(name).inc(batches - seen_b)
            if jobs > seen_j:
                self.jobs.labels(name).inc(jobs - seen_j)
            self._seen_commits[name] = (batches, jobs)
            self.largest.labels(name).set(float(data.get("largest_batch", 0)))

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self._audit_head)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
