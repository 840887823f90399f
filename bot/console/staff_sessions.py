"""Console sessions: a random cookie, the session in Redis under a digest of it, with an idle timeout.

Each request of a logged-in user moves the expiry on; a session idle for IDLE_TIMEOUT_S is gone. The
session carries its CSRF token, which every form sends back (bot/console/web.py checks it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bot.console import keys
from bot.console.accounts import Account
from integrations.redis_connection import RedisClient

IDLE_TIMEOUT_S = 30 * 60


@dataclass(frozen=True)
class StaffSession:
    id: str
    username: str
    csrf: str


class StaffSessions:
    def __init__(self, client: RedisClient, *, idle_timeout_s: int = IDLE_TIMEOUT_S):
        self.redis = client
        self.idle_timeout_s = idle_timeout_s

    async def start(self, account: Account) -> StaffSession:
        session = StaffSession(secrets.token_urlsafe(32), account.username, secrets.token_urlsafe(32))
        await self.redis.hset(keys.session(session.id), mapping={"user": session.username, "csrf": session.csrf})
        await self.redis.expire(keys.session(session.id), self.idle_timeout_s)
        return session

    async def get(self, session_id: str) -> StaffSession | None:
        """The session, its idle timeout started again; None when unknown or expired."""
        key = keys.session(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            # (EXPIRE on a key that is gone does nothing; XX would need Redis 7, the embedded one is 6.2)
            pipe.expire(key, self.idle_timeout_s)
            raw, _ = await pipe.execute()
        if not raw:
            return None
        return StaffSession(session_id, raw[b"user"].decode(), raw[b"csrf"].decode())

    async def end(self, session_id: str) -> None:
        await self.redis.delete(keys.session(session_id))
