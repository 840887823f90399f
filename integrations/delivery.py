"""Delivery of queued applications to the intake system: at least once on the wire, once in effect.

Why a consumer group on the outbox stream (XREADGROUP / XACK / XAUTOCLAIM) and not arq or taskiq:
the outbox is already a Redis stream, written in the same script as the sealed document, so there is
no second queue to keep in step with it and no second system to run. A consumer group gives
at-least-once delivery with crash recovery: an entry stays pending until it is acknowledged; a
worker first looks at its own pending entries (after a restart under the same name, or an error
that may have lost a read's reply), and the entries of a worker that died are claimed by another
after claim_idle_ms. Exactly-once effect
comes from two things: the intake keeps one application per Idempotency-Key (the application id,
the same on every attempt), and our per-application state says when it is done, so a redelivered
entry is acknowledged without another POST.

Per application (no personal data in any of these; all keys share {applications}, so each Lua
script below runs on one Redis Cluster slot together with the stream):
- `outbox:{applications}:state:<id>`  hash: state, attempts, next_attempt_at, application_no, ...
- `outbox:{applications}:lock:<id>`   SET NX PX, held for one attempt: two workers that both see an
  entry (after XAUTOCLAIM, or a retry falling due) never POST the same application at once
- `outbox:{applications}:due`         zset id -> when the next attempt is due (retries)
- `outbox:{applications}:index`       zset id -> first queued, for operators' lists
The bot's own events for the intake (a citizen's withdrawal, RedisOutbox.submit_event) are
delivered the same way by a second worker with kind="event" (`...:event-state:<id>` and so on).

A failed attempt leaves the entry pending and schedules the next one (capped exponential backoff
with jitter) until retry_window_s has passed, then the application is `failed` and the citizen is
told kindly that a clerk will contact them (on_rejected). While an attempt runs, the application is
also due again when its lock expires, so an attempt cut short by a crash is picked up either way.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from integrations.intake import DELIVERED, REJECTED, RETRY, DeliveryOutcome, IntakeAdapter
from integrations.outbox import STREAM, RedisOutbox, document_key
from integrations.redis_connection import RedisClient
from integrations.redis_health import RedisHealth, is_redis_error
from integrations.sealing import SealError

log = logging.getLogger(__name__)

GROUP = "delivery"
DUE = "outbox:{applications}:due"
INDEX = "outbox:{applications}:index"
# Where RedisOutbox.submit_event queues the bot's events for the intake (a citizen's withdrawal).
EVENTS_STREAM = "outbox:{applications}:events"
GAVE_UP = "gave up after retries"
STATES = ("queued", "retrying", "delivered", "failed")


def state_key(application_id: str) -> str:
    return f"outbox:{{applications}}:state:{application_id}"


def lock_key(application_id: str) -> str:
    return f"outbox:{{applications}}:lock:{application_id}"


@dataclass(frozen=True)
class _Kind:
    """What one worker delivers: applications (POST /applications) or the bot's events (POST /events)."""

    stream: str
    part: str  # "" for applications, "event-" for events: the key names below
    due: str
    index: str
    stored: str  # where the outbox keeps the sealed item

    def item(self, item_id: str) -> str:
        return self.stored + item_id

    def state(self, item_id: str) -> str:
        return f"outbox:{{applications}}:{self.part}state:{item_id}"

    def lock(self, item_id: str) -> str:
        return f"outbox:{{applications}}:{self.part}lock:{item_id}"

    @property
    def failed(self) -> str:
        """zset id -> when it failed: what operators must look at, counted by /metrics."""
        return f"outbox:{{applications}}:{self.part}failed"


KINDS = {
    "application": _Kind(STREAM, "", DUE, INDEX, document_key("")),
    "event": _Kind(
        EVENTS_STREAM,
        "event-",
        "outbox:{applications}:event-due",
        "outbox:{applications}:event-index",
        "outbox:{applications}:event:",
    ),
}


# Start an attempt: create the state on first sight, acknowledge what is already finished, leave
# alone what is not due or being attempted elsewhere, else take the lock and count the attempt.
_BEGIN = """
local state, lock, due, index, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, entry, now, token, lock_ms, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local st = redis.call('HGET', state, 'state')
if not st then
  if entry == '' then
    redis.call('ZREM', due, id)
    return {'unknown'}
  end
  redis.call('HSET', state, 'state', 'queued', 'attempts', 0, 'first_queued_at', now, 'window_from', now,
             'next_attempt_at', now, 'entry', entry)
  redis.call('ZADD', index, now, id)
  st = 'queued'
end
if entry == '' then entry = redis.call('HGET', state, 'entry') or '' end
if st == 'delivered' or st == 'failed' then
  if entry ~= '' then redis.call('XACK', stream, group, entry) end
  redis.call('ZREM', due, id)
  return {st}
end
if (tonumber(redis.call('HGET', state, 'next_attempt_at')) or 0) > tonumber(now) then return {'not_due'} end
if not redis.call('SET', lock, token, 'NX', 'PX', lock_ms) then return {'locked'} end
local attempts = redis.call('HINCRBY', state, 'attempts', 1)
local again_at = tonumber(now) + tonumber(lock_ms) / 1000
redis.call('HSET', state, 'last_attempt_at', now, 'next_attempt_at', tostring(again_at))
redis.call('ZADD', due, again_at, id)
return {'go', entry, attempts, redis.call('HGET', state, 'window_from')}
"""

# Record an attempt's outcome. "Delivered" is the intake's word and always recorded; a retry or a
# failure only while our lock still holds (otherwise another worker has taken over and decides).
_FINISH = """
local state, lock, due, stream, failed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, entry, token, outcome, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local number, status, detail, next_at, group = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local ours = redis.call('GET', lock) == token
if ours then redis.call('DEL', lock) end
local st = redis.call('HGET', state, 'state')
if not st then return 0 end
local function ack()
  if entry ~= '' then redis.call('XACK', stream, group, entry) end
  local stored = redis.call('HGET', state, 'entry')
  if stored and stored ~= entry then redis.call('XACK', stream, group, stored) end
end
if st == 'delivered' then
  ack()
  return 0
end
if outcome == 'delivered' then
  redis.call('HSET', state, 'state', 'delivered', 'delivered_at', now, 'next_attempt_at', '', 'last_status', status)
  if number ~= '' then redis.call('HSET', state, 'application_no', number) end
  redis.call('ZREM', due, id)
  ack()
  return 1
end
if not ours then return 0 end
if outcome == 'retry' then
  redis.call('HSET', state, 'state', 'retrying', 'next_attempt_at', next_at, 'last_error', detail, 'last_status', status)
  redis.call('ZADD', due, next_at, id)
  return 1
end
redis.call('HSET', state, 'state', 'failed', 'failed_at', now, 'next_attempt_at', '', 'last_error', detail,
           'last_status', status)
redis.call('ZADD', failed, now, id)
redis.call('ZREM', due, id)
ack()
return 1
"""

_RETRY = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'retrying' then
  -- "send now": its next attempt is due at once, its attempts and window unchanged
  redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 2
end
if state ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'window_from', ARGV[2], 'next_attempt_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'failed_at')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

Notify = Callable[[str, str | None], Awaitable[None]]
NotifyRejected = Callable[[str, str], Awaitable[None]]


async def delivered(redis: RedisClient, kind: str, item_id: str) -> bool:
    """Whether the intake has this item (an application, or one of our events)."""
    return await delivery_state(redis, kind, item_id) == "delivered"


async def delivery_state(redis: RedisClient, kind: str, item_id: str) -> str:
    """queued (also: not read yet), retrying, delivered or failed."""
    state = await redis.hget(KINDS[kind].state(item_id), "state")
    return _s(state) if state else "queued"


class OutboxLedger:
    """The delivery state of the outbox, for operators: lists, status, and putting an item back.

    Needs only Redis, so an operator command uses it without an intake adapter; the serving
    process's DeliveryWorker, which is one too, does the sending.
    """

    def __init__(self, redis: RedisClient, *, clock: Callable[[], float], kind: str = "application"):
        self.kind = kind
        self._k = KINDS[kind]
        self.redis = redis
        self.clock = clock
        self._retry = redis.register_script(_RETRY)

    async def status(self, application_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self._k.state(application_id))
        if raw:
            return _public(application_id, raw)
        if await self.redis.exists(self._k.item(application_id)):
            return _unseen(application_id)
        return None

    async def list(self, state: str | None = None, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first; applications no worker has read yet are listed as queued."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        rows = []
        if state in (None, "queued"):
            rows = [
                _unseen(i) for i in reversed(await self._unread_ids(limit)) if await self.redis.zscore(self._k.index, i) is None
            ]
        start, page = 0, 500
        while len(rows) < limit:
            ids = [_s(i) for i in await self.redis.zrevrange(self._k.index, start, start + page - 1)]
            if not ids:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for application_id in ids:
                    pipe.hgetall(self._k.state(application_id))
                states = await pipe.execute()
            rows += [
                row
                for row in (_public(i, raw) for i, raw in zip(ids, states, strict=True) if raw)
                if state is None or row["state"] == state
            ]
            expired = [i for i, raw in zip(ids, states, strict=True) if not raw]  # past the pack's retention
            if expired:
                await self.redis.zrem(self._k.index, *expired)
            start += page - len(expired)
        return rows[:limit]

    async def retry(self, application_id: str) -> bool:
        """Put a failed application back: attempts from zero, the first one now, a fresh retry window;
        one still being retried is tried now."""
        now = repr(self.clock())
        done = await self._retry(keys=[self._k.state(application_id), self._k.due, self._k.failed], args=[application_id, now])
        if done:
            log.info("delivery: %s %s by an operator", application_id, "put back" if done == 1 else "tried now")
        return bool(done)

    async def depth(self) -> dict[str, int]:
        """Counts for /metrics, each a constant-time read whatever the size of the outbox: not yet
        delivered (unread by any worker, or read and not finished), due for a retry, failed."""
        unread, unfinished = 0, 0
        try:
            for group in await self.redis.xinfo_groups(self._k.stream):
                if _s(group["name"]) == GROUP:
                    unfinished = int(group["pending"])
                    if group.get("lag") is not None:  # Redis 7
                        unread = int(group["lag"])
                    else:
                        last = _s(group["last-delivered-id"])
                        unread = len(await self.redis.xrange(self._k.stream, min=f"({last}", max="+", count=10000))
        except ResponseError:  # no stream yet
            pass
        return {
            "undelivered": unread + unfinished,
            "retrying": await self.redis.zcard(self._k.due),
            "failed": await self.redis.zcard(self._k.failed),
        }

    async def _unread_ids(self, limit: int) -> builtins.list[str]:  # `list` here is the method above
        try:
            groups = await self.redis.xinfo_groups(self._k.stream)
        except ResponseError:  # no stream yet
            return []
        last = next((_s(g["last-delivered-id"]) for g in groups if _s(g["name"]) == GROUP), "0-0")
        entries = await self.redis.xrange(self._k.stream, min=f"({last}", max="+", count=limit)
        return [_s(fields.get(b"id") or fields.get("id")) for _, fields in entries if fields]


class DeliveryWorker(OutboxLedger):
    """Delivers the outbox to an IntakeAdapter; run one per bot process, as many as you like.

    kind="event" delivers the bot's own events (RedisOutbox.submit_event) with IntakeAdapter.send_event
    in the same way; ids are then event ids, and the state keys are `...:event-state:<id>`.
    """

    def __init__(
        self,
        redis: RedisClient,
        outbox: RedisOutbox,
        intake: IntakeAdapter,
        *,
        consumer: str,
        retry_window_s: float = 72 * 3600,
        claim_idle_ms: int = 30000,
        clock: Callable[[], float],
        before_send: Callable[[str, dict], Awaitable[None]] | None = None,
        on_delivered: Notify | None = None,
        on_rejected: NotifyRejected | None = None,
        backoff_base_s: float = 5.0,
        backoff_cap_s: float = 900.0,
        lock_ttl_ms: int | None = None,
        block_ms: int = 500,
        batch: int = 50,
        concurrency: int = 4,
        kind: str = "application",
        health: RedisHealth | None = None,
    ):
        self.health = health or RedisHealth()
        super().__init__(redis, clock=clock, kind=kind)
        self.outbox = outbox
        self.intake = intake
        self.consumer = consumer
        self.retry_window_s = retry_window_s
        self.claim_idle_ms = claim_idle_ms
        self.before_send = before_send
        self.on_delivered = on_delivered
        self.on_rejected = on_rejected
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        # The lock must outlive the intake's own timeout, and an attempt stops waiting at 80 % of
        # the lock: no worker is still waiting on a POST when another may take the lock over.
        timeout_s = float(getattr(intake, "timeout_s", 10.0))
        self.lock_ttl_ms = lock_ttl_ms or int((timeout_s + 5) * 1000)
        self._attempt_limit_s = self.lock_ttl_ms / 1000 * 0.8
        # A blocking read must return before the client's socket timeout (1 s in the bot).
        self.block_ms = block_ms
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self.waiting = False  # blocked on the stream, nothing in flight: safe to cancel at once
        self._group_ready = False
        self._claim_cursor = "0-0"
        self._own_cursor: str | None = "0"  # our own pending entries are read first, from here
        self._next_housekeeping = 0.0
        self._load = outbox.get if kind == "application" else outbox.get_event
        self._send = intake.deliver if kind == "application" else intake.send_event
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)

    # -- the loop -----------------------------------------------------------------------------------
    async def run_once(self, *, block_ms: int = 0) -> int:
        """One pass: stale entries of dead workers, due retries, then new entries. Returns POSTs made."""
        try:
            return await self._pass(block_ms)
        except Exception as exc:
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):  # stream lost (no AOF, or flushed)
                self._group_ready = False
            # A read whose reply was lost on the way left entries pending for us that we never saw:
            # after any error, look at our own pending entries first (not after claim_idle_ms).
            self._own_cursor = "0"
            raise

    async def _pass(self, block_ms: int) -> int:
        if not self._group_ready:
            await self._ensure_group()
        work: dict[str, str] = {}  # application id -> stream entry id ('' = the one in its state)
        if self._own_cursor is not None:
            for entry, application_id in await self._read_own():
                work.setdefault(application_id, entry)
        for entry, application_id in await self._claim_stale():
            work.setdefault(application_id, entry)
        for member in await self.redis.zrangebyscore(self._k.due, "-inf", self.clock(), start=0, num=self.batch):
            work.setdefault(_s(member), "")
        block = None if work or block_ms <= 0 else block_ms
        self.waiting = block is not None
        try:
            new = await self._read_new(block)
        finally:
            self.waiting = False
        for entry, application_id in new:
            work.setdefault(application_id, entry)
        results = await asyncio.gather(*(self._attempt(a, e) for a, e in work.items()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await self._housekeeping()
        return sum(results)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Deliver until stop is set. Never raises: Redis trouble is logged and retried with backoff."""
        pause = 0.5
        while not stop.is_set():
            try:
                made = await self.run_once(block_ms=await self._block_for())
                self.health.ok()
                pause = 0.5
                if made == 0 and (due := await self.next_due()) is not None and due <= self.clock():
                    # Due, yet nothing was attempted: another worker holds it (its host's clock is
                    # ahead of ours). Do not spin on it.
                    await _sleep_unless(stop, 0.1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_redis_error(exc):
                    self.health.failed(f"delivery of {self.kind}s", exc)
                else:
                    log.exception("delivery: pass failed; next pass in %.1f s", pause)
                await _sleep_unless(stop, pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, 30.0)

    async def _block_for(self) -> int:
        """How long the next read may wait for new entries: until the next retry is due, at most block_ms."""
        due = await self.next_due()
        if due is None:
            return self.block_ms
        return int(min(self.block_ms, max((due - self.clock()) * 1000, 0)))

    async def next_due(self) -> float | None:
        """When the earliest retry (or an attempt in flight, should it die) falls due, by our clock."""
        head = await self.redis.zrange(self._k.due, 0, 0, withscores=True)
        return float(head[0][1]) if head else None

    async def _ensure_group(self) -> None:
        try:
            # id 0: applications queued before the first worker ever started are delivered too.
            await self.redis.xgroup_create(self._k.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _claim_stale(self) -> list[tuple[str, str]]:
        reply = await self.redis.xautoclaim(
            self._k.stream, GROUP, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor, count=self.batch
        )
        self._claim_cursor = _s(reply[0])
        return await self._entries(reply[1])

    async def _read_own(self) -> list[tuple[str, str]]:
        """This consumer's own pending entries (XREADGROUP from an id, not ">"), a page at a time."""
        raw = await self._read(self._own_cursor, None)
        self._own_cursor = _s(raw[-1][0]) if len(raw) >= self.batch else None
        return await self._entries(raw)

    async def _read_new(self, block: int | None) -> list[tuple[str, str]]:
        return await self._entries(await self._read(">", block))

    async def _read(self, start: str, block: int | None) -> list:
        reply = await self.redis.xreadgroup(GROUP, self.consumer, {self._k.stream: start}, count=self.batch, block=block)
        if not reply:
            return []
        raw: list = []
        for _, stream_entries in reply.items() if isinstance(reply, dict) else reply:
            raw.extend(stream_entries[0] if _nested(stream_entries) else stream_entries)
        return raw

    async def _entries(self, raw: list) -> list[tuple[str, str]]:
        entries = []
        for entry, fields in raw:
            if entry is None:
                continue
            application_id = (fields or {}).get(b"id") or (fields or {}).get("id")
            if application_id is None:  # not one of ours (or deleted): nothing to deliver
                await self.redis.xack(self._k.stream, GROUP, entry)
                continue
            entries.append((_s(entry), _s(application_id)))
        return entries

    # -- one application ------------------------------------------------------------------------------
    async def _attempt(self, application_id: str, entry: str) -> int:
        async with self._slots:
            token = os.urandom(8).hex()
            got = await self._begin(
                keys=[self._k.state(application_id), self._k.lock(application_id), self._k.due, self._k.index, self._k.stream],
                args=[application_id, entry, repr(self.clock()), token, self.lock_ttl_ms, GROUP],
            )
            if _s(got[0]) != "go":
                return 0
            entry, attempts, window_from = _s(got[1]), int(got[2]), float(_s(got[3]))
            document = None
            try:
                document = await self._load(application_id)
            except SealError:
                outcome = DeliveryOutcome(REJECTED, detail="document cannot be opened with our data keys")
            else:
                outcome = (
                    await self._call_intake(application_id, document)
                    if document is not None
                    else DeliveryOutcome(REJECTED, detail="document missing from the outbox")
                )
            await self._record(application_id, entry, token, outcome, attempts, window_from)
            return 0 if document is None else 1

    async def _call_intake(self, application_id: str, document: dict) -> DeliveryOutcome:
        try:
            if self.before_send is not None:  # e.g. the registry records the application first
                await self.before_send(application_id, document)
            return await asyncio.wait_for(self._send(document), self._attempt_limit_s)
        except TimeoutError:
            return DeliveryOutcome(RETRY, detail="timeout")
        except Exception as exc:  # a county's adapter is not allowed to stop the others
            log.exception("delivery: the intake adapter raised for %s", application_id)
            return DeliveryOutcome(RETRY, detail=f"adapter error: {type(exc).__name__}")

    async def _record(
        self, application_id: str, entry: str, token: str, outcome: DeliveryOutcome, attempts: int, window_from: float
    ) -> None:
        now = self.clock()
        detail, next_at = outcome.detail, ""
        if outcome.kind == DELIVERED:
            kind = "delivered"
        elif outcome.kind == RETRY:
            deadline = window_from + self.retry_window_s
            if now >= deadline:
                kind, detail = "failed", f"{GAVE_UP} (last: {outcome.detail})"
            else:
                kind, next_at = "retry", repr(min(now + self._backoff(attempts), deadline))
        else:
            kind = "failed"
        changed = await self._finish(
            keys=[self._k.state(application_id), self._k.lock(application_id), self._k.due, self._k.stream, self._k.failed],
            args=[
                application_id,
                entry,
                token,
                kind,
                repr(now),
                outcome.application_no or "",
                outcome.status_code or "",
                detail[:200],
                next_at,
                GROUP,
            ],
        )
        if changed != 1:
            return
        if kind == "delivered":
            log.info("delivery: %s %s delivered (%s) after %d attempt(s)", self.kind, application_id, outcome.detail, attempts)
            await _notify(self.on_delivered, application_id, outcome.application_no)
        elif kind == "failed":
            log.warning("delivery: %s %s failed: %s", self.kind, application_id, detail)
            await _notify(self.on_rejected, application_id, GAVE_UP if outcome.kind == RETRY else outcome.detail)
        else:
            log.info("delivery: %s %s attempt %d: %s; next at %s", self.kind, application_id, attempts, detail, next_at)

    def _backoff(self, attempts: int) -> float:
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempts - 1, 30))
        # Jitter spreads the retries of many applications queued during one outage.
        return delay * random.uniform(0.5, 1.0)

    async def _housekeeping(self) -> None:
        """Now and then forget consumers (old processes) that hold nothing and were idle for a day."""
        now = self.clock()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + 3600
        for consumer in await self.redis.xinfo_consumers(self._k.stream, GROUP):
            name = _s(consumer["name"])
            if name != self.consumer and consumer["pending"] == 0 and consumer["idle"] > 86_400_000:
                await self.redis.xgroup_delconsumer(self._k.stream, GROUP, name)


@asynccontextmanager
async def running(*workers: DeliveryWorker) -> AsyncIterator[list[asyncio.Task]]:
    """Run the workers in the background for the duration of the block (an app's cleanup_ctx), and
    stop them together at its end."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run_forever(stop), name=f"delivery-{w.kind}-{w.consumer}") for w in workers]
    try:
        yield tasks
    finally:
        stop.set()
        # Waiting for new entries: stop now. Attempts in flight get a moment to finish; one cut
        # short keeps its lock and is due again when the lock expires, so nothing is lost.
        for worker, task in zip(workers, tasks, strict=True):
            if worker.waiting:
                task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def default_consumer() -> str:
    """A consumer name per process. A restarted process is usually a new consumer (its old entries are
    claimed after claim_idle_ms); in a container (same hostname, pid 1) it is the same one and takes
    its pending entries back at once."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _public(application_id: str, raw: dict) -> dict[str, Any]:
    h = {_s(k): _s(v) for k, v in raw.items()}
    return {
        "application_id": application_id,
        "state": h.get("state"),
        "attempts": int(h.get("attempts") or 0),
        "next_attempt_at": _float(h.get("next_attempt_at")),
        "application_no": h.get("application_no") or None,
        "last_error": h.get("last_error") or None,
        "first_queued_at": _float(h.get("first_queued_at")),
        "last_attempt_at": _float(h.get("last_attempt_at")),
    }


def _unseen(application_id: str) -> dict[str, Any]:
    return {
        "application_id": application_id,
        "state": "queued",
        "attempts": 0,
        "next_attempt_at": None,
        "application_no": None,
        "last_error": None,
        "first_queued_at": None,
        "last_attempt_at": None,
    }


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _notify(callback, application_id: str, value) -> None:
    if callback is None:
        return
    try:
        await callback(application_id, value)
    except Exception:  # telling the citizen is best effort; the delivery itself is recorded
        log.exception("delivery: notifying about %s failed", application_id)


def _nested(stream_entries) -> bool:
    # RESP3 replies wrap a stream's entries in one more list.
    first = stream_entries[0] if stream_entries else None
    return isinstance(first, list) and bool(first) and isinstance(first[0], (list, tuple))


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
