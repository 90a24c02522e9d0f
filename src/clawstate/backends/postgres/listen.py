"""The PostgreSQL backend's change log and its wake-ups: ``LISTEN``/``NOTIFY``.

Every write transaction sends ``NOTIFY`` with its last seq (``"<seq> <pos>"`` when
it appended events), delivered at commit.  One dedicated connection per backend
LISTENs; a thread fans notifications out through the core's condition variable
to ``wait_for_change`` (here) and ``wait_for_events`` (:mod:`.events`).  If the
listener connection is lost, waiters poll every ``poll_interval`` until it is back.
(PostgreSQL serialises the commits of notifying transactions cluster-wide; within a
schema ours are serial anyway, so only writers of *different* schemas feel it.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from ...types import Change
from ..base import OP_NAMES
from ._core import PostgresCore

__all__ = ["PostgresListen"]


class PostgresListen(PostgresCore):
    """The change log, ``last_seq`` and the LISTEN thread of :class:`~.backend.PostgresBackend`."""

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        s = self._s
        if namespace is None:
            query = (
                f"SELECT seq, ns, key, op, version, ts FROM {s}.changes WHERE seq > %s "
                "ORDER BY seq LIMIT %s"
            )
            params: tuple[Any, ...] = (after_seq, limit)
        else:
            nid = self._ns_id(namespace)
            if nid is None:
                return []
            query = (
                f"SELECT seq, ns, key, op, version, ts FROM {s}.changes "
                "WHERE ns = %s AND seq > %s ORDER BY seq LIMIT %s"
            )
            params = (nid, after_seq, limit)

        def run(conn: psycopg.Connection[Any]) -> list[Change]:
            rows = conn.execute(query, params, binary=True).fetchall()
            return [
                Change(r[0], self._ns_name(r[1], conn), r[2], OP_NAMES[r[3]], r[4], r[5])  # type: ignore[arg-type]
                for r in rows
            ]

        out: list[Change] = self._read("changes", run)
        return out

    def last_seq(self) -> int:
        query = self._sql["last_seq"]
        row = self._read("last_seq", lambda conn: conn.execute(query, prepare=True).fetchone())
        seq = int(row[0])
        if seq > self._known_seq:
            with self._cond:
                self._known_seq = max(self._known_seq, seq)
        return seq

    def first_seq(self) -> int:
        query = f"SELECT MIN(seq), MAX(seq) FROM {self._s}.changes"
        row = self._read("first_seq", lambda conn: conn.execute(query).fetchone())
        if row[0] is None:
            return self.last_seq() + 1
        return int(row[0])

    def _ensure_listener(self) -> None:
        with self._listener_lock:
            if self._listener is None and not self._closed:
                self._listener = threading.Thread(
                    target=self._listen_loop, name=f"clawstate-listen-{self.schema}", daemon=True
                )
                self._listener.start()
        self._listen_ready.wait(timeout=min(self._pool_timeout, 5.0))

    def _listen_loop(self) -> None:
        """LISTEN on a dedicated connection; fan notifications out to waiters."""
        while not self._closed:
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True)
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                with self._cond:
                    self._listening = True
                    self._listen_gen += 1
                    self._cond.notify_all()
                self._listen_ready.set()
                while not self._closed:
                    for note in conn.notifies(timeout=1.0):
                        if self._closed:
                            break
                        try:
                            # "<seq>", or "<seq> <position>" from a commit appending events
                            seq_text, _, pos_text = note.payload.partition(" ")
                            seq = int(seq_text)
                            pos = int(pos_text) if pos_text else 0
                        except ValueError:
                            continue  # a wake-up (close) or a foreign payload
                        if seq > self._known_seq or pos > self._known_pos:
                            with self._cond:
                                self._known_seq = max(self._known_seq, seq)
                                self._known_pos = max(self._known_pos, pos)
                                self._cond.notify_all()
            except psycopg.Error:
                pass
            finally:
                with self._cond:
                    self._listening = False
                    self._cond.notify_all()
                self._listen_ready.set()
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
            with self._cond:  # back off before reconnecting (close() wakes us)
                if not self._closed:
                    self._cond.wait(self._poll)

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """Woken by NOTIFY (sent by every write transaction, delivered at commit);
        polls every ``poll_interval`` only while the listener connection is down."""
        deadline = time.monotonic() + timeout
        if self._known_seq > after_seq:
            return True
        self._ensure_listener()
        while True:
            with self._cond:
                gen, listening = self._listen_gen, self._listening
            # The listener was LISTENing before this read: a commit after it notifies.
            if self.last_seq() > after_seq:
                return True
            with self._cond:
                # Counted before the check below: a commit that raises _known_seq after
                # the check then sees a waiter and notifies (see _committed).
                self._waiters += 1
                try:
                    while True:
                        if self._known_seq > after_seq:
                            return True
                        remaining = deadline - time.monotonic()
                        if self._closed or remaining <= 0:
                            return False
                        if not listening:
                            self._cond.wait(min(remaining, self._poll))
                            break  # poll the database again
                        if self._listen_gen != gen or not self._listening:
                            break  # reconnected (notifications may have been missed) or lost
                        self._cond.wait(remaining)
                finally:
                    self._waiters -= 1

    # -- maintenance -----------------------------------------------------------------------
