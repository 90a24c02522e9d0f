"""Prometheus metrics for ``GET /metrics``.

What is counted, and why these labels:

* ``clawstate_http_requests_total{route,method,status}`` and
  ``clawstate_http_request_duration_seconds{route,method}`` — by route *template*
  (``/v1/namespaces/{namespace}/items/{key}``), never the raw path, so keys do not
  explode the label set (and never reach the metrics store);
* ``clawstate_store_operations_total{namespace,op}`` — what the store was asked to do;
* ``clawstate_group_commit_batches_total`` / ``_jobs_total`` — their ratio is the mean
  group-commit batch size (``rate(jobs) / rate(batches)``), read from each backend's
  committer; ``clawstate_group_commit_largest_batch`` the largest seen;
* ``clawstate_watches_open`` / ``clawstate_subscriptions_open`` — live SSE streams;
* ``clawstate_denied_requests_total{status}`` — 401/403/429 answers.

With several worker processes (``clawstate serve --workers 2``) the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start, every
worker writes its samples there, and any worker answering ``/metrics`` aggregates
them all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["Metrics"]

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
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._lat_children: dict[tuple[str, str], Any] = {}
        self._op_children: dict[tuple[str, str], Any] = {}
        self._seen_commits: dict[str, tuple[int, int]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
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
        key = (namespace, op)
        child = self._op_children.get(key)
        if child is None:
            if len(self._op_children) > 10_000:  # namespaces are user-chosen: bound it
                namespace = "_other"
                key = (namespace, op)
                child = self._op_children.get(key)
            if child is None:
                child = self._op_children[key] = self.store_ops.labels(namespace, op)
        child.inc(n)

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
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
