"""Real server restarts under load: our own PostgreSQL and our own ``redis-server``.

docs/backends.md says a restarted server loses nothing acknowledged and that a store
recovers from it without being reopened.  These tests start a private server (PostgreSQL
by ``initdb`` into a temporary directory on a free loopback port; ``redis-server`` with
``--appendonly yes --appendfsync always``), put a store under a write load from several
threads, kill the server — SIGKILL of every server process, or PostgreSQL's immediate
shutdown, both of which skip the shutdown checkpoint and force crash recovery — and start
it again on the same port and data directory.  Then:

* every write the store acknowledged is there, by key and value, and every acknowledged
  two-key transaction is whole (no half of one is ever visible);
* the *same* store object, never reopened, is writing again (its pool and listener
  reconnected by themselves);
* while the server was down, every failure the writers saw was a ``ClawStateError``
  (``BackendUnavailable``), never another exception;
* ``check()`` passes.

The servers' binaries come from the machine: on a laptop without them the tests skip,
saying what to install; under ``CLAWSTATE_REQUIRE_SERVICES=1`` (CI) they fail.  A short
run is part of ``make test``; the ``slow`` variants do more restarts with longer loads.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import clawstate
from services import require_binary, require_module

PG_BIN = Path("/usr/local/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# -- the servers -----------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of our own: ``initdb`` into a temporary directory, the server
    on a free loopback port, its unix socket inside that directory.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
    user (``subprocess``'s ``user=``), and the directory belongs to that user."""

    def __init__(self) -> None:
        self.initdb = require_binary("initdb", str(PG_BIN / "initdb"))
        self.postgres = require_binary("postgres", str(PG_BIN / "postgres"))
        self.pg_ctl = require_binary("pg_ctl", str(PG_BIN / "pg_ctl"))
        require_module("psycopg")
        self.user: str | None = None
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                from services import missing

                missing("no 'postgres' user to run the server as", "apt-get install postgresql")
            self.user = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="clawstate-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        if self.user is not None:
            shutil.chown(self.dir, self.user, self.user)
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "clawstate",
                   "--no-sync", "-E", "UTF8"])  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"postgresql://clawstate@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run(cmd, user=self.user, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{cmd[0]} failed: {out.stdout}{out.stderr}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's for its life
        self.proc = subprocess.Popen(
            [self.postgres, "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "max_connections=60", "-c", "shared_buffers=16MB"],
            user=self.user,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: a kill reaches every backend
        )  # fmt: skip
        log.close()
        _until(self.ready, 60, f"PostgreSQL on port {self.port} ({self.log_tail()})")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"PostgreSQL exited: {self.log_tail()}")
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False  # still starting or recovering

    def recoveries(self) -> int:
        """How many starts ran crash recovery (the proof that a kill was a crash)."""
        return self.log_tail(None).count("automatic recovery in progress")

    def kill(self, how: str) -> None:
        """Stop the server the hard way: ``sigkill`` every process of the cluster at
        once, or PostgreSQL's ``immediate`` shutdown (no checkpoint).  Either way the
        next start runs crash recovery from the WAL."""
        assert self.proc is not None
        if how == "sigkill":
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        self.proc.wait(30)
        _until(lambda: not _any_alive(self.proc), 30, "every PostgreSQL process to exit")

    def log_tail(self, size: int | None = 2000) -> str:
        try:
            text = (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return text if size is None else text[-size:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def _any_alive(proc: subprocess.Popen[bytes] | None) -> bool:
    """Whether any process of ``proc``'s group is still running."""
    if proc is None:
        return False
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateRedis:
    """A ``redis-server`` of our own whose every acknowledged write is on disk: an
    append-only file synced on every write (``appendfsync always``), no RDB snapshots."""

    def __init__(self, appendonly: bool = True) -> None:
        self.appendonly = appendonly
        self.binary = require_binary("redis-server")
        require_module("redis")
        self.dir = Path(tempfile.mkdtemp(prefix="clawstate-redis-"))
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's for its life
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.dir)],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        log.close()
        _until(self.ready, 60, f"redis-server on port {self.port}")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {self.log_tail()}")
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.exceptions.BusyLoadingError:
            return False  # still loading the append-only file
        except redis.exceptions.ConnectionError:
            return False

    def recoveries(self) -> int:
        """How many starts loaded the append-only file (what a restart recovers from)."""
        return self.log_tail(None).count("DB loaded from append only file")

    def kill(self, how: str) -> None:
        assert self.proc is not None and how == "sigkill"
        self.proc.kill()
        self.proc.wait(30)

    def log_tail(self, size: int | None = 2000) -> str:
        try:
            text = (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return text if size is None else text[-size:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


Server = PrivatePostgres | PrivateRedis


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


# -- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    """Writer threads on one store: puts of unique keys and two-key transactions, each
    recorded only once the store acknowledged it."""

    store: clawstate.Store
    acked_puts: dict[str, int] = field(default_factory=dict)
    acked_tx: set[str] = field(default_factory=set)
    refused: int = 0  # writes that failed with a ClawStateError (the server was down)
    foreign: list[BaseException] = field(default_factory=list)  # anything else: a bug
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, puts: int = 2, transactions: int = 1) -> None:
        for w in range(puts):
            self.threads.append(threading.Thread(target=self._puts, args=(w,)))
        for w in range(transactions):
            self.threads.append(threading.Thread(target=self._transactions, args=(w,)))
        for t in self.threads:
            t.start()

    def acks(self) -> int:
        with self.lock:
            return len(self.acked_puts) + len(self.acked_tx)

    def _attempt(self, write: Callable[[], Any]) -> bool:
        try:
            write()
            return True
        except clawstate.ClawStateError:
            with self.lock:
                self.refused += 1
            time.sleep(0.02)  # the server is down: do not spin
            return False
        except BaseException as exc:  # outside the documented error tree: a defect
            with self.lock:
                self.foreign.append(exc)
            time.sleep(0.02)
            return False

    def _puts(self, w: int) -> None:
        ns = self.store.namespace("puts")
        i = 0
        while not self.stop.is_set():
            key = f"w{w}-{i}"
            if self._attempt(lambda key=key, i=i: ns.put(key, {"i": i, "pad": "x" * (i % 50)})):
                with self.lock:
                    self.acked_puts[key] = i
            i += 1  # a failed write may still have committed: never reuse its key

    def _transactions(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            tid = f"t{w}-{i}"

            def tx(tid: str = tid) -> None:
                with self.store.transaction() as t:
                    t.namespace("tx-a").put(tid, {"tid": tid})
                    t.namespace("tx-b").put(tid, {"tid": tid})

            if self._attempt(tx):
                with self.lock:
                    self.acked_tx.add(tid)
            i += 1

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a writer hung"


def _scan(store: clawstate.Store, namespace: str) -> dict[str, Any]:
    ns = store.namespace(namespace)
    out: dict[str, Any] = {}
    cursor = None
    while True:
        page = ns.scan(limit=1000, cursor=cursor)
        out.update((item.key, item.value) for item in page.items)
        cursor = page.cursor
        if cursor is None:
            return out


def _verify(store: clawstate.Store, load: Load) -> None:
    """Every acknowledged write is there by key and value; no transaction is half there."""
    puts = _scan(store, "puts")
    lost = [k for k in load.acked_puts if k not in puts]
    assert not lost, f"{len(lost)} acknowledged puts lost, e.g. {lost[:5]}"
    wrong = [k for k, i in load.acked_puts.items() if puts[k] != {"i": i, "pad": "x" * (i % 50)}]
    assert not wrong, f"puts with the wrong value: {wrong[:5]}"
    a, b = set(_scan(store, "tx-a")), set(_scan(store, "tx-b"))
    assert a == b, f"half a transaction is visible: {sorted(a ^ b)[:5]}"
    missing = load.acked_tx - a
    assert not missing, f"acknowledged transactions lost: {sorted(missing)[:5]}"
    report = store.check()
    assert report.ok, report.problems


def _restart_under_load(
    server: Server, url: str, restarts: int, how: str, load_seconds: float, recover: bool = True
) -> None:
    """``restarts`` times: write for ``load_seconds``, kill the server as ``how`` says,
    keep writing against the dead server, start it again, and wait until the *same*
    store acknowledges writes again.  Then verify, with that store and a fresh one."""
    store = clawstate.open(url, sweep_interval=0)
    load = Load(store)
    load.start()
    try:
        for _ in range(restarts):
            before = load.acks()
            _until(lambda before=before: load.acks() >= before + 20, 60, "writes to be acked")
            time.sleep(load_seconds)
            recovered = server.recoveries()
            server.kill(how)
            refused = load.refused
            _until(lambda refused=refused: load.refused > refused, 30, "writes to be refused")
            server.start()
            if recover:
                assert server.recoveries() == recovered + 1, server.log_tail()
            after = load.acks()
            # recovery without reopening: the same store acknowledges new writes
            _until(lambda after=after: load.acks() >= after + 20, 60, "the store to recover")
    finally:
        load.finish()
    try:
        assert not load.foreign, f"errors outside ClawStateError: {load.foreign[:3]!r}"
        _verify(store, load)
    finally:
        store.close()
    with clawstate.open(url, sweep_interval=0) as fresh:
        _verify(fresh, load)


def _pg_url(server: PrivatePostgres) -> str:
    return f"{server.url}?schema=r_{uuid.uuid4().hex[:8]}"


def _redis_url(server: PrivateRedis) -> str:
    return f"{server.url}?prefix=restart-{uuid.uuid4().hex[:8]}:"


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigkill", "immediate"])
def test_postgres_restart_loses_nothing_acknowledged(
    postgres_server: PrivatePostgres, how: str
) -> None:
    _restart_under_load(postgres_server, _pg_url(postgres_server), 1, how, 0.3)


def test_redis_restart_loses_nothing_acknowledged(redis_server: PrivateRedis) -> None:
    _restart_under_load(redis_server, _redis_url(redis_server), 1, "sigkill", 0.3)


def test_the_check_sees_a_server_that_forgets() -> None:
    """The control: a Redis without persistence forgets acknowledged writes on a kill,
    and the same procedure must say so — a restart test that cannot fail proves nothing."""
    server = PrivateRedis(appendonly=False)
    try:
        server.start()
        with pytest.raises(AssertionError, match="acknowledged puts lost"):
            _restart_under_load(server, _redis_url(server), 1, "sigkill", 0.3, recover=False)
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "immediate"])
def test_postgres_many_restarts_lose_nothing(postgres_server: PrivatePostgres, how: str) -> None:
    _restart_under_load(postgres_server, _pg_url(postgres_server), 8, how, 1.5)


@pytest.mark.slow
def test_redis_many_restarts_lose_nothing(redis_server: PrivateRedis) -> None:
    _restart_under_load(redis_server, _redis_url(redis_server), 8, "sigkill", 1.5)
