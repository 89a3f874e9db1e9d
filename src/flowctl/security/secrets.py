"""Encryption of secrets at rest (agent credentials), with Fernet.

The key lives outside the database: `FLOWCTL_SECRET_KEY` (one or more urlsafe
base64 Fernet keys, comma-separated: the first encrypts, every one decrypts, so
a key can be rotated by putting the new one first), or else a key generated on
first start into `<data_dir>/secret.key` (mode 0600) and reused from there.

A file key suits one process on SQLite. Several processes on PostgreSQL must
all be given the same FLOWCTL_SECRET_KEY: each would otherwise make its own
file, and one process could not read what another wrote.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"


class SecretKeyError(ValueError):
    """A key is malformed, or its file cannot be read or written."""


class DecryptionFailed(Exception):
    """A ciphertext was made with another key, or was altered."""


def parse_keys(value: str) -> list[bytes]:
    """'key1,key2' -> [key1, key2], each checked to be a Fernet key."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    if not keys:
        raise SecretKeyError("the secret key is empty")
    for i, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            where = f"key {i + 1} of {len(keys)}" if len(keys) > 1 else "the key"
            raise SecretKeyError(
                f"{where} is not a Fernet key (32 bytes in urlsafe base64, 44 characters; "
                'make one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            ) from None
    return [k.encode("ascii") for k in keys]


def load_or_create_key_file(path: Path) -> bytes:
    """The key in `path`, created (0600) if the file does not exist yet.

    Creation is atomic: the key is written to a private temporary file that is
    then hard-linked into place, so two processes starting at once agree on one
    key and nobody ever reads a half-written file.
    """
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            log.info("generated a secret key in %s", path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    raw = path.read_bytes().decode("ascii", errors="replace").strip()
    mode = path.stat().st_mode & 0o077
    if mode:
        log.warning("%s can be read by other users (mode %o): chmod 600 it", path, mode | 0o600)
    try:
        return parse_keys(raw)[0]
    except SecretKeyError as exc:
        raise SecretKeyError(f"{path}: {exc}") from None


class SecretBox:
    """Encrypts JSON values to text and back."""

    def __init__(self, keys: list[bytes], *, source: str = "FLOWCTL_SECRET_KEY"):
        if not keys:
            raise SecretKeyError("no secret key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self.source = source  # where the key came from, for error messages

    @classmethod
    def generate(cls) -> SecretBox:
        return cls([Fernet.generate_key()], source="a generated key")

    @classmethod
    def from_settings(cls, settings: Any) -> SecretBox:
        """The key of FLOWCTL_SECRET_KEY, else of `<data_dir>/secret.key`."""
        secret = settings.secret_key
        if secret is not None:
            value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
            try:
                return cls(parse_keys(value))
            except SecretKeyError as exc:
                raise SecretKeyError(f"FLOWCTL_SECRET_KEY: {exc}") from None
        path = Path(settings.data_dir) / KEY_FILE_NAME
        if not settings.is_sqlite:
            log.warning(
                "FLOWCTL_SECRET_KEY is not set: agent credentials are encrypted with the key "
                "in %s. Every flowctl process on this database must use the same key; set "
                "FLOWCTL_SECRET_KEY on each of them.",
                path.resolve(),
            )
        return cls([load_or_create_key_file(path)], source=str(path.resolve()))

    def encrypt_json(self, value: Any) -> str:
        return self._fernet.encrypt(orjson.dumps(value)).decode("ascii")

    def decrypt_json(self, token: str | bytes) -> Any:
        raw = token.encode("ascii") if isinstance(token, str) else token
        try:
            plain = self._fernet.decrypt(raw)
        except InvalidToken:
            raise DecryptionFailed(
                f"cannot decrypt a stored secret with the key from {self.source}: it was "
                "encrypted with another key (every flowctl process must share one "
                "FLOWCTL_SECRET_KEY) or the stored value was altered"
            ) from None
        return orjson.loads(plain)
