"""Secrets at rest: the key file is created once with mode 0600, reused, and checked."""

import logging
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bambufarm.storage.errors import SecretKeyError
from bambufarm.storage.secrets import KEY_FILE_NAME, SecretBox, load_or_create_key


def test_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_or_create_key(data_dir)
    path = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert load_or_create_key(data_dir) == first
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE_NAME]  # no temp file left
    Fernet(first)


def test_configured_key_wins_and_creates_no_file(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    assert load_or_create_key(tmp_path, key.decode()) == key
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_malformed_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("not a key\n")
    with pytest.raises(SecretKeyError, match="does not hold a Fernet key"):
        load_or_create_key(tmp_path)


def test_key_file_readable_by_others_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = load_or_create_key(tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="bambufarm.storage.secrets"):
        assert load_or_create_key(tmp_path) == key
    assert "chmod 600" in caplog.text
    assert key.decode() not in caplog.text


def test_data_dir_that_cannot_hold_a_key(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SecretKeyError, match=r"secret\.key cannot be (read|created)"):
        load_or_create_key(tmp_path / "file")


def test_box_round_trip_and_hidden_key() -> None:
    key = Fernet.generate_key()
    box = SecretBox(key)
    token = box.encrypt("12345678")
    assert "12345678" not in token
    assert box.decrypt(token) == "12345678"
    assert key.decode() not in repr(box)
    with pytest.raises(SecretKeyError, match="not a Fernet key"):
        SecretBox(b"short")
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        box.decrypt("garbage")
