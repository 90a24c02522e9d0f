"""Keyring: sources, strict validation, rotation, and never leaking key material."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest

from clawstate.errors import ConfigError, IntegrityError
from clawstate.keyring import KEY_BYTES, Keyring

KID_RE = re.compile(r"k-\d{8}T\d{6}Z-[0-9a-f]{4}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _write(path: Path, doc: object) -> None:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- construction -------------------------------------------------------------------


def test_generate_has_one_primary_key() -> None:
    ring = Keyring.generate()
    kid, key = ring.primary()
    assert KID_RE.fullmatch(kid)
    assert ring.primary_id == kid
    assert ring.ids() == [kid]
    assert len(key) == KEY_BYTES
    assert ring.get(kid) == key
    assert kid in ring
    assert len(ring) == 1


def test_generate_with_explicit_kid() -> None:
    assert Keyring.generate("k1").ids() == ["k1"]


def test_constructor_from_dict() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    ring = Keyring({"k1": k1, "k2": k2}, "k2")
    assert ring.primary() == ("k2", k2)
    assert ring.get("k1") == k1
    assert ring.ids() == ["k1", "k2"]


@pytest.mark.parametrize(
    ("keys", "primary", "fragment"),
    [
        ({"k1": os.urandom(16)}, "k1", "16 bytes"),
        ({"k1": os.urandom(33)}, "k1", "33 bytes"),
        ({"k1": os.urandom(32)}, "k2", "primary 'k2' is not among the keys"),
        ({}, "k1", "no keys"),
        ({"bad kid!": os.urandom(32)}, "bad kid!", "key id 'bad kid!' is invalid"),
        ({"": os.urandom(32)}, "", "key id '' is invalid"),
        ({"k1": "not bytes"}, "k1", "must be bytes"),
    ],
)
def test_constructor_validates(keys: dict[str, bytes], primary: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Keyring(keys, primary)
    assert info.value.field == "keyring"
    assert fragment in str(info.value)


def test_get_unknown_kid_is_integrity_error_naming_it() -> None:
    ring = Keyring.generate("k1")
    with pytest.raises(IntegrityError, match="'nope'"):
        ring.get("nope")


def test_repr_shows_ids_but_no_key_material() -> None:
    key = os.urandom(32)
    ring = Keyring({"k1": key}, "k1")
    text = repr(ring) + str(ring)
    assert "k1" in text
    for leak in (_b64(key), key.hex(), repr(key)[2:-1]):
        assert leak not in text


# -- file source --------------------------------------------------------------------


def test_file_created_with_0600_and_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "keyring.json"
    ring = Keyring.from_source(f"file:{path}")
    assert path.exists()
    assert _mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert doc["primary"] == ring.primary_id
    assert base64.b64decode(doc["keys"][ring.primary_id]) == ring.primary()[1]
    assert ring.source == f"file:{path}"
    # No temp files left behind.
    assert sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_file_reload_gives_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    first = Keyring.from_source(f"file:{path}")
    second = Keyring.from_source(str(path))  # bare path
    assert second.primary() == first.primary()


def test_missing_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        Keyring.from_source(f"file:{path}", create=False)
    assert info.value.field == "keyring.source"
    assert "does not exist" in str(info.value)
    assert not path.exists()


def test_existing_file_is_loaded(tmp_path: Path) -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    path = tmp_path / "keyring.json"
    _write(path, {"primary": "k1", "keys": {"k1": _b64(k1), "k2": _b64(k2)}})
    ring = Keyring.from_source(f"file:{path}", create=False)
    assert ring.primary() == ("k1", k1)
    assert ring.get("k2") == k2


GOOD = _b64(b"\x01" * 32)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "bad keyring document"),
        ({"keys": {"k1": GOOD}}, "primary"),
        ({"primary": "k1"}, "keys"),
        ({"primary": "k1", "keys": {"k1": GOOD}, "extra": 1}, "extra"),
        ({"primary": "k1", "keys": {"k1": 5}}, "bad keyring document"),
        ({"primary": "k1", "keys": {"k1": "!!!not base64!!!"}}, "not valid standard base64"),
        ({"primary": "k1", "keys": {"k1": "é"}}, "not valid standard base64"),
        ({"primary": "k1", "keys": {"k1": _b64(b"\x02" * 16)}}, "16 bytes after base64"),
        ({"primary": "k1", "keys": {"k1": _b64(b"\x02" * 64)}}, "64 bytes after base64"),
        ({"primary": "k9", "keys": {"k1": GOOD}}, "primary 'k9'"),
        ({"primary": "k1", "keys": {}}, "no keys"),
        ({"primary": "a b", "keys": {"a b": GOOD}}, "key id 'a b' in"),
    ],
)
def test_bad_keyring_files(tmp_path: Path, content: object, fragment: str) -> None:
    path = tmp_path / "keyring.json"
    _write(path, content)
    with pytest.raises(ConfigError) as info:
        Keyring.from_source(f"file:{path}")
    assert info.value.field == "keyring"
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_bad_key_error_does_not_leak_material(tmp_path: Path) -> None:
    secret = _b64(b"\x07" * 31)  # wrong length
    path = tmp_path / "keyring.json"
    _write(path, {"primary": "k1", "keys": {"k1": secret}})
    with pytest.raises(ConfigError) as info:
        Keyring.from_source(f"file:{path}")
    assert secret not in str(info.value)
    assert "31 bytes" in str(info.value)


def test_unreadable_path_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Keyring.from_source(f"file:{tmp_path}")  # a directory
    assert info.value.field == "keyring.source"


@pytest.mark.parametrize("source", ["", "  ", "file:", "env:", "vault:secret/keys"])
def test_bad_sources(source: str) -> None:
    with pytest.raises(ConfigError) as info:
        Keyring.from_source(source)
    assert info.value.field == "keyring.source"


# -- env source ---------------------------------------------------------------------


def test_env_source(monkeypatch: pytest.MonkeyPatch) -> None:
    key = os.urandom(32)
    monkeypatch.setenv(
        "CLAWSTATE_TEST_KEYRING", json.dumps({"primary": "e1", "keys": {"e1": _b64(key)}})
    )
    ring = Keyring.from_source("env:CLAWSTATE_TEST_KEYRING")
    assert ring.primary() == ("e1", key)
    assert ring.source == "env:CLAWSTATE_TEST_KEYRING"


def test_env_source_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAWSTATE_TEST_KEYRING", raising=False)
    with pytest.raises(ConfigError) as info:
        Keyring.from_source("env:CLAWSTATE_TEST_KEYRING")
    assert info.value.field == "keyring.source"
    assert "not set" in str(info.value)


def test_env_source_bad_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAWSTATE_TEST_KEYRING", '{"primary": "e1", "keys": {"e1": "AAAA"}}')
    with pytest.raises(ConfigError) as info:
        Keyring.from_source("env:CLAWSTATE_TEST_KEYRING")
    assert info.value.field == "keyring"
    assert "3 bytes after base64" in str(info.value)


def test_env_source_cannot_rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CLAWSTATE_TEST_KEYRING", json.dumps({"primary": "e1", "keys": {"e1": GOOD}})
    )
    ring = Keyring.from_source("env:CLAWSTATE_TEST_KEYRING")
    with pytest.raises(ConfigError) as info:
        ring.rotate()
    assert info.value.field == "keyring.source"
    assert ring.ids() == ["e1"]


# -- rotation -----------------------------------------------------------------------


def test_rotate_file_persists(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    ring = Keyring.from_source(f"file:{path}")
    old_kid, old_key = ring.primary()
    new_kid = ring.rotate()
    assert KID_RE.fullmatch(new_kid)
    assert new_kid != old_kid
    assert ring.primary_id == new_kid
    assert ring.get(old_kid) == old_key
    assert ring.ids() == [old_kid, new_kid]
    assert _mode(path) == 0o600
    reloaded = Keyring.from_source(f"file:{path}", create=False)
    assert reloaded.primary() == ring.primary()
    assert reloaded.get(old_kid) == old_key
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_rotations_keep_every_key(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    a = Keyring.from_source(f"file:{path}")
    b = Keyring.from_source(f"file:{path}")
    ka = a.rotate()
    kb = b.rotate()  # b never saw ka: it must merge, not overwrite
    disk = Keyring.from_source(f"file:{path}", create=False)
    assert set(disk.ids()) == {*a.ids(), kb}
    assert ka in disk
    assert disk.primary_id == kb
    assert disk.get(ka) == a.get(ka)


def test_rotate_refuses_conflicting_key_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    ring = Keyring.from_source(f"file:{path}")
    kid = ring.primary_id
    _write(path, {"primary": kid, "keys": {kid: _b64(os.urandom(32))}})
    with pytest.raises(ConfigError, match="differs"):
        ring.rotate()


def test_rotate_in_memory() -> None:
    ring = Keyring.generate("k1")
    kid = ring.rotate()
    assert ring.primary_id == kid
    assert ring.ids() == ["k1", kid]
    assert ring.source is None
