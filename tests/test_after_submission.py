"""After the application: delivery, status events, who may see them, pushes, reminders, ratings.

Everything runs through real HTTP on loopback: the bot, its intake sandbox (which stands in for the
provincial platform when INTAKE_URL is unset) and its WeChat API sandbox (where pushed messages land).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

from bot import operator_cli as op
from bot.app import SERVICES, intake_secret
from integrations.intake import encode_body, signed_headers
from tests.conftest import WeChatUser, id_born_years_before
from tests.processes import bot_command

# A 12-year-old on whatever day the suite runs as (under 14: the mother's phone is the child's).
CHILD_ID = id_born_years_before(12)
MOTHER_CHILD = [
    "你好",
    "2",  # 替孩子申请: who applies and the relation in one answer
    "李秀英",
    "341723198001010023",
    "13912345678",
    "残疾证和护理补贴",
    "青阳县蓉城镇五溪村12号",  # the 户口本 address, in the screen: it says the 户口 is in 青阳县
    "2",
    "智力",  # 残疾证 and 护理补贴 read no hardship: 困难情况 is not asked
    "王小宝",
    # a mother applying for her child is the 法定监护人 (民法典 第二十七条): not asked; a 12-year-old's
    # 联系电话 is hers: not asked either
    CHILD_ID,
    "0",
    "1",  # the first session
    "1",  # the summary, and the declaration printed with it
    "1",  # the consent
]
# Up to the session offer: through the checklist's "0" (named so, not counted: the flow's length changes).
UP_TO_BOOKING = MOTHER_CHILD[: MOTHER_CHILD.index("0") + 1]
SELF_MENTAL = [
    "你好",
    "1",
    "残疾证",
    "青阳县丁桥镇丁桥村5号",
    "2",
    "精神",
    "陈强",
    "341723199008150031",
    "13655556666",
    "0",
    "1",  # the summary, and the declaration printed with it
    "1",  # the consent
]


async def apply(user: WeChatUser, script: list[str]) -> str:
    for text in script:
        reply = await user.say(text)
    assert "申请已提交" in reply, reply
    return reply.split("申请编号 ")[1].split("。")[0]


async def inbox(client, openid: str) -> list[str]:
    return [m["text"] for m in await inbox_messages(client, openid)]


async def inbox_messages(client, openid: str) -> list[dict]:
    """What the citizen sees: customer-service texts, and template cards (title and keyword fields)."""
    resp = await client.get(f"/sandbox/wechat/inbox/{openid}")
    return await resp.json()


async def assessment_reminders(client, openid: str) -> list[str]:
    """Days before the assessment the citizen has not written for 48 hours: the reminder comes as a template."""
    return [m["text"] for m in await inbox_messages(client, openid) if m.get("title") == "预约提醒"]


async def post_event(client, settings, event: dict, *, secret: str | None = None, age_s: float = 0):
    body = encode_body(event)
    headers = signed_headers(secret or intake_secret(settings), body, event.get("event_id", "x"), time.time() - age_s)
    return await client.post("/intake/events", data=body, headers=headers)


async def until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_delivered_to_the_intake_sandbox_once_with_its_number(bot, protocol):
    services = bot.server.app[SERVICES]
    ref = await apply(WeChatUser(bot, "oMother1", protocol), MOTHER_CHILD)
    assert await until(lambda: _delivered(services, ref))
    listing = await (await bot.get("/sandbox/intake/applications")).json()
    received = [a for a in listing["applications"] if a["id"] == ref]
    assert len(received) == 1 and received[0]["application_no"]
    meta = await services.registry.meta(ref)
    assert meta["application_no"] == received[0]["application_no"]


async def test_the_conversation_forgets_the_forms_personal_data_once_submitted(bot, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMotherMinimal", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    session = await services.store.load(mother.openid)
    assert session["state"] == "submitted" and session["data"]["reference"] == ref
    assert set(session["data"]) <= {"reference", "created_at", "submitted_at", "services", "booking"}
    stored = json.dumps(session, ensure_ascii=False)
    assert not any(personal in stored for personal in ("李秀英", "王小宝", "341723", "13912345678", "智力", "五溪村"))
    # What the citizen asks afterwards still works from the registry.
    assert ref in await mother.say("进度") and ref in await mother.say("你好")


async def _refused(services, ref) -> bool:
    from integrations.delivery import delivery_state

    return await delivery_state(services.redis.client, "application", ref) == "failed"


async def _delivered(services, ref) -> bool:
    status = await services.registry.status(ref)
    return bool(status) and all(s["status"] == "delivered" for s in status.values())


async def test_a_status_event_reaches_applicant_and_bound_guardian_once(bot, settings, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMother2", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    code_reply = await mother.say("绑定码")
    code = code_reply.split("绑定码：")[1][:6]
    father = WeChatUser(bot, "oFather2", protocol)
    assert "绑定成功" in await father.say(f"绑定 {code}")
    event = {
        "event_id": "ev-1",
        "application_id": ref,
        "service": "nursing_subsidy",
        "status": "accepted",
        "note": "",
        "at": "2026-11-23T09:00:00+08:00",
    }
    assert (await post_event(bot, settings, event)).status == 200
    assert (await post_event(bot, settings, event)).status == 409  # the same event again: applied once
    await services.push.send_due(now=services.clock.time() + 1)
    await services.push.send_due(now=services.clock.time() + 2)
    for openid in ("oMother2", "oFather2"):
        texts = [t for t in await inbox(bot, openid) if "护理补贴：已受理" in t]
        assert len(texts) == 1, (openid, texts)
    for user in (mother, father):
        status = await user.say("进度")
        assert "护理补贴：已受理" in status and ref in status


async def test_event_endpoint_refuses_bad_signatures_stale_and_malformed_events(bot, settings, protocol):
    ref = await apply(WeChatUser(bot, "oMother3", protocol), MOTHER_CHILD)
    good = {"event_id": "ev-2", "application_id": ref, "service": "nursing_subsidy", "status": "accepted"}
    assert (await post_event(bot, settings, good, secret="wrong")).status == 401
    assert (await post_event(bot, settings, good, age_s=600)).status == 401
    assert (await post_event(bot, settings, {**good, "status": "eaten"})).status == 400
    assert (await post_event(bot, settings, {**good, "service": "lottery"})).status == 400
    assert (await post_event(bot, settings, {**good, "application_id": "QY00000000NOPE00"})).status == 404
    body = b"not json"
    resp = await bot.post("/intake/events", data=body, headers=signed_headers(intake_secret(settings), body, "x", time.time()))
    assert resp.status == 400 and (await resp.json())["error"] == "bad_json"


async def test_who_may_see_the_status(bot, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMother4", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    assert ref in await mother.say("进度")  # the guardian who applied
    stranger = WeChatUser(bot, "oStranger4", protocol)
    reply = await stranger.say("进度")
    assert ref not in reply and "没有查到" in reply
    assert "不对或已过期" in await stranger.say("绑定 123456")  # a guessed code
    assert "不对或已过期" in await stranger.say(f"绑定 {ref} 341723198001010023")  # the agent's ID, not the applicant's
    code = (await mother.say("绑定码")).split("绑定码：")[1][:6]
    await services.redis.client.delete(await services.registry.bind_code_key(code))  # expired
    assert "不对或已过期" in await stranger.say(f"绑定 {code}")
    assert ref not in await stranger.say("进度")
    aunt = WeChatUser(bot, "oAunt4", protocol)
    assert "绑定成功" in await aunt.say(f"绑定 {ref} {CHILD_ID}")  # application number + applicant's ID
    assert ref in await aunt.say("进度")
    code = (await mother.say("绑定码")).split("绑定码：")[1][:6]
    uncle = WeChatUser(bot, "oUncle4", protocol)
    assert "绑定成功" in await uncle.say(f"绑定 {code}")
    assert "不对或已过期" in await WeChatUser(bot, "oLate4", protocol).say(f"绑定 {code}")  # one-time
    assert "暂时没有绑定码" in await aunt.say("绑定码")  # only the applicant side hands out codes
    # Guessing is limited: the stranger has used 3 of 5 tries this hour.
    await stranger.say("绑定 000000")
    await stranger.say("绑定 000001")
    assert "次数太多" in await stranger.say("绑定 000002")


async def test_withdrawing_a_service_before_it_is_processed_tells_the_intake(bot, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMother5", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    assert "回复1确认撤销" in await mother.say("撤销 护理补贴")
    assert "已为您撤销护理补贴" in await mother.say("1")
    assert "护理补贴：已撤销" in await mother.say("进度")

    async def intake_got_it():
        events = (await (await bot.get("/sandbox/intake/events")).json())["events"]
        return any(e["application_id"] == ref and e["status"] == "withdrawn" for e in events)

    assert await until(intake_got_it)
    assert "可撤销：残疾人证" in await mother.say("撤销")  # the certificate can still be withdrawn
    assert (await services.registry.status(ref))["nursing_subsidy"]["status"] == "withdrawn"


async def reminders_due(bot, clock, when: str) -> int:
    """What cron does at `when` (`bot reminders send-due`), then what the serving process does: send."""
    services = bot.server.app[SERVICES]
    clock.set(when)
    queued = json.loads(await op.send_due(services))["reminders_queued"]
    await services.push.send_due()
    return queued


async def test_reminders_before_the_assessment_are_sent_when_due_and_once(bot, clock, protocol):
    services = bot.server.app[SERVICES]
    dec = await apply(WeChatUser(bot, "oDec", protocol), UP_TO_BOOKING + ["1", "1", "1"])  # 12月11日
    jan = await apply(WeChatUser(bot, "oJan", protocol), UP_TO_BOOKING + ["2", "1", "1"])  # 1月11日
    for ref in (dec, jan):  # (else "still on its way to the intake" a day later is a reminder too)
        assert await until(lambda ref=ref: _delivered(services, ref))
    assert await reminders_due(bot, clock, "2026-12-07T12:00:00") == 0
    assert await reminders_due(bot, clock, "2026-12-08T09:05:00") == 1  # 3 days before 12-11
    assert await reminders_due(bot, clock, "2026-12-08T09:06:00") == 0
    await reminders_due(bot, clock, "2026-12-10T09:01:00")  # 1 day before
    texts = await assessment_reminders(bot, "oDec")
    assert len(texts) == 2 and "12月11日上午" in texts[0] and "青阳县医院门诊大厅一楼" in texts[0] and "居民身份证" in texts[0]
    assert await assessment_reminders(bot, "oJan") == []
    await reminders_due(bot, clock, "2027-01-10T09:01:00")
    assert len(await assessment_reminders(bot, "oJan")) == 2


async def test_an_unfinished_application_gets_one_gentle_reminder(bot, clock, protocol):
    user = WeChatUser(bot, "oHalfway", protocol)
    for text in ["你好", "1", "残疾证", "1", "2", "4"]:
        await user.say(text)
    # 44 hours: while WeChat still lets the account write to someone who wrote last (48 hours).
    later = clock.now() + timedelta(hours=44)
    assert await reminders_due(bot, clock, (later - timedelta(seconds=60)).isoformat()) == 0
    assert await reminders_due(bot, clock, (later + timedelta(seconds=60)).isoformat()) == 1
    assert await reminders_due(bot, clock, (later + timedelta(hours=1)).isoformat()) == 0
    assert len([t for t in await inbox(bot, "oHalfway") if "还差几步" in t]) == 1


async def test_moving_a_session_and_announcing_the_mental_session_tell_everyone(bot, protocol):
    services = bot.server.app[SERVICES]
    ref = await apply(WeChatUser(bot, "oMoved", protocol), UP_TO_BOOKING + ["1", "1", "1"])
    assert "moved 1 bookings" in await op.move_session(services, "2026-12-11", "2026-12-14")
    assert await services.book.holders("2026-12-14") == [ref]
    mental_ref = await apply(WeChatUser(bot, "oMental", protocol), SELF_MENTAL)
    assert await services.book.waitlist("mental") == [mental_ref]
    assert "to 1 applicants" in await op.announce_mental(services, "2027-03-15", None, None)
    await services.push.send_due(now=services.clock.time() + 1)
    assert any("改到12月14日上午" in t for t in await inbox(bot, "oMoved"))
    assert any("精神残疾评定定于3月15日" in t for t in await inbox(bot, "oMental"))
    assert await services.book.waitlist("mental") == []
    # 青阳 残疾人证 "一个月" counts from the announced session now, not from the day of applying.
    assert (await services.registry.status(mental_ref))["disability_certificate"]["expected"] == "2027-04-15"
    csv_text = await op.roster(services, "2026-12-14", "csv", None)
    assert "王小宝" in csv_text and "13912345678" in csv_text and ref in csv_text


async def test_satisfaction_is_asked_when_a_service_is_finished(bot, settings, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMother6", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    # The certificate is finished once in the person's hands (tests/test_casework.py: not at 审核通过 or 可以领取).
    event = {"event_id": "ev-ok", "application_id": ref, "service": "disability_certificate", "status": "handed_over"}
    assert (await post_event(bot, settings, event)).status == 200
    await services.push.send_due(now=services.clock.time() + 1)
    assert any("请为这次服务打分" in t for t in await inbox(bot, "oMother6"))
    assert "谢谢您的评价" in await mother.say("5")
    assert "已记录您的意见" in await mother.say("窗口很耐心")
    report = await op.satisfaction_report(services)
    assert "disability_certificate,0,0,0,0,1,1,5.00" in report
    assert (await services.feedback.comments())[0]["comment"] == "窗口很耐心"


async def test_the_operator_commands_run_from_the_shell(bot, settings, clock, protocol, redis_url):
    """`bot reminders send-due --now …` and `bot sessions roster` as cron and a clerk would run them: from the
    bot's directory, without BOT_PORT; what they queue, the serving process sends."""

    ref = await apply(WeChatUser(bot, "oCron", protocol), MOTHER_CHILD)

    async def run(*args: str) -> str:
        out = await bot_command(settings, redis_url, *args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    async def cron(now: str) -> int:
        clock.set(now)  # the serving process and cron agree on the (simulated) time
        return json.loads(await run("reminders", "send-due", "--now", now))["reminders_queued"]

    assert await cron("2026-12-08T08:59:00") == 0
    assert await cron("2026-12-08T09:01:00") == 1
    assert await cron("2026-12-08T09:02:00") == 0

    async def reminded() -> bool:
        return len(await assessment_reminders(bot, "oCron")) == 1

    assert await until(reminded), "the serving process did not send what the command queued"
    roster = await run("sessions", "roster", "2026-12-11")
    assert ref in roster and "王小宝" in roster
    listing = await run("sessions", "list")
    assert "2026-12-11,2026-12-11,上午,青阳县医院门诊大厅一楼,1,30" in listing


# A holder (level 1 肢体) applying for all five: no assessment is booked (tests/transcripts/14).
HOLDER_ALL_FIVE = [
    "你好",
    "1",
    "6",
    "青阳县蓉城镇五溪村12号",
    "1",
    "34172319550302001741",  # the 证号 first: the ID number, 肢体 (4), 一级 (1)
    "低保和脱贫户都是",
    "1",
    "1",
    "王大明",
    "13812345678",
    "0",
    "1",  # the summary, and the declaration printed with it
    "1",  # the consent
]


async def test_overdue_services_are_visible_in_the_status(bot, settings, clock, protocol):
    """A certificate holder's 护理补贴 runs 10 working days from acceptance: a date, then an overdue mark."""
    holder = WeChatUser(bot, "oLate", protocol)
    ref = await apply(holder, HOLDER_ALL_FIVE)
    event = {
        "event_id": "ev-acc",
        "application_id": ref,
        "service": "nursing_subsidy",
        "status": "accepted",
        "at": "2026-11-23T09:00:00+08:00",
    }
    assert (await post_event(bot, settings, event)).status == 200
    status = await holder.say("进度")
    assert "护理补贴：已受理，预计12月7日前办结" in status  # 10 working days from 11-23
    clock.set("2026-12-09T10:00:00")
    assert "护理补贴：已受理，已超过预计时间" in await holder.say("进度")


async def test_a_deadline_that_runs_from_the_certificate_is_not_counted_before_it_exists(bot, settings, clock, protocol):
    """青阳's 10 working days for 护理补贴 of a new applicant start once the certificate exists (issue 10, point 9):
    accepted before the assessment, the service shows no date and is never "overdue"."""
    mother = WeChatUser(bot, "oNoCertYet", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    event = {
        "event_id": "ev-acc-new",
        "application_id": ref,
        "service": "nursing_subsidy",
        "status": "accepted",
        "at": "2026-11-23T09:00:00+08:00",
    }
    assert (await post_event(bot, settings, event)).status == 200
    status = await mother.say("进度")
    assert "护理补贴：已受理" in status and "护理补贴：已受理，预计" not in status
    clock.set("2026-12-09T10:00:00")
    assert "已超过预计时间" not in await mother.say("进度")


async def test_an_application_the_intake_refuses_is_kept_and_the_citizen_is_told(refusing_bot, protocol):
    bot = refusing_bot
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oRefused", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    assert await until(lambda: _refused(services, ref))

    async def told() -> bool:  # the refusal is recorded, then the citizen's message queued: send until it is there
        await services.push.send_due(now=services.clock.time() + 1)
        return any("工作人员会尽快联系您" in t for t in await inbox(bot, "oRefused"))

    assert await until(told)
    assert "暂未送达，工作人员会联系您" in await mother.say("进度")


async def test_our_delivered_mark_never_overwrites_an_intake_event_that_came_first(bot, settings, protocol):
    services = bot.server.app[SERVICES]
    ref = await apply(WeChatUser(bot, "oRace", protocol), MOTHER_CHILD)
    event = {"event_id": "ev-race", "application_id": ref, "service": "nursing_subsidy", "status": "accepted"}
    assert (await post_event(bot, settings, event)).status == 200
    await services.notifier.on_delivered(ref, "SB-RACE")  # the delivery's own callback, arriving late
    assert (await services.registry.status(ref))["nursing_subsidy"]["status"] == "accepted"
    # The check and the write are one step: a status read earlier cannot be written back over a newer one.
    late = {"event_id": "late-delivered", "service": "nursing_subsidy", "status": "delivered"}
    assert not await services.registry.apply_event(ref, late, only_from="submitted")
    assert (await services.registry.status(ref))["nursing_subsidy"]["status"] == "accepted"
