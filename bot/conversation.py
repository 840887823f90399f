"""One WeChat message in, one reply out: de-duplication, per-user ordering, load, dialog, save, effects.

The order matters: the per-user lock is taken before the session is read; the reply is cached
together with the new session and the turn's effects (in one fenced write), so WeChat's retries of
a message get the same reply and the dialog advances exactly once; the effects are carried out
only after that write (bot/effects.py), and a crash in between leaves them for the sweeper.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from redis.exceptions import RedisError

from bot.clock import ClockLike
from bot.effects import EffectRunner
from bot.metrics import Metrics
from bot.wechat_channel import WECHAT, WeChatChannel
from bot.wechat_protocol import Incoming
from dialogs.engine import ApplicationDialog
from dialogs.pack import Pack
from integrations.conversations import ConversationStore, LockTimeout, LostLock
from integrations.redis_health import RedisHealth
from integrations.sealing import SealError

log = logging.getLogger(__name__)


class ConversationService:
    def __init__(
        self,
        store: ConversationStore,
        dialog: ApplicationDialog,
        pack: Pack,
        metrics: Metrics,
        *,
        deadline_s: float,
        clock: ClockLike,
        effects: EffectRunner,
        health: RedisHealth | None = None,
        channel: WeChatChannel = WECHAT,
    ):
        self.health = health or RedisHealth()
        self.effects = effects
        self.channel = channel
        self.store = store
        self.dialog = dialog
        self.pack = pack
        self.metrics = metrics
        self.deadline_s = deadline_s
        self.clock = clock
        self.menu = {item["key"]: item["says"] for item in pack.menu}

    async def reply_to(self, message: Incoming, now: datetime | None = None, *, channel: WeChatChannel | None = None) -> str:
        """`channel`: another way in to the same dialog than this service's own (the window intake)."""
        channel = channel or self.channel
        return channel.fit(await self._reply_safely(message, now, channel))

    async def _reply_safely(self, message: Incoming, now: datetime | None, channel: WeChatChannel) -> str:
        """The text to answer with ('' for nothing). Never raises for a citizen's message."""
        started = time.perf_counter()
        self.metrics.count_message(message.msg_type)
        try:
            async with asyncio.timeout(self.deadline_s):  # no extra task per turn, unlike wait_for
                reply = await self._reply(message, now, channel)
            self.health.ok()
            return reply
        except (TimeoutError, LockTimeout):
            self.metrics.errors.labels("timeout").inc()
            log.warning("turn for %s not answered in time", _short(message.from_user))
        except (RedisError, OSError, LostLock) as exc:
            self.metrics.errors.labels("storage").inc()
            self.health.failed("a turn", exc)
        except SealError:
            self.metrics.errors.labels("unreadable_session").inc()
            log.error(
                "stored conversation of %s is sealed with a data key we do not have (key mismatch)", _short(message.from_user)
            )
        except Exception:
            self.metrics.errors.labels("bug").inc()
            log.exception("turn failed")
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)
        return self.pack.text("busy")

    async def _reply(self, message: Incoming, now: datetime | None, channel: WeChatChannel) -> str:
        openid = message.from_user
        if message.msg_type == "event" and message.event == "unsubscribe":
            await self._forget(openid, message)
            return ""
        user_input = channel.input(message, self.menu)
        if user_input is None:
            # Events we do not use get no reply; a video or location gets a kind word.
            return "" if message.msg_type == "event" else self.pack.text("unsupported_message")
        pending = 0
        reads = self.dialog.reads(openid)
        async with self.store.turn(openid, message.order, message.dedup_id, wait_s=self.deadline_s - 0.5, read=reads) as turn:
            if turn.cached_reply is not None:
                # WeChat's retry of a message we already answered: the same answer, no second step.
                self.metrics.dedup_hits.inc()
                return turn.cached_reply
            result = await self.dialog.handle(turn.session, user_input, openid, now or self.clock.now(), known=turn.read)
            if result.session is None:  # "删除我的信息", confirmed
                await self.store.forget(turn, result.reply)
            else:
                pending = await self.store.save(turn, result.session, result.reply, result.effects, at=self.clock.time())
        if result.effects and result.session is not None:
            try:
                await self.effects.run(openid, only=result.effects if pending == len(result.effects) else None)
            except Exception as exc:  # saved with the session: the sweeper carries them out
                log.warning("effects of a turn of %s left for the sweeper: %s", _short(openid), type(exc).__name__)
        return result.reply

    async def _forget(self, openid: str, message: Incoming) -> None:
        """Unsubscribed: delete everything of this user that no submitted application needs, as for
        "删除我的信息" (an unsubmitted application's assessment place is given back)."""
        async with self.store.turn(openid, message.order, message.dedup_id, wait_s=self.deadline_s - 0.5) as turn:
            await self.dialog.erase(turn.session, openid)
        await self.store.forget_user(openid)


def _short(openid: str) -> str:
    return openid[:6] + "…"
