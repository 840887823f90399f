"""Authenticated encryption of everything personal we keep in Redis (AES-256-GCM).

Keys come from BOT_DATA_KEY as "kid:base64key[,kid:base64key...]": the first encrypts, all decrypt,
so a key can be rotated without losing data. Without BOT_DATA_KEY a key is generated once and kept
in var/data.key (fine for the embedded development setup; production sets BOT_DATA_KEY).
The Redis key name is bound as associated data, so a blob copied under another user's key fails.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

_VERSION = b"\x01"


class SealError(Exception):
    """A stored blob could not be opened (unknown key id, tampered, or not ours)."""


class Sealer:
    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise ValueError("at least one data key is needed")
        for kid, key in keys:
            if len(kid.encode()) > 32 or len(key) != 32:
                raise ValueError("each data key needs an id of at most 32 bytes and 32 bytes of key")
        self._current_kid = keys[0][0].encode()
        self._ciphers = {kid.encode(): AESGCM(key) for kid, key in keys}

    @classmethod
    def from_setting(cls, setting: str) -> Sealer:
        """BOT_DATA_KEY: "kid:base64(32 bytes)[,kid:...]" (ValueError, saying what is wrong, otherwise)."""
        return cls(parse_data_keys(setting))

    @classmethod
    def local(cls, var_dir: Path, *, create: bool = True) -> Sealer:
        """The development key in var/data.key, generated on first use unless `create` is false."""
        return cls([(LOCAL_KID, _local_key(var_dir, create=create))])

    @property
    def current_kid(self) -> str:
        return self._current_kid.decode()

    @property
    def kids(self) -> list[str]:
        return [kid.decode() for kid in self._ciphers]

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        kid = self._current_kid
        ct = self._ciphers[kid].encrypt(nonce, plaintext, context.encode())
        return _VERSION + bytes([len(kid)]) + kid + nonce + ct

    def open(self, blob: bytes, context: str) -> bytes:
        try:
            if blob[:1] != _VERSION:
                raise SealError("unknown format")
            n = blob[1]
            kid = blob[2 : 2 + n]
            nonce = blob[2 + n : 14 + n]
            cipher = self._ciphers.get(kid)
            if cipher is None:
                raise SealError(f"no key {kid.decode(errors='replace')!r}")
            return cipher.decrypt(nonce, blob[14 + n :], context.encode())
        except (IndexError, InvalidTag) as exc:
            raise SealError("blob does not open with our keys") from exc


LOCAL_KID = "local"


def parse_data_keys(setting: str) -> list[tuple[str, bytes]]:
    keys = []
    for n, part in enumerate(p.strip() for p in setting.split(",")):
        kid, sep, b64 = part.partition(":")
        try:
            key = base64.b64decode(b64, validate=True)
        except ValueError:
            key = b""
        if not sep or not kid or len(kid.encode()) > 32 or len(key) != 32:
            raise ValueError(f"key {n + 1} is not kid:base64(32 bytes) (make one with `bot keygen`)")
        keys.append((kid, key))
    return keys


def new_data_key(kid: str) -> str:
    """A fresh key in BOT_DATA_KEY's format."""
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def local_key_path(var_dir: Path) -> Path:
    return var_dir / "data.key"


def make_private_dir(var_dir: Path) -> None:
    """var/ holds the embedded Redis and the development key: the bot's user alone may enter it."""
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if var_dir.stat().st_mode & 0o077:
        var_dir.chmod(0o700)


class MissingKey(Exception):
    """var/data.key is gone while Redis still holds data sealed with it."""


def _local_key(var_dir: Path, *, create: bool) -> bytes:
    path = local_key_path(var_dir)
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    if not create:
        raise MissingKey(str(path))
    make_private_dir(var_dir)
    key = AESGCM.generate_key(bit_length=256)
    # Created 0600 (never readable by others, not even for a moment), then published with link():
    # two workers starting together must agree on one key, and a reader never sees half a file.
    tmp = var_dir / f".data.key.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode())
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = base64.b64decode(path.read_text().strip())
    else:
        log.warning("BOT_DATA_KEY not set: generated a data key in %s (development only; production sets BOT_DATA_KEY)", path)
    finally:
        tmp.unlink(missing_ok=True)
    return key
