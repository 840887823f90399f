"""Node tests of the questions a guardian is no longer asked (issue 14, part 4: all five in ≤ 20 messages
with numbers): given the answers so far, the step that comes next."""

from __future__ import annotations

from datetime import date

import pytest

from dialogs.conditions import Case, consent_asks_guardian
from dialogs.engine import ApplicationDialog
from dialogs.pack import load_pack
from dialogs.turn import Ports
from dialogs.workdays import default_calendar

_DIALOGS: dict[str, ApplicationDialog] = {}


def next_step(region: str, data: dict, state: str) -> str:
    """The step asked after `state` is answered, for an application holding `data`."""
    if region not in _DIALOGS:
        ports = Ports(book=None, outbox=None)  # type: ignore[arg-type]  # routing books and submits nothing
        _DIALOGS[region] = ApplicationDialog(load_pack(region), ports, default_calendar())
    dialog = _DIALOGS[region]
    return dialog.advance({}, Case(data, dialog.pack, date(2026, 11, 23)), state)


def _guardian(region: str, address: str, **more) -> dict:
    return {
        "who": "agent",
        "agent": {"relation": "spouse", "name": "萨仁"},
        "services": ["living_subsidy", "nursing_subsidy"],
        "applicant": {"name": "周长林", "id_number": "150781195810066549", "household_address": address},
        **more,
    }


# 附件4《残疾人两项补贴申请审批表》 has "申请地" and "苏木乡镇（街道办事处）民政部门审核意见"; it has no field for
# the 村（嘎查、社区）, so an address naming its 街道 is not followed by a question about the 社区.
def test_hulunbuir_asks_no_village_when_the_address_names_the_township():
    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区胜利街道10号")
    assert next_step("hulunbuir", data, "household_address") == "subsidy_reason"


def test_hulunbuir_still_asks_the_township_when_the_address_does_not_name_it():
    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区10号")
    assert next_step("hulunbuir", data, "household_address") == "household_place"


@pytest.mark.parametrize(
    "address, asked",
    [("青阳县蓉城镇12号", "household_place"), ("青阳县蓉城镇五溪村12号", "checklist")],
)
def test_qingyang_still_asks_the_village_its_offices_route_by(address, asked):
    # 青民务〔2023〕2号 附件2 受理单位：县（区）政务服务中心/乡镇为民服务中心/村（社区）
    data = _guardian("qingyang", address)
    assert next_step("qingyang", data, "household_address") == asked


def _parent_of(id_number: str, relation: str = "parent", category: int = 2) -> dict:
    return {
        "who": "agent",
        "agent": {"relation": relation, "name": "曹国庆", "phone": "18652808116"},
        "services": ["disability_certificate", "nursing_subsidy"],
        "facts": {"disability_category": category},
        "applicant": {"name": "巴特尔", "id_number": id_number},
    }


# 民法典 第二十七条：父母是未成年子女的监护人 — a parent applying for a minor is not asked whether they are.
def test_a_parent_of_a_minor_is_the_legal_guardian_without_being_asked():
    from dialogs.conditions import consent_asks_guardian, consent_by

    data = _parent_of("150783201807200664")  # 8 years old
    case = Case(data, load_pack("hulunbuir"), date(2026, 11, 23))
    assert not consent_asks_guardian(case)
    assert consent_by(case) == "guardian"


@pytest.mark.parametrize(
    "id_number, relation, category",
    [
        ("150783195807200664", "child", 5),  # a son or daughter of an adult with 智力残疾: a court may have named another
        ("150783195807200664", "spouse", 6),
        ("150783201807200664", "relative", 2),  # a grandparent of a minor is a guardian only when the parents cannot be
    ],
)
def test_anyone_else_who_may_be_the_guardian_is_still_asked(id_number, relation, category):
    data = _parent_of(id_number, relation, category)
    assert consent_asks_guardian(Case(data, load_pack("hulunbuir"), date(2026, 11, 23)))


# The declaration (青民务〔2023〕2号 附件2 / 内民政发〔2022〕110号 附件4 "申请人（代理人）签字（捺印）") is an
# undertaking that what was checked is true: printed with the summary, it is confirmed by the same answer.
# The consent to sensitive personal information stays its own explicit answer (个人信息保护法 第二十九条).
@pytest.mark.parametrize("region", ["qingyang", "hulunbuir"])
def test_the_summary_confirmed_goes_to_the_separate_consent(region):
    assert next_step(region, _guardian(region, "青阳县蓉城镇五溪村12号"), "summary") == "consent_sensitive"


@pytest.mark.parametrize(
    "text, confirmed",
    [("1", True), ("没问题", True), ("好的，我确认", True), ("确认无误", True), ("不确认", False), ("不对", False)],
)
async def test_the_summary_answer_confirms_the_declaration(text, confirmed):
    from dialogs import answers
    from dialogs.application import STEPS
    from dialogs.turn import UserInput
    from tests.test_dead_ends import _turn

    turn = _turn("qingyang", {})
    step = next(s for s in STEPS if s.name == "summary")
    outcome = await answers.read_answer(turn, step, UserInput("text", text))
    assert bool(outcome.advance) is confirmed
    assert (turn.data.get("declaration") == "confirm") is confirmed


# -- the guardian applying for all five in ≤ 20 messages: what is no longer asked, or asked once -------------
async def _answer(region: str, data: dict, state: str, text: str):
    from dialogs import answers
    from dialogs.application import STEPS
    from dialogs.turn import UserInput
    from tests.test_dead_ends import _turn

    turn = _turn(region, data)
    outcome = await answers.read_answer(turn, next(s for s in STEPS if s.name == state), UserInput("text", text))
    return turn, outcome


@pytest.mark.parametrize(
    "region, address, local",
    [
        ("qingyang", "青阳县蓉城镇五溪村12号", True),
        ("hulunbuir", "内蒙古呼伦贝尔市阿荣旗那吉镇建设街3号", True),
        ("hulunbuir", "内蒙古兴安盟乌兰浩特市和平街道5号", None),  # another county: asked, not guessed
        ("qingyang", "阳光小区3栋2单元", None),  # reads like a 区: asked
        ("qingyang", "蓉城镇五溪村12号", None),  # no county named: asked
    ],
)
async def test_the_household_address_asked_in_the_screen_says_whether_the_hukou_is_here(region, address, local):
    data = {"who": "self", "services": ["pension_subsidy"]}
    assert next_step(region, data, "choose_services") == "household_address_first"
    turn, outcome = await _answer(region, data, "household_address_first", address)
    assert outcome.advance and turn.case.facts.get("local_hukou") is local
    following = next_step(region, turn.data, "household_address_first")
    assert (following == "fact_local_hukou") is (local is None)


async def test_a_hukou_the_citizen_said_is_not_overridden_by_the_address():
    data = {"who": "self", "services": ["pension_subsidy"], "facts": {"local_hukou": False}}
    turn, _ = await _answer("qingyang", data, "household_address", "青阳县蓉城镇五溪村12号")
    assert turn.case.facts["local_hukou"] is False


@pytest.mark.parametrize(
    "text, in_school, employee_pension",
    [
        ("3", False, False),
        ("1 2", True, True),
        ("2", False, True),
        ("都没有", False, False),
        ("是在校学生", True, False),
        ("不是学生，也没参加职工养老保险", False, False),
        ("没上学，单位给交了职工养老保险", False, True),
    ],
)
async def test_school_and_the_employee_pension_are_one_question(text, in_school, employee_pension):
    # 内民政发〔2022〕110号 附件2 备注2: 年满16周岁（不含在校学生）、未参加职工基本养老保险 — one sentence, one question
    facts = {"local_hukou": True, "has_certificate": True, "disability_level": 1, "hardship_status": ["tekun"]}
    data = {"who": "self", "services": ["pension_subsidy"], "facts": facts}
    assert next_step("hulunbuir", data, "fact_hardship_status") == "fact_pension_exceptions"
    turn, outcome = await _answer("hulunbuir", data, "fact_pension_exceptions", text)
    assert outcome.advance
    assert (turn.case.facts["in_school"], turn.case.facts["employee_pension"]) == (in_school, employee_pension)


async def test_a_service_only_an_assumed_rule_excludes_is_told_with_the_next_question_not_asked():
    from dialogs.prompts import prompt
    from tests.test_dead_ends import _turn

    # 呼伦贝尔 生活补贴 for 低保家庭中的残疾人 is from 国发〔2015〕52号, not the seed: told, kept, the clerk decides
    data = {
        "who": "self",
        "services": ["living_subsidy"],
        "facts": {"has_certificate": True, "disability_level": 1, "hardship_status": ["monitored"]},
    }
    assert next_step("hulunbuir", data, "fact_hardship_status") == "applicant_name"
    turn = _turn("hulunbuir", data)
    reply = await prompt(turn, "applicant_name")
    assert reply.startswith("生活补贴：可能需要是低保家庭中的残疾人") and "照常申请" in reply and "请发您的姓名" in reply
    assert "回复 1 不办这几项" not in reply and turn.data["assumed"] == ["living_subsidy"]
    assert "生活补贴" not in await prompt(turn, "applicant_id")  # told once
    from dialogs.eligibility import MAY_NOT_QUALIFY, evaluate_service

    assert evaluate_service(turn.case, "living_subsidy")["result"] == MAY_NOT_QUALIFY


def test_a_service_the_seed_excludes_is_still_asked_about():
    # 附件2 备注2: 必须为年满16周岁 — a rule of the seed: drop it or apply anyway, the citizen says
    data = _parent_of("150783201807200664")  # 8 years old
    data["services"] = ["pension_subsidy"]
    data["facts"].update(local_hukou=True, has_certificate=True, disability_level=1, hardship_status=["tekun"])
    assert next_step("hulunbuir", data, "applicant_id") == "eligibility_recheck"


@pytest.mark.parametrize("id_number, asked", [("150783201807200664", False), ("150783201107200664", True)])
async def test_a_young_childs_phone_is_the_parents(id_number, asked):
    # under 14 (form.child_phone_is_guardians), applied for by a parent: the parent's phone, not asked
    data = _parent_of("150783201807200664")
    data["applicant"].pop("id_number")
    turn, _ = await _answer("hulunbuir", data, "applicant_id", id_number)
    assert (turn.data["applicant"].get("phone") is None) is asked
    assert (next_step("hulunbuir", turn.data, "applicant_id") == "applicant_phone") is asked


@pytest.mark.parametrize("text, mailed_to", [("2", "household"), ("3", None), ("寄到家里", None), ("1", None)])
async def test_mail_to_the_household_address_is_one_answer(text, mailed_to):
    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区胜利街道10号")
    turn, outcome = await _answer("hulunbuir", data, "result_delivery", text)
    assert outcome.advance
    assert turn.data["delivery"] == ("pickup" if text == "1" else "mail")
    home = turn.data["applicant"]["household_address"]
    assert turn.data.get("mailing_address") == (home if mailed_to else None)
    asks_address = next_step("hulunbuir", turn.data, "result_delivery") == "mailing_address"
    assert asks_address is (text in ("3", "寄到家里"))


# -- who applies and the relation in one answer ----------------------------------------------------------------
# The issue: 'When a relation is said ("帮我父亲"), take the relation too and do not ask it again'. The first
# question lists the relations, so a guardian's one number says both.
@pytest.mark.parametrize(
    "text, relation", [("2", "parent"), ("3", "child"), ("4", "spouse"), ("5", "sibling"), ("6", "relative"), ("7", "other")]
)
async def test_one_number_says_who_applies_and_how_they_are_related(text, relation):
    turn, outcome = await _answer("hulunbuir", {}, "who", text)
    assert outcome.advance and turn.data["who"] == "agent" and turn.data["agent"]["relation"] == relation
    assert next_step("hulunbuir", turn.data, "who") == "agent_name"


async def test_one_for_oneself_and_a_vague_替家人_still_asks_the_relation():
    turn, _ = await _answer("hulunbuir", {}, "who", "1")
    assert turn.data["who"] == "self" and "agent" not in turn.data
    turn, _ = await _answer("hulunbuir", {}, "who", "替家人申请")
    assert turn.data["who"] == "agent" and next_step("hulunbuir", turn.data, "who") == "agent_relation"


# -- who consents, asked with the consent (个人信息保护法 第三十一条: the guardian's consent for a minor under 14) ----
def _may_be_guardian() -> dict:
    data = _parent_of("150783195807200664", "spouse", 5)  # the spouse of an adult with 智力残疾
    data.update(reference="HL20261123TEST01", created_at="2026-11-23T10:00:00")
    data["agent"]["id_number"] = "150721196307211380"
    data["applicant"].update(phone="18652808116", household_address="内蒙古呼伦贝尔市海拉尔区胜利街道10号")
    return data


@pytest.mark.parametrize(
    "text, guardian",
    [("1", True), ("2", False), ("同意，我是她的监护人", True), ("同意，我只是帮忙代办", False), ("我不是监护人，同意", False)],
)
async def test_the_consent_says_who_consents_in_the_same_answer(text, guardian):
    from dialogs.conditions import consent_by

    turn, outcome = await _answer("hulunbuir", _may_be_guardian(), "consent_sensitive", text)
    assert outcome.advance
    assert turn.data["agent"]["legal_guardian"] is guardian
    assert turn.data["consent"]["by"] == consent_by(turn.case) == ("guardian" if guardian else "agent")
    assert [type(e).__name__ for e in turn.effects] == ["Submit"]


async def test_a_plain_同意_asks_whether_they_are_the_guardian_and_guesses_nothing():
    from dialogs import answers
    from dialogs.application import STEPS
    from dialogs.turn import UserInput

    data = _may_be_guardian()
    turn, outcome = await _answer("hulunbuir", data, "consent_sensitive", "好的，同意")
    assert not outcome.advance and "法定监护人吗" in outcome.say[0] and "legal_guardian" not in data["agent"]
    assert not turn.effects
    step = next(s for s in STEPS if s.name == "consent_sensitive")
    turn = __import__("tests.test_dead_ends", fromlist=["_turn"])._turn("hulunbuir", data)
    outcome = await answers.read_answer(turn, step, UserInput("text", "是的"))
    assert outcome.advance and data["agent"]["legal_guardian"] is True and data["consent"]["by"] == "guardian"


@pytest.mark.parametrize("text", ["3", "不同意", "我是监护人，但不同意"])
async def test_declining_with_the_guardian_question_submits_nothing(text):
    turn, outcome = await _answer("hulunbuir", _may_be_guardian(), "consent_sensitive", text)
    assert not outcome.advance and not turn.effects and turn.data["consent"] == {"sensitive": False}
    assert "同意" in outcome.say[0]


async def test_an_agent_who_cannot_be_the_guardian_gets_the_plain_consent():
    from dialogs.prompts import prompt

    data = _may_be_guardian()
    data["agent"]["relation"] = "other"  # a 村干部 is an agent, never the guardian
    turn, _ = await _answer("hulunbuir", data, "summary", "1")
    question = await prompt(turn, "consent_sensitive")
    assert "1 同意并提交" in question and "监护人" not in question


# -- the materials list told with how the result is collected --------------------------------------------------
async def test_hulunbuir_tells_the_materials_with_the_delivery_question_and_qingyang_asks_them():
    from dialogs.prompts import checklist_prompt

    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区胜利街道10号")
    data["subsidy_reason"] = {"living_subsidy": "家庭困难", "nursing_subsidy": "需要照护"}
    turn, _ = await _answer("hulunbuir", data, "subsidy_reason", "生活补贴：家庭困难；护理补贴：需要照护")
    assert next_step("hulunbuir", data, "subsidy_reason") == "checklist"  # the machine's own next step
    told = await checklist_prompt(turn, "told")
    assert "请准备这些材料" in told and "回复 0" not in told

    data = _guardian("qingyang", "青阳县蓉城镇五溪村12号")
    assert next_step("qingyang", data, "household_address") == "checklist"
    assert "回复 0" in await checklist_prompt(_turn_of("qingyang", data))


def _turn_of(region: str, data: dict):
    from tests.test_dead_ends import _turn

    return _turn(region, data)


# -- mailed to an address already given --------------------------------------------------------------------------
async def test_the_agents_residence_is_offered_for_the_post_when_it_is_not_the_household_address():
    from dialogs.prompts import prompt

    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市阿荣旗那吉镇建设街3号")
    data["agent"]["residence"] = "内蒙古呼伦贝尔市海拉尔区胜利街道10号"
    question = await prompt(_turn_of("hulunbuir", data), "result_delivery")
    assert "3 邮寄到您（代办人）的居住地址" in question and "4 邮寄到别的地址" in question
    turn, outcome = await _answer("hulunbuir", data, "result_delivery", "3")
    assert outcome.advance and turn.data["delivery"] == "mail"
    assert turn.data["mailing_address"] == "内蒙古呼伦贝尔市海拉尔区胜利街道10号"
    assert next_step("hulunbuir", turn.data, "result_delivery") != "mailing_address"

    data["agent"]["residence"] = data["applicant"]["household_address"]  # living there: one option says it
    question = await prompt(_turn_of("hulunbuir", data), "result_delivery")
    assert "居住地址" not in question and "3 邮寄到别的地址" in question


async def test_an_address_sent_to_how_the_result_is_collected_is_where_it_is_mailed():
    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区胜利街道10号")
    turn, outcome = await _answer("hulunbuir", data, "result_delivery", "寄到内蒙古呼伦贝尔市扎兰屯市兴华街道光明路7号")
    assert outcome.advance and turn.data["delivery"] == "mail"
    assert turn.data["mailing_address"].endswith("兴华街道光明路7号")
    assert next_step("hulunbuir", turn.data, "result_delivery") != "mailing_address"
