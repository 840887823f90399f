"""Per-user conversation storage in Redis: sessions, de-duplicated replies and the turn lock.

Every key of one user carries the hash tag {openid}, so the Lua scripts below (which touch several
keys of one user) also run on a Redis Cluster.

Ordering: WeChat may deliver several messages of one user at once, to different workers. A turn
first queues itself in a sorted set ordered by (CreateTime, MsgId) and takes the lock only when it
is at the head of that queue, so messages are processed one at a time and in the order written.
The session is saved only while the lock is still ours (a fencing check), so a turn that outlived
its lock can never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from dialogs.effects import Effect
from dialogs.effects import from_dict as effect_from_dict
from integrations.redis_connection import RedisClient
from integrations.redis_pipeline import PipelinedRedis
from integrations.sealing import Sealer, SealError

log = logging.getLogger(__name__)

LOCK_TTL_MS = 3000
# A queued turn that has not taken the lock by then is gone (its worker died or WeChat gave up).
WAITER_STALE_MS = 5000
# WeChat retries for about 15 s, but a captured request stays valid while its timestamp is inside the
# replay window (Settings.max_clock_skew_s = 300 s, either way of our clock): replies are kept at least
# twice that, so a replay anywhere in the window gets this reply and never a second turn.
REPLY_TTL_S = 660
# Replies themselves are kept for the latest few messages only (WeChat retries a message within
# about 15 s, long before a citizen has sent more than this); the ids of the latest IDS_KEPT messages
# stay in the (sealed) session, so an older one coming again gets nothing and is never a second turn.
REPLIES_KEPT = 4
# Every message answered within REPLY_TTL_S stays known by its id, in a sorted set by Redis time beside
# the session (`u:{openid}:answered`): time-bounded, not count-bounded, so a byte-identical replay of an
# older message inside the replay window is never a second turn, and constant work a turn (the ids once
# lived in the session, which then grew with every message a sender sent in those minutes).
LEGACY_ANSWERED = "_answered"
# A session in which the citizen has not answered anything yet (a greeting, a question, a stranger's
# first message) costs a day of storage, not the pack's conversation_days: it holds nothing of theirs.
FIRST_CONTACT_TTL_S = 24 * 3600  # where sessions saved by earlier versions kept the latest ids

# Queue, then take the lock when first in line. On success it also returns what the turn needs
# (the cached reply of this message, if any, and the session), saving two round trips.
_ACQUIRE = """
local lock, queue, seen = KEYS[1], KEYS[2], KEYS[3]
local member, token, ttl, stale = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
-- The turn is ours: the cached reply, the session, whether this message was answered, then each
-- further key's hash (KEYS[7]...: what the turn will read anyway).
local function taken()
  local out = {1, redis.call('HGET', KEYS[4], ARGV[6]) or '', redis.call('GET', KEYS[5]) or '',
               redis.call('ZSCORE', KEYS[6], ARGV[6]) and 1 or 0}
  for i = 7, #KEYS do out[#out + 1] = redis.call('HGETALL', KEYS[i]) end
  return out
end
-- Nobody waiting and nobody holding the user (nearly always): take the turn without queueing.
if redis.call('EXISTS', queue) == 0 and redis.call('SET', lock, token, 'NX', 'PX', ttl) then
  return taken()
end
-- Waiting is measured by Redis's clock, the one every worker on every host shares.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', queue, member) == false then
  redis.call('ZADD', queue, ARGV[5], member)
  redis.call('HSET', seen, member, now)
  redis.call('PEXPIRE', queue, stale * 4)
  redis.call('PEXPIRE', seen, stale * 4)
end
while true do
  local head = redis.call('ZRANGE', queue, 0, 0)[1]
  if head == nil then return {0} end
  local since = tonumber(redis.call('HGET', seen, head) or '0')
  if head ~= member and now - since > stale then
    redis.call('ZREM', queue, head)
    redis.call('HDEL', seen, head)
  else
    if head ~= member then return {0} end
    if redis.call('SET', lock, token, 'NX', 'PX', ttl) then
      redis.call('ZREM', queue, member)
      redis.call('HDEL', seen, member)
      return taken()
    end
    return {0}
  end
end
"""

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Keep this message's reply for retries and its id for the reply window, forget what is older than
# the window, and the reply of the message that has just left the latest `kept`. Used by both scripts below.
_REMEMBER = """
local function remember(replies, answered, id, reply, ttl, kept)
  if id == '' then return end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('ZADD', answered, now, id)
  redis.call('ZREMRANGEBYSCORE', answered, '-inf', now - tonumber(ttl))
  redis.call('EXPIRE', answered, ttl)
  local dropped = redis.call('ZREVRANGE', answered, kept, kept)[1]
  if dropped then redis.call('HDEL', replies, dropped) end
  redis.call('HSET', replies, id, reply)
  redis.call('EXPIRE', replies, ttl)
end
"""

# Save the session, remember the reply for WeChat's retries, keep the turn's effects (ARGV[8..],
# sealed) until they are carried out, and release the lock: only while the lock is still ours.
_SAVE = (
    _REMEMBER
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, 0} end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
remember(KEYS[3], KEYS[4], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))
local pending = 0
if #ARGV > 7 then
  for i = 8, #ARGV do pending = redis.call('RPUSH', KEYS[5], ARGV[i]) end
  redis.call('EXPIRE', KEYS[5], ARGV[3])
end
redis.call('DEL', KEYS[1])
return {1, pending}
"""
)

# Citizens whose turn left effects to carry out, by when (the runner's clock). Before a save the
# citizen is listed here; once the effects are done the entry goes, unless a later turn listed it again.
PENDING_EFFECTS = "effects:{pending}"
_UNLIST = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""


# "删除我的信息" confirmed: end the turn without a session, keeping only this message's reply.
_FORGET = (
    _REMEMBER
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
remember(KEYS[3], KEYS[4], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))
redis.call('DEL', KEYS[1])
return 1
"""
)


class LockTimeout(Exception):
    """The user's previous message is still being handled; WeChat will retry this one."""


class LostLock(Exception):
    """The turn took longer than the lock lives; its result was not saved."""


@dataclass
class Turn:
    """A held turn: the lock token, this message's earlier reply (a retry) and the session."""

    openid: str
    token: str
    dedup_id: str
    cached_reply: str | None
    session: dict | None
    answered: bool = False  # this message was answered before (inside the reply window)
    released: bool = False
    read: dict[str, dict[bytes, bytes]] = field(default_factory=dict)  # the hashes asked for with the turn


def _k(openid: str, part: str) -> str:
    return f"u:{{{openid}}}:{part}"


class ConversationStore:
    def __init__(
        self,
        client: RedisClient,
        sealer: Sealer,
        *,
        session_ttl_s: int,
        pipeline: PipelinedRedis | None = None,
        said_nothing: Callable[[dict], bool] = lambda session: False,
        first_contact_ttl_s: int = FIRST_CONTACT_TTL_S,
    ):
        self.redis = client
        self.sealer = sealer
        self.session_ttl_s = session_ttl_s
        # said_nothing(session): nothing in it was answered yet (the dialog knows; ApplicationDialog.said_nothing).
        self.said_nothing = said_nothing
        self.first_contact_ttl_s = min(first_contact_ttl_s, session_ttl_s)
        script = (lambda body: pipeline.script(body)) if pipeline is not None else client.register_script
        self._acquire = script(_ACQUIRE)
        self._leave = script(_LEAVE)
        self._release = script(_RELEASE)
        self._save = script(_SAVE)
        self._forget = client.register_script(_FORGET)
        # The turn's effects bookkeeping rides in the same writes as the turn's own scripts when the
        # connection is auto-pipelined (one connection: Redis runs them in the order sent).
        self._pipeline = pipeline
        self._unlist = script(_UNLIST)

    # -- the turn ---------------------------------------------------------------------------------
    @asynccontextmanager
    async def turn(
        self, openid: str, order: tuple[int, int], dedup_id: str, *, wait_s: float, read: Sequence[str] = ()
    ) -> AsyncIterator[Turn]:
        """Wait for this user's earlier messages, then hold the user for one turn. `read`: hashes of this
        user (keys with the {openid} hash tag) the turn will need, read in the same round trip (Turn.read)."""
        token = os.urandom(8).hex()
        # Members sort by score (CreateTime) and then lexicographically, hence the zero padding.
        # Named by the message, not the attempt: WeChat's retry of a message whose worker died while
        # it waited finds its place in the queue instead of waiting behind it until it goes stale.
        member = f"{order[1]:020d}:{dedup_id or token}"
        conv_key = _k(openid, "conversation")
        keys = [
            _k(openid, "lock"),
            _k(openid, "queue"),
            _k(openid, "queued_at"),
            _k(openid, "replies"),
            conv_key,
            _k(openid, "answered"),
        ]
        script_keys = [*keys, *read]
        deadline = time.monotonic() + wait_s
        pause = 0.001
        try:
            while True:
                got = await self._acquire(
                    keys=script_keys, args=[member, token, LOCK_TTL_MS, WAITER_STALE_MS, order[0], dedup_id]
                )
                if got[0] == 1:
                    break
                if time.monotonic() >= deadline:
                    raise LockTimeout(openid)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.02)
        except BaseException:
            await _quietly(self._leave(keys=keys[1:3], args=[member]))
            raise
        session = json.loads(self._open_or_none(got[2], conv_key) or "null")
        legacy = session.pop(LEGACY_ANSWERED, []) if session else []
        answered = bool(dedup_id) and (got[3] == 1 or dedup_id in legacy)
        cached_reply = self._open_or_none(got[1], _reply_context(openid, dedup_id))
        if cached_reply is None and answered:
            cached_reply = ""  # answered before (its reply no longer kept): nothing more to say
        hashes = {key: dict(zip(flat[::2], flat[1::2], strict=True)) for key, flat in zip(read, got[4:], strict=True)}
        turn = Turn(openid, token, dedup_id, cached_reply=cached_reply, session=session, answered=answered, read=hashes)
        try:
            yield turn
        finally:
            if not turn.released:
                await _quietly(self._release(keys=[keys[0]], args=[token]))

    def _open_or_none(self, blob: bytes, key: str) -> str | None:
        """A blob sealed with a key we no longer have is treated as absent (and logged), so the
        citizen starts afresh instead of being told "busy" until it expires."""
        if not blob:
            return None
        try:
            return self.sealer.open(blob, key).decode()
        except SealError:
            log.error(
                "a stored %s is sealed with a data key we do not have (key mismatch): starting afresh",
                key.split("}:", 1)[-1].split(":")[0],
            )
            return None

    async def save(self, turn: Turn, session: dict, reply: str, effects: Sequence[Effect] = (), *, at: float = 0.0) -> int:
        """Store the new session, this message's reply and the turn's effects, and end the turn.
        `at`: the time the effects are listed as pending at (the runner's clock). Returns how many
        effects are now pending for this citizen (more than the turn's: a crash left some)."""
        conv_key = _k(turn.openid, "conversation")
        sealed_session = self.sealer.seal(json.dumps(session, ensure_ascii=False, separators=(",", ":")).encode(), conv_key)
        sealed_effects = [self._seal_effect(turn.openid, e) for e in effects]
        ttl_s = self.first_contact_ttl_s if self.said_nothing(session) else self.session_ttl_s
        saved = self._save(
            keys=self._turn_keys(turn),
            args=[turn.token, sealed_session, ttl_s, *self._remembered(turn, reply), *sealed_effects],
        )
        # Listed as pending before the save runs, so a crash after the save leaves them to the sweeper.
        if not sealed_effects:
            ok, pending = await saved
        elif self._pipeline is not None:
            _, (ok, pending) = await asyncio.gather(self._pipeline.execute("ZADD", PENDING_EFFECTS, repr(at), turn.openid), saved)
        else:
            await self.redis.zadd(PENDING_EFFECTS, {turn.openid: at})
            ok, pending = await saved
        if ok != 1:
            raise LostLock(turn.openid)
        turn.released = True
        return int(pending)

    @staticmethod
    def _turn_keys(turn: Turn) -> list[str]:
        return [_k(turn.openid, part) for part in ("lock", "conversation", "replies", "answered", "effects")]

    # -- effects of saved turns ----------------------------------------------------------------
    def _seal_effect(self, openid: str, effect: Effect) -> bytes:
        return self.sealer.seal(json.dumps(effect.to_dict(), ensure_ascii=False).encode(), _k(openid, "effects"))

    async def pending_effects(self, openid: str) -> list[Effect]:
        """Effects saved by this citizen's turns and not yet carried out, oldest first."""
        key = _k(openid, "effects")
        return [effect_from_dict(json.loads(self.sealer.open(blob, key))) for blob in await self.redis.lrange(key, 0, -1)]

    async def effects_done(self, openid: str, count: int, since: float) -> None:
        """The oldest `count` effects are carried out; unlist the citizen unless listed again after `since`."""
        unlist = self._unlist(keys=[PENDING_EFFECTS], args=[openid, repr(since)])
        if count and self._pipeline is not None:
            await asyncio.gather(self._pipeline.execute("LTRIM", _k(openid, "effects"), count, -1), unlist)
            return
        if count:
            await self.redis.ltrim(_k(openid, "effects"), count, -1)
        await unlist

    async def pending_effects_of(self, listed_before: float, *, limit: int) -> list[str]:
        """Citizens whose effects were listed before `listed_before` and are not done (left by a crash)."""
        return [m.decode() for m in await self.redis.zrangebyscore(PENDING_EFFECTS, "-inf", listed_before, start=0, num=limit)]

    def _remembered(self, turn: Turn, reply: str) -> list:
        """The arguments of the scripts' `remember`: id, sealed reply, ttl, how many replies are kept."""
        sealed = self.sealer.seal(reply.encode(), _reply_context(turn.openid, turn.dedup_id)) if turn.dedup_id else b""
        return [turn.dedup_id, sealed, REPLY_TTL_S, REPLIES_KEPT]

    # -- outside a turn -------------------------------------------------------------------------
    async def load(self, openid: str) -> dict | None:
        blob = await self.redis.get(_k(openid, "conversation"))
        if blob is None:
            return None
        session = json.loads(self.sealer.open(blob, _k(openid, "conversation")))
        session.pop(LEGACY_ANSWERED, None)
        return session

    async def forget_user(self, openid: str) -> int:
        """Delete every key of this user (conversation, cached replies, queue)."""
        deleted = 0
        async for key in self.redis.scan_iter(match=f"u:{{{_escape_glob(openid)}}}:*", count=200):
            deleted += await self.redis.delete(key)
        return deleted

    async def forget(self, turn: Turn, reply: str) -> None:
        """End the turn by deleting every key of this user (session, cached replies, queue) except
        this message's reply, kept sealed for REPLY_TTL_S so a retry of it gets the same answer."""
        keys = self._turn_keys(turn)
        async for key in self.redis.scan_iter(match=f"u:{{{_escape_glob(turn.openid)}}}:*", count=200):
            if key.decode() != keys[0]:  # (a queued turn puts itself back in the queue)
                await self.redis.delete(key)
        if await self._forget(keys=keys, args=[turn.token, *self._remembered(turn, reply)]) != 1:
            raise LostLock(turn.openid)
        turn.released = True


def _reply_context(openid: str, dedup_id: str) -> str:
    """What a cached reply is sealed to (the cipher's associated data): its hash and field."""
    return _k(openid, f"replies:{dedup_id}")


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def _quietly(awaitable) -> None:
    # The lock expires on its own; a cleanup failure must not mask the turn's result.
    with contextlib.suppress(Exception):
        await awaitable
