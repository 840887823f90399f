"""“删除我的信息” and unsubscribing delete everything of that citizen that no submitted application
needs; submitted applications expire by the pack's retention once finished. Everything through the
real /wechat endpoint, the intake's signed events and a real Redis, which is scanned afterwards.
"""

from __future__ import annotations

import os
import time

import pytest

from bot.app import SENDERS, SERVICES, intake_secret
from bot.privacy import Erasure, PersonalDataEraser
from dialogs.pack import load_pack
from integrations.applications import ApplicationRegistry
from integrations.delivery import KINDS
from integrations.feedback import FeedbackStore, asked_key
from integrations.intake import encode_body, signed_headers
from integrations.outbox import document_key
from integrations.push import DUE, PushQueue, message_key
from integrations.reminders import Reminders
from integrations.sealing import Sealer
from integrations.wechat_api import sent_key
from tests.conftest import WeChatUser, id_born_years_before
from tests.privacy_checks import MOTHER_FOR_SON, opened_contents, redis_contents
from tests.processes import wait_until

# The same mother, after submitting MOTHER_FOR_SON, starts a second application (for her daughter)
# and stops at the summary: a place booked, a photo sent, nothing submitted.
DAUGHTER_ID = id_born_years_before(8, "001")  # 8 on whatever day the suite runs as
SECOND_UNSUBMITTED = [
    ("say", "重新申请"),  # after a submission only this starts another (issue 14)
    ("say", "2"),
    ("say", "妈妈"),
    ("say", "欧阳桂兰"),
    ("say", "341723196807040038"),
    ("say", "13955501234"),
    ("say", "残疾证和护理补贴"),
    ("say", "青阳县酉华镇酉华村10号"),  # the 户口本 address, in the screen
    ("say", "2"),
    ("say", "智力"),
    ("say", "9"),
    ("say", "欧阳小雨"),
    ("say", DAUGHTER_ID),  # an 8-year-old's 联系电话 is her mother's: not asked
    ("say", "0"),
    ("say", "1"),
    ("image", "MEDIA-UNSENT-3301"),
]
DAUGHTER = ["欧阳小雨", DAUGHTER_ID, "青阳县酉华镇酉华村10号", "MEDIA-UNSENT-3301"]


async def _submit_and_deliver(bot, user: WeChatUser) -> str:
    reply = await user.play(MOTHER_FOR_SON)
    ref = reply.split("申请编号 ")[1].split("。")[0]
    registry = bot.server.app[SERVICES].registry

    async def delivered() -> bool:
        status = await registry.status(ref)
        return bool(status) and all(s["status"] == "delivered" for s in status.values())

    await wait_until(delivered, 10, what="the delivery")
    return ref


async def _event(bot, settings, ref: str, service: str, status: str) -> None:
    event = {
        "event_id": f"{ref}-{service}-{status}",
        "application_id": ref,
        "service": service,
        "status": status,
        "note": "",
        "at": "2026-11-23T09:00:00+08:00",
    }
    body = encode_body(event)
    resp = await bot.post(
        "/intake/events", data=body, headers=signed_headers(intake_secret(settings), body, event["event_id"], time.time())
    )
    assert resp.status == 200, await resp.text()


async def _bind(bot, protocol, mother: WeChatUser, openid: str) -> WeChatUser:
    code = (await mother.say("绑定码")).split("绑定码：")[1][:6]
    follower = WeChatUser(bot, openid, protocol)
    assert "绑定成功" in await follower.say(f"绑定 {code}")
    return follower


async def _unsubmitted(services, openid: str) -> tuple[str, str]:
    """The reference of the application this openid is filling in, and the day of its booked place."""
    data = (await services.store.load(openid))["data"]
    return data["reference"], data["booking"]["session_date"]


def _keys_naming(contents, openid: str) -> list[str]:
    return sorted(k.decode() for k, _ in contents if openid.encode() in k)


# -- “删除我的信息” ------------------------------------------------------------------------------------
async def test_delete_my_data_keeps_only_the_submitted_application(bot, settings, protocol, redis_client):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMotherErase", protocol)
    ref = await _submit_and_deliver(bot, mother)
    father = await _bind(bot, protocol, mother, "oFatherErase")
    assert "请核对" in await mother.play(SECOND_UNSUBMITTED)
    await _event(bot, settings, ref, "living_subsidy", "approved")  # the mother is asked to rate it
    second, day = await _unsubmitted(services, "oMotherErase")

    # What there is to delete, before:
    assert second in await services.book.holders(day)
    assert f"unfinished:{second}" in [r for r, _ in await services.reminders.scheduled()]
    assert await services.feedback.pending("oMotherErase")
    assert any(any(d in text for d in DAUGHTER) for _, text in await opened_contents(redis_client, services.sealer))

    await services.push.send_due(now=services.clock.time() + 5)  # (so what was pushed is sent, not on its way)

    ask = await mother.say("删除我的信息")
    assert "回复1确认删除，回复2取消" in ask and "删除后不能恢复" in ask
    done = await mother.say("1")
    assert "已删除" in done and "对话记录" in done
    assert "保留：已提交的申请1件" in done and "办结180天后自动删除" in done and "撤销" in done
    assert "回复1确认删除" in await father.say("删除我的数据")
    father_done = await father.say("1")
    assert "已删除" in father_done and "其他信息都已删除" in father_done and "保留" not in father_done

    # Afterwards: a scan of everything in Redis.
    contents = await redis_contents(redis_client)
    mine = _keys_naming(contents, "oMotherErase")
    # The reply to "1" and its message id, kept a few minutes for WeChat's retries; and, under a keyed
    # digest of her openid (no key names her), the list of her submitted applications.
    assert sorted(mine) == ["u:{oMotherErase}:answered", "u:{oMotherErase}:replies"]
    assert await redis_client.zcard("u:{oMotherErase}:answered") == 1
    assert await redis_client.smembers(await services.registry.viewer_key("oMotherErase")) == {ref.encode()}
    theirs = _keys_naming(contents, "oFatherErase")
    # (the count of wrong binding attempts stays its hour: deleting it would reset the limit on guessing)
    assert sorted(theirs) == ["bindtries:{oFatherErase}", "u:{oFatherErase}:answered", "u:{oFatherErase}:replies"]
    for key in [k for k in mine + theirs if not k.startswith("viewer:")]:
        assert 0 < await redis_client.ttl(key) <= 3600, key
    assert await services.store.load("oMotherErase") is None
    assert await services.feedback.pending("oMotherErase") is None
    # The unsubmitted application is gone everywhere (its place given back, its reminder cancelled),
    # and nothing that opens with our keys still says anything about the daughter.
    assert all(second.encode() not in k + v for k, v in contents)
    assert second not in await services.book.holders(day)
    readable = await opened_contents(redis_client, services.sealer)
    assert [(k, d) for k, text in readable for d in DAUGHTER if d in text] == []
    assert all("oFatherErase" not in text for _, text in readable)  # no binding, no queued message
    assert not [t for k, t in readable if k.startswith("push:") and ("unfinished" in k or ":rate:" in k)]

    # The submitted application is untouched, and the mother still sees it.
    meta = await services.registry.meta(ref)
    assert meta["viewers"] == ["oMotherErase"]
    assert (await services.outbox.get(ref))["applicant"]["name"] == "欧阳志远"
    assert ref in await mother.say("进度")
    assert "没有查到" in await father.say("进度")


async def test_delete_my_data_is_asked_first_and_only_a_clear_yes_deletes(bot, protocol, redis_client):
    user = WeChatUser(bot, "oEraseAsk", protocol)
    await user.play([("say", "你好"), ("say", "1")])
    assert "回复1确认删除" in await user.say("注销")
    kept = await user.say("不要删除")
    assert "没有删除" in kept and "要办哪些事" in kept
    assert "回复1确认删除" in await user.say("我要清除我的信息")
    assert "您选了：残疾人证" in await user.say("残疾证")  # not an answer to the question: nothing deleted, dialog goes on
    assert await bot.server.app[SERVICES].store.load("oEraseAsk") is not None
    assert "回复1确认删除" not in await user.say("残疾证怎么注销")  # a question about the certificate
    assert "回复1确认删除" in await user.say("删除我的数据")
    assert "已删除" in await user.say("1")
    assert not await redis_client.exists("u:{oEraseAsk}:conversation")
    fresh = await user.say("你好")
    assert "请问是谁申请" in fresh and "欢迎回来" not in fresh


async def test_a_retry_of_the_confirming_message_gets_the_same_answer(bot, protocol):
    user = WeChatUser(bot, "oEraseRetry", protocol)
    await user.play([("say", "你好"), ("say", "1"), ("say", "删除我的信息")])
    xml = user.xml(msg_type="text", content="1", msg_id=987654321)
    first = await user.post_xml(xml)
    assert "已删除" in first
    assert await user.post_xml(xml) == first  # WeChat's retry: answered from the reply cache, nothing new


async def test_the_eraser_drops_prompts_about_deleted_things_but_not_news_of_kept_applications(redis_client):
    sealer = Sealer([("t", os.urandom(32))])
    registry, reminders, feedback = (
        ApplicationRegistry(redis_client, sealer),
        Reminders(redis_client, sealer),
        FeedbackStore(redis_client, sealer, clock=time.time),
    )
    push = PushQueue(redis_client, sealer, api=None, clock=time.time)  # nothing is sent here: only queued, then dropped or kept
    eraser = PersonalDataEraser(registry, reminders, push, feedback)
    app = "QY20261123ERASE1"
    await registry.register(
        {
            "id": app,
            "region": "qingyang",
            "services": ["living_subsidy"],
            "submitted_at": "2026-11-23T10:00:00",
            "applicant": {"id_number": "341723199503100058"},
        },
        "oA",
        expected={},
    )
    assert await registry.bind_with_code("oF", await registry.new_bind_code(app)) == app
    for openid, key in [
        ("oA", "ev-1:oA"),
        ("oA", f"{app}:rate:living_subsidy"),
        ("oA", "unfinished:QYHALF:oA"),
        ("oF", "ev-1:oF"),
        ("oB", "ev-9:oB"),
    ]:
        assert await push.enqueue(openid, f"text for {openid}", key=key)
    assert await push.enqueue("oF", "an earlier result", key="ev-0:oF")  # sent since:
    sent_earlier = await push.stored_key("oF", "ev-0:oF")
    await redis_client.zrem(DUE, sent_earlier)
    await redis_client.hset(message_key(sent_earlier), mapping={"state": "sent", "attempts": 1})
    await redis_client.set(sent_key(sent_earlier), "sent")
    for reference, openid in [("QYHALF", "oA"), ("QYOTHER", "oB")]:
        await reminders.schedule(
            f"unfinished:{reference}", time.time() + 3600, {"kind": "unfinished", "openid": openid, "reference": reference}
        )
    await feedback.ask("oA", app, "living_subsidy")

    assert await eraser.erase("oA") == Erasure(kept=1, unbound=0)
    stored = {await push.stored_key(o, k): k for o, k in [("oA", "ev-1:oA"), ("oF", "ev-1:oF"), ("oB", "ev-9:oB")]}
    queued = lambda: redis_client.zrange(DUE, 0, -1)  # noqa: E731
    assert sorted(stored.get(k.decode(), k) for k in await queued()) == ["ev-1:oA", "ev-1:oF", "ev-9:oB"]  # news stays
    assert [r for r, _ in await reminders.scheduled()] == ["unfinished:QYOTHER"]
    assert await feedback.pending("oA") is None
    assert (await registry.meta(app))["viewers"] == ["oA", "oF"]

    assert await eraser.erase("oF") == Erasure(kept=0, unbound=1)
    assert sorted(stored.get(k.decode(), k) for k in await queued()) == ["ev-1:oA", "ev-9:oB"]
    assert not await redis_client.exists(
        message_key(await push.stored_key("oF", "ev-1:oF")),
        message_key(sent_earlier),
        sent_key(sent_earlier),
        await registry.viewer_key("oF"),
    )
    assert (await registry.meta(app))["viewers"] == ["oA"]
    assert await eraser.erase("oF") == Erasure(kept=0, unbound=0)  # again: nothing left to do


# -- unsubscribing --------------------------------------------------------------------------------------
async def test_unsubscribing_unbinds_a_family_member_and_keeps_the_applicants_application(bot, protocol, redis_client):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMotherUnsub", protocol)
    ref = await _submit_and_deliver(bot, mother)
    father = await _bind(bot, protocol, mother, "oFatherUnsub")
    assert await father.event("unsubscribe") == ""
    assert (await services.registry.meta(ref))["viewers"] == ["oMotherUnsub"]
    assert [k async for k in redis_client.scan_iter(match="*oFatherUnsub*") if not k.startswith(b"bindtries:")] == []

    assert "请核对" in await mother.play(SECOND_UNSUBMITTED)
    second, day = await _unsubmitted(services, "oMotherUnsub")
    assert second in await services.book.holders(day)
    assert await mother.event("unsubscribe") == ""
    assert [k.decode() async for k in redis_client.scan_iter(match="*oMotherUnsub*")] == []
    assert await redis_client.exists(await services.registry.viewer_key("oMotherUnsub"))  # her applications, kept
    assert f"unfinished:{second}" not in [r for r, _ in await services.reminders.scheduled()]
    assert second not in await services.book.holders(day)
    assert await services.registry.meta(ref) is not None and await services.outbox.get(ref) is not None


# -- retention of submitted applications ---------------------------------------------------------------
@pytest.mark.parametrize("region", ["qingyang", "hulunbuir"])
def test_both_packs_say_how_long_applications_are_kept_and_why(region):
    retention = load_pack(region).raw["retention"]
    assert load_pack(region).application_days == retention["application_days"] == 180
    assert "个人信息保护法" in retention["application_basis"] and "第十九条" in retention["application_basis"]


async def _ttls(redis_client, keys: list[str]) -> dict[str, int]:
    return {k: await redis_client.ttl(k) for k in keys}


async def test_an_application_is_kept_while_open_and_expires_180_days_after_its_final_result(
    bot, settings, protocol, redis_client
):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMotherKeep", protocol)
    ref = await _submit_and_deliver(bot, mother)
    await _bind(bot, protocol, mother, "oFatherKeep")
    registry = services.registry
    number = (await registry.meta(ref))["application_no"]
    records = [
        f"app:{{{ref}}}:meta",
        f"app:{{{ref}}}:status",
        f"app:{{{ref}}}:events",
        f"app:{{{ref}}}:history",
        f"appno:{{{number}}}",
        document_key(ref),
        KINDS["application"].state(ref),
        await registry.viewer_key("oMotherKeep"),
        await registry.viewer_key("oFatherKeep"),
    ]

    await _event(bot, settings, ref, "living_subsidy", "accepted")
    await _event(bot, settings, ref, "living_subsidy", "approved")  # one service finished, one still open
    assert set((await _ttls(redis_client, records)).values()) == {-1}  # nothing an open application needs expires

    assert "回复1确认撤销" in await mother.say("撤销 护理补贴")
    assert "已为您撤销护理补贴" in await mother.say("1")  # the last one finished, by the citizen
    records += [asked_key(ref, "living_subsidy"), KINDS["event"].item(f"{ref}:withdraw:nursing_subsidy")]
    ttls = await _ttls(redis_client, records)
    assert all(180 * 86400 - 60 <= ttl <= 180 * 86400 for ttl in ttls.values()), ttls

    # A family member binding later does not make it live for ever (the meta keeps its expiry).
    await _bind(bot, protocol, mother, "oAuntKeep")
    assert 0 < await redis_client.ttl(f"app:{{{ref}}}:meta") <= 180 * 86400
    assert 0 < await redis_client.ttl(await registry.viewer_key("oAuntKeep")) <= 180 * 86400

    # When the records have expired, what pointed at them goes too, as soon as it is read.
    viewers = {await registry.viewer_key("oMotherKeep"), await registry.viewer_key("oFatherKeep")}
    await redis_client.delete(*[k for k in records if k not in viewers])
    assert "生活补贴：" not in await mother.say("进度")  # (her conversation still knows the number)
    assert not await redis_client.exists(await registry.viewer_key("oMotherKeep"))
    assert ref not in [row["application_id"] for row in await bot.server.app[SENDERS].delivery.list()]
    assert await redis_client.zscore("outbox:{applications}:index", ref) is None


async def test_withdrawn_before_delivery_the_document_is_kept_until_it_is_delivered(bot, redis_client):
    registry = bot.server.app[SERVICES].registry
    ref = "QY20261123KEEP01"
    state = KINDS["application"].state(ref)
    await redis_client.set(document_key(ref), b"sealed document")
    await redis_client.hset(state, mapping={"state": "retrying"})
    await registry.register(
        {
            "id": ref,
            "region": "qingyang",
            "services": ["living_subsidy"],
            "submitted_at": "2026-11-23T10:00:00",
            "applicant": {"id_number": "341723199503100058"},
        },
        "oEarly",
        expected={},
    )
    await registry.apply_event(ref, {"event_id": "w1", "service": "living_subsidy", "status": "withdrawn"})
    assert await registry.expire_if_finished(ref)
    assert await redis_client.ttl(f"app:{{{ref}}}:meta") > 0
    assert await redis_client.ttl(document_key(ref)) == await redis_client.ttl(state) == -1  # still to be delivered
    await redis_client.hset(state, "state", "delivered")
    assert await registry.expire_if_finished(ref)  # (what on_delivered does)
    assert await redis_client.ttl(document_key(ref)) > 0 and await redis_client.ttl(state) > 0
