"""Understanding people (issue 14, part 2): who is applying, several facts in one message, corrections at any step.

Unit cases on dialogs/slots.py with the phrasing people used, then node tests through the real app
(signed WeChat messages on loopback, the session read back from Redis).
"""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from dialogs.conditions import Case
from dialogs.pack import load_pack
from dialogs.slots import Who, extract, who_from
from dialogs.turn import Turn
from dialogs.understanding import Understanding
from tests.conftest import conversations

PACK = load_pack("qingyang")
LANG = Understanding(PACK)
CHILD_ID = "341723201406010034"  # a boy born 2014-06-01
FATHER_ID = "341723198001010023"
BAD_ID = "341723198001010024"  # wrong check digit
WANG_ID = "341723195503150014"


def _turn(data: dict | None = None) -> Turn:
    now = datetime(2026, 11, 23, 10)
    return Turn(Case(data or {}, PACK, now.date()), LANG, None, None, now, "oTest")  # type: ignore[arg-type]


# -- who is applying -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,who",
    [
        ("你好，帮我父亲申请补贴", Who("agent", "child", "父亲")),
        ("帮我女儿申请", Who("agent", "parent", "女儿")),
        ("帮我老伴申请。", Who("agent", "spouse", "老伴")),
        ("帮我哥哥申请", Who("agent", "sibling", "哥哥")),
        ("帮我爷爷申请", Who("agent", "relative", "爷爷")),
        ("我爸叫王大山", Who("agent", "child", "爸")),
        ("给孩子办", Who("agent", "parent", "孩子")),
        ("我是她爸爸", Who("agent", "parent", None)),
        # a non-relative is an agent, never the applicant
        ("帮我村民申请", Who("agent", "other", "村民")),
        ("我是网格员", Who("agent", "other", None)),
        ("我是村干部，帮邻居办", Who("agent", "other", "邻居")),
        ("替家人申请", Who("agent")),
        ("我自己申请", Who("self")),
        ("本人申请", Who("self")),
        ("帮我申请", Who("self")),
    ],
)
def test_who_is_read_from_what_was_said(text, who):
    assert who_from(text, PACK) == who


@pytest.mark.parametrize("text", ["你好，我想办理扶残助困的事情", "你好", "我要办", "随便", "自己帮家人办"])
def test_who_is_not_guessed_when_the_words_do_not_say(text):
    assert who_from(text, PACK) is None


def _common_words(chars: int, seed: int) -> str:
    words = ["我", "自己", "帮", "父亲", "申请", "补贴", "残疾", "的", "是", "本人", "孩子", "今天", "办理", "家里", "，"]
    rng = random.Random(seed)
    out = ""
    while len(out) < chars:
        out += rng.choice(words)
    return out[:chars]


@pytest.mark.parametrize("chars", [2000, 8000])
def test_a_long_random_text_says_nobody_and_holds_no_slots(chars):
    text = _common_words(chars, seed=chars)
    assert who_from(text, PACK) is None
    assert extract(_turn(), text).steps(None) == []


# -- several facts in one message ---------------------------------------------------------------------------
ALL_IN_ONE = (
    f"你好，我是曹国庆，帮我女儿巴特尔申请，我是她爸爸，她身份证{CHILD_ID}，我的电话13912345678，"
    "她肢体残疾二级，家里是农村低保户，我想办生活补贴和护理补贴"
)


def test_every_slot_of_a_long_message_is_found_and_placed():
    slots = extract(_turn(), ALL_IN_ONE)
    assert slots.who == Who("agent", "parent", "女儿")
    assert (slots.agent_name, slots.applicant_name) == ("曹国庆", "巴特尔")
    assert slots.ids == {"applicant": CHILD_ID}  # "她身份证": the daughter's
    assert slots.phones == {"agent": "13912345678"}  # "我的电话": the father's
    assert slots.services == ["living_subsidy", "nursing_subsidy"]
    assert (slots.category, slots.level) == (4, 2)
    assert slots.hardship == "家里是农村低保户"


def test_the_person_a_sentence_is_about_owns_its_numbers():
    # the example: "我爸叫王大山，身份证3417…，电话139…，想办护理补贴"
    slots = extract(_turn(), f"我爸叫王大山，身份证{WANG_ID}，电话139 1234 5678，想办护理补贴")
    assert slots.who == Who("agent", "child", "爸")
    assert slots.applicant_name == "王大山"
    assert slots.ids == {"applicant": WANG_ID} and slots.phones == {"applicant": "13912345678"}
    assert slots.services == ["nursing_subsidy"]


def test_numbers_said_digit_by_digit_are_numbers():
    spoken = "三四一七二三一九五五零三一五零零一四"
    slots = extract(_turn(), f"我爸叫王大山，身份证{spoken}，电话幺三九一二三四五六七八，想办护理补贴")
    assert slots.ids == {"applicant": WANG_ID} and slots.phones == {"applicant": "13912345678"}


def test_someone_describing_themself_applies_for_themself():
    text = f"你好，我叫王大山，身份证{WANG_ID}，电话13912345678，住青阳县庙前镇庙前村上屋组2号，视力残疾一级，家里不是低保也不是特困，五项都要办"
    slots = extract(_turn(), text)
    assert slots.who == Who("self")
    assert slots.applicant_name == "王大山" and slots.ids == {"applicant": WANG_ID}
    assert slots.household_address == "青阳县庙前镇庙前村上屋组2号"
    assert slots.hardship == "都不是"  # each one denied
    assert len(slots.services) == 5


def test_an_unplaced_number_is_left_for_its_question():
    # right after a sentence about both of them: nothing says whose number this is
    slots = extract(_turn(), f"帮我女儿申请，我是她爸爸，身份证{CHILD_ID}")
    assert slots.ids == {}


# -- through the real app ------------------------------------------------------------------------------------
async def _data(user) -> dict:
    session = await conversations(user.client).store.load(user.openid)
    return session["data"]


async def _session(user) -> dict:
    return await conversations(user.client).store.load(user.openid)


async def test_helping_my_father_is_an_agent_with_the_relation_said_and_the_father_named(make_user):
    user = make_user()
    await user.say("你好")
    reply = await user.say("你好，帮我父亲申请补贴")
    assert "您是替父亲申请" in reply
    assert "代办人）的姓名" in reply and "什么人" not in reply  # the relation is not asked again
    data = await _data(user)
    assert data["who"] == "agent" and data["agent"]["relation"] == "child"
    for answer in ("梁宏伟", FATHER_ID, "13912345678", "3"):
        reply = await user.say(answer)
    assert "您父亲的户籍地址" in reply


async def test_when_the_words_do_not_say_who_the_question_is_asked_again(make_user):
    user = make_user()
    await user.say("你好")
    reply = await user.say("你好，我想办理扶残助困的事情")
    assert "没看出是谁申请" in reply and "1 本人申请" in reply and "2 替孩子申请" in reply
    assert "who" not in (await _data(user))
    reply = await user.say(_common_words(2000, seed=1))
    assert "1 本人申请" in reply and "who" not in (await _data(user))


async def test_a_village_official_is_an_agent_never_the_applicant(make_user):
    user = make_user()
    await user.say("你好")
    reply = await user.say("我是村干部，帮村民申请")
    assert "代办人）的姓名" in reply
    agent = (await _data(user))["agent"]
    assert agent["relation"] == "other"
    for answer in ("赵秀英", FATHER_ID, "13912345678", "3"):
        reply = await user.say(answer)
    assert "这位村民的户籍地址" in reply


async def test_everything_at_once_is_noted_in_one_masked_line_and_only_the_rest_is_asked(make_user):
    user = make_user()
    reply = await user.say(ALL_IN_ONE)
    noted = reply.splitlines()[0]
    assert noted.startswith("记下了：")
    assert "3417**********0034" in noted and "139****5678" in noted
    assert CHILD_ID not in reply and "13912345678" not in reply
    for word in ("电话", "地址", "姓名", "身份证号", "户口"):  # the line names no question: the next line is the question
        assert word not in noted
    assert "代办人）的身份证号" in reply  # name, relation, phone and the daughter's ID were said
    data = await _data(user)
    assert data["agent"] == {
        "relation": "parent",
        "applicant_title": "女儿",
        "name": "曹国庆",
        "phone": "13912345678",
    }
    assert data["applicant"]["id_number"] == CHILD_ID and data["applicant"]["birth_date"] == "2014-06-01"
    assert data["services"] == ["living_subsidy", "nursing_subsidy"]
    assert data["facts"]["disability_category"] == 4 and data["facts"]["disability_level"] == 2
    reply = await user.say(FATHER_ID)
    assert "您女儿的户籍地址" in reply  # services were said: not asked


async def test_a_wrong_id_in_a_long_message_is_not_kept_and_is_asked_alone(make_user):
    user = make_user()
    await user.say(f"你好，我是曹国庆，帮我女儿巴特尔申请，她身份证{BAD_ID}，我的电话13912345678")
    data = await _data(user)
    assert "id_number" not in data.get("applicant", {})


async def test_an_answer_with_more_facts_answers_the_question_and_keeps_the_rest(make_user):
    user = make_user()
    for answer in ("你好", "1", "3", "青阳县蓉城镇五溪村12号", "1", "记不清了", "4", "1"):
        reply = await user.say(answer)
    assert "请发您的姓名" in reply
    reply = await user.say(f"王大山，身份证{WANG_ID}")
    assert reply.startswith("记下了：") and "3417**********0014" in reply
    assert "联系电话" in reply  # name and ID taken: the next question is the phone
    data = await _data(user)
    assert data["applicant"]["name"] == "王大山" and data["applicant"]["id_number"] == WANG_ID


# -- corrections at any step ---------------------------------------------------------------------------------
async def _to_household_address(user) -> str:
    reply = ""
    # 医疗救助 alone reads no 户籍: the address is asked with the form, after the phone
    for answer in ("你好", "1", "4", "1", "王大山", WANG_ID, "13887842615"):
        reply = await user.say(answer)
    assert "户籍地址" in reply, reply
    return reply


async def test_a_phone_corrected_at_the_address_step_is_the_phone_not_the_address(make_user):
    user = make_user()
    await _to_household_address(user)
    reply = await user.say("电话写错了,应该是13887842651")
    assert "已改过来了" in reply and "户籍地址" in reply
    data = await _data(user)
    assert data["applicant"]["phone"] == "13887842651"
    assert "household_address" not in data["applicant"]


async def test_the_agents_phone_corrected_at_the_next_question_is_the_agents(make_user):
    user = make_user()
    for answer in ("你好", "帮我父亲申请", "梁宏伟", FATHER_ID):
        await user.say(answer)
    reply = await user.say("13912345678")
    assert "要办哪些事" in reply
    reply = await user.say("电话写错了，应该是13912345687")
    assert "已改过来了" in reply and "要办哪些事" in reply
    data = await _data(user)
    assert data["agent"]["phone"] == "13912345687" and "phone" not in data.get("applicant", {})


async def test_a_name_corrected_with_its_new_value(make_user):
    user = make_user()
    await _to_household_address(user)
    await user.say("名字写错了，应该是王大善")
    assert (await _data(user))["applicant"]["name"] == "王大善"


async def test_a_level_corrected_at_the_next_question(make_user):
    user = make_user()
    for answer in ("你好", "1", "3", "青阳县蓉城镇五溪村12号", "1", "记不清了", "4", "1"):
        reply = await user.say(answer)
    assert "姓名" in reply
    reply = await user.say("不对，是二级")
    assert "已改过来了" in reply and "姓名" in reply
    assert (await _data(user))["facts"]["disability_level"] == 2


async def test_a_category_corrected_later(make_user):
    user = make_user()
    for answer in ("你好", "1", "3", "青阳县蓉城镇五溪村12号", "1", "记不清了", "1"):
        reply = await user.say(answer)
    assert "几级" in reply
    reply = await user.say("不对，刚才说错了，是肢体残疾")
    assert "已改过来了" in reply and "几级" in reply
    assert (await _data(user))["facts"]["disability_category"] == 4


async def test_a_correction_without_the_value_goes_back_to_that_question_then_on(make_user):
    user = make_user()
    await _to_household_address(user)
    reply = await user.say("身份证号错了")
    assert "身份证号" in reply and "户籍地址" not in reply
    reply = await user.say("341723195503150022")
    assert "户籍地址" in reply  # the phone is kept: back where the citizen was
    assert (await _data(user))["applicant"]["id_number"] == "341723195503150022"


async def test_the_summary_shown_again_after_a_change_or_going_back_declares_again(make_user):
    user = make_user()
    await _to_household_address(user)
    reply = await user.say("青阳县蓉城镇五溪村12号")
    for _ in range(8):
        if "请核对" in reply:
            break
        if "残疾人证号" in reply:
            reply = await user.say(WANG_ID + "41")
        elif "理由" in reply:
            reply = await user.say("生活不能自理")
        else:
            reply = await user.say("0" if "回复 0" in reply else "1")
    assert "请核对" in reply, reply
    reply = await user.say("电话不对，应该是13887842651")  # at the summary, with the new value
    # the declaration is printed with the summary and confirmed by its answer: after a change, again
    assert "已改过来了" in reply and "电话：13887842651" in reply and "申请声明" in reply
    assert "同意吗" in await user.say("1")
    reply = await user.say("返回")  # from the consent back to the summary: declared again, not skipped
    assert "请核对" in reply and "申请声明" in reply
    assert "同意吗" in await user.say("1")
