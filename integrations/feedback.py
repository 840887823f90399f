"""Satisfaction ratings (好差评): asked when a service is finished, counted per service."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer, SealError

ASK_TTL_S = 14 * 24 * 3600
PEPPER = "secret:{pepper}:rating"


def _pending(openid: str) -> str:
    """The services this openid was asked to rate and has not finished rating (fields: keyed digests)."""
    return f"rating:{{{openid}}}:pending_by_service"


def asked_key(app_id: str, service: str) -> str:
    """Marks that this service's applicant was asked to rate it (expires with the application)."""
    return f"rating:{{asked}}:{app_id}:{service}"


class FeedbackStore:
    """Several services can wait for a rating at once; a score goes to one of them, named back."""

    def __init__(self, client: RedisClient, sealer: Sealer, *, clock: Callable[[], float]):
        self.redis = client
        self.sealer = sealer
        self.clock = clock
        self._pepper: bytes | None = None

    async def ask(self, openid: str, app_id: str, service: str) -> bool:
        """Remember that we asked this openid to rate this service (once per application and service)."""
        if not await self.redis.set(asked_key(app_id, service), 1, nx=True, ex=400 * 86400):
            return False
        order = await self.redis.hlen(_pending(openid))  # the clock may not move between two results
        entry = {"app_id": app_id, "service": service, "stage": "score", "asked_at": self.clock(), "order": order}
        await self._put(openid, entry)
        await self.redis.expire(_pending(openid), ASK_TTL_S)
        return True

    # Under a key named by the openid, neither a field name nor a value may say which application or
    # service this person is asked about: fields are keyed digests, values sealed.
    async def _field(self, app_id: str, service: str) -> str:
        if self._pepper is None:
            await self.redis.set(PEPPER, self.sealer.seal(os.urandom(32), PEPPER), nx=True)
            self._pepper = self.sealer.open(await self.redis.get(PEPPER), PEPPER)
        return hmac.new(self._pepper, f"{app_id}:{service}".encode(), hashlib.sha256).hexdigest()[:24]

    async def _put(self, openid: str, entry: dict[str, Any]) -> None:
        field = await self._field(entry["app_id"], entry["service"])
        sealed = self.sealer.seal(json.dumps(entry).encode(), f"{_pending(openid)}:{field}")
        await self.redis.hset(_pending(openid), field, sealed)

    async def _drop(self, openid: str, entry: dict[str, Any]) -> None:
        await self.redis.hdel(_pending(openid), await self._field(entry["app_id"], entry["service"]))

    @staticmethod
    def pending_key(openid: str) -> str:
        """The hash pending() reads (the conversation layer reads it with the turn: `stored`)."""
        return _pending(openid)

    async def pending_all(self, openid: str, *, stored: dict[bytes, bytes] | None = None) -> list[dict[str, Any]]:
        """Oldest asked first; requests older than ASK_TTL_S no longer count. `stored`: the hash, read already."""
        entries = []
        for field, blob in (stored if stored is not None else await self.redis.hgetall(_pending(openid))).items():
            try:
                entries.append(json.loads(self.sealer.open(blob, f"{_pending(openid)}:{field.decode()}")))
            except SealError:
                continue
        fresh = [e for e in entries if self.clock() - float(e.get("asked_at", 0)) < ASK_TTL_S]
        return sorted(fresh, key=lambda e: (float(e.get("asked_at", 0)), int(e.get("order", 0))))

    async def pending(self, openid: str, *, stored: dict[bytes, bytes] | None = None) -> dict[str, Any] | None:
        """The rating a message answers: a comment just asked for, else the oldest score asked."""
        entries = await self.pending_all(openid, stored=stored)
        comment = [e for e in entries if e["stage"] == "comment"]
        return (comment or entries)[0] if entries else None

    async def record_score(self, openid: str, pending: dict[str, Any], score: int) -> None:
        await self.redis.hincrby("rating:{report}:counts", f"{pending['service']}:{score}", 1)
        # Only one comment is waited for at a time: a score for another service closes the earlier one.
        for other in await self.pending_all(openid):
            if other["stage"] == "comment":
                await self._drop(openid, other)
        await self._put(openid, {**pending, "stage": "comment", "score": score})

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
        await self._drop(openid, pending)

    async def forget(self, openid: str) -> int:
        """Unanswered requests to rate (on erasure); ratings already given stay in the report."""
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
