"""Redis gone, logs masked, the terminal chat: what a citizen and an operator rely on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.privacy import mask_text
from tests.conftest import TEST_DATA_KEY, WeChatUser, start_client

ROOT = Path(__file__).resolve().parent.parent


async def test_redis_down_gets_a_kind_retry_message_within_the_deadline(settings, clock, protocol):
    client = await start_client(settings.with_(redis_url="redis://127.0.0.1:1/0"), clock)
    try:
        user = WeChatUser(client, "oNoRedis", protocol)
        started = time.monotonic()
        reply = await user.say("你好")
        assert time.monotonic() - started < 5
        assert "请稍后再发" in reply and "已填的信息都在" in reply
        assert (await client.get("/healthz")).status == 503
    finally:
        await client.close()


@pytest.mark.parametrize(
    "text,hidden",
    [
        ("id 341723195503020017 done", "195503020"),
        ("cert 34172319550302001742 done", "1955030200"),
        ("phone 13812345678", "1234"),
        ("phone +8613812345678", "1234"),
        ("tel 0566-5123456", "5123"),
    ],
)
def test_log_masking(text, hidden):
    masked = mask_text(text)
    assert hidden not in masked and "*" in masked


def test_a_logged_id_number_comes_out_masked(caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("bot.test").info("applicant %s phone %s", "341723195503020017", "13812345678")
    assert "341723195503020017" not in caplog.text and "13812345678" not in caplog.text
    assert "3417**********0017" in caplog.text


def test_bot_chat_in_a_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WECHAT_APPID", "WECHAT_APPSECRET")}
    env.update(BOT_VAR_DIR=str(tmp_path / "var"), BOT_DATA_KEY=TEST_DATA_KEY)
    out = subprocess.run(
        [sys.executable, "-m", "bot", "chat"],
        input="你好\n1\n/voice 残疾证\n/quit\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "请问是谁申请" in out.stdout and "要办哪些事" in out.stdout and "户籍地址" in out.stdout
