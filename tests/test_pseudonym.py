"""Keyed pseudonyms (engine.privacy.pseudonym): the key file's place and size, the
environment variable, the one warning without a key, and the pseudonyms themselves."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat

import pytest

from engine.errors import ValidationError
from engine.privacy import pseudonym
from engine.privacy.pseudonym import ENV, Pseudonyms, key_file, new_key, open_pseudonyms

KEY = b"k" * 32


@pytest.fixture
def dirs(tmp_path):
    data, keys = tmp_path / "data", tmp_path / "keys"
    data.mkdir()
    keys.mkdir()
    return data, keys


def test_pseudonym_is_the_keyed_hmac_of_the_id():
    p = Pseudonyms(KEY)
    expected = "ps_" + hmac.new(KEY, "ünïcode id".encode(), hashlib.sha256).hexdigest()[:32]
    assert p("ünïcode id") == expected
    assert p("a") != p("b") and p("a") != Pseudonyms(b"j" * 32)("a")
    assert KEY.decode() not in repr(p) and repr(p) == "Pseudonyms(<key>)"


def test_key_file_outside_the_data_directory_is_used(dirs):
    data, keys = dirs
    (keys / "key").write_bytes(KEY + b"\n")  # surrounding whitespace is not key
    assert Pseudonyms.from_file(keys / "key", data)("u1") == Pseudonyms(KEY)("u1")


@pytest.mark.parametrize("where", ["inside", "nested", "symlink", "hardlink"])
def test_key_file_inside_the_data_directory_is_refused(dirs, where):
    data, keys = dirs
    inside = data / "sub" / "key" if where == "nested" else data / "key"
    inside.parent.mkdir(exist_ok=True)
    inside.write_bytes(KEY)
    path = inside
    if where == "symlink":
        path = keys / "link"
        path.symlink_to(inside)
    elif where == "hardlink":
        path = keys / "hard"
        os.link(inside, path)
    with pytest.raises(ValidationError, match="must be outside the data directory") as err:
        Pseudonyms.from_file(path, data)
    assert err.value.field == "pseudonym_key_file"


@pytest.mark.parametrize("content, reason", [(b"short", "at least 16 bytes"),
                                             (b"   \n", "at least 16 bytes")])
def test_short_key_is_refused(dirs, content, reason):
    data, keys = dirs
    (keys / "key").write_bytes(content)
    with pytest.raises(ValidationError, match=reason):
        Pseudonyms.from_file(keys / "key", data)


def test_missing_key_file_is_refused(dirs):
    data, keys = dirs
    with pytest.raises(ValidationError, match="pseudonym_key_file: no such file"):
        open_pseudonyms(keys / "nope", data)


def test_environment_variable_names_the_key_file(dirs, monkeypatch):
    data, keys = dirs
    (keys / "key").write_bytes(KEY)
    monkeypatch.setenv(ENV, str(keys / "key"))
    assert key_file(None) == str(keys / "key")
    assert open_pseudonyms(None, data)("u") == Pseudonyms(KEY)("u")
    assert key_file("/explicit") == "/explicit"  # the setting wins over the environment


def test_no_key_warns_once(dirs, monkeypatch, caplog):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(pseudonym, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="loopwise.privacy"):
        assert open_pseudonyms(None, dirs[0]) is None
        assert open_pseudonyms(None, dirs[0]) is None
    assert [r.message.startswith("no pseudonym key is set") for r in caplog.records] == [True]


def test_new_key_is_private_and_never_overwritten(dirs):
    data, keys = dirs
    new_key(keys / "key")
    assert stat.S_IMODE(os.stat(keys / "key").st_mode) == 0o600
    assert len(Pseudonyms.from_file(keys / "key", data)("u")) == 35
    with pytest.raises(FileExistsError):
        new_key(keys / "key")
