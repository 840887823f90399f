"""`bot serve` as a real process on the embedded Redis: a conversation survives restarts."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port

from bot.wechat_protocol import WeChatProtocol, message_xml

ROOT = Path(__file__).resolve().parent.parent




class BotProcess:
    def __init__(self, var_dir: Path, port: int):
        self.var_dir, self.port = var_dir, port
        self.proc: subprocess.Popen | None = None

    async def start(self) -> float:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(BOT_VAR_DIR=str(self.var_dir), BOT_PORT=str(self.port), WECHAT_TOKEN="restarttoken", BOT_SIMULATOR="0")
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200:
                            return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                await asyncio.sleep(0.05)
        raise AssertionError("bot did not become healthy")

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)


async def _say(port: int, openid: str, text: str, msg_id: int) -> str:
    protocol = WeChatProtocol("restarttoken")
    query, body = protocol.build_request(
        message_xml(from_user=openid, content=text, msg_id=msg_id, create_time=int(time.time())), encrypted=False)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/wechat", params=query, data=body) as r:
            assert r.status == 200
            return protocol.decode_reply(await r.read(), encrypted=False).get("Content", "")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "kill-9"])
async def test_conversation_survives_a_restart_on_the_embedded_redis(tmp_path, how):
    bot = BotProcess(tmp_path / "var", free_port())
    await bot.start()
    try:
        assert "请问是谁申请" in await _say(bot.port, "oRestart", "你好", 1)
        assert "要办哪些事" in await _say(bot.port, "oRestart", "1", 2)
        bot.stop(how)
        if how == signal.SIGTERM:
            # The embedded server went down with the bot: what follows is read back from disk.
            assert list((tmp_path / "var").glob("appendonly*")) or list((tmp_path / "var").glob("*.aof*"))
        await bot.start()
        assert "户口在青阳县" in await _say(bot.port, "oRestart", "1 3", 3)
    finally:
        if bot.proc and bot.proc.poll() is None:
            bot.stop(signal.SIGTERM)
