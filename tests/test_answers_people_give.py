"""Answers people give (issue 14, part 2): each quoted from the simulated citizens' transcripts.

Option lists read a plain yes or no, voice slips (生活不贴, 一及, 两级), a spoken list of services,
a hardship said as 城镇低保户 or 返贫户, "寄到家里", dates at the booking, one 申请理由 per subsidy,
and a 证号 that disagrees with what was said from memory. The readers run on a real Turn (the real
pack, Understanding and assessment book on the test's Redis DB).
"""

from __future__ import annotations

import time
from datetime import date, datetime

import pytest

from dialogs import answers
from dialogs.application import STEPS
from dialogs.assessment import monthly_sessions
from dialogs.conditions import Case
from dialogs.document import build_document
from dialogs.pack import load_pack
from dialogs.turn import Ports, Turn, UserInput
from dialogs.understanding import MAX_CACHED_CHARS, MAX_UNDERSTOOD_CHARS, NO_MATCH, Understanding, compact
from dialogs.workdays import default_calendar
from integrations.assessment_book import RedisAssessmentBook

PACKS = {region: load_pack(region) for region in ("qingyang", "hulunbuir")}
LANGS = {region: Understanding(pack) for region, pack in PACKS.items()}
STEP = {s.name: s for s in STEPS}


def options(region: str, question: str) -> list[dict]:
    question, _, which = question.partition(".")  # "consent_sensitive.guardian_answers": another list of the question
    q = PACKS[region].questions[question]
    if which:
        return q[which]
    return q["options"] if "options" in q else q["confirm_options"]  # the summary confirms the declaration with it


# -- b. a plain yes or no at every yes/no or confirm list ------------------------------------------
@pytest.mark.parametrize("region", PACKS)
@pytest.mark.parametrize(
    "question,text,value",
    [
        ("summary", "好的", "confirm"),
        ("summary", "好", "confirm"),
        ("summary", "没问题", "confirm"),
        ("summary", "嗯", "confirm"),
        ("summary", "行", "confirm"),
        ("summary", "不对", "back"),
        ("summary", "好的，我确认", "confirm"),
        ("consent_sensitive", "可以的", "agree"),
        ("consent_sensitive", "好的。", "agree"),
        ("consent_sensitive", "不行", "decline"),
        ("consent_sensitive", "不要", "decline"),
        ("fact_local_hukou", "对", True),
        ("fact_local_hukou", "是的", True),
        ("fact_local_hukou", "不", False),
        ("fact_local_hukou", "不对", False),
        # "同意" alone where who consents is asked with the consent: "您是申请人的法定监护人吗？"
        ("consent_sensitive.guardian_answers", "对", True),
        ("consent_sensitive.guardian_answers", "不是的", False),
        ("suggest_services", "没问题", "accept"),
        ("suggest_services", "不行", "rechoose"),
        ("fact_medical_insured", "确认", True),
        ("fact_pension_enrolled", "不", False),
    ],
)
def test_a_plain_yes_or_no_answers_a_yes_no_or_confirm_list(region, question, text, value):
    assert LANGS[region].choose(text, options(region, question)) == value


def test_a_plain_yes_is_not_guessed_where_the_options_are_not_yes_and_no():
    lang = LANGS["qingyang"]
    assert lang.choose("好的", options("qingyang", "who")) is NO_MATCH
    assert lang.choose("好的", options("qingyang", "agent_relation")) is NO_MATCH
    assert lang.choose("好的", options("qingyang", "eligibility_notice")) is NO_MATCH


# -- c. spoken numbers and voice slips -------------------------------------------------------------
@pytest.mark.parametrize(
    "text,level",
    [("一及。", 1), ("两级。", 2), ("二及。", 2), ("三及。", 3), ("四及。", 4), ("衣", 1), ("幺", 1), ("两", 2)],
)
def test_voice_slips_at_the_level(text, level):
    assert LANGS["qingyang"].choose(text, options("qingyang", "fact_disability_level")) == level


@pytest.mark.parametrize(
    "text,services",
    [
        ("生活补贴、护理补贴和养老保险补助都要办", ["living_subsidy", "nursing_subsidy", "pension_subsidy"]),
        ("残疾证和生活补贴都要办", ["disability_certificate", "living_subsidy"]),
        ("残疾证和生活不贴都要办。", ["disability_certificate", "living_subsidy"]),
        ("我想办残疾证、护理不贴和医疗救助。", ["disability_certificate", "nursing_subsidy", "medical_assistance"]),
        ("护理不贴和生活不贴还有养老保险", ["living_subsidy", "nursing_subsidy", "pension_subsidy"]),
        ("想办生活不贴。", ["living_subsidy"]),
        ("五项都要办", list(load_pack("qingyang").service_order)),
        ("全部都办", list(load_pack("qingyang").service_order)),
    ],
)
async def test_a_spoken_list_of_services_is_those_services(text, services):
    turn = _turn("qingyang", {})
    outcome = await answers.read_services(turn, STEP["choose_services"], UserInput("text", text), "")
    assert outcome.advance and turn.data["services"] == services
    said = PACKS["qingyang"].services
    assert outcome.say == [f"好的，您选了：{'、'.join(said[c].short for c in services)}。"]


# -- d. hardship ------------------------------------------------------------------------------------
@pytest.mark.parametrize("region", PACKS)
@pytest.mark.parametrize(
    "text,statuses",
    [
        ("家里是城镇低保户", ["dibao_urban"]),
        ("家里是农村低保户。", ["dibao_rural"]),
        ("家里是返贫户", ["returned_to_poverty"]),
        ("家里是防返贫监测户，也是特困户", ["tekun", "monitored"]),
        ("家里是低保户", ["dibao"]),
        ("农村低保和脱贫户都是", ["dibao_rural", "tuopin"]),
        ("都不是", ["none"]),
    ],
)
def test_a_word_inside_a_longer_matched_word_does_not_count(region, text, statuses):
    q = PACKS[region].questions["fact_hardship_status"]
    assert LANGS[region].choose_many(text, q["options"], exclusive=q["exclusive"], unnumbered=q["unnumbered"]) == statuses


# -- e. result delivery -----------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("寄到家里", "mail"), ("寄到家里。", "mail"), ("我自己去拿", "pickup")])
def test_result_delivery_in_words(text, value):
    assert LANGS["hulunbuir"].choose(text, options("hulunbuir", "result_delivery")) == value


# -- a. dates at the booking ------------------------------------------------------------------------
def _turn(region: str, data: dict, *, book=None, now: datetime | None = None) -> Turn:
    now = now or datetime(2026, 11, 23, 10, 0)
    ports = Ports(book=book, outbox=None)  # type: ignore[arg-type]  # the readers tested here submit nothing
    return Turn(Case(data, PACKS[region], now.date()), LANGS[region], ports, default_calendar(), now, "oTest")


def _offered(clock) -> list[date]:
    return [s.day for s in monthly_sessions(PACKS["qingyang"], default_calendar(), clock.today(), 3)]


@pytest.mark.parametrize(
    "said",
    [
        lambda first, today: f"{first.month}月{first.day}日",
        lambda first, today: f"{first.month}月{first.day}日。",
        lambda first, today: f"{first.month}月{first.day}号",
        lambda first, today: f"{first.month}月",
        lambda first, today: f"{first.month}月那次",
    ],
)
async def test_the_first_offered_day_said_as_a_date_is_booked(redis_client, clock, said):
    first = _offered(clock)[0]
    turn = _turn(
        "qingyang", {"reference": "QY-T1", "services": ["disability_certificate"]}, book=_book(redis_client), now=clock.now()
    )
    outcome = await answers.read_booking(turn, STEP["booking"], UserInput("text", said(first, clock.today())), "")
    assert outcome.advance, outcome
    assert turn.data["booking"]["session_date"] == first.isoformat()


async def test_next_month_and_a_day_of_the_month_pick_the_session_they_name(redis_client, clock):
    offered = _offered(clock)
    today = clock.today()
    book = _book(redis_client)
    # the sessions are monthly: next month always has one among the three offered
    next_month = next(d for d in offered if d.month == today.month % 12 + 1)
    turn = _turn("qingyang", {"reference": "QY-T2", "services": ["disability_certificate"]}, book=book, now=clock.now())
    assert (await answers.read_booking(turn, STEP["booking"], UserInput("text", "下个月那次"), "")).advance
    assert turn.data["booking"]["session_date"] == next_month.isoformat()
    # "11号": the first offered session held on that day of the month (the next one when all are on the 11th)
    last = offered[-1]
    turn = _turn("qingyang", {"reference": "QY-T3", "services": ["disability_certificate"]}, book=book, now=clock.now())
    assert (await answers.read_booking(turn, STEP["booking"], UserInput("text", f"{last.day}号"), "")).advance
    assert turn.data["booking"]["session_date"] == next(d for d in offered if d.day == last.day).isoformat()


async def test_a_day_not_offered_gets_a_kind_reply_listing_what_is(redis_client, clock):
    offered = _offered(clock)
    not_offered = next(f"{m}月{d}日" for m in range(1, 13) for d in (3, 27) if all((o.month, o.day) != (m, d) for o in offered))
    turn = _turn(
        "qingyang", {"reference": "QY-T4", "services": ["disability_certificate"]}, book=_book(redis_client), now=clock.now()
    )
    outcome = await answers.read_booking(turn, STEP["booking"], UserInput("text", not_offered), "")
    assert not outcome.advance and outcome.hint is None and "booking" not in turn.data
    (reply,) = outcome.say
    assert reply.startswith(f"{not_offered}没有可约的评定。可以约的日期是：")
    for day in offered:
        assert f"{day.month}月{day.day}日" in reply


def _book(redis_client) -> RedisAssessmentBook:
    return RedisAssessmentBook(redis_client, clock=time.time)


# -- f. one 申请理由 per subsidy (附件4《残疾人两项补贴申请审批表》) -----------------------------------------
BOTH = {"reference": "HL-T1", "created_at": "2026-11-23T10:00:00", "services": ["living_subsidy", "nursing_subsidy"]}


async def test_both_reasons_in_one_message_are_split_into_each():
    turn = _turn("hulunbuir", dict(BOTH))
    text = "生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护理。"
    outcome = await answers.read_answer(turn, STEP["subsidy_reason"], UserInput("voice", text))
    assert outcome.advance
    assert turn.data["subsidy_reasons"] == {"living_subsidy": "看病花销大，家庭困难", "nursing_subsidy": "瘫痪在床，需要人护理"}
    doc = build_document(turn.case, "oTest", turn.now)
    assert doc["hardship"]["subsidy_reasons"] == turn.data["subsidy_reasons"]


async def test_a_reason_for_one_subsidy_asks_for_the_other():
    turn = _turn("hulunbuir", dict(BOTH))
    outcome = await answers.read_answer(turn, STEP["subsidy_reason"], UserInput("text", "护理补贴的理由是长期卧床"))
    assert not outcome.advance and outcome.say == ["好的，记下了。生活补贴的申请理由呢？"]
    outcome = await answers.read_answer(turn, STEP["subsidy_reason"], UserInput("text", "家里没有收入"))
    assert outcome.advance
    assert turn.data["subsidy_reasons"] == {"living_subsidy": "家里没有收入", "nursing_subsidy": "长期卧床"}


async def test_a_reason_that_names_neither_subsidy_is_the_reason_of_both():
    turn = _turn("hulunbuir", dict(BOTH))
    assert (
        await answers.read_answer(turn, STEP["subsidy_reason"], UserInput("text", "双眼失明，生活不能自理，家庭困难"))
    ).advance
    assert set(turn.data["subsidy_reasons"].values()) == {"双眼失明，生活不能自理，家庭困难"}


async def test_the_question_asks_for_each_reason_when_both_subsidies_are_chosen():
    from dialogs.prompts import prompt

    assert "两项补贴各一句" in await prompt(_turn("hulunbuir", dict(BOTH)), "subsidy_reason")
    one = await prompt(_turn("hulunbuir", {"services": ["nursing_subsidy"]}), "subsidy_reason")
    assert one == PACKS["hulunbuir"].questions["subsidy_reason"]["prompt"]


# -- a 证号 that disagrees with what was said: checked once, then recorded as on the card ------------
async def test_a_certificate_number_that_disagrees_is_checked_once_then_recorded_and_said_back():
    # the changes_mind citizen who said 视力 and then sent the 证号 of a 多重二级 certificate, again and again
    data = {"services": ["living_subsidy"], "applicant": {"id_number": "150721194512249389"}}
    data["facts"] = {"disability_category": 1, "disability_level": 2}
    turn = _turn("hulunbuir", data)
    sent = UserInput("text", "15072119451224938972")
    first = await answers.read_answer(turn, STEP["certificate_no"], sent)
    assert first.hint == "证号里的残疾类别和您选的不一样，请对照证件核对。证件上就是这个号的话，请再发一次。"
    assert "certificate_no" not in turn.data and turn.case.facts["disability_category"] == 1
    again = await answers.read_answer(turn, STEP["certificate_no"], sent)
    assert again.advance and again.say == ["已按残疾人证记下：多重残疾二级。"]
    assert turn.case.facts["disability_category"] == 7 and turn.case.facts["disability_level"] == 2
    assert turn.data["certificate_no"] == "15072119451224938972" and "certificate_disputed" not in turn.data


async def test_another_number_after_a_disagreeing_one_is_checked_again():
    data = {"services": ["living_subsidy"], "applicant": {"id_number": "150721194512249389"}}
    data["facts"] = {"disability_category": 7, "disability_level": 1}
    turn = _turn("hulunbuir", data)
    assert (await answers.read_answer(turn, STEP["certificate_no"], UserInput("text", "15072119451224938972"))).hint
    assert (await answers.read_answer(turn, STEP["certificate_no"], UserInput("text", "15072119451224938971"))).advance
    assert turn.case.facts == {"disability_category": 7, "disability_level": 1}


# -- h. bounded cost --------------------------------------------------------------------------------
def test_a_long_text_is_capped_before_any_nlp_and_never_cached():
    lang = LANGS["qingyang"]
    long = "护理补贴" + "的" * 10_000 + "生活补贴"
    assert len(compact(long)) <= MAX_UNDERSTOOD_CHARS
    before = lang._cut_short.cache_info().currsize
    started = time.perf_counter()
    assert lang.services_in(long) == ["nursing_subsidy"]  # the end of a 10,000-character text is not read
    assert lang.words("x" * (MAX_CACHED_CHARS + 1)) and lang._cut_short.cache_info().currsize == before
    assert time.perf_counter() - started < 0.5
    lang.words("护理补贴")
    assert lang._cut_short.cache_info().currsize == before + 1


async def test_a_service_not_understood_is_said_back_with_what_was_chosen():
    # "护理不贴和生活不贴还有养老保险" once chose only 养老保险补助, silently
    turn = _turn("qingyang", {})
    outcome = await answers.read_services(turn, STEP["choose_services"], UserInput("voice", "护理贴和生活补贴。"), "")
    assert outcome.advance and turn.data["services"] == ["living_subsidy"]
    assert outcome.say == ["好的，您选了：生活补贴。“护理贴”没听懂，要办的话到核对时说“加办”。"]
