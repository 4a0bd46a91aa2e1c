"""Secrets at rest: printer access codes are stored as Fernet tokens (AES-128-CBC + HMAC-SHA256).

The key comes from the settings (`BAMBUFARM_SECRET_KEY`) or, when none is set, from the file
`secret.key` in the data directory, created once with mode 0600. Whoever can read that file
(or a backup holding both it and the database) can read the access codes; keep them apart in
backups if that matters. The key is never logged and never part of an error message.

Rotating the key is out of scope for now: a new key cannot read the old tokens, so changing
it means re-entering every access code (a later `admin rotate-key` can re-encrypt with
`MultiFernet`).
"""

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

from bambufarm.storage.errors import SecretKeyError

logger = logging.getLogger(__name__)

KEY_FILE_NAME: Final = "secret.key"
KEY_FILE_MODE: Final = 0o600
DATA_DIR_MODE: Final = 0o700


class SecretBox:
    """Encrypts and decrypts short secrets (access codes) with one Fernet key."""

    __slots__ = ("_fernet",)

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SecretKeyError(
                "the secret key is not a Fernet key (32 bytes in URL-safe base64)"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def encrypt(self, plain: str) -> str:
        """The Fernet token (ASCII) for `plain`; a fresh random IV each time."""
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plain text of a token made by `encrypt` with the same key."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretKeyError(
                "a stored secret cannot be decrypted with the current key: the key was changed "
                "or the data directory's secret.key was replaced; restore the old key, or "
                "re-enter the printers' access codes"
            ) from None


def load_or_create_key(data_dir: Path, configured: str | None = None) -> bytes:
    """The configured key, else the key file in `data_dir` (created 0600 on first use)."""
    if configured:
        return configured.strip().encode("ascii")
    path = data_dir / KEY_FILE_NAME
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(data_dir, path)


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise SecretKeyError(f"the key file {path} cannot be read: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "key file %s is readable by other users (mode %o); run: chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise SecretKeyError(
            f"the key file {path} does not hold a Fernet key; restore it from a backup"
        ) from None
    return key


def _create_key_file(data_dir: Path, path: Path) -> bytes:
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # Written under a private name, then linked into place: link() fails if another
        # process created the key first, and nobody can ever read a half-written key file.
        temp = data_dir / f".{KEY_FILE_NAME}.{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(key + b"\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                logger.info("another process created %s first; using its key", path)
                return _read_key_file(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    except OSError as err:
        raise SecretKeyError(
            f"the key file {path} cannot be created: {err.strerror}; check that {data_dir} "
            "is writable, or set BAMBUFARM_SECRET_KEY"
        ) from None
    logger.info("created a new secret key in %s", path)
    return key
