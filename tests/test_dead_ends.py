"""Dead ends and lost answers seen when tried (issue 14, section 3): each a conversation on the real app."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.mark.parametrize("region", ["qingyang", "hulunbuir"])
async def test_choosing_again_after_help_to_choose_does_not_loop(settings, clock, protocol, region):
    """帮我判断, then "我自己重新选" at the suggestion: the choice made next is taken, in both packs."""
    from tests.conftest import WeChatUser, start_client

    client = await start_client(dataclasses.replace(settings, region=region), clock)
    try:
        user = WeChatUser(client, "oDeadEnd" + region, protocol)
        replies = [await user.say(t) for t in ["你好", "1", "7"]]
        for _ in range(12):
            reply = replies[-1]
            if "建议办理" in reply or "暂时没有符合条件" in reply:
                replies.append(await user.say("我自己重新选"))
                break
            answer = "2" if "已经有残疾人证" in reply else "1" if "回复数字" in reply or "回复 1" in reply else "2"
            if "户籍地址" in reply:  # the 户口本 address, asked where the 户籍 decides a service
                answer = {"qingyang": "青阳县蓉城镇五溪村12号", "hulunbuir": "内蒙古呼伦贝尔市海拉尔区胜利街道10号"}[region]
            replies.append(await user.say(answer))
        assert "要办哪些事" in replies[-1]
        # it looped here: every answer re-showed "要办哪些事？" after "好的，您选了…"
        reply = await user.say("护理补贴")
        assert reply.startswith("好的，您选了：护理补贴。") and "要办哪些事" not in reply
    finally:
        await client.close()


# -- free text at a yes/no question is read for its meaning, not by one character ------------------
@pytest.mark.parametrize(
    "region,text,local",
    [
        ("qingyang", "户口在桐城，我在青阳打工十年了", False),
        ("qingyang", "户口就在青阳县", True),
        ("qingyang", "户口就在这里", True),
        ("qingyang", "不在，户口在外地", False),
        ("qingyang", "在", True),
        ("qingyang", "在的", True),
        ("qingyang", "1", True),
        ("hulunbuir", "户口就在阿荣旗", True),
        ("hulunbuir", "户口就在海拉尔区", True),
        ("hulunbuir", "户口在兴安盟乌兰浩特", False),
        ("hulunbuir", "不在，户口在外地", False),
    ],
)
def test_where_the_household_is_registered_is_read_from_the_place_it_names(region, text, local):
    from dialogs.answers import read_hukou

    assert read_hukou(_turn(region, {}), text) is local


def test_a_sentence_is_not_decided_by_one_character():
    from dialogs.answers import read_hukou
    from dialogs.understanding import NO_MATCH

    assert read_hukou(_turn("qingyang", {}), "我在外面打工好多年了") is NO_MATCH  # asked again, not guessed
    assert read_hukou(_turn("qingyang", {}), "户口在老家") is NO_MATCH


# -- the ID number's area code against the pack's: asked when they disagree --------------------------
def _id(area: str, birth: str = "19700101", seq: str = "123") -> str:
    from tests.citizens.facts import id_check_digit

    return area + birth + seq + id_check_digit(area + birth + seq)


@pytest.mark.parametrize("answer,local", [("2", False), ("不是", False), ("1", True), ("是的", True)])
async def test_an_id_number_of_elsewhere_asks_where_the_household_is_registered(answer, local):
    from dialogs import answers
    from dialogs.application import STEPS
    from dialogs.turn import UserInput

    step = next(s for s in STEPS if s.name == "applicant_id")
    turn = _turn("qingyang", {"services": ["living_subsidy"], "facts": {"local_hukou": True}})
    outcome = await answers.read_answer(turn, step, UserInput("text", _id("340802")))  # 安庆 迎江区
    assert not outcome.advance and outcome.hint is None
    assert outcome.say == [
        "身份证上的地区不是青阳县（出生登记地可能不同）。请再确认：申请人现在的户口在青阳县吗？\n1 是\n2 不是\n请回复数字。"
    ]
    assert turn.data["applicant"]["id_number"] == _id("340802")
    outcome = await answers.read_answer(turn, step, UserInput("text", answer))
    assert outcome.advance and turn.case.facts["local_hukou"] is local
    # asked once: the same number again is not questioned again
    assert (await answers.read_answer(turn, step, UserInput("text", _id("340802")))).advance


async def test_a_local_id_number_or_an_unknown_hukou_asks_nothing():
    from dialogs import answers
    from dialogs.application import STEPS
    from dialogs.turn import UserInput

    step = next(s for s in STEPS if s.name == "applicant_id")
    for facts, number in (({"local_hukou": True}, _id("341723")), ({}, _id("340802")), ({"local_hukou": False}, _id("340802"))):
        turn = _turn("qingyang", {"services": ["living_subsidy"], "facts": dict(facts)})
        assert (await answers.read_answer(turn, step, UserInput("text", number))).advance


def _turn(region: str, data: dict):
    from datetime import datetime

    from dialogs.conditions import Case
    from dialogs.pack import load_pack
    from dialogs.turn import Ports, Turn
    from dialogs.understanding import Understanding
    from dialogs.workdays import default_calendar

    pack = load_pack(region)
    now = datetime(2026, 11, 23, 10, 0)
    ports = Ports(book=None, outbox=None)  # type: ignore[arg-type]  # the readers tested here book and submit nothing
    return Turn(
        Case(data, pack, now.date()), _LANGS.setdefault(region, Understanding(pack)), ports, default_calendar(), now, "oT"
    )


_LANGS: dict = {}


# -- questions the rules do not need ------------------------------------------------------------------
@pytest.mark.parametrize("region", ["qingyang", "hulunbuir"])
def test_hardship_is_not_asked_when_only_the_nursing_subsidy_is_chosen(region):
    from dialogs.conditions import needs_hardship_status

    assert not needs_hardship_status(_turn(region, {"services": ["nursing_subsidy"]}).case)
    assert needs_hardship_status(_turn(region, {"services": ["nursing_subsidy", "living_subsidy"]}).case)


def test_the_pension_is_not_asked_about_once_an_answer_has_excluded_it():
    from dialogs.conditions import needs_has_certificate, needs_pension_enrolled

    chose = {"services": ["pension_subsidy"]}
    assert needs_pension_enrolled(_turn("qingyang", dict(chose)).case)
    # 青阳 代缴: 本县户籍 and 重度（一、二级）
    away = _turn("qingyang", {**chose, "facts": {"local_hukou": False}}).case
    assert not needs_pension_enrolled(away)
    assert needs_has_certificate(away)  # the certificate describes the person: still asked
    level3 = {"local_hukou": True, "has_certificate": True, "disability_category": 4, "disability_level": 3}
    assert not needs_pension_enrolled(_turn("qingyang", {**chose, "facts": level3}).case)
    level2 = {**level3, "disability_level": 2}
    assert needs_pension_enrolled(_turn("qingyang", {**chose, "facts": level2}).case)


# -- a 20-digit 证号 that encodes the category and level: asked first, not after them --------------------
async def test_a_holders_certificate_number_is_asked_first_and_gives_the_id_category_level_and_age(settings, clock, protocol):
    from tests.conftest import WeChatUser, start_client

    client = await start_client(dataclasses.replace(settings, region="hulunbuir"), clock)
    try:
        user = WeChatUser(client, "oCertFirst", protocol)
        for text in [
            "你好",
            "2",  # 替孩子申请
            "巴特尔",
            "150702199201100011",
            "15004701234",
            "内蒙古呼伦贝尔市海拉尔区胜利街道光明社区10号",
        ]:
            await user.say(text)
        # the 户口本 address instead of 户口在您申请的这个旗县吗: it names 海拉尔区
        assert "户籍地址" in await user.say("3 5")
        assert "已经有残疾人证了吗" in await user.say("内蒙古呼伦贝尔市海拉尔区胜利街道光明社区10号")
        assert "残疾人证号" in await user.say("1")
        # a 15-year-old's 肢体一级 certificate (born 15 years before the suite's day, whatever day it runs on):
        # the age excludes the pension at once, in the first notice, and nothing the 证号 says is asked
        # (哪类残疾, 几级, the ID number), nor what the pension alone reads
        today = clock.today()
        born = today.replace(year=today.year - 15, day=min(today.day, 28))
        first17 = f"150702{born:%Y%m%d}003"
        weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        child_id = first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]
        reply = await user.say(child_id + "41")
        assert "养老保险代缴：需要年满16周岁" in reply and "回复 1 不办这几项" in reply
        assert "不办养老保险代缴" in (reply := await user.say("1")) and "请发申请人的姓名" in reply
        # a parent of a minor is the 法定监护人 (民法典 第二十七条): not asked
        assert "联系电话" in (reply := await user.say("其其格")) and "法定监护人吗" not in reply
        asked = "\n".join(r for _, r in user.sent)
        for question in ("哪类残疾", "几级", "申请人的身份证号", "现在是在校学生吗", "职工基本养老保险吗", "哪种情况"):
            assert question not in asked
    finally:
        await client.close()


# -- changes at the summary, the checklist after a change, photos labelled in words ------------------------
async def test_services_added_or_dropped_at_the_summary_and_photos_labelled_in_words(bot, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oChanges", protocol)
    for text in ["你好", "1", "残疾证和护理补贴", "青阳县蓉城镇五溪村12号", "2", "4"]:
        await user.say(text)
    assert "照片已收到" in await user.image("early-photo")  # before the checklist: kept, not yet labelled
    for text in ["张三", "341723195503020017"]:
        await user.say(text)
    assert "请准备这些材料" in await user.say("13812345678")
    assert (await user.say("刚才发的照片是户口本")).startswith("已保存为“户口簿”")
    assert "这是哪份材料" in await user.image("card-photo")
    assert (await user.say("这是身份证")).startswith("已保存为“居民身份证”")
    await user.say("0")
    assert "材料：需带5项，已拍照2项" in await user.say("1")  # the booking, then the summary
    # "再加一个生活补贴" was refused: only "改事项" worked
    reply = await user.say("再加一个生活补贴")
    assert reply.startswith("现在选的是：残疾人证、护理补贴。") and "要办哪些事" in reply
    assert "哪种情况" in await user.say("残疾证、生活补贴和护理补贴")  # what the added service reads
    checklist = await user.say("1")
    # the personal checklist again, with what the change adds and the photos kept
    assert "请准备这些材料" in checklist and "困难证明" in checklist and "户口簿（已拍照）" in checklist
    assert "材料：需带7项，已拍照2项" in await user.say("0")
    reply = await user.say("残疾证不用办")
    assert reply.startswith("现在选的是：残疾人证、生活补贴、护理补贴。")
    assert "需要持有残疾人证" in await user.say("生活补贴和护理补贴")
    await user.say("2")  # 仍然申请
    reply = await user.say("0")  # the checklist of the services now chosen
    assert "请核对" in reply and "残疾人证：" not in reply
    assert "要办哪些事" in await user.say("我想加办")


async def test_what_to_bring_asked_mid_way_covers_every_chosen_service(bot, protocol):
    from dialogs.pack import load_pack
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oBring", protocol)
    for text in ["你好", "1", "6", "青阳县蓉城镇五溪村12号"]:
        await user.say(text)
    reply = await user.say("要带什么材料")
    pack = load_pack("qingyang")
    head = reply.splitlines()[0]
    assert head == f"您选的{'、'.join(pack.services[c].short for c in pack.services)}一共要带："
    # each material once, then the pending question repeated
    for name in ("户口簿", "《困难残疾人生活补贴申请审核表》", "医保报销后的结算单或带税务印章的收费票据"):
        assert reply.count(name) == 1
    assert "（接着刚才的问题）您已经有残疾人证了吗？" in reply


# -- questions asked mid-way: answered, then the pending question again ---------------------------------
async def test_questions_asked_mid_way_are_answered_and_the_question_repeated(bot, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oMidWay", protocol)
    for text in ["你好", "2", "1", "李秀英", "341723198001010023", "13912345678", "残疾证", "青阳县蓉城镇五溪村12号", "2", "6"]:
        await user.say(text)
    await user.say("王小宝")
    pending = "（接着刚才的问题）请发申请人的身份证号"
    # it was read as an ID number (or a phone number) and refused
    reply = await user.say("我上次填到哪了")
    assert reply.startswith("您办到这里了：已选残疾人证。已填代办人姓名、申请人姓名、户籍地址。") and pending in reply
    reply = await user.say("评定要带孩子本人去吗")
    assert reply.startswith("方案没有写明残疾评定是否要本人到场，请先问12345政务服务便民热线确认。") and pending in reply
    reply = await user.say("能上门评吗")
    assert reply.startswith("方案没有写明能不能上门评定。") and pending in reply
    reply = await user.say("精神的评定下次是什么时候")
    assert "精神残疾半年组织一次评定，具体时间提前三天通知" in reply and "每月11日上午" in reply and pending in reply


async def test_coming_back_later_says_what_was_done_even_before_services_are_chosen(bot, clock, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oBackLater", protocol)
    for text in ["你好", "2", "1", "李秀英"]:
        await user.say(text)
    clock.advance(hours=2)
    reply = await user.say("你好")
    # it said "上次您办到一半：我们接着来。" with nothing in between
    assert reply.startswith("欢迎回来！上次您办到一半：已填代办人姓名。我们接着来。")


# -- "为什么" at a form step: the field on the county's form, or why it is asked although it is not there ----
@pytest.mark.parametrize(
    "region,state,answer",
    [
        (
            "qingyang",
            "applicant_id",
            "申请表上的“申请人基本信息：身份证号”。依据：青民务〔2023〕2号 附件2《扶残助困一件事申请表》",
        ),
        ("qingyang", "agent_id", "申请表上没有这一项，问它是因为：替家人办理时，窗口要核实代办人的身份。"),
        ("qingyang", "household_place", "申请表上没有这一项，问它是因为：申请按户口所在的乡镇、村送到对应的窗口。"),
        (
            "hulunbuir",
            "agent_id",
            "申请表上的“监护人信息：身份证号”。依据：内民政发〔2022〕110号 附件4《残疾人两项补贴申请审批表》",
        ),
        (
            "hulunbuir",
            "subsidy_reason",
            "申请表上的“困难残疾人生活补贴申请理由、重度残疾人护理补贴申请理由”。依据：内民政发〔2022〕110号 附件4《残疾人两项补贴申请审批表》",
        ),
    ],
)
def test_why_at_a_form_step_names_the_field_or_says_it_is_not_on_the_form(region, state, answer):
    from dialogs.explain import why

    assert why(_turn(region, {}), state) == answer


def test_every_form_step_has_a_field_or_a_reason():
    from dialogs.application import STEPS
    from dialogs.explain import why
    from dialogs.pack import available_regions

    form_steps = [
        s.name
        for s in STEPS
        if s.answer.split(":")[0]
        in (
            "choice",
            "name",
            "id_number",
            "phone",
            "address",
            "household_address",
            "applicant_phone",
            "household_place",
            "certificate_no",
            "subsidy_reason",
            "services",
        )
    ]
    assert "agent_id" in form_steps and "certificate_first" in form_steps
    for region in available_regions():
        for state in form_steps:
            if state == "result_delivery":
                continue  # answered from their own basis
            answer = why(_turn(region, {}), state)
            assert answer.startswith(("申请表上的“", "申请表上没有这一项，问它是因为：")), (region, state, answer)


# -- the ending: what happens next, one line per chosen service ---------------------------------------------
async def test_the_ending_says_what_happens_next_for_each_chosen_service(bot, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oEnding", protocol)
    script = ["你好", "1", "6", "青阳县蓉城镇五溪村12号", "2", "4", "1", "2", "1", "张三", "341723195503020017", "13812345678"]
    for text in [*script, "0", "1", "1"]:
        await user.say(text)
    reply = await user.say("1")
    assert reply.startswith("申请已提交") and "各部门将分别审核" not in reply
    lines = reply.splitlines()
    start = lines.index("接下来：")
    assert lines[start + 1 : start + 7] == [
        "· 残疾人证：县残联审核，一个月",
        "· 生活补贴：县民政局审核，10个工作日（乡镇3天、残联3天、民政4天）（办好残疾人证后开始算）",
        "· 护理补贴：县民政局审核，10个工作日（乡镇3天、残联3天、民政4天）（办好残疾人证后开始算）",
        "· 医疗救助：县医保局审核，即时结算，30个工作日内打卡到账",
        "· 受理窗口：蓉城镇为民服务中心",
        "· 材料：清单上的11项，办理时带上",
    ]
    assert "青阳县医院门诊大厅一楼参加残疾评定" in lines[start + 7]


# -- bounded cost: long texts are not read as answers, and cost no more than a short one ----------------
async def test_long_texts_are_not_taken_as_a_choice_and_answer_quickly(make_user):
    import random
    import time

    user = make_user(encrypted=False)
    for text in ["你好", "1"]:
        await user.say(text)
    rng = random.Random(14)
    common = ["残疾证", "养老", "我们", "今天", "天气", "本人", "医疗", "生活", "家里", "工作", "朋友", "补贴"]
    noise = "".join(rng.choice(common) for _ in range(700))  # ~2,000 characters of common words
    reply = await user.say(noise)
    assert reply.startswith("这段话太长，没看出选的是哪一项。") and "要办哪些事" in reply
    started = time.perf_counter()
    reply = await user.say("的" * 15_000)  # ~45 KB: it held the event loop ~3 s in jieba
    assert time.perf_counter() - started < 1.0 and "要办哪些事" in reply
    assert "您选了：护理补贴" in await user.say("护理补贴")  # and the conversation goes on


async def test_a_question_at_the_summary_does_not_send_the_whole_summary_again(bot, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oAtSummary", protocol)
    script = ["你好", "1", "6", "青阳县蓉城镇五溪村12号", "2", "4", "1", "2", "1", "张三", "341723195503020017", "13812345678"]
    for text in [*script, "0"]:
        await user.say(text)
    summary = await user.say("1")
    assert summary.startswith("已为您预约") and "请核对" in summary
    for asked in ("护理补贴多少钱", "为什么"):
        reply = await user.say(asked)
        assert "请核对" not in reply and reply.endswith("核对没问题、确认声明回复 1；要修改请说，如“改电话”。")
        assert len(reply.encode()) < len(summary.encode()) / 2
    assert "同意吗" in await user.say("1")


async def test_a_photo_labelled_in_words_before_the_checklist_is_kept_not_read_as_an_answer(bot, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oLabelEarly", protocol)
    for text in ["你好", "1", "残疾证和护理补贴", "青阳县蓉城镇五溪村12号", "2", "4"]:
        await user.say(text)
    assert "照片已收到" in await user.image("early-hukou")
    # at 请发您的姓名 "这是户口本" was taken as the applicant's name
    reply = await user.say("这是户口本")
    assert reply == "好的，那张照片已保存为“户口簿”。\n下面填写您的信息。请发您的姓名。"
    for text in ["张三", "341723195503020017"]:
        await user.say(text)
    assert "2 户口簿（已拍照）" in await user.say("13812345678")


async def test_a_holder_who_has_not_the_certificate_number_at_hand_goes_on_and_is_asked_it_later(bot, protocol):
    from tests.conftest import WeChatUser

    user = WeChatUser(bot, "oCertLater", protocol)
    for text in ["你好", "1", "护理补贴", "青阳县蓉城镇五溪村12号"]:
        await user.say(text)
    assert "残疾人证号" in await user.say("1")
    reply = await user.say("证号记不清了")
    assert reply.startswith("好的，证号等会儿再填，先问几个问题。") and "哪类残疾" in reply
    assert "几级" in await user.say("4")
    for text in ["1", "张三", "341723195503020017"]:
        await user.say(text)
    assert "残疾人证号，20位" in await user.say("13812345678")
    assert "请准备这些材料" in await user.say("34172319550302001741")
