"""Scheduled reminders: a sorted set of due times and sealed payloads, each sent once.

A reminder is handed to the push queue under its own idempotency key before it is removed from the
schedule, so a worker that dies in between only causes a second, harmless hand-over (the push
queue ignores a key it already has). Several workers may run `send_due` at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from integrations.redis_connection import RedisClient
from integrations.redis_pipeline import PipelinedRedis
from integrations.sealing import Sealer, SealError

log = logging.getLogger(__name__)

DUE = "remind:{schedule}:due"
# Reminders whose payload names an openid (the others go to an application's viewers when due).
NAMES_AN_OPENID = "unfinished:"


def _payload_key(reminder_id: str) -> str:
    return f"remind:{{schedule}}:payload:{reminder_id}"


def _by_openid_key(openid: str) -> str:
    """The reminders that name this openid (about unsubmitted applications): what erasure cancels,
    without reading everyone's (18,128 outstanding once made every 删除我的信息 time out)."""
    return f"remind:{{schedule}}:openid:{openid}"


class Push(Protocol):
    async def enqueue(
        self,
        openid: str,
        text: str,
        *,
        key: str,
        not_before: float | None = None,
        notice: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> bool: ...


# Turns a due reminder into (openid, text) or (openid, text, notice) messages, or [] when it no longer applies.
Renderer = Callable[[str, dict[str, Any]], Awaitable[list[tuple]]]


# One script, so a turn that schedules one (the unfinished-application nudge) costs one command on the
# auto-pipelined connection. KEYS: payload, due, the openid's index ('' in ARGV[3]: none).
_SCHEDULE = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[4]) end
return 1
"""


class Reminders:
    def __init__(self, client: RedisClient, sealer: Sealer, *, pipeline: PipelinedRedis | None = None):
        self.redis = client
        self.sealer = sealer
        self._schedule = pipeline.script(_SCHEDULE) if pipeline is not None else client.register_script(_SCHEDULE)

    async def schedule(self, reminder_id: str, due_at: float, payload: dict[str, Any]) -> None:
        key = _payload_key(reminder_id)
        sealed = self.sealer.seal(json.dumps(payload, ensure_ascii=False).encode(), key)
        openid = payload.get("openid") or ""
        index = _by_openid_key(openid) if openid else _by_openid_key("-")
        await self._schedule(keys=[key, DUE, index], args=[sealed, repr(due_at), "1" if openid else "0", reminder_id])

    async def cancel(self, reminder_id: str, openid: str | None = None) -> None:
        if openid is None and reminder_id.startswith(NAMES_AN_OPENID):
            openid = (await self.payload(reminder_id) or {}).get("openid")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE, reminder_id)
            pipe.delete(_payload_key(reminder_id))
            if openid:
                pipe.srem(_by_openid_key(openid), reminder_id)
            await pipe.execute()

    async def forget(self, openid: str) -> int:
        """Cancel the reminders about this openid's unsubmitted applications (on erasure). Reminders
        about submitted ones name no openid: they go to whoever may see the application when due.
        Costs what this openid has: its own index, not the whole schedule."""
        cancelled = 0
        for raw in await self.redis.smembers(_by_openid_key(openid)):
            reminder_id = raw.decode()
            payload = await self.payload(reminder_id)
            if payload and payload.get("openid") == openid:
                await self.cancel(reminder_id, openid)
                cancelled += 1
        await self.redis.delete(_by_openid_key(openid))
        return cancelled

    async def depth(self, now: float) -> dict[str, int]:
        """For /metrics: every scheduled reminder, and those already due (a backlog means no scheduler runs)."""
        return {"scheduled": await self.redis.zcard(DUE), "overdue": await self.redis.zcount(DUE, "-inf", now)}

    async def scheduled(self) -> list[tuple[str, float]]:
        return [(m.decode(), score) for m, score in await self.redis.zrange(DUE, 0, -1, withscores=True)]

    async def payload(self, reminder_id: str) -> dict[str, Any] | None:
        key = _payload_key(reminder_id)
        blob = await self.redis.get(key)
        if blob is None:
            return None
        try:
            return json.loads(self.sealer.open(blob, key))
        except SealError:
            # Not this reminder's fault, nor the citizen's: skipped, so erasure and the others go on.
            log.error("reminder %s cannot be opened with our data keys (key mismatch): skipped", reminder_id.split(":")[0])
            return None

    async def send_due(self, now: float, push: Push, render: Renderer, *, limit: int = 200) -> int:
        """Hand every reminder due at `now` to the push queue; returns how many messages were queued."""
        queued = 0
        for raw in await self.redis.zrangebyscore(DUE, "-inf", now, start=0, num=limit):
            reminder_id = raw.decode()
            payload = await self.payload(reminder_id)
            if payload is not None:
                for openid, text, *notice in await render(reminder_id, payload):
                    queued += await push.enqueue(
                        openid, text, key=f"{reminder_id}:{openid}", notice=notice[0] if notice else None
                    )
            # Only the worker whose ZREM succeeds deletes the payload; the others already queued harmlessly.
            if await self.redis.zrem(DUE, reminder_id):
                await self.redis.delete(_payload_key(reminder_id))
                if payload and payload.get("openid"):
                    await self.redis.srem(_by_openid_key(payload["openid"]), reminder_id)
        return queued
