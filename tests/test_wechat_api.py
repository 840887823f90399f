"""The WeChat API client against the sandbox served on loopback, with a real Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from integrations.wechat_api import CHINA, MAX_TEXT_BYTES, WeChatApi, split_text
from integrations.wechat_sandbox import SANDBOX, create_wechat_sandbox

OPENID = "oAbCdEf1234567890SecretOpenid"


@pytest.fixture
def sandbox(wechat_sandbox):
    """The citizens of these tests wrote to the account just now (WeChat's 48-hour window is open)."""
    state = wechat_sandbox.app[SANDBOX]
    for openid in (OPENID, *(f"oUser{i:03d}" for i in range(20))):
        state.saw(openid)
    return wechat_sandbox


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def make_api(http, redis, server, **kw) -> WeChatApi:
    return WeChatApi(
        http, redis, base_url=base_url(server), appid="sandbox-appid", secret="sandbox-secret", **{"clock": time.time, **kw}
    )


async def inject(http, server, endpoint: str, **fault) -> None:
    async with http.post(base_url(server) + "/sandbox/fail", json={"endpoint": endpoint, **fault}) as resp:
        assert resp.status == 200


def inbox(server, openid: str = OPENID) -> list[dict]:
    return server.app[SANDBOX].messages(openid)


# -- the token -------------------------------------------------------------------------------------
async def test_two_workers_sending_20_messages_fetch_the_token_once(sandbox, redis_client, redis_url):
    other_redis = aioredis.from_url(redis_url)
    async with aiohttp.ClientSession() as s1, aiohttp.ClientSession() as s2:
        workers = [make_api(s1, redis_client, sandbox), make_api(s2, other_redis, sandbox)]
        results = await asyncio.gather(
            *(workers[i % 2].send(f"oUser{i:03d}", f"第{i}条通知", idempotency_key=f"k{i}") for i in range(20))
        )
    await other_redis.aclose()
    assert [r.status for r in results] == ["sent"] * 20
    assert sandbox.app[SANDBOX].token_fetches == 1
    assert all(inbox(sandbox, f"oUser{i:03d}")[0]["text"] == f"第{i}条通知" for i in range(20))


async def test_an_invalid_token_is_refreshed_exactly_once(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    assert (await api.send_text(OPENID, "一")).status == "sent"
    await inject(http, sandbox, "custom", errcodes=[40001])
    assert (await api.send_text(OPENID, "二")).status == "sent"
    assert sandbox.app[SANDBOX].token_fetches == 2
    assert [m["text"] for m in inbox(sandbox)] == ["一", "二"]


async def test_a_stale_cached_token_is_replaced_once_for_all_workers(sandbox, redis_client, redis_url):
    other_redis = aioredis.from_url(redis_url)
    async with aiohttp.ClientSession() as s1, aiohttp.ClientSession() as s2:
        workers = [make_api(s1, redis_client, sandbox), make_api(s2, other_redis, sandbox)]
        # A token another deployment fetched since: WeChat now answers 40001 to it.
        await redis_client.set(workers[0]._token_key, "no-longer-valid", ex=600)
        results = await asyncio.gather(
            *(workers[i % 2].send(f"oUser{i:03d}", "通知", idempotency_key=f"k{i}") for i in range(10))
        )
    await other_redis.aclose()
    assert [r.status for r in results] == ["sent"] * 10
    assert sandbox.app[SANDBOX].token_fetches == 1
    assert sum(len(inbox(sandbox, f"oUser{i:03d}")) for i in range(10)) == 10


async def test_a_refused_token_is_a_retry(sandbox, http, redis_client):
    api = WeChatApi(http, redis_client, base_url=base_url(sandbox), appid="sandbox-appid", secret="wrong", clock=time.time)
    result = await api.send_text(OPENID, "通知")
    assert (result.status, result.errcode) == ("retry", 40125)
    assert inbox(sandbox) == []


# -- errors from the send endpoints ------------------------------------------------------------------
RESULT = {
    "kind": "result",
    "values": {
        "reference": "QY20261123AB12",
        "service": "护理补贴",
        "label": "审核通过",
        "phrase": "审核通过",
        "time": "2026年11月24日 09:00",
    },
}


async def test_outside_the_48_hour_window_falls_back_to_the_kinds_template(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox, template_id="sandbox-progress")
    api.notices.template_ids["result"] = "sandbox-result"
    await inject(http, sandbox, "custom", errcodes=[45015])
    result = await api.send_text(OPENID, "您的护理补贴申请已通过审核。\n请留意发放通知。", notice=RESULT)
    assert (result.status, result.channel) == ("sent", "template")
    assert [m["kind"] for m in inbox(sandbox)] == ["template"]
    assert sandbox.app[SANDBOX].sent == {"custom": 0, "template": 1, "subscribe": 0}
    card = inbox(sandbox)[0]
    assert card["title"] == "审核结果通知"
    assert ["审核结果", "审核通过"] in card["fields"] and ["申请编号", "QY20261123AB12"] in card["fields"]


async def test_without_a_template_outside_the_window_is_failed(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    await inject(http, sandbox, "custom", errcodes=[45015])
    result = await api.send_text(OPENID, "通知", notice=RESULT)
    assert (result.status, result.errcode) == ("failed", 45015)
    assert "no template for result" in result.detail
    assert (await api.send_notice(OPENID, RESULT)).detail == "outside the 48-hour window; no template for result configured"
    assert inbox(sandbox) == []


async def test_too_many_service_messages_uses_the_template_when_there_is_one(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox, template_id="sandbox-progress")
    await inject(http, sandbox, "custom", errcodes=[45047])
    assert (await api.send_text(OPENID, "通知", notice=RESULT)).status == "sent"
    assert [m["kind"] for m in inbox(sandbox)] == ["template"]
    assert inbox(sandbox)[0]["title"] == "办理进度通知"  # the older single template, its own layout


@pytest.mark.parametrize(
    "fault",
    [
        {"errcodes": [45047]},  # no template: the cap lifts when the citizen writes again
        {"errcodes": [-1]},
        {"errcodes": [45011]},
        {"http_status": [500]},
        {"http_status": [502]},
    ],
    ids=["45047", "busy", "45011", "http500", "http502"],
)
async def test_transient_failures_are_retries(sandbox, http, redis_client, fault):
    api = make_api(http, redis_client, sandbox)  # the default timeout: a slow 500 is still a 500
    await api.access_token()  # the token is not what is being tested
    await inject(http, sandbox, "custom", **fault)
    result = await api.send_text(OPENID, "通知")
    assert result.status == "retry", result
    await inject(http, sandbox, "custom", delay_s=0)


async def test_a_send_without_an_answer_is_not_sent_again(sandbox, http, redis_client):
    """The request went out and timed out: WeChat may have delivered it, so at most once wins."""
    api = make_api(http, redis_client, sandbox, timeout_s=0.5)
    await api.access_token()
    await inject(http, sandbox, "custom", delay_s=1.5)
    first = await api.send(OPENID, "通知", idempotency_key="k-timeout")
    assert first.status == "failed" and "not sent again" in first.detail
    await inject(http, sandbox, "custom", delay_s=0)
    assert (await api.send(OPENID, "通知", idempotency_key="k-timeout")).status == "duplicate"


async def test_a_wechat_that_cannot_be_reached_is_retried(http, redis_client):
    from integrations.wechat_api import WeChatApi

    api = WeChatApi(http, redis_client, base_url="http://127.0.0.1:1", appid="a", secret="s", timeout_s=0.5, clock=time.time)
    assert (await api.send_text(OPENID, "通知")).status == "retry"


async def test_the_daily_quota_retries_after_midnight_china_time(sandbox, http, redis_client):
    now = datetime(2026, 3, 1, 22, 30, tzinfo=CHINA).timestamp()
    api = make_api(http, redis_client, sandbox, clock=lambda: now)
    await inject(http, sandbox, "custom", errcodes=[45009])
    result = await api.send_text(OPENID, "通知")
    assert (result.status, result.errcode, result.retry_after_s) == ("retry", 45009, 90 * 60)


@pytest.mark.parametrize("errcode", [43004, 40003])
async def test_unsubscribed_or_unknown_users_are_failed(sandbox, http, redis_client, errcode):
    api = make_api(http, redis_client, sandbox, template_id="tpl-progress")
    await inject(http, sandbox, "custom", errcodes=[errcode])
    result = await api.send_text(OPENID, "通知")
    assert (result.status, result.errcode) == ("failed", errcode)
    assert inbox(sandbox) == []


# -- at most once ------------------------------------------------------------------------------------
async def test_send_twice_with_one_key_sends_once(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    first = await api.send(OPENID, "申请已受理", idempotency_key="QY1:accepted")
    second = await api.send(OPENID, "申请已受理", idempotency_key="QY1:accepted")
    assert (first.status, second.status) == ("sent", "duplicate")
    assert len(inbox(sandbox)) == 1


async def test_a_retry_frees_the_key_and_a_send_in_progress_is_not_repeated(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    await inject(http, sandbox, "custom", errcodes=[-1])
    assert (await api.send(OPENID, "通知", idempotency_key="k")).status == "retry"
    assert (await api.send(OPENID, "通知", idempotency_key="k")).status == "sent"
    # Another attempt is sending it (or died mid-send): not sent a second time, and not called done either.
    await redis_client.set("wechat:{sent}:crashed", "sending")
    assert (await api.send(OPENID, "通知", idempotency_key="crashed")).status == "retry"
    assert len(inbox(sandbox)) == 1


async def test_a_failed_send_is_not_tried_again_under_its_key(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    await inject(http, sandbox, "custom", errcodes=[43004])
    assert (await api.send(OPENID, "通知", idempotency_key="k")).status == "failed"
    assert (await api.send(OPENID, "通知", idempotency_key="k")).status == "duplicate"
    assert inbox(sandbox) == []


# -- long texts --------------------------------------------------------------------------------------
def long_text() -> str:
    # Five parts at most: WeChat allows 5 customer-service messages per message from the citizen.
    return "\n".join(f"第{i:03d}项：请携带身份证、户口簿和近期二寸照片到乡镇残联窗口办理。" for i in range(90))


def test_split_text_keeps_lines_and_bytes():
    text = long_text()
    parts = split_text(text)
    assert len(parts) > 2
    assert all(len(p.encode()) <= MAX_TEXT_BYTES for p in parts)
    assert "\n".join(parts) == text
    one_line = "残" * 2000  # 6000 bytes without a line break: cut between characters
    parts = split_text(one_line)
    assert all(len(p.encode()) <= MAX_TEXT_BYTES for p in parts) and "".join(parts) == one_line
    assert split_text("短") == ["短"]
    exact = "a" * MAX_TEXT_BYTES + "\n" + "b"
    assert split_text(exact) == ["a" * MAX_TEXT_BYTES, "b"]


async def test_a_long_text_arrives_in_parts_in_order(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    text = long_text()
    assert (await api.send(OPENID, text, idempotency_key="long")).status == "sent"
    received = [m["text"] for m in inbox(sandbox)]
    assert received == split_text(text) and "\n".join(received) == text


async def test_a_long_text_interrupted_half_way_resumes_after_the_delivered_parts(sandbox, http, redis_client):
    api = make_api(http, redis_client, sandbox)
    text = long_text()
    parts = split_text(text)
    await inject(http, sandbox, "custom", errcodes=[0, -1])
    assert (await api.send(OPENID, text, idempotency_key="long")).status == "retry"
    assert [m["text"] for m in inbox(sandbox)] == parts[:1]
    assert (await api.send(OPENID, text, idempotency_key="long")).status == "sent"
    assert [m["text"] for m in inbox(sandbox)] == parts


# -- privacy -----------------------------------------------------------------------------------------
async def test_logs_hold_no_token_openid_or_text(sandbox, http, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    api = make_api(http, redis_client, sandbox)
    await inject(http, sandbox, "custom", errcodes=[40001, -1], http_status=[500])
    for _ in range(3):
        await api.send_text(OPENID, "王小宝的护理补贴")
    token = (await redis_client.get(api._token_key)).decode()
    # Ours only: the sandbox's access log plays WeChat's own server.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("integrations."))
    assert "40001" in ours and "HTTP 500" in ours
    for secret in (token, OPENID, "王小宝", "sandbox-secret"):
        assert secret not in ours


# -- the development mount ---------------------------------------------------------------------------
async def test_the_sandbox_mounted_in_the_bot_fills_an_inbox_the_simulator_reads(http, redis_client):
    app = web.Application()
    app.add_subapp("/sandbox/wechat", create_wechat_sandbox(clock=time.time))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = base_url(server) + "/sandbox/wechat"
        async with http.post(f"{base}/sandbox/message", json={"openid": OPENID, "event": None}) as resp:
            assert resp.status == 200  # the simulator tells WeChat's sandbox the citizen wrote
        api = WeChatApi(http, redis_client, base_url=base, appid="sandbox-appid", secret="sandbox-secret", clock=time.time)
        assert (await api.send(OPENID, "申请已提交", idempotency_key="dev")).status == "sent"
        async with http.get(f"{base}/inbox/{OPENID}", params={"consume": "1"}) as resp:
            messages = await resp.json()
        assert [(m["text"], m["kind"]) for m in messages] == [("申请已提交", "custom")]
        async with http.get(f"{base}/inbox/{OPENID}") as resp:
            assert await resp.json() == []
        async with http.post(f"{base}/sandbox/fail", json={"endpoint": "custom", "errcodes": [-1]}) as resp:
            assert resp.status == 404  # no error injection outside tests
    finally:
        await server.close()


async def test_a_token_from_one_workers_sandbox_is_accepted_by_anothers(http, redis_client):
    servers = [TestServer(create_wechat_sandbox(clock=time.time), host="127.0.0.1") for _ in range(2)]
    for s in servers:
        await s.start_server()
        s.app[SANDBOX].saw(OPENID)
    try:
        first = make_api(http, redis_client, servers[0])
        second = make_api(http, redis_client, servers[1])
        assert (await first.send_text(OPENID, "一")).status == "sent"
        assert (await second.send_text(OPENID, "二")).status == "sent"
        assert servers[1].app[SANDBOX].token_fetches == 0
    finally:
        for s in servers:
            await s.close()


# -- temporary media -------------------------------------------------------------------------------
async def test_a_photo_is_fetched_from_temporary_media_with_a_refreshed_token_and_is_gone_after_3_days(sandbox, redis_client):
    import base64

    from integrations.wechat_api import INVALID_MEDIA, MediaUnavailable
    from integrations.wechat_sandbox import MEDIA_TTL_S

    photo = b"\xff\xd8\xff\xe0 a photo"
    async with aiohttp.ClientSession() as http:
        said = {"openid": OPENID, "event": None, "media_id": "m-1", "image": base64.b64encode(photo).decode()}
        async with http.post(base_url(sandbox) + "/sandbox/message", json=said) as resp:
            assert resp.status == 200
        api = make_api(http, redis_client, sandbox)
        assert await api.get_media("m-1") == ("image/jpeg", photo)
        await inject(http, sandbox, "media", errcodes=[40001])  # a token WeChat no longer takes: refreshed once
        assert await api.get_media("m-1") == ("image/jpeg", photo)
        assert sandbox.app[SANDBOX].token_fetches == 2
        with pytest.raises(MediaUnavailable) as never:
            await api.get_media("m-never-sent")
        assert never.value.errcode == INVALID_MEDIA
        await inject(http, sandbox, "media", http_status=[502])
        with pytest.raises(MediaUnavailable, match="HTTP 502"):
            await api.get_media("m-1")
        # Three days on (the cached token has expired too: refreshed, then WeChat says the photo is gone).
        sandbox.app[SANDBOX].clock = lambda: time.time() + MEDIA_TTL_S + 60
        with pytest.raises(MediaUnavailable) as gone:
            await api.get_media("m-1")
        assert gone.value.errcode == INVALID_MEDIA
