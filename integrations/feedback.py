"""Satisfaction ratings (好差评): asked when a service is finished, counted per service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer, SealError

ASK_TTL_S = 14 * 24 * 3600


def _pending(openid: str) -> str:
    return f"rating:{{{openid}}}:pending"


def asked_key(app_id: str, service: str) -> str:
    """Marks that this service's applicant was asked to rate it (expires with the application)."""
    return f"rating:{{asked}}:{app_id}:{service}"


class FeedbackStore:
    def __init__(self, client: RedisClient, sealer: Sealer, *, clock: Callable[[], float]):
        self.redis = client
        self.sealer = sealer
        self.clock = clock

    async def ask(self, openid: str, app_id: str, service: str) -> bool:
        """Remember that we asked this openid to rate this service (once per application and service)."""
        if not await self.redis.set(asked_key(app_id, service), 1, nx=True, ex=400 * 86400):
            return False
        await self._set_pending(openid, {"app_id": app_id, "service": service, "stage": "score"})
        return True

    async def _set_pending(self, openid: str, pending: dict[str, Any]) -> None:
        # Sealed: under a key named by the openid, the application and its service would say who applied for what.
        key = _pending(openid)
        await self.redis.set(key, self.sealer.seal(json.dumps(pending).encode(), key), ex=ASK_TTL_S)

    async def pending(self, openid: str) -> dict[str, Any] | None:
        key = _pending(openid)
        raw = await self.redis.get(key)
        if raw is None:
            return None
        if raw.startswith(b"{"):  # asked before these were sealed (at most ASK_TTL_S ago)
            return json.loads(raw)
        try:
            return json.loads(self.sealer.open(raw, key))
        except SealError:
            return None

    async def record_score(self, openid: str, pending: dict[str, Any], score: int) -> None:
        await self.redis.hincrby("rating:{report}:counts", f"{pending['service']}:{score}", 1)
        await self._set_pending(openid, {**pending, "stage": "comment", "score": score})

    async def record_comment(self, openid: str, pending: dict[str, Any], comment: str) -> None:
        if comment:
            key = "rating:{report}:comments"
            entry = {
                "service": pending["service"],
                "app_id": pending["app_id"],
                "score": pending.get("score"),
                "comment": comment[:500],
                "at": int(self.clock()),
            }
            await self.redis.rpush(key, self.sealer.seal(json.dumps(entry, ensure_ascii=False).encode(), key))
        await self.redis.delete(_pending(openid))

    async def forget(self, openid: str) -> int:
        """An unanswered request to rate (on erasure); ratings already given stay in the report."""
        return await self.redis.delete(_pending(openid))

    async def report(self) -> dict[str, dict[int, int]]:
        counts: dict[str, dict[int, int]] = {}
        for field, n in (await self.redis.hgetall("rating:{report}:counts")).items():
            service, score = field.decode().rsplit(":", 1)
            counts.setdefault(service, {})[int(score)] = int(n)
        return counts

    async def comments(self) -> list[dict[str, Any]]:
        key = "rating:{report}:comments"
        return [json.loads(self.sealer.open(b, key)) for b in await self.redis.lrange(key, 0, -1)]
