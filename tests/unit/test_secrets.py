"""SecretBox: Fernet encryption of JSON values, and where its key comes from."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from flowctl.config import Settings
from flowctl.security.secrets import (
    KEY_FILE_NAME,
    DecryptionFailed,
    SecretBox,
    SecretKeyError,
    load_or_create_key_file,
    parse_keys,
)

SECRET = {"token": "secret-token-123", "nested": {"n": 1, "list": [True, None]}}


def test_round_trip() -> None:
    box = SecretBox.generate()
    token = box.encrypt_json(SECRET)
    assert isinstance(token, str)
    assert box.decrypt_json(token) == SECRET
    assert box.decrypt_json(token.encode()) == SECRET


def test_ciphertext_is_not_plaintext_and_never_repeats() -> None:
    box = SecretBox.generate()
    first, second = box.encrypt_json(SECRET), box.encrypt_json(SECRET)
    for token in (first, second):
        assert "secret-token-123" not in token
        assert "token" not in token  # not even the key names
    assert first != second  # a fresh IV each time


def test_wrong_key_fails_clearly() -> None:
    token = SecretBox.generate().encrypt_json(SECRET)
    other = SecretBox([Fernet.generate_key()], source="/srv/flowctl/secret.key")
    with pytest.raises(DecryptionFailed) as err:
        other.decrypt_json(token)
    message = str(err.value)
    assert "/srv/flowctl/secret.key" in message and "FLOWCTL_SECRET_KEY" in message


def test_tampered_ciphertext_fails() -> None:
    box = SecretBox.generate()
    token = bytearray(box.encrypt_json(SECRET).encode())
    token[-5] = ord("A") if token[-5] != ord("A") else ord("B")
    with pytest.raises(DecryptionFailed):
        box.decrypt_json(bytes(token))


def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    written_before = SecretBox([old]).encrypt_json(SECRET)
    rotated = SecretBox(parse_keys(f"{new.decode()}, {old.decode()}"))
    assert rotated.decrypt_json(written_before) == SECRET
    written_after = rotated.encrypt_json(SECRET)
    assert SecretBox([new]).decrypt_json(written_after) == SECRET
    with pytest.raises(DecryptionFailed):
        SecretBox([old]).decrypt_json(written_after)


@pytest.mark.parametrize("bad", ["", "  ", "abc", "x" * 44, "k,abc"])
def test_malformed_keys_are_refused(bad: str) -> None:
    bad = bad.replace("k", Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match=r"Fernet key|empty"):
        parse_keys(bad)


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / KEY_FILE_NAME
    first = load_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_file(path) == first
    Fernet(first)  # a usable key
    assert not [p for p in path.parent.iterdir() if p.name != KEY_FILE_NAME]  # no temp left


def test_key_file_racing_creators_agree(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_or_create_key_file(path)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_corrupt_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text("not a key\n")
    os.chmod(path, 0o600)
    with pytest.raises(SecretKeyError, match=str(path)):
        load_or_create_key_file(path)


def test_from_settings_prefers_the_setting(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    box = SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key=key.decode()))
    assert SecretBox([key]).decrypt_json(box.encrypt_json(SECRET)) == SECRET
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_from_settings_falls_back_to_the_data_dir(tmp_path: Path) -> None:
    box = SecretBox.from_settings(Settings(data_dir=tmp_path))
    token = box.encrypt_json(SECRET)
    again = SecretBox.from_settings(Settings(data_dir=tmp_path))  # a restart
    assert again.decrypt_json(token) == SECRET


def test_bad_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match=r"^FLOWCTL_SECRET_KEY: the key is not a Fernet key"):
        SecretBox.from_settings(Settings(data_dir=tmp_path, secret_key="nope"))


def test_settings_hide_the_key() -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(secret_key=key)
    assert key not in repr(settings) and key not in str(settings)
    assert settings.with_overrides(port=1).secret_key.get_secret_value() == key
