"""A durable queue of messages pushed to citizens through WeChat (status changes, reminders).

Each message is a hash `push:{queue}:msg:<stored key>` (keyed digests: `stored_key`) whose openid and
text are sealed (bound to that key name); a sorted set of due times says when to send it. A worker claims due messages with one
script that moves them to an in-flight set with a deadline, so each is sent by one worker; a
claim not acknowledged by its deadline (the worker died) is put back in the queue. Sending goes
through WeChatApi.send with the message's key, which is at most once, so a message that was
re-queued after its send began is not sent again.

Failures are retried with capped exponential backoff and jitter (30 s doubling to 1 h, or later
when WeChat says so) for 72 hours from the first attempt, by the sending process's clock, then kept
for operators in the failed list. Queueing (any process, an operator command too) needs no WeChat
API; only the serving process, which has one, sends. Every key carries
the {queue} hash tag, so the scripts run on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
from collections.abc import Callable

from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer, SealError
from integrations.wechat_api import SendResult, WeChatApi, mask_openid, sent_key

log = logging.getLogger(__name__)

DUE = "push:{queue}:due"
INFLIGHT = "push:{queue}:inflight"
FAILED = "push:{queue}:failed"
KEY_PEPPER = "secret:{pepper}:push-keys"

CLAIM_S = 60.0  # a claimed message not acknowledged by then is sent again
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 3600.0
GIVE_UP_S = 72 * 3600.0
SENT_TTL_S = 7 * 86400  # remember a sent key this long, so enqueueing it again is refused
FAILED_TTL_S = 30 * 86400
BATCH = 10  # claimed and sent together: a claim must not wait behind a long batch

_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'state', 'queued', 'attempts', 0, 'due_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""

# Put back the claims whose worker never acknowledged them, then claim what is due.
# Scores in the in-flight set are deadlines in ms: a claim's deadline is also its fencing token.
_CLAIM = """
local now, deadline = tonumber(ARGV[1]), ARGV[2]
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now * 1000)
for _, key in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], key)
  redis.call('ZADD', KEYS[1], now, key)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, key in ipairs(due) do
  redis.call('ZREM', KEYS[1], key)
  redis.call('ZADD', KEYS[2], deadline, key)
end
return due
"""

# Sent (or found sent already): forget the text, keep a marker. Not fenced: it was delivered.
_DONE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], 'blob')
redis.call('HSET', KEYS[3], 'state', 'sent')
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"""

# Only while the claim is still ours: a lapsed claim belongs to whoever took it since.
_RETRY = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
redis.call('HSET', KEYS[3], 'errcode', ARGV[4], 'detail', ARGV[5])
return 1
"""

_FAIL = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'attempts', 1)
redis.call('HSET', KEYS[3], 'state', 'failed', 'errcode', ARGV[4], 'detail', ARGV[5], 'failed_at', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
return 1
"""


def message_key(key: str) -> str:
    """`key` is a stored key (PushQueue.stored_key), never the caller's: those name the openid and the application."""
    return f"push:{{queue}}:msg:{key}"


def backoff_s(attempt: int) -> float:
    """Delay before attempt `attempt + 1`: doubling from 30 s to 1 h, with jitter on its upper half."""
    delay = min(BACKOFF_BASE_S * 2 ** max(attempt - 1, 0), BACKOFF_CAP_S)
    return delay / 2 + random.uniform(0, delay / 2)


class PushQueue:
    def __init__(self, redis: RedisClient, sealer: Sealer, api: WeChatApi | None, *, clock: Callable[[], float]):
        self.redis = redis
        self.sealer = sealer
        self.api = api
        self.clock = clock
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._done = redis.register_script(_DONE)
        self._retry = redis.register_script(_RETRY)
        self._fail = redis.register_script(_FAIL)
        self._key_pepper: bytes | None = None

    async def stored_key(self, openid: str, key: str) -> str:
        """What a message is kept under (its hash's name, its member in the queue, its sent marker): keyed
        digests of the recipient and of the caller's key, which names the openid, the application and the
        service or reminder, so Redis does not say who was told what. Recipient first: erasure finds them."""
        if self._key_pepper is None:
            # Made once, kept sealed in Redis, shared by workers and operator commands.
            await self.redis.set(KEY_PEPPER, self.sealer.seal(os.urandom(32), KEY_PEPPER), nx=True)
            self._key_pepper = self.sealer.open(await self.redis.get(KEY_PEPPER), KEY_PEPPER)
        to, what = (
            hmac.new(self._key_pepper, t.encode(), hashlib.sha256).hexdigest()[:32] for t in (f"to:{openid}", f"key:{key}")
        )
        return f"{to}.{what}"

    async def enqueue(self, openid: str, text: str, *, key: str, not_before: float | None = None) -> bool:
        """Queue a message once per key; False when that key is already queued, sent or failed."""
        stored = await self.stored_key(openid, key)
        mkey = message_key(stored)
        due_at = max(self.clock(), not_before or 0.0)
        sealed = self.sealer.seal(json.dumps({"openid": openid, "text": text, "key": key}, ensure_ascii=False).encode(), mkey)
        return await self._enqueue(keys=[mkey, DUE], args=[sealed, stored, due_at]) == 1

    async def send_due(self, *, now: float | None = None, limit: int = 100) -> dict[str, int]:
        """Send up to `limit` due messages; counts by result ('sent', 'retry', 'failed', 'duplicate')."""
        if self.api is None:
            raise RuntimeError("this push queue only queues: the serving process sends")
        now = self.clock() if now is None else now
        counts = {"sent": 0, "retry": 0, "failed": 0, "duplicate": 0}
        remaining = limit
        while remaining > 0 and not _stopping():
            deadline_ms, keys = await self._claim_due(now=now, limit=min(BATCH, remaining))
            if not keys:
                break
            remaining -= len(keys)
            for status in await asyncio.gather(*(self._deliver(k, deadline_ms, now) for k in keys)):
                if status:
                    counts[status] += 1
        return counts

    async def failed(self) -> list[dict]:
        """Messages given up on, oldest first, for operators (openids masked, no texts)."""
        await self.redis.zremrangebyscore(FAILED, "-inf", self.clock() - FAILED_TTL_S)
        out = []
        for raw in await self.redis.zrange(FAILED, 0, -1):
            key = raw.decode()
            fields = {k.decode(): v for k, v in (await self.redis.hgetall(message_key(key))).items()}
            if not fields:
                continue
            try:
                openid = mask_openid(json.loads(self.sealer.open(fields["blob"], message_key(key)))["openid"])
            except (KeyError, SealError):
                openid = "?"
            out.append(
                {
                    "key": key,
                    "openid": openid,
                    "errcode": int(fields.get("errcode", b"0")),
                    "detail": fields.get("detail", b"").decode(),
                    "attempts": int(fields.get("attempts", b"0")),
                    "failed_at": float(fields.get("failed_at", b"0")),
                }
            )
        return out

    async def forget(self, openid: str, *, keep: Callable[[str], bool]) -> int:
        """On erasure: drop this openid's queued messages unless keep(key), and what is remembered of
        messages sent to it or given up on. Messages being sent at this moment are left to finish."""
        dropped = 0
        for raw in await self.redis.zrange(DUE, 0, -1):
            key = raw.decode()
            blob = await self.redis.hget(message_key(key), "blob")
            try:
                message = json.loads(self.sealer.open(blob, message_key(key))) if blob else {}
            except SealError:
                continue
            # ZREM first: a message a worker has claimed meanwhile is no longer ours to drop.
            if message.get("openid") == openid and not keep(message.get("key", key)) and await self.redis.zrem(DUE, key):
                dropped += await self.redis.delete(message_key(key))
        to = (await self.stored_key(openid, "")).partition(".")[0]
        # Messages queued before stored keys were digests were named `<caller's key>:<openid>`.
        legacy = message_key("*:" + "".join("\\" + c if c in "*?[]\\" else c for c in openid))
        async for name in _scan_each(self.redis, [message_key(to + ".*"), legacy]):
            key = name.decode().removeprefix(message_key(""))
            if await self.redis.hget(name, "state") in (b"sent", b"failed"):
                await self.redis.zrem(FAILED, key)
                dropped += await self.redis.delete(name, sent_key(key))
        return dropped

    async def pending(self) -> int:
        """Messages waiting or being sent."""
        return await self.redis.zcard(DUE) + await self.redis.zcard(INFLIGHT)

    async def depth(self) -> dict[str, int]:
        """For /metrics: queued (due now or later), being sent, given up on."""
        return {
            "queued": await self.redis.zcard(DUE),
            "sending": await self.redis.zcard(INFLIGHT),
            "failed": await self.redis.zcard(FAILED),
        }

    # -- one message ----------------------------------------------------------------------------------
    async def _claim_due(self, *, now: float, limit: int) -> tuple[int, list[str]]:
        deadline_ms = int((now + CLAIM_S) * 1000)
        keys = await self._claim(keys=[DUE, INFLIGHT], args=[now, deadline_ms, limit])
        return deadline_ms, [k.decode() for k in keys]

    async def _deliver(self, key: str, deadline_ms: int, now: float) -> str | None:
        mkey = message_key(key)
        try:
            blob, first_tried = await self.redis.hmget(mkey, "blob", "first_tried_at")
            if blob is None:  # sent meanwhile by a worker whose claim had lapsed
                await self.redis.zrem(INFLIGHT, key)
                return None
            try:
                message = json.loads(self.sealer.open(blob, mkey))
            except SealError:
                await self._give_up(key, deadline_ms, now, SendResult("failed", detail="cannot open (data key removed?)"))
                return "failed"
            if first_tried is None:
                await self.redis.hsetnx(mkey, "first_tried_at", repr(now))
            assert self.api is not None
            result = await self.api.send(message["openid"], message["text"], idempotency_key=key)
            if result.status in ("sent", "duplicate"):
                await self._done(keys=[INFLIGHT, DUE, mkey], args=[key, SENT_TTL_S])
                return result.status
            if result.status == "retry":
                give_up_at = float(first_tried or now) + GIVE_UP_S
                if now < give_up_at:
                    attempts = int(await self.redis.hget(mkey, "attempts") or 0) + 1
                    next_at = min(now + max(backoff_s(attempts), result.retry_after_s), give_up_at)
                    await self._retry(keys=[INFLIGHT, DUE, mkey], args=[key, deadline_ms, next_at, result.errcode, result.detail])
                    return "retry"
                result = SendResult("failed", result.errcode, f"gave up after 72 h: {result.detail}")
            await self._give_up(key, deadline_ms, now, result)
            return "failed"
        except Exception as e:
            # Left in flight: it is put back in the queue when its claim lapses.
            log.warning("push %s: %s; will try again after %d s", key, type(e).__name__, CLAIM_S)
            return None

    async def _give_up(self, key: str, deadline_ms: int, now: float, result: SendResult) -> None:
        log.warning("push %s failed for good: errcode %s", key, result.errcode)
        await self._fail(
            keys=[INFLIGHT, FAILED, message_key(key)],
            args=[key, deadline_ms, now, result.errcode, result.detail, FAILED_TTL_S],
        )


async def push_forever(queue: PushQueue, *, interval_s: float = 1.0, limit: int = 100) -> None:
    """The background task of each worker: send what is due, then wait a little. Cancel to stop."""
    while not _stopping():
        try:
            counts = await queue.send_due(limit=limit)
        except Exception as e:  # Redis away: try again next round
            log.warning("push round failed: %s", type(e).__name__)
            counts = {}
        if sum(counts.values()) < limit and not _stopping():  # a full round: more are due, go on at once
            await asyncio.sleep(interval_s)


async def _scan_each(redis: RedisClient, patterns: list[str]):
    for pattern in patterns:
        async for name in redis.scan_iter(match=pattern, count=500):
            yield name


def _stopping() -> bool:
    # On Python 3.11 a cancel can be lost inside redis-py (asyncio.wait_for returns the result of a
    # command that completed as the cancel arrived), so the loop also checks for a pending cancel.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
