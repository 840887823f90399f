"""A sealed canary per data key id, so a key that does not match the stored data is caught at start.

Every key id that has ever sealed data in this Redis leaves a canary: `datakey:{canary}:<kid>`, a
known text sealed with that key. At start-up each canary must open with the keys we were given;
one that does not (the key was changed, removed from BOT_DATA_KEY, or var/data.key was deleted or
replaced) stops the bot with the key id the data was sealed with, before a single citizen's
conversation is read, restarted or lost. The current key's canary is written if it is missing.

A retired key's canary is deleted by hand once nothing sealed with it is left (its data expires by
the pack's retention): `redis-cli DEL 'datakey:{canary}:<kid>'`.
"""

from __future__ import annotations

from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer, SealError

PREFIX = "datakey:{canary}:"
# The key ids that left a canary. Start-up reads these, never the keyspace: a SCAN for the canaries took
# 28 s with a million conversations and applications stored, and every worker and operator command does it.
KIDS = "datakey:{canary}"
TEXT = b"fucan-yijianshi data key canary"


class DataKeyMismatch(Exception):
    """The keys we have do not open data already in Redis (the message says which key id)."""


def canary_key(kid: str) -> str:
    return PREFIX + kid


async def sealed_with(redis: RedisClient) -> dict[str, bytes]:
    """Key id -> canary blob, for every key id that has sealed data in this Redis."""
    kids = sorted(k.decode() if isinstance(k, bytes) else k for k in await redis.smembers(KIDS))
    if not kids:
        # Canaries left before the index existed are found by name once, and indexed.
        async for name in redis.scan_iter(match=PREFIX.replace("{", "\\{").replace("}", "\\}") + "*", count=1000):
            kids.append((name.decode() if isinstance(name, bytes) else name).removeprefix(PREFIX))
        if kids:
            await redis.sadd(KIDS, *kids)
    found = {}
    for kid in kids:
        blob = await redis.get(canary_key(kid))
        if blob is None:  # a retired key's canary deleted by hand
            await redis.srem(KIDS, kid)
        else:
            found[kid] = blob
    return found


async def check_data_key(redis: RedisClient, sealer: Sealer, *, where: str) -> None:
    """Raise DataKeyMismatch unless every stored canary opens; then leave the current key's canary."""
    for kid, blob in sorted((await sealed_with(redis)).items()):
        try:
            ok = sealer.open(blob, canary_key(kid)) == TEXT
        except SealError:
            ok = False
        if not ok:
            have = ", ".join(sealer.kids)
            raise DataKeyMismatch(
                f"{where} does not open the data in Redis: it was sealed with key id {kid!r} "
                f"(we have {have}); set the key it was sealed with (old keys go after the new one in BOT_DATA_KEY)"
            )
    current = sealer.current_kid
    await redis.set(canary_key(current), sealer.seal(TEXT, canary_key(current)), nx=True)
    await redis.sadd(KIDS, current)
