"""Window intake (一窗): a clerk enters a walk-in citizen's application through the chat's own flow.

Each answer the clerk types is one message of a conversation, handled by the same
ConversationService as WeChat's (bot/conversation.py): the same steps, readers, validators, the same
document, delivery and status. The conversation belongs to a window user id (`oWin…`, never a WeChat
openid), and only the clerk who started it may drive it. Once submitted, the same conversation's
“绑定码” gives the code printed on the receipt, with which the citizen follows it in WeChat. Handing
the receipt over takes the window user off the application's viewers, so status notices and
reminders go to the citizens who bound it, not to an id WeChat does not know.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass

from bot.clock import protocol_time
from bot.console import keys
from bot.conversation import ConversationService
from bot.wechat_channel import WINDOW
from bot.wechat_protocol import Incoming
from integrations.applications import ApplicationRegistry
from integrations.redis_connection import RedisClient

WINDOW_PREFIX = "oWin"
# An intake left for this long is gone (the conversation itself stays, as any unfinished one).
INTAKE_TTL_S = 4 * 3600
_sequence = itertools.count()
APPLICATION_ID = re.compile(r"申请编号\s*([A-Z]{2}\d{8}[A-Z0-9]{6})")


@dataclass(frozen=True)
class WindowIntake:
    id: str
    user: str
    clerk: str


class WindowIntakes:
    def __init__(self, client: RedisClient, conversations: ConversationService, registry: ApplicationRegistry):
        self.redis = client
        self.conversations = conversations
        self.registry = registry

    async def start(self, clerk: str) -> WindowIntake:
        intake = WindowIntake(secrets.token_urlsafe(16), WINDOW_PREFIX + secrets.token_urlsafe(18)[:24], clerk)
        await self.redis.hset(keys.window_intake(intake.id), mapping={"user": intake.user, "clerk": clerk})
        await self.redis.expire(keys.window_intake(intake.id), INTAKE_TTL_S)
        return intake

    async def get(self, intake_id: str, clerk: str) -> WindowIntake | None:
        """The intake, if it exists and this clerk started it."""
        raw = await self.redis.hgetall(keys.window_intake(intake_id))
        if not raw or raw[b"clerk"].decode() != clerk:
            return None
        return WindowIntake(intake_id, raw[b"user"].decode(), clerk)

    async def say(self, intake: WindowIntake, text: str) -> str:
        """One answer through the conversation, as if typed in WeChat; the bot's reply."""
        now = protocol_time()  # the message's CreateTime, as WeChat would stamp it
        message = Incoming(
            to_user="window",
            from_user=intake.user,
            create_time=int(now),
            msg_type="text",
            msg_id=str(int(now * 1000) * 1000 + next(_sequence) % 1000),
            content=text,
        )
        return await self.conversations.reply_to(message, channel=WINDOW)

    async def submitted(self, intake: WindowIntake) -> str | None:
        """The application this intake submitted, once it has (remembered after the hand-over)."""
        known = await self.redis.hget(keys.window_intake(intake.id), "application")
        if known:
            return known.decode()
        views = await self.registry.visible_to(intake.user)
        if not views:
            return None
        await self.redis.hset(keys.window_intake(intake.id), "application", views[-1].id)
        return views[-1].id

    async def hand_over(self, intake: WindowIntake, application_id: str) -> str | None:
        """The receipt's 绑定码 (the conversation's own “绑定码”), once: then the window user stops
        following the application. None when it was handed over already."""
        meta = await self.registry.meta(application_id)
        if meta is None or intake.user not in meta["viewers"]:
            return None
        reply = await self.say(intake, "绑定码")
        await self.registry.update_meta(application_id, viewers=[v for v in meta["viewers"] if v != intake.user])
        return reply
