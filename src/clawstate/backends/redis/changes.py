"""The Redis backend's change log (a Stream under ``P log``): reading changes, the seq
bounds, ``wait_for_change`` (``XREAD BLOCK``), and the sweep that purges expired items
and idempotency records and trims the log.

Split out of :mod:`.backend` by job so each module stays small; everything here runs
over the plumbing of :class:`~._core.RedisCore`.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, cast

from redis.exceptions import RedisError

from ...errors import BackendUnavailable
from ...types import Change
from ..base import SweepResult
from ._core import RedisCore, _num
from .scripts import _SWEEP

__all__ = ["SWEEP_MAX_EXPIRE", "SWEEP_MAX_IDEMPOTENCY", "SWEEP_MAX_TRIM", "RedisChanges"]

#: The most expired items, idempotency records and log entries one sweep call removes.
SWEEP_MAX_EXPIRE = 10_000
SWEEP_MAX_IDEMPOTENCY = 10_000
SWEEP_MAX_TRIM = 50_000
_OP_NAMES_BY_CODE: dict[bytes, str] = {b"0": "put", b"1": "delete", b"2": "expire"}


class RedisChanges(RedisCore):
    """The change log, watch and sweep of :class:`~.backend.RedisBackend`."""

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        out: list[Change] = []
        start = f"(0-{after_seq}" if after_seq > 0 else "-"
        want = namespace.encode() if namespace is not None else None
        batch = limit if namespace is None else max(limit, 500)
        while len(out) < limit:
            rows = cast(
                list[list[Any]],
                self._read(
                    "changes",
                    partial(self._call, "XRANGE", self._k_log, start, "+", "COUNT", batch),
                ),
            )
            for entry_id, fields in rows:
                f = dict(zip(fields[::2], fields[1::2], strict=True))
                ns = f[b"ns"]
                if want is not None and ns != want:
                    continue
                out.append(
                    Change(
                        int(entry_id[2:]),
                        ns.decode(),
                        f[b"key"].decode(),
                        _OP_NAMES_BY_CODE[f[b"op"]],  # type: ignore[arg-type]
                        int(f[b"ver"]),
                        float(f[b"ts"]),
                    )
                )
                if len(out) >= limit:
                    break
            if len(rows) < batch:
                break
            start = "(" + rows[-1][0].decode()
        return out

    def last_seq(self) -> int:
        """The newest log entry's ID: the sweep never trims it, so it is the last seq."""
        top = self._read(
            "last_seq", partial(self._call, "XREVRANGE", self._k_log, "+", "-", "COUNT", 1)
        )
        return int(top[0][0][2:]) if top else 0

    def first_seq(self) -> int:
        first, last = self._bounds()
        return first if first else last + 1

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """``XREAD BLOCK`` on the log: returns as soon as an entry after ``after_seq`` exists.

        The newest log entry is never trimmed and its ID is the last seq, so "an entry
        after ``after_seq`` exists" is exactly "a change after ``after_seq`` committed".
        """
        deadline = time.monotonic() + timeout
        start = f"0-{max(after_seq, 0)}"
        while True:
            if self._closed:
                return False
            block = min(deadline - time.monotonic(), self._block)
            if block <= 0:
                return self.last_seq() > after_seq
            try:
                got = self._pooled(
                    "XREAD",
                    "COUNT",
                    1,
                    "BLOCK",
                    max(1, int(block * 1000)),
                    "STREAMS",
                    self._k_log,
                    start,
                )
            except RedisError as exc:
                if self._closed:
                    return False
                raise self._translate(exc, "watch") from exc
            if got:
                return True

    # -- maintenance -----------------------------------------------------------------

    def sweep(self, now: float, changelog_before: float) -> SweepResult:
        args = [
            self.prefix,
            _num(now),
            _num(changelog_before),
            SWEEP_MAX_EXPIRE,
            SWEEP_MAX_IDEMPOTENCY,
            SWEEP_MAX_TRIM,
        ]
        if self._closed:
            raise BackendUnavailable("the store is closed")
        try:
            got = cast(list[int], self._evalsha(_SWEEP, args))
        except RedisError as exc:
            raise self._translate(exc, "sweep") from exc
        return SweepResult(expired=int(got[0]), idempotency_keys=int(got[1]), changes=int(got[2]))
