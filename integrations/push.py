"""A durable queue of messages pushed to citizens through WeChat (status changes, reminders).

Each message is a hash `push:{queue}:msg:<stored key>` (keyed digests: `stored_key`) whose openid and
text are sealed (bound to that key name); a sorted set of due times says when to send it. A worker claims due messages with one
script that moves them to an in-flight set with a deadline, so each is sent by one worker; a
claim not acknowledged by its deadline (the worker died) is put back in the queue. Sending goes
through WeChatApi.send with the message's key, which is at most once, so a message that was
re-queued after its send began is not sent again.

Which channel: WeChat lets the account answer a citizen with customer-service messages only for 48
hours after their last message, 5 of them ("用户发送消息：下发额度 5条，额度有效期 48小时", rules since
2023-06-12; content/common/notices.yaml). The bot records when each citizen last wrote
(`seen()`: keyed by a keyed digest of the openid, never the openid) and how many it has sent since;
outside that window a message with a notice form goes as its template (or subscription notice).

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
from typing import Any

from integrations.redis_connection import RedisClient
from integrations.redis_pipeline import PipelinedRedis
from integrations.sealing import Sealer, SealError
from integrations.wechat_api import OUT_OF_WINDOW, SendResult, WeChatApi, mask_openid, sent_key, split_text

log = logging.getLogger(__name__)

DUE = "push:{queue}:due"
INFLIGHT = "push:{queue}:inflight"
FAILED = "push:{queue}:failed"

CLAIM_S = 60.0  # a claimed message not acknowledged by then is sent again
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 3600.0
GIVE_UP_S = 72 * 3600.0
SENT_TTL_S = 7 * 86400  # remember a sent key this long, so enqueueing it again is refused
FAILED_TTL_S = 30 * 86400
BATCH = 10  # claimed and sent together: a claim must not wait behind a long batch
WINDOW_S = 48 * 3600.0  # customer-service messages only this long after the citizen's last message
WINDOW_MARGIN_S = 600.0  # our clock and WeChat's differ a little: close the window early, not late
WINDOW_QUOTA = 5  # customer-service messages per message from the citizen
PEPPER = "secret:{pepper}:push-seen"

# The citizen wrote: a new window. One script, so on the turn's auto-pipelined connection it rides in the
# same write to Redis as the turn's first command (bot/app.py starts both together).
_SEEN = """
redis.call('HSET', KEYS[1], 'at', ARGV[1], 'sent', 0)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'state', 'queued', 'attempts', 0, 'due_at', ARGV[3], 'kind', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""

# The same, in a group of messages that must never arrive out of order (one service's status to one
# person): an older message of the group still waiting (queued, or between retries) is dropped, so
# "已受理" retried for an hour can never come after "审核通过". KEYS[3]: the group's latest message,
# KEYS[4]: that message's hash (ARGV[5] its member), both as read before the call and checked here.
_ENQUEUE_IN_GROUP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) == ARGV[5] and redis.call('ZREM', KEYS[2], ARGV[5]) == 1 then
  redis.call('DEL', KEYS[4])
end
redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'state', 'queued', 'attempts', 0, 'due_at', ARGV[3], 'kind', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[6])
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

# Sent (or found sent already, or expired): forget the text, keep a marker. Not fenced: it was delivered.
_DONE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], 'blob')
redis.call('HSET', KEYS[3], 'state', ARGV[3] or 'sent')
if ARGV[4] then redis.call('HSET', KEYS[3], 'done_at', ARGV[4]) end
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


def recipient_index(recipient_digest: str) -> str:
    """The stored keys of one recipient's messages (a keyed digest names the recipient)."""
    return f"push:{{queue}}:to:{recipient_digest}"


def message_key(key: str) -> str:
    """`key` is a stored key (PushQueue.stored_key), never the caller's: those name the openid and the application."""
    return f"push:{{queue}}:msg:{key}"


def seen_key(digest: str) -> str:
    """When a citizen last wrote, and how many customer-service messages went since (a hash)."""
    return f"push:{{queue}}:seen:{digest}"


# An operator's resend: only a failed message, back in the queue as new (its attempts and 72 h start again).
_RESEND = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[3], 'blob') == 0 then return 0 end
redis.call('HDEL', KEYS[3], 'errcode', 'detail', 'failed_at', 'first_tried_at')
redis.call('HSET', KEYS[3], 'state', 'queued', 'attempts', 0, 'due_at', ARGV[2])
redis.call('PERSIST', KEYS[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


def failed_id(key: str) -> str:
    """How operators name a failed message: its key holds the openid, which the listing does not show."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def backoff_s(attempt: int) -> float:
    """Delay before attempt `attempt + 1`: doubling from 30 s to 1 h, with jitter on its upper half."""
    delay = min(BACKOFF_BASE_S * 2 ** max(attempt - 1, 0), BACKOFF_CAP_S)
    return delay / 2 + random.uniform(0, delay / 2)


class PushQueue:
    def __init__(
        self,
        redis: RedisClient,
        sealer: Sealer,
        api: WeChatApi | None,
        *,
        clock: Callable[[], float],
        pipeline: PipelinedRedis | None = None,
    ):
        self.redis = redis
        self.sealer = sealer
        self.api = api
        self.clock = clock
        self._enqueue = redis.register_script(_ENQUEUE)
        self._enqueue_in_group = redis.register_script(_ENQUEUE_IN_GROUP)
        self._claim = redis.register_script(_CLAIM)
        self._done = redis.register_script(_DONE)
        self._retry = redis.register_script(_RETRY)
        self._fail = redis.register_script(_FAIL)
        self._resend = redis.register_script(_RESEND)
        # Once a message: on the conversation's auto-pipelined connection when there is one.
        self._seen = pipeline.script(_SEEN) if pipeline is not None else redis.register_script(_SEEN)
        self._pepper: bytes | None = None
        # Called with (kind, errcode) when a message is given up on (the serving process counts them).
        self.on_failed: Callable[[str, int], None] | None = None

    async def enqueue(
        self,
        openid: str,
        text: str,
        *,
        key: str,
        not_before: float | None = None,
        notice: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> bool:
        """Queue a message once per key; False when that key is already queued, sent or failed.
        `notice` ({"kind", "values"}): its form outside the 48-hour window (integrations/wechat_notice.py).
        `group` (e.g. application and service): a later message of the group replaces an earlier one that
        is still waiting, so the group's messages never arrive out of order."""
        stored = await self.stored_key(openid, key)
        mkey = message_key(stored)
        due_at = max(self.clock(), not_before or 0.0)
        message: dict[str, Any] = {"openid": openid, "text": text, "key": key}
        if notice:
            message["notice"] = notice
        sealed = self.sealer.seal(json.dumps(message, ensure_ascii=False).encode(), mkey)
        kind = (notice or {}).get("kind", "text")
        if group is None:
            queued = await self._enqueue(keys=[mkey, DUE], args=[sealed, stored, due_at, kind]) == 1
            return queued and await self._index(stored)
        group_key = f"push:{{queue}}:group:{await self._hmac('group:' + openid + ':' + group)}"
        previous = (await self.redis.get(group_key) or b"").decode()
        keys = [mkey, DUE, group_key, message_key(previous or stored)]
        queued = await self._enqueue_in_group(keys=keys, args=[sealed, stored, due_at, kind, previous, int(GIVE_UP_S)]) == 1
        return queued and await self._index(stored)

    async def _index(self, stored: str) -> bool:
        """List the message under its recipient, so erasure and the console read that person's messages
        only (a SCAN of every key, or of the whole queue, costs what everyone has)."""
        index = recipient_index(stored.partition(".")[0])
        await self.redis.sadd(index, stored)
        await self.redis.expire(index, int(GIVE_UP_S + FAILED_TTL_S))
        return True

    async def _recipients_messages(self, openid: str) -> list[str]:
        to = (await self.stored_key(openid, "")).partition(".")[0]
        return sorted(m.decode() for m in await self.redis.smembers(recipient_index(to)))

    async def stored_key(self, openid: str, key: str) -> str:
        """What a message is kept under (its hash's name, its member in the queue, its sent marker): keyed
        digests of the recipient and of the caller's key, which names the openid, the application and the
        service or reminder, so Redis does not say who was told what. Recipient first: erasure finds them."""
        return f"{await self._hmac('to:' + openid)}.{await self._hmac('key:' + key)}"

    # -- the 48-hour window ---------------------------------------------------------------------------
    async def seen(self, openid: str, *, at: float | None = None) -> None:
        """The citizen wrote to the account: a new window of WINDOW_S and WINDOW_QUOTA messages."""
        name = seen_key(await self._digest(openid))
        await self._seen(keys=[name], args=[repr(self.clock() if at is None else at), int(WINDOW_S) + 3600])

    async def window_open(self, openid: str, *, now: float | None = None) -> bool:
        at, sent = await self.redis.hmget(seen_key(await self._digest(openid)), "at", "sent")
        if at is None:
            return False
        now = self.clock() if now is None else now
        return now < float(at) + WINDOW_S - WINDOW_MARGIN_S and int(sent or 0) < WINDOW_QUOTA

    async def _used_window(self, openid: str, parts: int) -> None:
        name = seen_key(await self._digest(openid))
        if await self.redis.exists(name):
            await self.redis.hincrby(name, "sent", parts)

    async def _digest(self, openid: str) -> str:
        return await self._hmac(openid)

    async def _hmac(self, text: str) -> str:
        if self._pepper is None:
            # Made once, kept sealed in Redis, shared by workers and operator commands, so a key name
            # says nothing a reader of Redis can tell.
            await self.redis.set(PEPPER, self.sealer.seal(os.urandom(32), PEPPER), nx=True)
            self._pepper = self.sealer.open(await self.redis.get(PEPPER), PEPPER)
        return hmac.new(self._pepper, text.encode(), hashlib.sha256).hexdigest()[:32]

    # -- operators ------------------------------------------------------------------------------------
    async def resend(self, key: str) -> bool:
        """Queue a failed message again (the serving process sends it); False: not a failed message.
        `key`: the message's key, or its id in `failed()` (whose keys show the openid masked)."""
        if not await self.redis.zscore(FAILED, key):
            for raw in await self.redis.zrange(FAILED, 0, -1):
                if failed_id(raw.decode()) == key:
                    key = raw.decode()
                    break
        # Forget that the sender tried it first, else its at-most-once marker would call it a duplicate.
        await self.redis.delete(sent_key(key))
        # Due at once, whatever the serving process's clock says (a simulation's clock may lag this one).
        return await self._resend(keys=[FAILED, DUE, message_key(key)], args=[key, 0]) == 1

    async def resend_all(self) -> list[str]:
        return [item["id"] for item in await self.failed() if await self.resend(item["id"])]

    async def send_due(self, *, now: float | None = None, limit: int = 100) -> dict[str, int]:
        """Send up to `limit` due messages; counts by result ('sent', 'retry', 'failed', 'duplicate', 'expired':
        a message with no notice form once the citizen's 48-hour window has closed)."""
        if self.api is None:
            raise RuntimeError("this push queue only queues: the serving process sends")
        now = self.clock() if now is None else now
        counts = {"sent": 0, "retry": 0, "failed": 0, "duplicate": 0, "expired": 0}
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
                message = json.loads(self.sealer.open(fields["blob"], message_key(key)))
            except (KeyError, SealError):
                message = {}
            to = message.get("openid", "")
            openid = mask_openid(to) if to else "?"
            said = message.get("key", "")  # what the caller named it (application, service, openid)
            out.append(
                {
                    "id": failed_id(key),
                    "key": (said.replace(to, openid) if to else said) or "?",
                    "openid": openid,
                    "kind": fields.get("kind", b"text").decode(),
                    "errcode": int(fields.get("errcode", b"0")),
                    "detail": fields.get("detail", b"").decode(),
                    "attempts": int(fields.get("attempts", b"0")),
                    "failed_at": float(fields.get("failed_at", b"0")),
                }
            )
        return out

    async def to(self, openid: str) -> list[dict[str, Any]]:
        """For operators: the messages to this openid still remembered (queued; sent or expired for
        SENT_TTL_S; failed for FAILED_TTL_S), oldest first: kind, state, attempts, times; never the text."""
        out = []
        for key in await self._recipients_messages(openid):
            f = {k.decode(): v.decode() for k, v in (await self.redis.hgetall(message_key(key))).items() if k != b"blob"}
            if not f:
                continue
            out.append(
                {
                    "id": failed_id(key),
                    "kind": f.get("kind", "text"),
                    "state": f.get("state", ""),
                    "attempts": int(f.get("attempts", 0)),
                    "due_at": float(f.get("due_at", 0)),
                    "done_at": float(f.get("done_at") or f.get("failed_at") or 0),
                    "errcode": int(f.get("errcode", 0)),
                }
            )
        return sorted(out, key=lambda m: m["due_at"])

    async def forget(self, openid: str, *, keep: Callable[[str], bool]) -> int:
        """On erasure: drop this openid's queued messages unless keep(key), and what is remembered of
        messages sent to it or given up on. Messages being sent at this moment are left to finish."""
        dropped = 0
        to = (await self.stored_key(openid, "")).partition(".")[0]
        for key in await self._recipients_messages(openid):
            name = message_key(key)
            state = await self.redis.hget(name, "state")
            if state is None:  # expired
                await self.redis.srem(recipient_index(to), key)
            elif state in (b"sent", b"failed", b"expired"):
                await self.redis.zrem(FAILED, key)
                dropped += await self.redis.delete(name, sent_key(key))
                await self.redis.srem(recipient_index(to), key)
            else:
                blob = await self.redis.hget(name, "blob")
                try:
                    message = json.loads(self.sealer.open(blob, name)) if blob else {}
                except SealError:
                    continue
                # ZREM first: a message a worker has claimed meanwhile is no longer ours to drop.
                if not keep(message.get("key", key)) and await self.redis.zrem(DUE, key):
                    dropped += await self.redis.delete(name)
                    await self.redis.srem(recipient_index(to), key)
        await self.redis.delete(seen_key(await self._digest(openid)))
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
            openid, notice = message["openid"], message.get("notice")
            window_open = await self.window_open(openid, now=now)
            result = await self.api.send(openid, message["text"], idempotency_key=key, notice=notice, window_open=window_open)
            if result.status == "sent" and result.channel == "custom":
                await self._used_window(openid, len(split_text(message["text"])))
            if result.status in ("sent", "duplicate"):
                await self._done(keys=[INFLIGHT, DUE, mkey], args=[key, SENT_TTL_S, "sent", now])
                return result.status
            if result.status == "failed" and result.errcode == OUT_OF_WINDOW and not notice:
                # A chat message only (a rating request, an unfinished-application nudge) after the window
                # closed: WeChat has no other way to carry it, and an operator could not resend it either.
                log.info("push %s expired: outside the 48-hour window, no notice form", key)
                await self._done(keys=[INFLIGHT, DUE, mkey], args=[key, SENT_TTL_S, "expired", now])
                return "expired"
            if result.status == "retry":
                give_up_at = float(first_tried or now) + GIVE_UP_S
                if now < give_up_at:
                    attempts = int(await self.redis.hget(mkey, "attempts") or 0) + 1
                    next_at = min(now + max(backoff_s(attempts), result.retry_after_s), give_up_at)
                    await self._retry(keys=[INFLIGHT, DUE, mkey], args=[key, deadline_ms, next_at, result.errcode, result.detail])
                    return "retry"
                result = SendResult("failed", result.errcode, f"gave up after 72 h: {result.detail}")
            await self._give_up(key, deadline_ms, now, result, kind=(notice or {}).get("kind", "text"))
            return "failed"
        except Exception as e:
            # Left in flight: it is put back in the queue when its claim lapses.
            log.warning("push %s: %s; will try again after %d s", key, type(e).__name__, CLAIM_S)
            return None

    async def _give_up(self, key: str, deadline_ms: int, now: float, result: SendResult, *, kind: str = "text") -> None:
        log.warning("push %s failed for good: errcode %s", key, result.errcode)
        failed = await self._fail(
            keys=[INFLIGHT, FAILED, message_key(key)],
            args=[key, deadline_ms, now, result.errcode, result.detail, FAILED_TTL_S],
        )
        if failed == 1 and self.on_failed is not None:
            self.on_failed(kind, result.errcode)


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


def _stopping() -> bool:
    # On Python 3.11 a cancel can be lost inside redis-py (asyncio.wait_for returns the result of a
    # command that completed as the cancel arrived), so the loop also checks for a pending cancel.
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
