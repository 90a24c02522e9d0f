"""The background worker: the jobs that keep a store's derived state current.

``clawstate worker`` (or :class:`Worker` in-process) runs, until stopped:

* **projections** — one :class:`~clawstate.events.projections.ProjectionRunner`
  over the projections given, woken by commits (SQLite: the log's wake file,
  PostgreSQL: LISTEN/NOTIFY) rather than polling;
* **the sweep** — expired items, forgotten idempotency keys, old change-log rows and
  the events that stream metadata hides (``max_age`` / ``max_count`` /
  ``truncate_before``), every ``sweep_interval`` seconds.

Each job has its own thread, so a slow sweep never delays a projection, and a
failing job is logged and retried without stopping the others.  Several workers may
run the same projections against one store (for availability): a projection's
checkpoint write is conditional on its version, so two runners never both commit
the same page — the loser's page is dropped whole and it re-reads the checkpoint.

Stopping (:meth:`Worker.stop`, SIGTERM or Ctrl-C under the CLI) lets each job finish
the step it is in — a projection page commits with its checkpoint or not at all —
and returns within about ``idle_wait`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import ClawStateError, InvalidRequest

if TYPE_CHECKING:
    from .events.projections import Projection, ProjectionRunner
    from .store import Store
    from .timers import TimerJob

__all__ = ["Worker"]

log = logging.getLogger("clawstate.worker")


class Worker:
    """Runs projections and the sweep for ``store`` until :meth:`stop`.

    ``sweep_interval`` defaults to the store's configured one; 0 turns the sweep
    off (another worker, or the store itself, does it).  Open the store with
    ``sweep_interval=0`` so the store's own sweeper does not double the work.
    """

    def __init__(
        self,
        store: Store,
        projections: Iterable[Projection] = (),
        *,
        sweep_interval: float | None = None,
        batch: int = 500,
        idle_wait: float = 1.0,
        timers: bool = True,
        timer_handlers: Iterable[str] | None = None,
        timer_batch: int = 100,
    ) -> None:
        interval = store.config.sweep_interval if sweep_interval is None else sweep_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            raise InvalidRequest("sweep_interval", f"must be seconds >= 0, got {interval!r}")
        if isinstance(idle_wait, bool) or not isinstance(idle_wait, (int, float)):
            raise InvalidRequest("idle_wait", f"must be seconds > 0, got {idle_wait!r}")
        if not 0 < idle_wait <= 60:
            raise InvalidRequest("idle_wait", f"must be > 0 and <= 60 seconds, got {idle_wait!r}")
        self._store = store
        self._sweep_interval = float(interval)
        self._idle_wait = float(idle_wait)
        chosen = list(projections)
        self._runner: ProjectionRunner | None = (
            store.events.projection_runner(chosen, batch=batch) if chosen else None
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._sweeps = 0
        self._swept: dict[str, int] = {}
        self._sweep_error: str | None = None
        self._last_sweep: float | None = None
        # The timers job (clawstate.timers.TimerJob): its own Timers, so its counters
        # and handler allow-list are the worker's, not every user of store.timers.
        self._timer_job: TimerJob | None = None
        if timers:
            from .timers import TimerJob, Timers

            own = Timers(store)
            own.allow_handlers(timer_handlers)
            self._timer_job = TimerJob(own, batch=timer_batch)

    @property
    def runner(self) -> ProjectionRunner | None:
        """The projection runner (``None`` without projections)."""
        return self._runner

    # -- one pass, for cron jobs and tests ------------------------------------------------

    def run_once(self) -> dict[str, Any]:
        """Catch every projection up to the log's end and sweep once (if the sweep is
        on); returns what was done.  Errors propagate."""
        handled = self._runner.run_until_idle() if self._runner is not None else 0
        swept = self._sweep_once(raise_errors=True) if self._sweep_interval > 0 else {}
        out: dict[str, Any] = {"handled": handled, "swept": swept}
        if self._timer_job is not None:
            job, fired = self._timer_job, 0
            while n := job.timers.fire_due(limit=job.batch, max_attempts=job.max_attempts):
                fired += n
            out["timers_fired"] = fired
        return out

    # -- until stopped --------------------------------------------------------------------

    def start(self) -> None:
        """Start the jobs' threads and return (see :meth:`run` to block)."""
        with self._lock:
            if self._threads:
                raise InvalidRequest("worker", "this worker is already running")
            self._stop.clear()
            jobs: list[tuple[str, Callable[[], None]]] = []
            if self._runner is not None:
                runner = self._runner
                jobs.append(
                    (
                        "projections",
                        lambda: runner.run_forever(self._stop, idle_wait=self._idle_wait),
                    )
                )
            if self._sweep_interval > 0:
                jobs.append(("sweep", self._sweep_loop))
            if self._timer_job is not None:
                job = self._timer_job
                job._stop.clear()
                jobs.append(("timers", job.run))
            if not jobs:
                raise InvalidRequest(
                    "worker",
                    "nothing to run: give projections, a sweep_interval > 0 or timers",
                )
            for name, target in jobs:
                t = threading.Thread(target=target, name=f"clawstate-worker-{name}", daemon=True)
                t.start()
                self._threads.append(t)
        log.info(
            "worker started",
            extra={
                "projections": [p.name for p in self._runner.projections] if self._runner else [],
                "sweep_interval": self._sweep_interval,
            },
        )

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until :meth:`stop` is called or ``stop`` is set; then join the jobs."""
        self.start()
        try:
            while not self._stop.wait(0.2):
                if stop is not None and stop.is_set():
                    break
        finally:
            self.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Ask every job to stop after its current step, and wait for them."""
        self._stop.set()
        if self._runner is not None:
            self._runner.stop()
        if self._timer_job is not None:
            self._timer_job.stop()
        with self._lock:
            threads, self._threads = self._threads, []
        limit = self._idle_wait + 30.0 if timeout is None else timeout
        for t in threads:
            if t is not threading.current_thread():
                t.join(limit)
        if threads:
            log.info("worker stopped")

    @property
    def running(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def status(self) -> dict[str, Any]:
        """The projections' checkpoints and lag, and the sweep's totals so far."""
        import msgspec

        projections = self._runner.status() if self._runner is not None else []
        return {
            "running": self.running,
            "projections": [msgspec.structs.asdict(p) for p in projections],
            "sweep": {
                "interval": self._sweep_interval,
                "runs": self._sweeps,
                "removed": dict(self._swept),
                "last_run": self._last_sweep,
                "last_error": self._sweep_error,
            },
            "timers": None if self._timer_job is None else self._timer_job.status(),
        }

    # -- the sweep job --------------------------------------------------------------------

    def _sweep_once(self, *, raise_errors: bool) -> dict[str, int]:
        try:
            result = self._store.sweep()
        except ClawStateError as exc:
            self._sweep_error = f"{type(exc).__name__}: {exc}"
            if raise_errors:
                raise
            log.warning("sweep failed; retrying next interval", extra={"error": self._sweep_error})
            return {}
        self._sweep_error = None
        self._sweeps += 1
        self._last_sweep = time.time()
        for key, n in result.items():
            self._swept[key] = self._swept.get(key, 0) + n
        if any(result.values()):
            log.info("swept", extra={"removed": result})
        return result

    def _sweep_loop(self) -> None:
        # The first sweep runs at once: a worker started after downtime catches up.
        while not self._stop.is_set():
            self._sweep_once(raise_errors=False)
            self._stop.wait(self._sweep_interval)
