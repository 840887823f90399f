"""The /wechat endpoint as WeChat's server calls it: verification, modes, retries, ordering, abuse."""

from __future__ import annotations

import asyncio
import time

from bot.app import SERVICES
from bot.wechat_protocol import message_xml
from tests.conftest import SAMPLE_TOKEN, WeChatUser, _ids, start_client


async def test_url_verification_answers_echostr(bot_client, protocol):
    ts, nonce = str(int(time.time())), "12345"
    sig = protocol.sign(ts, nonce)
    resp = await bot_client.get("/wechat", params={"signature": sig, "timestamp": ts, "nonce": nonce, "echostr": "hello-echo"})
    assert resp.status == 200
    assert await resp.text() == "hello-echo"
    bad = await bot_client.get("/wechat", params={"signature": "0" * 40, "timestamp": ts, "nonce": nonce, "echostr": "x"})
    assert bad.status == 403


async def test_safe_mode_round_trip_and_plain_compatible_mode(make_user, bot_client, settings, clock, protocol):
    safe = make_user()
    assert "请问是谁申请" in await safe.say("你好")
    # An account with an EncodingAESKey in safe mode gets no plaintext from WeChat: one is refused.
    safe_only = await start_client(settings.with_(wechat_compatible_mode=False), clock)
    try:
        query, body = protocol.build_request(make_user().xml(msg_type="text", content="你好", msg_id=next(_ids)), encrypted=False)
        refused = await safe_only.post("/wechat", params=query, data=body)
        assert refused.status == 403 and "safe mode" in await refused.text()
    finally:
        await safe_only.close()
    compatible = await start_client(settings.with_(wechat_compatible_mode=True), clock)
    try:
        plain = WeChatUser(compatible, "oCompatible", protocol, encrypted=False)
        assert "请问是谁申请" in await plain.say("你好")
    finally:
        await compatible.close()


async def test_retries_of_one_msgid_get_the_same_reply_and_advance_once(bot_client, make_user):
    user = make_user()
    await user.say("你好")
    xml = user.xml(msg_type="text", content="替家人申请", msg_id=next(_ids))
    first = await user.post_xml(xml)
    retries = await asyncio.gather(*(user.post_xml(xml) for _ in range(3)))
    assert "您是申请人的什么人" in first
    assert retries == [first] * 3
    # Advanced once: the next answer is read as the relation, not as the agent's name.
    assert "姓名" in await user.say("母亲")
    metrics = await (await bot_client.get("/metrics")).text()
    assert "bot_dedup_hits_total 3.0" in metrics


async def test_only_the_latest_replies_are_kept_but_no_message_is_ever_a_second_turn(bot_client, make_user, redis_client):
    from integrations.conversations import REPLIES_KEPT

    store = bot_client.server.app[SERVICES].store
    user = make_user()
    sent = []
    for text in ["你好", "2", "母亲", "王芳", "341723198001010028", "13812345678"]:
        xml = user.xml(msg_type="text", content=text, msg_id=next(_ids))
        sent.append((xml, await user.post_xml(xml)))
    assert await redis_client.hlen(f"u:{{{user.openid}}}:replies") == REPLIES_KEPT
    # The latest messages' retries get their reply again; an older one gets nothing and moves nothing.
    before = await store.load(user.openid)
    for xml, reply in sent[-REPLIES_KEPT:]:
        assert await user.post_xml(xml) == reply
    assert await user.post_xml(sent[0][0]) == "" and await user.post_xml(sent[1][0]) == ""
    after = await store.load(user.openid)
    assert (after["state"], after["history"], after["data"]) == (before["state"], before["history"], before["data"])
    # However long the conversation, a turn's Redis work and the replies kept stay the same.
    for _ in range(40):
        await user.say("帮助")
    assert await redis_client.hlen(f"u:{{{user.openid}}}:replies") == REPLIES_KEPT


async def test_concurrent_messages_of_one_user_run_one_at_a_time_in_order(bot_client, make_user):
    user = make_user()
    answers = ["1", "1 2", "青阳县蓉城镇五溪村12号", "2", "4", "2", "张三", "341723195503020017", "13812345678", "0"]
    expected = [
        "要办哪些事",
        "户籍地址",
        "已经有残疾人证了吗",
        "哪类残疾",
        "哪种情况",
        "请发您的姓名",
        "身份证号",
        "联系电话",
        "请准备这些材料",
        "请选日期",
    ]
    assert "请问是谁申请" in await user.say("你好")
    store = bot_client.server.app[SERVICES].store
    created = int(time.time())
    base_id = next(_ids)
    xmls = [message_xml(from_user=user.openid, content=a, msg_id=base_id + i, create_time=created) for i, a in enumerate(answers)]
    # Hold the user's turn, let all ten arrive (newest first), then let them go.
    async with store.turn(user.openid, (0, 0), "held-by-test", wait_s=2):
        tasks = [asyncio.create_task(user.post_xml(x)) for x in reversed(xmls)]
        for _ in range(200):
            if await store.redis.zcard(f"u:{{{user.openid}}}:queue") == len(xmls):
                break
            await asyncio.sleep(0.01)
        assert await store.redis.zcard(f"u:{{{user.openid}}}:queue") == len(xmls)
    replies = list(reversed(await asyncio.gather(*tasks)))
    for answer, reply, wanted in zip(answers, replies, expected, strict=True):
        assert wanted in reply, (answer, reply)


async def test_unsubscribe_deletes_the_users_data(bot_client, make_user, redis_client):
    user = make_user()
    for text in ("你好", "1", "1", "青阳县蓉城镇五溪村12号", "2", "4", "张三", "341723195503020017", "13812345678", "0"):
        await user.say(text)
    assert "已为您预约" in await user.say("1")
    booked = [k async for k in redis_client.scan_iter(match="assess:*")]
    assert booked and await redis_client.hlen(booked[0]) == 1
    pattern = f"u:{{{user.openid}}}:*"
    assert [k async for k in redis_client.scan_iter(match=pattern)]
    assert await user.event("unsubscribe") == ""
    assert [k async for k in redis_client.scan_iter(match=pattern)] == []
    assert await redis_client.hlen(booked[0]) == 0  # the unsubmitted booking gave its place back
    # Coming back starts afresh with the welcome.
    reply = await user.event("subscribe")
    assert "欢迎关注" in reply and "请问是谁申请" in reply


async def test_voice_image_and_other_messages(make_user):
    user = make_user()
    assert "请问是谁申请" in await user.voice("你好。")
    assert "没听清" in await user.voice("")
    kept = await user.image("m-1")
    assert "照片已收到" in kept and "请问是谁申请" in kept
    video = await user.post_xml(user.xml(msg_type="video", media_id="v", msg_id=next(_ids)))
    assert "文字、语音和图片" in video
    assert await user.event("VIEW", "http://example.invalid") == ""


async def test_menu_click_routes_into_the_dialog(make_user):
    user = make_user()
    assert "重新开始" in await user.event("CLICK", "MENU_HELP")
    assert "没有查到" in await user.event("CLICK", "MENU_STATUS")
    assert await user.event("CLICK", "NO_SUCH_KEY") == ""


async def _post(client, params, body: bytes):
    resp = await client.post("/wechat", params=params, data=body)
    return resp.status, await resp.text()


async def test_bad_requests_never_get_a_500(bot_client, protocol):
    good_xml = message_xml(from_user="oAbuse", content="你好", msg_id=1, create_time=int(time.time()))
    query, body = protocol.build_request(good_xml, encrypted=True)
    bad_sig = dict(query, msg_signature="0" * 40)
    stale = protocol.build_request(good_xml, encrypted=True, timestamp=int(time.time()) - 3600)
    cases = {
        "bad signature": (bad_sig, body, 403),
        "stale timestamp": (stale[0], stale[1], 403),
        "oversize body": (query, b"<xml>" + b"a" * (70 * 1024) + b"</xml>", 413),
        "no parameters": ({}, body, 400),
    }
    for name, (params, data, status) in cases.items():
        got, text = await _post(bot_client, params, data)
        assert got == status, (name, got, text)

    def plain(xml: str):
        return protocol.build_request(xml, encrypted=False)

    entity = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><ToUserName>&b;</ToUserName></xml>'
    )
    bodies = {
        "malformed": "<xml><ToUserName>oops",
        "entity declarations": entity,
        "missing fields": "<xml><Content>hi</Content></xml>",
        "not xml": "\x00\xff garbage",
        "wrong root": "<foo><ToUserName>a</ToUserName></foo>",
    }
    for name, xml in bodies.items():
        params, data = plain(xml)
        got, text = await _post(bot_client, params, data if isinstance(data, bytes) else data.encode())
        assert 400 <= got < 500, (name, got, text)
        assert "Traceback" not in text


async def test_healthz_and_metrics(bot_client, make_user):
    assert (await bot_client.get("/healthz")).status == 200
    await make_user().say("你好")
    text = await (await bot_client.get("/metrics")).text()
    assert 'bot_messages_total{type="text"}' in text
    assert "bot_turn_seconds_bucket" in text


async def test_a_stranger_without_the_token_cannot_talk_to_the_bot(bot_client):
    from bot.wechat_protocol import WeChatProtocol

    impostor = WeChatProtocol("not-" + SAMPLE_TOKEN)
    user = WeChatUser(bot_client, "oImpostor", impostor, encrypted=False)
    query, body = impostor.build_request(user.xml(msg_type="text", content="你好", msg_id=1), encrypted=False)
    resp = await bot_client.post("/wechat", params=query, data=body)
    assert resp.status == 403
