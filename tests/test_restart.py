"""`bot serve` as a real process on the embedded Redis: a conversation survives restarts."""

from __future__ import annotations

import signal
import time

import aiohttp
import pytest

from bot.wechat_protocol import WeChatProtocol, message_xml
from tests.processes import BotServe


async def _say(port: int, openid: str, text: str, msg_id: int) -> str:
    protocol = WeChatProtocol("restarttoken")
    query, body = protocol.build_request(
        message_xml(from_user=openid, content=text, msg_id=msg_id, create_time=int(time.time())), encrypted=False
    )
    async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}/wechat", params=query, data=body) as r:
        assert r.status == 200
        return protocol.decode_reply(await r.read(), encrypted=False).get("Content", "")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "kill-9"])
async def test_conversation_survives_a_restart_on_the_embedded_redis(tmp_path, how):
    bot = BotServe(tmp_path / "var", env={"WECHAT_TOKEN": "restarttoken", "BOT_INTAKE_SANDBOX": "1"})  # the embedded Redis
    await bot.start()
    try:
        assert "请问是谁申请" in await _say(bot.port, "oRestart", "你好", 1)
        assert "要办哪些事" in await _say(bot.port, "oRestart", "1", 2)
        bot.kill(how)
        if how == signal.SIGTERM:
            # The embedded server went down with the bot: what follows is read back from disk.
            assert list((tmp_path / "var").glob("appendonly*")) or list((tmp_path / "var").glob("*.aof*"))
        await bot.start()
        assert "户籍地址" in await _say(bot.port, "oRestart", "1 3", 3)
    finally:
        bot.stop()
