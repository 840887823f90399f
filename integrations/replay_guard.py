"""One signed query string, one message: a captured (timestamp, nonce, signature) is not a pass.

In plain mode WeChat signs only the query (token, timestamp, nonce), never the body, so a query string
seen once could be replayed for five minutes with any body and any openid. The first message signed
with a triple claims it for the replay window (SET NX with a TTL); the same message again (WeChat's
retry) is let through to the reply cache, anything else with that triple is refused.
"""

from __future__ import annotations

import hashlib

from integrations.redis_connection import RedisClient
from integrations.redis_pipeline import PipelinedRedis

_CLAIM = """
local claimed = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if claimed then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


def _key(timestamp: str, nonce: str, signature: str) -> str:
    digest = hashlib.sha256(f"{timestamp}\0{nonce}\0{signature}".encode()).hexdigest()[:32]
    return f"replay:{{{digest}}}"


class ReplayGuard:
    def __init__(self, redis: RedisClient, *, window_s: int, pipeline: PipelinedRedis | None = None):
        self.redis = redis
        self.ttl_s = 2 * window_s + 60  # a timestamp is accepted up to window_s either side of now
        # Once a message, like the turn's own scripts: on the auto-pipelined connection when there is one.
        self._claim = pipeline.script(_CLAIM) if pipeline is not None else redis.register_script(_CLAIM)

    async def first_use(self, query, message_id: str) -> bool:
        """True when this signed query is new, or was first used for this very message."""
        key = _key(query.get("timestamp", ""), query.get("nonce", ""), query.get("signature", ""))
        return await self._claim(keys=[key], args=[hashlib.sha256(message_id.encode()).hexdigest()[:32], self.ttl_s]) == 1
