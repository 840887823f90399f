"""Personal data at rest and in what the bot emits: sealed in Redis and on disk, never in clear in logs
or /metrics; the data key rotated without losing data; the generated development key kept privately;
unfinished conversations expiring when the pack says.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import signal
import stat
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import PACK, SERVICES, create_app, intake_secret
from bot.wechat_protocol import WeChatProtocol, message_xml
from dialogs.pack import load_pack
from integrations.intake import encode_body, signed_headers
from integrations.sealing import Sealer, SealError
from tests.conftest import WeChatUser, free_port, start_client
from tests.privacy_checks import MOTHER_FOR_SON, MOTHER_FOR_SON_PERSONAL, personal_data_in, personal_data_in_redis
from tests.processes import BotServe, embedded_servers, wait_until


def _key(kid: str) -> tuple[str, bytes]:
    key = os.urandom(32)
    return f"{kid}:{base64.b64encode(key).decode()}", key


def _kid(blob: bytes) -> bytes:
    return blob[2 : 2 + blob[1]]


# -- the data key ----------------------------------------------------------------------------------
def test_rotation_old_data_still_opens_and_new_data_uses_the_new_key(tmp_path):
    old_setting, old_key = _key("k2025")
    new_setting, new_key = _key("k2026")
    context = "u:{oRotate}:conversation"
    before = Sealer.from_setting(old_setting).seal(b"341723199503100058", context)

    rotated = Sealer.from_setting(f"{new_setting}, {old_setting}")
    assert rotated.open(before, context) == b"341723199503100058"
    after = rotated.seal(b"13955501234", context)
    assert _kid(before) == b"k2025" and _kid(after) == b"k2026"
    assert Sealer([("k2026", new_key)]).open(after, context) == b"13955501234"
    with pytest.raises(SealError):
        Sealer([("k2025", old_key)]).open(after, context)  # really under the new key
    with pytest.raises(SealError):
        rotated.open(before, "u:{oSomeoneElse}:conversation")  # bound to its key name
    assert not (tmp_path / "data.key").exists()  # with BOT_DATA_KEY set nothing is generated


async def test_a_conversation_carries_on_across_a_key_rotation(settings, clock, protocol, redis_client):
    old, _ = _key("k2025")
    new, _ = _key("k2026")
    stored = lambda: redis_client.get("u:{oRotation}:conversation")  # noqa: E731

    client = await start_client(settings.with_(data_keys=old), clock)
    try:
        user = WeChatUser(client, "oRotation", protocol)
        await user.say("你好")
        assert "要办哪些事" in await user.say("1")
    finally:
        await client.close()
    assert _kid(await stored()) == b"k2025"

    client = await start_client(settings.with_(data_keys=f"{new},{old}"), clock)  # the new key put first
    try:
        assert "户籍地址" in await WeChatUser(client, "oRotation", protocol).say("1 3")  # the old session opened
    finally:
        await client.close()
    assert _kid(await stored()) == b"k2026"  # and was saved again under the new key

    # Retiring the old key: once nothing sealed with it is left, its canary is deleted by hand (else the
    # bot refuses to start without it: tests/test_data_keys.py).
    await redis_client.delete("datakey:{canary}:k2025")
    client = await start_client(settings.with_(data_keys=new), clock)  # the old key retired
    try:
        assert "已经有残疾人证了吗" in await WeChatUser(client, "oRotation", protocol).say("青阳县蓉城镇五溪村12号")
    finally:
        await client.close()


def test_without_bot_data_key_a_key_is_generated_once_kept_private_and_announced(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="integrations.sealing")
    var = tmp_path / "var"
    first = Sealer.local(var)
    key_file = var / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(var.stat().st_mode) == 0o700  # var/ (the embedded Redis, the key) is the bot's alone
    assert f"BOT_DATA_KEY not set: generated a data key in {key_file}" in caplog.text
    blob = first.seal(b"secret", "ctx")

    caplog.clear()
    second = Sealer.local(var)  # the next start (or another worker) uses the same key, quietly
    assert second.open(blob, "ctx") == b"secret" and caplog.text == ""
    assert list(var.iterdir()) == [key_file]  # no half-written temporary file left


async def test_bot_serve_as_shipped_keeps_nothing_personal_in_clear_in_its_log_or_on_disk(tmp_path):
    """`bot serve` with no configuration at all: embedded Redis and a generated key, both under var/."""
    var = tmp_path / "var"
    bot = BotServe(var)  # its log, var/bot-<port>.log, is also scanned at the end of the session
    protocol = WeChatProtocol("devtoken")
    try:
        await bot.start()
        async with aiohttp.ClientSession() as http:
            for n, (kind, text) in enumerate(MOTHER_FOR_SON, 1):
                fields = {
                    "say": dict(content=text),
                    "voice": dict(msg_type="voice", recognition=text),
                    "image": dict(msg_type="image", media_id=text),
                }[kind]
                xml = message_xml(from_user="oServeUser", msg_id=n, create_time=int(time.time()), **fields)
                query, body = protocol.build_request(xml, encrypted=False)
                async with http.post(bot.url + "/wechat", params=query, data=body) as r:
                    reply = protocol.decode_reply(await r.read(), encrypted=False).get("Content", "")
            assert "申请已提交" in reply, reply
        await wait_until(lambda: "delivered" in bot.log_tail(10**6), 15, what="the delivery")
    finally:
        bot.kill(signal.SIGTERM)  # as Ctrl-C would: no help from the test in stopping its Redis
    assert embedded_servers(var) == []  # the embedded Redis went down with the bot

    key_file = var / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(var.stat().st_mode) == 0o700  # var/ (the embedded Redis, the key) is the bot's alone
    log_text = bot.log_path.read_text(errors="replace")
    assert f"BOT_DATA_KEY not set: generated a data key in {key_file}" in log_text
    assert personal_data_in(log_text, tuple(MOTHER_FOR_SON_PERSONAL)) == []
    on_disk = [p for p in var.rglob("*") if p.is_file() and p not in (key_file, bot.log_path)]
    assert any("appendonly" in p.name or p.suffix == ".aof" for p in on_disk), on_disk  # the data did reach the disk
    for path in on_disk:
        content = path.read_bytes().decode(errors="replace")
        assert personal_data_in(content, tuple(MOTHER_FOR_SON_PERSONAL)) == [], path


# -- Redis and /metrics after a whole application ------------------------------------------------------
async def test_after_an_application_is_delivered_and_decided_redis_and_metrics_hold_nothing_in_clear(
    settings, clock, protocol, redis_client
):
    clock.set("2026-11-23T10:00:00")
    client = await start_client(settings, clock)
    try:
        services = client.server.app[SERVICES]
        mother = WeChatUser(client, "oMotherAtRest", protocol)
        reply = await mother.play(MOTHER_FOR_SON)
        ref = reply.split("申请编号 ")[1].split("。")[0]

        async def delivered() -> bool:
            status = await services.registry.status(ref)
            return bool(status) and all(s["status"] == "delivered" for s in status.values())

        await wait_until(delivered, 10, what="the delivery")
        code = (await mother.say("绑定码")).split("绑定码：")[1][:6]
        assert "绑定成功" in await WeChatUser(client, "oFatherAtRest", protocol).say(f"绑定 {code}")
        for n, service in enumerate(["living_subsidy", "nursing_subsidy"]):
            event = {
                "event_id": f"ev-rest-{n}",
                "application_id": ref,
                "service": service,
                "status": "approved",
                "note": "",
                "at": "2026-11-23T09:00:00+08:00",
            }
            body = encode_body(event)
            resp = await client.post(
                "/intake/events", data=body, headers=signed_headers(intake_secret(settings), body, event["event_id"], time.time())
            )
            assert resp.status == 200, await resp.text()
        assert "生活补贴：审核通过" in await mother.say("进度")
        assert "谢谢您的评价" in await mother.say("5")
        await mother.say("窗口的欧阳志远的事办得快")  # a comment may hold a name: kept sealed too
        await services.push.send_due(now=services.clock.time() + 5)

        leaks = await personal_data_in_redis(redis_client, MOTHER_FOR_SON_PERSONAL)
        assert leaks == []
        assert await redis_client.dbsize() > 20  # the scan did look at the application's records

        metrics = await client.get("/metrics")
        assert metrics.status == 200
        text = await metrics.text()
        assert "bot_messages" in text
        assert personal_data_in(text, (*MOTHER_FOR_SON_PERSONAL, ref, "oMotherAtRest", "oFatherAtRest")) == []
    finally:
        await client.close()


# -- unfinished conversations expire -------------------------------------------------------------------
async def _ttl_after_the_first_answer(settings, clock, protocol, redis_client, pack) -> int:
    port = free_port()
    app = create_app(settings.with_(region=pack.region, host="127.0.0.1", port=port), clock=clock)
    app[PACK] = pack  # read when the app starts its services
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    try:
        openid = f"oTtl{pack.region}{pack.conversation_days}"
        user = WeChatUser(client, openid, protocol)
        await user.say("你好")  # nothing answered yet: a day (tests/test_security.py)
        await user.say("1")  # the first answer (for oneself): the pack's conversation_days
        return await redis_client.ttl(f"u:{{{openid}}}:conversation")
    finally:
        await client.close()


@pytest.mark.parametrize("region", ["qingyang", "hulunbuir"])
async def test_an_unfinished_conversation_expires_after_the_packs_conversation_days(
    region, settings, clock, protocol, redis_client
):
    pack = load_pack(region)
    assert pack.raw["retention"]["conversation_days"] == pack.conversation_days == 30
    assert "个人信息保护法" in pack.raw["retention"]["conversation_basis"]
    ttl = await _ttl_after_the_first_answer(settings, clock, protocol, redis_client, pack)
    assert 30 * 86400 - 60 <= ttl <= 30 * 86400

    shorter = dataclasses.replace(pack, raw={**pack.raw, "retention": {**pack.raw["retention"], "conversation_days": 7}})
    ttl = await _ttl_after_the_first_answer(settings, clock, protocol, redis_client, shorter)
    assert 7 * 86400 - 60 <= ttl <= 7 * 86400
