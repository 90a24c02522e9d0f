"""Child process of the lock tests (``tests/test_locks_crash.py``).

``lock_worker.py URL MODE ...``

``hold NAME TTL``
    Acquire ``NAME`` for ``TTL`` seconds, write ``{"by": pid}`` to ``out/k`` fenced by
    the lease, print ``held <token>`` and sleep until killed (the parent SIGKILLs it).
``pause NAME TTL``
    Acquire, write ``out/k`` fenced by the lease, print ``held <token>`` and stop
    itself (SIGSTOP).  The parent waits past the lease, lets another holder take the
    lock and SIGCONTs it: its next fenced write must be refused, and it prints
    ``fenced <token> <current>`` (or ``wrote`` if the storage let it through).
``mutex NAME ROUNDS LOG``
    ``ROUNDS`` times: take the lock (waiting for ever), append ``enter <pid>`` to
    ``LOG``, read-modify-write the counter ``out/counter`` fenced by the lease (no
    version check: only the lock keeps increments from being lost), append ``exit
    <pid>`` and release.  ``LOG`` is opened ``O_APPEND``, so its lines are in the order
    the critical sections really ran.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import clawstate


def main() -> None:
    url, mode, name = sys.argv[1], sys.argv[2], sys.argv[3]
    store = clawstate.open(url, sweep_interval=0)
    out = store.namespace("out")
    pid = os.getpid()
    if mode == "hold":
        lease = store.locks.acquire(name, ttl=float(sys.argv[4]), wait=30)
        out.put("k", {"by": pid, "token": lease.token}, fence=lease)
        print(f"held {lease.token}", flush=True)
        time.sleep(3600)
    elif mode == "pause":
        lease = store.locks.acquire(name, ttl=float(sys.argv[4]), wait=30)
        out.put("k", {"by": pid, "n": 0}, fence=lease)
        print(f"held {lease.token}", flush=True)
        # The pause: between two writes (as a GC pause or a frozen VM would land), not
        # inside one, where it would hold the database's write lock.
        os.kill(pid, signal.SIGSTOP)
        try:
            out.put("k", {"by": pid, "n": 1}, fence=lease)
        except clawstate.FencingError as exc:
            print(f"fenced {exc.token} {exc.current}", flush=True)
        else:
            print("wrote", flush=True)
    elif mode == "mutex":
        rounds, log = int(sys.argv[4]), sys.argv[5]
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        print("ready", flush=True)
        for _ in range(rounds):
            with store.lock(name, ttl=30, wait=None) as lease:
                os.write(fd, f"enter {pid}\n".encode())
                item = out.get("counter")
                count = 0 if item is None else int(item.value)
                out.put("counter", count + 1, fence=lease)
                os.write(fd, f"exit {pid}\n".encode())
        os.close(fd)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    store.close()


if __name__ == "__main__":
    main()
