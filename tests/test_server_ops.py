"""``clawstate serve`` as an operator meets it: several processes over one store, workers,
TLS, graceful shutdown, tokens and the audit chain from the shell.

Several server processes over one store must share state — tokens included.  The same
test runs over one SQLite file (always) and over PostgreSQL (when ``postgresql://``
opens and the service answers: see tests/services.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from services import require_module

require_module("litestar")
httpx = require_module("httpx")

import clawstate  # noqa: E402
from clawstate.server.auth import TokenStore  # noqa: E402
from clawstate.server.testing import ServerProcess  # noqa: E402
from services import POSTGRES_URL, require, tcp_probe  # noqa: E402


def _store_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    host_port = POSTGRES_URL.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    require("postgresql", tcp_probe(host or "127.0.0.1", int(port or 5432)))
    clawstate.open(POSTGRES_URL).close()  # the backend has landed: failing to open is a failure
    return POSTGRES_URL


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_server_processes_share_one_store(kind: str, tmp_path: Path) -> None:
    url = _store_url(kind, tmp_path)
    with clawstate.open(url) as local:
        admin_token, _ = TokenStore(local).create(["admin"], note="test")
    ns_name = f"shared-{uuid.uuid4().hex[:8]}"
    with ServerProcess(url) as a, ServerProcess(url) as b:
        ca = clawstate.open(a.url, token=admin_token)
        cb = clawstate.open(b.url, token=admin_token)
        try:
            first = ca.namespace(ns_name).put("k", {"n": 0})
            seen = cb.namespace(ns_name).get("k")
            assert seen is not None and (seen.value, seen.etag) == ({"n": 0}, first.etag)
            with pytest.raises(clawstate.VersionConflict):
                cb.namespace(ns_name).put("k", {"n": 9}, if_version=first.version + 1)

            # CAS increments through both servers at once stay exact
            errors: list[BaseException] = []

            def bump(store: Any, times: int) -> None:
                try:
                    ns = store.namespace(ns_name)
                    for _ in range(times):
                        while True:
                            cur = ns.get("k")
                            try:
                                ns.put("k", {"n": cur.value["n"] + 1}, if_version=cur.version)
                                break
                            except clawstate.VersionConflict:
                                continue
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=bump, args=(s, 25)) for s in (ca, cb, ca, cb)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors[:2]
            final = ca.namespace(ns_name).get("k")
            assert final is not None and final.value == {"n": 100} and final.version == 101

            # a watch on B sees what A writes
            watch = cb.watch(None, namespace=ns_name, timeout=5)
            ca.namespace(ns_name).put("from-a", 1)
            change = next(watch)
            assert (change.namespace, change.key) == (ns_name, "from-a")
            watch.close()

            # tokens live in the store: made through A, honoured by B; revoked through A,
            # refused by B once B's short verification cache lapses
            with a.admin() as http_a:
                http_a.headers["authorization"] = f"Bearer {admin_token}"
                made = http_a.post(
                    "/v1/admin/tokens", json={"scopes": [f"ns:{ns_name}:read"]}
                ).json()
                reader = made["token"]
                check = f"/v1/namespaces/{ns_name}/count"
                assert (
                    httpx.get(
                        b.url + check, headers={"authorization": f"Bearer {reader}"}
                    ).status_code
                    == 200
                )
                http_a.delete(f"/v1/admin/tokens/{made['id']}")
            deadline = time.monotonic() + 10
            status = 200
            while time.monotonic() < deadline:
                status = httpx.get(
                    b.url + check, headers={"authorization": f"Bearer {reader}"}
                ).status_code
                if status == 401:
                    break
                time.sleep(0.2)
            assert status == 401
        finally:
            ca.close()
            cb.close()
        assert a.stop() == 0 and b.stop() == 0


def test_two_workers_share_port_and_metrics() -> None:
    with ServerProcess(workers=2, extra_args=["--rate-limit", "0"]) as proc:
        with proc.admin() as http:
            http.put("/v1/namespaces/w/items/k", json=1)
            n = 60
            for _ in range(n):
                # a new connection each time, so the kernel spreads them over the workers
                with httpx.Client(base_url=proc.url, headers=dict(http.headers)) as one:
                    assert one.get("/v1/namespaces/w/items/k").status_code == 200
            text = http.get("/metrics").text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith("clawstate_http_requests_total{")
            and 'route="/v1/namespaces/{namespace}/items/{key}"' in line
            and 'method="GET"' in line
        )
        assert float(line.rsplit(" ", 1)[1]) >= n  # summed over both workers
        assert proc.stop() == 0


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


def test_tls(tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    with ServerProcess(certfile=certfile, keyfile=keyfile) as proc:
        assert proc.url.startswith("https://")
        store = clawstate.open(proc.url, token=proc.admin_token, verify=certfile)
        try:
            store.namespace("tls").put("k", {"over": "tls"})
            got = store.namespace("tls").get("k")
            assert got is not None and got.value == {"over": "tls"}
        finally:
            store.close()
        with pytest.raises(clawstate.BackendUnavailable):  # an unverified server is refused
            clawstate.open(proc.url, token=proc.admin_token)
        plain = proc.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(plain + "/healthz", timeout=3)


def test_graceful_shutdown_drains_in_flight_requests(tmp_path: Path) -> None:
    proc = ServerProcess(extra_args=["--rate-limit", "0", "--graceful-timeout", "20"]).start()
    url, token = proc.url, proc.admin_token
    results: list[tuple[str, int | str]] = []
    lock = threading.Lock()
    stream_text: list[str] = []

    def watch() -> None:
        with httpx.stream(
            "GET",
            url + "/v1/changes?namespace=drain",
            headers={"authorization": f"Bearer {token}", "accept": "text/event-stream"},
            timeout=30,
        ) as r:
            for chunk in r.iter_text():
                stream_text.append(chunk)

    def writer(i: int) -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}) as http:
            for j in range(40):
                key = f"w{i}-{j}"
                try:
                    r = http.put(f"/v1/namespaces/drain/items/{key}", json={"i": i, "j": j})
                    outcome: int | str = r.status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    results.append((key, outcome))
                if not isinstance(outcome, int):
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in writers:
        t.start()
    time.sleep(0.3)
    code = proc.stop(timeout=30)
    for t in writers:
        t.join(30)
    watcher.join(10)
    assert code == 0, proc.logs
    statuses = {outcome for _, outcome in results if isinstance(outcome, int)}
    assert statuses <= {200, 201}, statuses  # nothing half-done: no 5xx
    acked = [key for key, outcome in results if outcome in (200, 201)]
    assert acked, "no request completed before the shutdown"
    assert "event: end" in "".join(stream_text)  # the watch was ended cleanly
    with clawstate.open(proc.store_url) as store:  # every acknowledged write is there
        found = store.namespace("drain").get_many(acked[:1000])
        assert set(found) == set(acked)
    proc.close()


# -- the shell: tokens and the audit chain --------------------------------------------


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWSTATE_")}
    env["CLAWSTATE_URL"] = f"sqlite:///{tmp_path / 'state.db'}"
    return subprocess.run(
        [sys.executable, "-m", "clawstate.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_commands_and_audit_verify(tmp_path: Path) -> None:
    made = _cli(
        [
            "token",
            "create",
            "--scope",
            "ns:carts:rw",
            "--scope",
            "events:orders-*:read",
            "--ttl",
            "30d",
        ],
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["token"].startswith("cst_") and doc["scopes"] == [
        "ns:carts:rw",
        "events:orders-*:read",
    ]
    assert 29 * 86400 < doc["expires_at"] - time.time() <= 30 * 86400
    listed = json.loads(_cli(["token", "list"], tmp_path).stdout)
    assert [t["id"] for t in listed] == [doc["id"]]
    assert doc["token"].split("_", 2)[2] not in json.dumps(listed)
    with clawstate.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        raw = store._system_namespace("_tokens").get(doc["id"])
        assert raw is not None and doc["token"].split("_", 2)[2] not in json.dumps(raw.value)
    revoked = json.loads(_cli(["token", "revoke", doc["id"]], tmp_path).stdout)
    assert revoked == {"id": doc["id"], "revoked": True}
    bad = _cli(["token", "create", "--scope", "nonsense"], tmp_path)
    assert bad.returncode == 2 and "scope" in bad.stderr
    ok = _cli(["audit", "verify"], tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["records"] >= 3

    # tamper with one record: the chain breaks and verify says where
    with clawstate.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        audit = store._system_namespace("_audit")
        rec = audit.get(f"{2:020d}")
        assert rec is not None
        audit.put(rec.key, {**rec.value, "actor": "someone-else"})
    broken = _cli(["audit", "verify"], tmp_path)
    assert broken.returncode == 1
    assert any("record 2" in p for p in json.loads(broken.stdout)["problems"])
