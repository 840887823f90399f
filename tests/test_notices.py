"""Pushes that reach citizens under WeChat's real rules (issue 11, section 1).

The bot on loopback with its WeChat sandbox, which keeps each citizen's 48-hour window from the messages
WeChatUser posts (as WeChat sees them before the bot), 5 customer-service messages a message, 43004 once
unfollowed, and shows template cards as a phone does (title and keywords; first and remark dropped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.app import SERVICES, create_app
from integrations.push import seen_key
from integrations.wechat_api import WeChatApi
from integrations.wechat_notice import (
    KINDS,
    fit_subscribe,
    fit_template,
    subscribe_value_ok,
    template_units,
)
from integrations.wechat_sandbox import SANDBOX
from tests.conftest import WeChatUser
from tests.processes import bot_command
from tests.test_after_submission import MOTHER_CHILD, UP_TO_BOOKING, apply, inbox_messages, post_event

ROOT = Path(__file__).resolve().parent.parent
COUNTS = {"sent": 0, "retry": 0, "failed": 0, "duplicate": 0, "expired": 0}


def counts(**nonzero) -> dict[str, int]:
    return {**COUNTS, **nonzero}


def ended(**states: int) -> dict[str, int]:
    return states


# -- WeChat's counting rules -----------------------------------------------------------------------
def test_a_template_keyword_is_one_line_of_at_most_20_units_cut_with_an_ellipsis():
    assert template_units("申请编号QY20261123AB12") == 5  # a run of letters and digits is one unit
    assert fit_template("户口簿\n近期二寸照片") == "户口簿 近期二寸照片"
    long = "请补充监护人身份证复印件、户口簿首页及本人页、近期二寸免冠照片"
    cut = fit_template(long)
    assert cut.endswith("…") and template_units(cut) == 20 and long.startswith(cut[:-1])
    assert fit_template("审核通过") == "审核通过"


def test_subscription_fields_are_fitted_to_their_types_limits():
    assert fit_subscribe("phrase3", "已办好，可以领取") == "已办好可以" and subscribe_value_ok("phrase3", "已办好可以")
    assert not subscribe_value_ok("phrase3", "审核通过了吗") and not subscribe_value_ok("phrase3", "OK")
    thing = fit_subscribe("thing2", "残" * 30)
    assert len(thing) == 20 and subscribe_value_ok("thing2", thing) and not subscribe_value_ok("thing2", "残" * 21)
    assert fit_subscribe("character_string1", "QY2026 申请") == "QY2026" and not subscribe_value_ok("character_string1", "编号")
    assert subscribe_value_ok("time4", "2026年12月11日 09:00") and not subscribe_value_ok("time4", "12月11日上午")


# -- through the real endpoint -----------------------------------------------------------------------
def approved(ref: str, event_id: str, status: str = "approved") -> dict:
    return {"event_id": event_id, "application_id": ref, "service": "nursing_subsidy", "status": status}


async def push_now(bot) -> dict[str, int]:
    """Send what is due, and wait for the bot's own push loop if it took some: how the messages ended,
    counted by state (sent, expired, failed) over every message the queue holds."""
    from integrations.push import message_key

    services = bot.server.app[SERVICES]
    await services.push.send_due(now=services.clock.time() + 1)
    deadline = time.monotonic() + 10
    while await services.push.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    ended: dict[str, int] = {}
    async for name in services.redis.client.scan_iter(match=message_key("*")):
        state = (await services.redis.client.hget(name, "state") or b"?").decode()
        ended[state] = ended.get(state, 0) + 1
    return ended


async def test_a_result_3_days_after_the_last_message_arrives_as_a_template_with_the_status_in_a_keyword(
    bot, settings, clock, protocol
):
    mother = WeChatUser(bot, "oMotherLate", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    clock.advance(days=3)
    assert (await post_event(bot, settings, approved(ref, "ev-late"))).status == 200
    # The result as a template. The rating request rides in the result's chat text (so it never comes
    # before the result); a template card has no room for it, and no chat message can reach them now.
    assert await push_now(bot) == ended(sent=1)
    [card] = [m for m in await inbox_messages(bot, mother.openid) if "审核通过" in m["text"]]
    assert card["kind"] == "template" and card["title"] == "审核结果通知"
    fields = dict(card["fields"])
    assert fields["审核结果"] == "审核通过" and fields["办理事项"] == "护理补贴" and fields["申请编号"] == ref
    assert all(len(v) <= 20 and "\n" not in v for v in fields.values())
    # WeChat itself refuses a customer-service message now: the sandbox does the same.
    api = sandbox_api(bot)
    assert (await api.send_text(mother.openid, "你好")).errcode == 45015


def sandbox_api(bot) -> WeChatApi:
    services = bot.server.app[SERVICES]
    return WeChatApi(
        bot.session,
        services.redis.client,
        base_url=str(bot.make_url("/sandbox/wechat")).rstrip("/"),
        appid="sandbox-appid",
        secret="sandbox-secret",
        clock=services.clock.time,
    )


async def test_inside_48_hours_the_result_is_a_customer_service_message(bot, settings, clock, protocol):
    mother = WeChatUser(bot, "oMotherNear", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    clock.advance(hours=47)
    assert (await post_event(bot, settings, approved(ref, "ev-near"))).status == 200
    assert await push_now(bot) == ended(sent=1)  # the result, with the rating request in the same message
    [pushed] = [m for m in await inbox_messages(bot, mother.openid) if "审核通过" in m["text"]]
    assert pushed["kind"] == "custom" and "护理补贴：审核通过" in pushed["text"] and ref in pushed["text"]
    assert pushed["text"].index("审核通过") < pushed["text"].index("打分")


async def test_the_window_is_recorded_under_a_keyed_digest_not_the_openid(bot, protocol):
    services = bot.server.app[SERVICES]
    user = WeChatUser(bot, "oWindowSecret0001", protocol)
    await user.say("你好")
    keys = [k.decode() async for k in services.redis.client.scan_iter(match=seen_key("*"))]
    assert len(keys) == 1 and "oWindowSecret0001" not in keys[0]
    assert await services.push.window_open(user.openid)
    assert not await services.push.window_open(user.openid, now=services.clock.time() + 48 * 3600)


async def test_after_unsubscribe_nothing_is_sent_the_push_is_failed_once_and_counted(bot, settings, clock, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMotherGone", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    await mother.event("unsubscribe")
    before = len(await inbox_messages(bot, mother.openid))
    assert (await post_event(bot, settings, approved(ref, "ev-gone"))).status == 200
    assert await push_now(bot) == ended(failed=1)  # the result (the rating request rides in it)
    for hours in (1, 24, 100):  # not retried: 43004 is final
        assert await services.push.send_due(now=clock.time() + hours * 3600) == counts()
    assert len(await inbox_messages(bot, mother.openid)) == before
    failed = {row["key"]: row for row in await services.push.failed()}
    assert (failed["ev-gone:oMothe…"]["errcode"], failed["ev-gone:oMothe…"]["kind"]) == (43004, "result")
    metrics = await (await bot.get("/metrics")).text()
    assert 'bot_push_failed_total{errcode="43004",kind="result"} 1.0' in metrics


async def test_over_long_fields_are_cut_by_the_rule_and_nothing_goes_in_first_or_remark(bot, settings, clock, protocol):
    mother = WeChatUser(bot, "oMotherMissing", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    clock.advance(days=5)
    note = "请补充监护人身份证复印件、\n户口簿首页及本人页、近期二寸免冠照片两张"
    event = {"event_id": "ev-miss", "application_id": ref, "service": "disability_certificate", "status": "materials_missing"}
    assert (await post_event(bot, settings, {**event, "note": note})).status == 200
    assert await push_now(bot) == ended(sent=1)
    [card] = [m for m in await inbox_messages(bot, mother.openid) if m.get("title") == "补充材料通知"]
    missing = dict(card["fields"])["所缺材料"]
    assert missing == fit_template(note) and missing.endswith("…") and template_units(missing) == 20
    assert "\n" not in missing


async def test_the_sandbox_shows_a_template_as_a_phone_does(wechat_sandbox, http, redis_client):
    """What an old-style payload would look like: first and remark dropped, line breaks removed, cut at 20."""
    api = WeChatApi(
        http,
        redis_client,
        base_url=str(wechat_sandbox.make_url("")).rstrip("/"),
        appid="sandbox-appid",
        secret="sandbox-secret",
        clock=time.time,
    )
    token = await api.access_token()
    payload = {
        "touser": "oPhone",
        "template_id": "sandbox-result",
        "data": {
            "first": {"value": "您好，您的申请有新进展"},
            "character_string1": {"value": "QY1"},
            "thing3": {"value": "审核\n通过，请于十二月三十一日前携带身份证原件到县残联窗口领取"},
            "remark": {"value": "审核结果：通过"},
        },
    }
    async with http.post(
        str(wechat_sandbox.make_url("/cgi-bin/message/template/send")), params={"access_token": token}, json=payload
    ) as resp:
        assert (await resp.json())["errcode"] == 0  # WeChat does not refuse an over-long keyword: it cuts it
    [card] = wechat_sandbox.app[SANDBOX].messages("oPhone")
    fields = dict(card["fields"])
    assert fields["审核结果"].startswith("审核通过，请于") and fields["审核结果"].endswith("…")
    assert template_units(fields["审核结果"]) == 20
    assert "您好" not in card["text"] and "审核结果：通过" not in card["text"]


async def test_the_sandbox_enforces_the_window_the_quota_and_unfollowing(wechat_sandbox, http, redis_client):
    from integrations.wechat_notice import Notices, shared_notices_content

    state = wechat_sandbox.app[SANDBOX]
    api = WeChatApi(
        http,
        redis_client,
        base_url=str(wechat_sandbox.make_url("")).rstrip("/"),
        appid="sandbox-appid",
        secret="sandbox-secret",
        notices=Notices(shared_notices_content(), {"result": "sandbox-result"}),
        clock=time.time,
    )
    assert (await api.send_text("oQuiet", "通知")).errcode == 45015  # never wrote
    state.saw("oTalker")
    assert [(await api.send_text("oTalker", f"第{i}条")).status for i in range(5)] == ["sent"] * 5
    assert (await api.send_text("oTalker", "第6条")).errcode == 45047  # 5 a message
    state.saw("oTalker")
    assert (await api.send_text("oTalker", "又写了一条")).status == "sent"
    state.saw("oTalker", "unsubscribe")
    assert (await api.send_text("oTalker", "通知")).errcode == 43004
    result = await api.send_notice("oTalker", {"kind": "result", "values": {"reference": "QY1"}})
    assert (result.status, result.errcode) == ("failed", 43004)


async def test_a_subscription_notice_is_sent_where_only_that_is_configured(wechat_sandbox, http, redis_client):
    from integrations.wechat_notice import Notices, shared_notices_content

    notices = Notices(shared_notices_content(), subscribe_ids={"pickup": "sandbox-sub-pickup"})
    api = WeChatApi(
        http,
        redis_client,
        base_url=str(wechat_sandbox.make_url("")).rstrip("/"),
        appid="sandbox-appid",
        secret="sandbox-secret",
        notices=notices,
        clock=time.time,
    )
    values = {"reference": "QY20261123AB12", "service": "残疾人证", "phrase": "已办好，可以领取", "time": "2026年12月20日 10:00"}
    result = await api.send_notice("oPickup", {"kind": "pickup", "values": values})
    assert (result.status, result.channel) == ("sent", "subscribe")
    [card] = wechat_sandbox.app[SANDBOX].messages("oPickup")
    assert dict(card["fields"])["办理状态"] == "已办好可以" and card["kind"] == "subscribe"
    # WeChat refuses what breaks a field's limit (47003): the sandbox does too.
    token = await api.access_token()
    raw = {
        "touser": "oPickup",
        "template_id": "sandbox-sub-pickup",
        "data": {
            k: {"value": v}
            for k, v in {
                "character_string1": "QY1",
                "thing2": "残" * 21,
                "phrase3": "可以领取",
                "time4": "2026年12月20日 10:00",
            }.items()
        },
    }
    async with http.post(
        str(wechat_sandbox.make_url("/cgi-bin/message/subscribe/bizsend")), params={"access_token": token}, json=raw
    ) as resp:
        body = await resp.json()
    assert body["errcode"] == 47003 and "thing2" in body["errmsg"]


# -- operators ----------------------------------------------------------------------------------------
async def test_failed_pushes_are_listed_and_resent_from_the_shell(bot, settings, clock, protocol, redis_url):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMotherBack", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    await mother.event("unsubscribe")
    assert (await post_event(bot, settings, approved(ref, "ev-back", "accepted"))).status == 200
    assert await push_now(bot) == ended(failed=1)

    async def run(*args: str) -> subprocess.CompletedProcess:
        return await bot_command(settings, redis_url, *args)

    listing = await run("push", "failed")
    assert listing.returncode == 0, listing.stderr
    [row] = [json.loads(line) for line in listing.stdout.splitlines()]
    assert row["key"] == "ev-back:oMothe…" and row["errcode"] == 43004 and row["kind"] == "accepted"
    assert mother.openid not in listing.stdout and "已受理" not in listing.stdout  # openids masked, no texts
    wrong = await run("push", "resend", "no-such-key")
    assert wrong.returncode == 1 and "not a failed push" in wrong.stdout and "Traceback" not in wrong.stderr
    one = await run("push", "resend", row["id"])
    assert one.returncode == 0 and f"queued again: {row['id']}" in one.stdout, one.stderr
    assert await push_now(bot) == ended(failed=1)  # still unfollowed: tried again, failed again, listed again
    [again] = await services.push.failed()
    assert again["id"] == row["id"] and again["attempts"] == 1  # counted afresh from the resend
    await mother.event("subscribe")  # she follows again, and an operator resends
    resent = await run("push", "resend", "--all")
    assert resent.returncode == 0 and "queued again: 1 messages" in resent.stdout, resent.stderr
    assert await push_now(bot) == ended(sent=1)  # the serving process sends it: outside the window, a template
    assert await services.push.failed() == []
    cards = [m for m in await inbox_messages(bot, mother.openid) if m.get("title") == "业务受理通知"]
    assert len(cards) == 1 and dict(cards[0]["fields"])["办理状态"] == "已受理"
    usage = await run("push", "resend")
    assert usage.returncode != 0 and len(usage.stderr.strip().splitlines()) == 1


async def test_a_kind_without_a_template_is_one_warning_at_start(settings, clock, wechat_sandbox, caplog):
    real = settings.with_(
        wechat_appsecret="a-real-looking-secret",
        wechat_token="a-real-token-for-this-test",
        intake_sandbox=True,
        wechat_api_base=str(wechat_sandbox.make_url("")).rstrip("/"),
        wechat_templates={"result": "sandbox-result", "pickup": "sandbox-pickup"},
        host="127.0.0.1",
    )
    caplog.set_level(logging.WARNING)
    server = TestServer(create_app(real, clock=clock), host="127.0.0.1")
    await server.start_server()
    await server.close()
    lines = [r.getMessage() for r in caplog.records if "no WeChat template" in r.getMessage()]
    assert len(lines) == 1 and all(r.levelno == logging.WARNING for r in caplog.records if "no WeChat template" in r.getMessage())
    for kind in set(KINDS) - {"result", "pickup"}:
        assert f"WECHAT_TEMPLATE_{kind.upper()}" in lines[0]
    assert "WECHAT_TEMPLATE_RESULT" not in lines[0] and "WECHAT_TEMPLATE_PICKUP" not in lines[0]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_template_layout_with_nothing_in_first_or_remark(kind):
    from dialogs.pack import load_pack
    from integrations.wechat_notice import Notices

    pack = load_pack("qingyang")
    notices = Notices(pack.notices)
    layout = notices.layout(kind, "template")
    assert layout is not None and layout.title
    assert not {key for key, _, _ in layout.fields} & {"first", "remark"}
    assert all(len(p) <= 5 for p in pack.notices["phrases"].values())
    assert timedelta(hours=float(pack.raw["reminders"]["unfinished_after_hours"])) < timedelta(hours=48)


async def test_more_than_5_pushes_after_one_message_go_on_as_templates(bot, settings, clock, protocol):
    """WeChat allows 5 customer-service messages per message from the citizen: the bot counts what it sent."""
    services = bot.server.app[SERVICES]
    holder = WeChatUser(bot, "oHolderBusy", protocol)
    from tests.test_after_submission import HOLDER_ALL_FIVE

    ref = await apply(holder, HOLDER_ALL_FIVE)
    await holder.say("进度")  # her last message: a fresh window of 5
    services_list = list((await services.registry.status(ref)).keys())
    assert len(services_list) == 4  # a certificate holder: all but the certificate
    # Each round sent before the next (a service's later status replaces its earlier one still waiting).
    for status in ("accepted", "forwarded"):
        for i, service in enumerate(services_list):
            event = {"event_id": f"ev-{i}-{status}", "application_id": ref, "service": service, "status": status}
            assert (await post_event(bot, settings, event)).status == 200
        ended_so_far = await push_now(bot)  # (counted over every message the queue holds)
    assert ended_so_far == ended(sent=8)
    kinds = [m["kind"] for m in await inbox_messages(bot, holder.openid) if m["kind"] != "custom" or ref in m["text"]]
    assert kinds.count("custom") == 5 and kinds.count("template") == 3, kinds


async def test_a_session_moved_days_later_arrives_as_a_change_notice_with_both_dates(bot, clock, protocol):
    from bot import operator_cli as op

    mother = WeChatUser(bot, "oMotherMoved", protocol)
    await apply(mother, UP_TO_BOOKING + ["1", "1", "1"])  # booked for 12月11日
    clock.advance(days=4)
    assert "moved 1 bookings" in await op.move_session(bot.server.app[SERVICES], "2026-12-11", "2026-12-14")
    assert (await push_now(bot))["sent"] == 1
    [card] = [m for m in await inbox_messages(bot, mother.openid) if m.get("title") == "预约变更通知"]
    fields = dict(card["fields"])
    assert fields["原定时间"] == "2026年12月11日" and fields["变更时间"] == "2026年12月14日上午"
    assert fields["预约事项"] == "残疾评定" and fields["地点"]


async def test_erasure_forgets_the_window_too(bot, protocol):
    services = bot.server.app[SERVICES]
    user = WeChatUser(bot, "oForgetMe00001", protocol)
    await user.say("你好")
    assert await services.push.window_open(user.openid)
    await services.push.forget(user.openid, keep=lambda key: False)
    assert not await services.push.window_open(user.openid)
    assert [k async for k in services.redis.client.scan_iter(match=seen_key("*"))] == []


def test_template_ids_per_kind_come_from_the_environment():
    from bot.composition import notices
    from bot.settings import Settings

    env = {
        "WECHAT_APPID": "wx1",
        "WECHAT_APPSECRET": "s",
        "WECHAT_TEMPLATE_RESULT": " tpl-result ",
        "WECHAT_TEMPLATE_PICKUP": "tpl-pickup",
        "WECHAT_SUBSCRIBE_ACCEPTED": "sub-accepted",
        "WECHAT_TEMPLATE_LOTTERY": "ignored",
    }
    settings = Settings.from_env(env)
    assert settings.wechat_templates == {"result": "tpl-result", "pickup": "tpl-pickup"}
    assert settings.wechat_subscribe_templates == {"accepted": "sub-accepted"}
    from dialogs.pack import load_pack

    n = notices(settings, load_pack("qingyang").notices)
    assert n.unconfigured() == ["materials_missing", "assessment_reminder", "session_moved"]
    assert n.template_payload("o1", {"kind": "result", "values": {}})["template_id"] == "tpl-result"
    assert n.subscribe_payload("o1", {"kind": "accepted", "values": {"reference": "QY1"}})["template_id"] == "sub-accepted"
