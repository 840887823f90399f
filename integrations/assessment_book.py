"""Places at assessment sessions, booked atomically in Redis: never more than the capacity.

One hash per session day (`assess:{2026-12-11}:booked`, holder -> booked-at); a Lua script checks
the count and adds the holder in one step, so concurrent bookings from many workers cannot
overbook. Booking is idempotent per holder (the application reference).

A session moved by an operator (`bot sessions move`) is journalled in `assess:{moves}` (old day ->
{new, holders, at, done}) before any booking moves: the old day is closed and the new one offered in
its place; each holder is added to the new day before it leaves the old one, so a move cut short
loses no one and running it again finishes it; the journal is what `--undo` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from integrations.redis_connection import RedisClient

_RESERVE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def _booked_key(session_key: str) -> str:
    return f"assess:{{{session_key}}}:booked"


MOVES = "assess:{moves}"


def _waitlist_key(kind: str) -> str:
    return f"assess:{{waitlist-{kind}}}:holders"


class RedisAssessmentBook:
    def __init__(self, client: RedisClient, *, clock: Callable[[], float]):
        self.redis = client
        self.clock = clock
        self._reserve = client.register_script(_RESERVE)

    async def remaining(self, session_keys: list[str], capacity: int) -> dict[str, int]:
        if not session_keys:
            return {}
        # One round trip; on a cluster each key may live on another node, so no transaction.
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in session_keys:
                pipe.hlen(_booked_key(key))
            counts = await pipe.execute()
        return {key: max(capacity - int(n), 0) for key, n in zip(session_keys, counts, strict=True)}

    async def reserve(self, session_key: str, holder: str, capacity: int) -> bool:
        ok = await self._reserve(keys=[_booked_key(session_key)], args=[holder, capacity, int(self.clock())])
        return ok == 1

    async def release(self, session_key: str, holder: str) -> None:
        await self.redis.hdel(_booked_key(session_key), holder)

    async def holders(self, session_key: str) -> list[str]:
        return sorted(h.decode() for h in await self.redis.hkeys(_booked_key(session_key)))

    async def join_waitlist(self, kind: str, holder: str) -> None:
        await self.redis.zadd(_waitlist_key(kind), {holder: self.clock()}, nx=True)

    async def leave_waitlist(self, kind: str, holder: str) -> None:
        await self.redis.zrem(_waitlist_key(kind), holder)

    async def waitlist(self, kind: str) -> list[str]:
        return [h.decode() for h in await self.redis.zrange(_waitlist_key(kind), 0, -1)]

    # -- sessions moved by an operator --------------------------------------------------------------
    async def record_move(self, old: str, new: str, holders: list[str], at: str) -> None:
        entry = {"new": new, "holders": holders, "at": at, "done": False}
        await self.redis.hset(MOVES, old, json.dumps(entry))

    async def finish_move(self, old: str) -> None:
        entry = await self.move_of(old)
        if entry is not None:
            await self.redis.hset(MOVES, old, json.dumps({**entry, "done": True}))

    async def move_of(self, old: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(MOVES, old)
        return None if raw is None else json.loads(raw)

    async def moves(self) -> dict[str, str]:
        """Closed day -> the day its session is held instead."""
        return {k.decode(): json.loads(v)["new"] for k, v in (await self.redis.hgetall(MOVES)).items()}

    async def forget_move(self, old: str) -> None:
        await self.redis.hdel(MOVES, old)

    async def transfer(self, old: str, new: str, holder: str) -> None:
        """One holder from one day to another, whatever the capacity (a moved session keeps everyone).
        Added before removed: cut short in between, the holder is on both days, never on none."""
        booked_at = await self.redis.hget(_booked_key(old), holder)
        await self.redis.hsetnx(_booked_key(new), holder, booked_at or int(self.clock()))
        await self.redis.hdel(_booked_key(old), holder)
