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
    def from_setting(cls, setting: str, var_dir: Path) -> "Sealer":
        if setting.strip():
            keys = []
            for part in setting.split(","):
                kid, _, b64 = part.strip().partition(":")
                keys.append((kid, base64.b64decode(b64)))
            return cls(keys)
        return cls([("local", _local_key(var_dir))])

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


def _local_key(var_dir: Path) -> bytes:
    path = var_dir / "data.key"
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    var_dir.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    # Publish with link(): two workers starting together must agree on one key, and a reader
    # must never see a half-written file.
    tmp = var_dir / f".data.key.{os.getpid()}"
    tmp.write_text(base64.b64encode(key).decode())
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = base64.b64decode(path.read_text().strip())
    else:
        log.warning("BOT_DATA_KEY not set: generated a data key in %s (set BOT_DATA_KEY in production)", path)
    finally:
        tmp.unlink(missing_ok=True)
    return key
