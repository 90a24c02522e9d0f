"""The object stores: the conformance suite over ``file:`` and over a real S3 server
(SeaweedFS, started by ``tests/s3server.py``), plus URL checks and an S3 server that
dies mid-test."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from clawstate.errors import BackendUnavailable, IntegrityError, InvalidRequest
from clawstate.objects import FileObjectStore, open_object_store, redact
from clawstate.testing.conformance.objects import ObjectStoreConformance
from s3server import SeaweedFS, s3_server, weed_binary  # noqa: F401  (s3_server: a fixture)
from services import require_module

require_module("obstore")


class TestFileObjects(ObjectStoreConformance):
    @pytest.fixture
    def object_url(self, tmp_path: Path) -> Callable[[], tuple[str, Path]]:
        counter = itertools.count()
        return lambda: (f"file:objects-{next(counter)}", tmp_path)


class TestS3Objects(ObjectStoreConformance):
    byte_order = False  # SeaweedFS lists "p/…" before "p-x"

    @pytest.fixture
    def object_url(self, s3_server: SeaweedFS, tmp_path: Path) -> Callable[[], tuple[str, Path]]:  # noqa: F811
        return lambda: (s3_server.url(s3_server.bucket()), tmp_path)


# -- file: specifics ------------------------------------------------------------------


def test_file_url_is_relative_to_the_base(tmp_path: Path) -> None:
    store = open_object_store("file:objs", tmp_path)
    assert isinstance(store, FileObjectStore) and store.root == (tmp_path / "objs").resolve()
    store.put("a/b", b"1")
    assert (tmp_path / "objs" / "a" / "b").read_bytes() == b"1"
    absolute = open_object_store(f"file://{tmp_path}/abs", "/nonexistent")
    assert isinstance(absolute, FileObjectStore) and absolute.root == (tmp_path / "abs")


def test_file_store_leaves_no_temp_files_and_refuses_escapes(tmp_path: Path) -> None:
    store = open_object_store("file:objs", tmp_path)
    store.put("x", b"1" * 10_000)
    assert list((tmp_path / "objs" / ".tmp").iterdir()) == []
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "objs" / "link").symlink_to(outside)
    with pytest.raises(InvalidRequest, match="outside"):
        store.put("link/evil", b"x")
    assert list(outside.iterdir()) == []


def test_file_store_name_and_prefix_conflict(tmp_path: Path) -> None:
    store = open_object_store("file:objs", tmp_path)
    store.put("a", b"1")
    with pytest.raises(InvalidRequest) as err:
        store.put("a/b", b"2")
    assert err.value.field == "name"
    store.put("c/d", b"3")
    with pytest.raises(InvalidRequest):
        store.put("c", b"4")
    assert store.delete("c/d") is True
    assert not (tmp_path / "objs" / "c").exists()  # emptied directories are pruned
    assert [i.name for i in store.list().items] == ["a"]


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("", "url"),
        ("ftp://x", "url"),
        ("file:", "url"),
        ("file://remote-host/x", "url"),
        ("file:a\x00b", "url"),
        ("s3://", "url.bucket"),
        ("s3://AB", "url.bucket"),
        ("s3://bad_bucket", "url.bucket"),
        ("s3://b..ucket", "url.bucket"),
        ("s3://user:pw@bucket", "url"),
        ("s3://bucket/../x", "url.prefix"),
        ("s3://bucket?endpoint=ftp://127.0.0.1", "url.endpoint"),
        ("s3://bucket?endpoint=http://", "url.endpoint"),
        ("s3://bucket?endpoint=http://127.0.0.1:99999", "url.endpoint"),
        ("s3://bucket?endpoint=http://127.0.0.1:0", "url.endpoint"),
        ("s3://bucket?endpoint=http://u:p@127.0.0.1", "url.endpoint"),
        ("s3://bucket?endpoint=http://127.0.0.1/path", "url.endpoint"),
        ("s3://bucket?region=us east", "url.region"),
        ("s3://bucket?colour=blue", "url.colour"),
        ("s3://bucket?region=a&region=b", "url.region"),
        ("s3://bucket?timeout=nan", "url.timeout"),
        ("s3://bucket?timeout=0", "url.timeout"),
        ("s3://bucket?part_size=1", "url.part_size"),
        ("s3://bucket?part_size=99999999999999999999999", "url.part_size"),
        ("s3://bucket?concurrency=-1", "url.concurrency"),
        ("s3://bucket?max_size=99999999999999999", "url.max_size"),
        ("s3://bucket?access_key_id=only", "url.secret_access_key"),
    ],
)
def test_bad_urls_name_the_field(url: str, field: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as err:
        open_object_store(url, tmp_path, env={})
    assert err.value.field == field, err.value


def test_secrets_never_show(tmp_path: Path) -> None:
    url = "s3://bucket?endpoint=http://127.0.0.1:9&access_key_id=AK&secret_access_key=TOPSECRET"
    store = open_object_store(url + "&timeout=1&retries=0", tmp_path, env={})
    assert "TOPSECRET" not in repr(store) and "TOPSECRET" not in store.url
    assert "TOPSECRET" not in redact(url)
    with pytest.raises(BackendUnavailable) as err:  # nothing listens on port 9
        store.get("x")
    assert "TOPSECRET" not in str(err.value)
    with pytest.raises(InvalidRequest) as bad:
        open_object_store(url + "&colour=x", tmp_path, env={})
    assert "TOPSECRET" not in str(bad.value)


def test_credentials_from_the_environment(s3_server: SeaweedFS, tmp_path: Path) -> None:  # noqa: F811
    bucket = s3_server.bucket()
    env = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_REGION": s3_server.region,
    }
    store = open_object_store(f"s3://{bucket}", tmp_path, env=env)
    store.put("k", b"v")
    assert store.get("k") == b"v"
    wrong = open_object_store(
        f"s3://{bucket}?timeout=2&retries=0", tmp_path, env={**env, "AWS_SECRET_ACCESS_KEY": "no"}
    )
    with pytest.raises(BackendUnavailable, match="credentials"):  # signed: a bad secret fails
        wrong.get("k")


def test_a_prefix_in_the_url_scopes_the_store(s3_server: SeaweedFS, tmp_path: Path) -> None:  # noqa: F811
    bucket = s3_server.bucket()
    a = open_object_store(s3_server.url(f"{bucket}/tenant-a"), tmp_path)
    b = open_object_store(s3_server.url(f"{bucket}/tenant-b"), tmp_path)
    a.put("x", b"a")
    b.put("x", b"b")
    assert a.get("x") == b"a" and b.get("x") == b"b"
    assert [i.name for i in a.list().items] == ["x"]


# -- a server that dies ---------------------------------------------------------------


def test_a_dead_s3_server_is_backend_unavailable(tmp_path: Path) -> None:
    """SeaweedFS SIGKILLed mid-test: every operation raises BackendUnavailable."""
    from services import missing

    weed = weed_binary()
    if weed is None:
        missing("the 'weed' binary (SeaweedFS) is not installed", "make setup")
        return
    server = SeaweedFS.start(tmp_path / "sw", weed)
    try:
        store = open_object_store(server.url(server.bucket(), timeout=2, retries=0), tmp_path)
        store.put("x", b"1")
        assert store.get("x") == b"1"
        server.kill()
        for call in (
            lambda: store.get("x"),
            lambda: store.put("y", b"2"),
            lambda: store.put("big", iter([b"z" * (9 * 1024 * 1024)])),
            lambda: store.head("x"),
            lambda: store.list(),
            lambda: store.delete("x"),
            lambda: store.get_range("x", 0, 1),
            lambda: store.open("x"),
        ):
            with pytest.raises(BackendUnavailable) as err:
                call()
            assert server.secret_key not in str(err.value)
    finally:
        server.stop()


# -- limits and checks ----------------------------------------------------------------


def test_max_size_is_refused_while_streaming(s3_server: SeaweedFS, tmp_path: Path) -> None:  # noqa: F811
    stores = [
        FileObjectStore(tmp_path / "f", max_size=6 * 1024 * 1024),
        open_object_store(s3_server.url(s3_server.bucket(), max_size=6 * 1024 * 1024)),
    ]
    for store in stores:
        store.put("keep", b"old")
        for data in (b"x" * (6 * 1024 * 1024 + 1), iter([b"y" * 1024 * 1024] * 20)):
            with pytest.raises(InvalidRequest) as err:
                store.put("keep", data)
            assert err.value.field == "data" and err.value.limit == 6 * 1024 * 1024
        assert store.get("keep") == b"old"
        assert [i.name for i in store.list().items] == ["keep"]
        store.put("exact", b"z" * (6 * 1024 * 1024))  # the limit itself is allowed


def test_checksum_mismatch_is_an_integrity_error(
    s3_server: SeaweedFS,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server answers with another ETag (single part) or size (multipart) than what
    was sent: IntegrityError, never a silent success."""
    import obstore

    store = open_object_store(s3_server.url(s3_server.bucket()), tmp_path)
    real_put, real_head = obstore.put, obstore.head
    monkeypatch.setattr(
        obstore, "put", lambda *a, **k: {**real_put(*a, **k), "e_tag": '"' + "0" * 32 + '"'}
    )
    with pytest.raises(IntegrityError, match="other bytes"):
        store.put("small", b"hello")
    monkeypatch.setattr(obstore, "put", real_put)
    monkeypatch.setattr(obstore, "head", lambda *a, **k: {**real_head(*a, **k), "size": 1})
    with pytest.raises(IntegrityError, match="sent 9437184 bytes"):
        store.put("big", iter([b"b" * (9 * 1024 * 1024)]))
