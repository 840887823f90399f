"""The WeChat channel: what a message means to the dialog, and what WeChat takes back.

The dialog knows replies, not WeChat. WeChat's own rules live here: which message kinds become
input (text, recognised voice, photo, subscribe, a menu click), and the size of a passive reply.
Another channel (a web form at the window, a mini program) brings its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.wechat_protocol import Incoming
from dialogs.turn import UserInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeChatChannel:
    # A passive reply's text, in UTF-8 bytes (WeChat cuts or refuses a longer one).
    text_limit_bytes: int = 2048
    # What the application document says it came through (the window intake drives the same dialog as "window").
    name: str = "wechat"

    def input(self, m: Incoming, menu: dict[str, str]) -> UserInput | None:
        """What the citizen said, or None for events we politely ignore."""
        if m.msg_type == "text":
            return UserInput("text", m.content or "", channel=self.name)
        if m.msg_type == "voice":
            text = (m.recognition or "").strip()
            return UserInput("voice", text, media_id=m.media_id, recognized=bool(text), channel=self.name)
        if m.msg_type == "image":
            return UserInput("image", "", media_id=m.media_id, pic_url=m.pic_url, channel=self.name)
        if m.msg_type == "event" and m.event == "subscribe":
            return UserInput("subscribe", channel=self.name)
        if m.msg_type == "event" and m.event == "click" and m.event_key in menu:
            return UserInput("click", menu[m.event_key], channel=self.name)
        return None

    def fit(self, reply: str) -> str:
        """Keep a passive reply inside WeChat's text limit."""
        raw = reply.encode()
        if len(raw) <= self.text_limit_bytes:
            return reply
        log.warning("reply of %d bytes shortened to fit WeChat's limit", len(raw))
        return raw[: self.text_limit_bytes - 3].decode(errors="ignore") + "…"


WECHAT = WeChatChannel()
WINDOW = WeChatChannel(name="window")
WECHAT_TEXT_LIMIT = WECHAT.text_limit_bytes
