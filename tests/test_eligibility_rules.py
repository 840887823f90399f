"""Every eligibility rule of both packs, case by case, each case naming the clause it tests."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import pytest

from dialogs.conditions import Case
from dialogs.eligibility import ELIGIBLE, EXCLUDED, MAY_NOT_QUALIFY, PENDING, evaluate_service
from dialogs.pack import load_pack as _load_pack

load_pack = lru_cache(maxsize=None)(_load_pack)

ADULT_ID = "341723195503020017"  # born 1955
CHILD_ID = "341723201406010034"  # born 2014-06-01: 12 on the day below
TEEN_ID = "150702201104200037"  # born 2011-04-20: 15 on the day below
ADULT_NM_ID = "150702196504200032"  # born 1965
TODAY = date(2026, 11, 23)

QY_OK = {"local_hukou": True, "has_certificate": True, "disability_level": 4, "hardship_status": "dibao_rural"}
HL_OK = {
    "local_hukou": True,
    "has_certificate": True,
    "disability_level": 1,
    "hardship_status": "dibao_urban",
    "in_school": False,
    "employee_pension": False,
    "medical_insured": True,
}

# (region, service, facts, other services chosen, applicant id, expected result, failed rule, clause in its basis)
CASES = [
    # 青阳 — 困难残疾人生活补贴: 池民办〔2022〕60号 1.
    ("qingyang", "living_subsidy", QY_OK, [], ADULT_ID, ELIGIBLE, None, "池民办〔2022〕60号 1."),
    ("qingyang", "living_subsidy", {**QY_OK, "local_hukou": False}, [], ADULT_ID, EXCLUDED, "local_hukou", "具有青阳县户籍"),
    (
        "qingyang",
        "living_subsidy",
        {**QY_OK, "has_certificate": False},
        [],
        ADULT_ID,
        EXCLUDED,
        "holds_certificate",
        "持有《中华人民共和国残疾人证》",
    ),
    (
        "qingyang",
        "living_subsidy",
        {**QY_OK, "has_certificate": False, "disability_level": None},
        ["disability_certificate"],
        ADULT_ID,
        PENDING,
        None,
        "池民办〔2022〕60号",
    ),
    ("qingyang", "living_subsidy", {**QY_OK, "disability_level": 1}, [], ADULT_ID, ELIGIBLE, None, "四级以上（含四级）"),
    ("qingyang", "living_subsidy", {**QY_OK, "hardship_status": "tuopin"}, [], ADULT_ID, ELIGIBLE, None, "纳入低保和脱贫人口"),
    (
        "qingyang",
        "living_subsidy",
        {**QY_OK, "hardship_status": "dibao_urban"},
        [],
        ADULT_ID,
        ELIGIBLE,
        None,
        "纳入低保和脱贫人口",
    ),
    (
        "qingyang",
        "living_subsidy",
        {**QY_OK, "hardship_status": "none"},
        [],
        ADULT_ID,
        EXCLUDED,
        "dibao_or_tuopin",
        "纳入低保和脱贫人口",
    ),
    (
        "qingyang",
        "living_subsidy",
        {**QY_OK, "hardship_status": "dibao_edge"},
        [],
        ADULT_ID,
        EXCLUDED,
        "dibao_or_tuopin",
        "纳入低保和脱贫人口",
    ),
    # 青阳 — 重度残疾人护理补贴: 池民办〔2022〕60号 2.
    ("qingyang", "nursing_subsidy", {**QY_OK, "disability_level": 2}, [], ADULT_ID, ELIGIBLE, None, "池民办〔2022〕60号 2."),
    (
        "qingyang",
        "nursing_subsidy",
        {**QY_OK, "disability_level": 1, "hardship_status": "none"},
        [],
        ADULT_ID,
        ELIGIBLE,
        None,
        "一级、二级",
    ),
    (
        "qingyang",
        "nursing_subsidy",
        {**QY_OK, "disability_level": 3},
        [],
        ADULT_ID,
        EXCLUDED,
        "level_1_or_2",
        "残疾等级被评定为一级、二级",
    ),
    (
        "qingyang",
        "nursing_subsidy",
        {**QY_OK, "disability_level": 1, "local_hukou": False},
        [],
        ADULT_ID,
        EXCLUDED,
        "local_hukou",
        "具有青阳县户籍",
    ),
    (
        "qingyang",
        "nursing_subsidy",
        {**QY_OK, "disability_level": None},
        ["disability_certificate"],
        ADULT_ID,
        PENDING,
        None,
        "一级、二级",
    ),
    # 青阳 — 医疗救助: 具体事项清单三、受理条件
    ("qingyang", "medical_assistance", {"hardship_status": "tekun"}, [], ADULT_ID, ELIGIBLE, None, "具体事项清单三、受理条件"),
    ("qingyang", "medical_assistance", {"hardship_status": "dibao_edge"}, [], ADULT_ID, ELIGIBLE, None, "具体事项清单三"),
    ("qingyang", "medical_assistance", {"hardship_status": "illness_poverty"}, [], ADULT_ID, ELIGIBLE, None, "具体事项清单三"),
    ("qingyang", "medical_assistance", {"hardship_status": "monitored"}, [], ADULT_ID, ELIGIBLE, None, "具体事项清单三"),
    (
        "qingyang",
        "medical_assistance",
        {"hardship_status": "tuopin"},
        [],
        ADULT_ID,
        EXCLUDED,
        "assistance_target",
        "具体事项清单三、受理条件",
    ),
    (
        "qingyang",
        "medical_assistance",
        {"hardship_status": "none"},
        [],
        ADULT_ID,
        EXCLUDED,
        "assistance_target",
        "具体事项清单三、受理条件",
    ),
    # 青阳 — 养老保险补助: 具体事项清单四；青政〔2011〕54号 第二章第十条
    (
        "qingyang",
        "pension_subsidy",
        {**QY_OK, "disability_level": 1, "pension_enrolled": True},
        [],
        ADULT_ID,
        ELIGIBLE,
        None,
        "青政〔2011〕54号",
    ),
    (
        "qingyang",
        "pension_subsidy",
        {**QY_OK, "disability_level": 1, "pension_enrolled": False},
        [],
        ADULT_ID,
        EXCLUDED,
        "pension_enrolled",
        "已参加城乡居民基本养老保险",
    ),
    (
        "qingyang",
        "pension_subsidy",
        {**QY_OK, "disability_level": 1, "pension_enrolled": None},
        [],
        ADULT_ID,
        PENDING,
        None,
        "具体事项清单四",
    ),
    (
        "qingyang",
        "pension_subsidy",
        {**QY_OK, "disability_level": 3, "pension_enrolled": True},
        [],
        ADULT_ID,
        EXCLUDED,
        "severe_level",
        "重度残疾人（一、二级）",
    ),
    (
        "qingyang",
        "pension_subsidy",
        {**QY_OK, "disability_level": 2, "pension_enrolled": True, "local_hukou": False},
        [],
        ADULT_ID,
        EXCLUDED,
        "local_hukou",
        "具有青阳县户籍",
    ),
    # 青阳 — 残疾人证: 受理条件 疑似残疾人 (no exclusion)
    (
        "qingyang",
        "disability_certificate",
        {"has_certificate": False, "local_hukou": True},
        [],
        CHILD_ID,
        ELIGIBLE,
        None,
        "疑似残疾人",
    ),
    (
        "qingyang",
        "disability_certificate",
        {"has_certificate": True, "local_hukou": True},
        [],
        CHILD_ID,
        EXCLUDED,
        "no_certificate_yet",
        "疑似残疾人",
    ),
    (
        "qingyang",
        "disability_certificate",
        {"has_certificate": False, "local_hukou": False},
        [],
        CHILD_ID,
        EXCLUDED,
        "local_hukou",
        "属地管理",
    ),
    # 呼伦贝尔 — 两项补贴: 内民政发〔2022〕110号 附件1 二 (target groups: an assumption in the pack)
    ("hulunbuir", "living_subsidy", HL_OK, [], ADULT_NM_ID, ELIGIBLE, None, "附件1 二"),
    ("hulunbuir", "living_subsidy", {**HL_OK, "hardship_status": "none"}, [], ADULT_NM_ID, EXCLUDED, "dibao_family", "低保类别"),
    (
        "hulunbuir",
        "living_subsidy",
        {**HL_OK, "has_certificate": False},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "holds_certificate",
        "残疾人证号",
    ),
    (
        "hulunbuir",
        "nursing_subsidy",
        {**HL_OK, "disability_level": 2, "hardship_status": "none"},
        [],
        ADULT_NM_ID,
        ELIGIBLE,
        None,
        "附件1 二",
    ),
    (
        "hulunbuir",
        "nursing_subsidy",
        {**HL_OK, "disability_level": 3},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "level_1_or_2",
        "附件4 残疾等级",
    ),
    # 呼伦贝尔 — 医疗救助: 内民政发〔2022〕110号 附件1 三
    ("hulunbuir", "medical_assistance", HL_OK, [], ADULT_NM_ID, ELIGIBLE, None, "附件1 三"),
    (
        "hulunbuir",
        "medical_assistance",
        {**HL_OK, "medical_insured": False},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "medical_insured",
        "参加城乡居民基本医疗保险",
    ),
    (
        "hulunbuir",
        "medical_assistance",
        {**HL_OK, "hardship_status": "none"},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "assistance_target",
        "低保和特困等救助对象",
    ),
    # 呼伦贝尔 — 养老保险保费代缴: 附件2 备注2、3
    ("hulunbuir", "pension_subsidy", HL_OK, [], ADULT_NM_ID, ELIGIBLE, None, "附件2 备注"),
    ("hulunbuir", "pension_subsidy", HL_OK, [], TEEN_ID, EXCLUDED, "age_16", "年满16周岁"),
    ("hulunbuir", "pension_subsidy", HL_OK, [], None, PENDING, None, "年满16周岁"),
    (
        "hulunbuir",
        "pension_subsidy",
        {**HL_OK, "disability_level": 3},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "severe_level",
        "一级、二级困难重度残疾人",
    ),
    (
        "hulunbuir",
        "pension_subsidy",
        {**HL_OK, "hardship_status": "none"},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "hardship",
        "困难重度残疾人",
    ),
    # 备注2 defines who may join; it does not require being enrolled already (issue point 4)
    ("hulunbuir", "pension_subsidy", {**HL_OK, "pension_enrolled": False}, [], ADULT_NM_ID, ELIGIBLE, None, "附件2 备注"),
    (
        "hulunbuir",
        "pension_subsidy",
        {**HL_OK, "employee_pension": True},
        [],
        ADULT_NM_ID,
        EXCLUDED,
        "no_employee_pension",
        "未参加职工基本养老保险",
    ),
    ("hulunbuir", "pension_subsidy", {**HL_OK, "in_school": True}, [], ADULT_NM_ID, EXCLUDED, "not_in_school", "不含在校学生"),
    ("hulunbuir", "pension_subsidy", {**HL_OK, "local_hukou": False}, [], ADULT_NM_ID, EXCLUDED, "local_hukou", "本县户籍"),
]


def _case(region, service, facts, others, applicant_id, insisted=()):
    data = {"services": [service, *others], "facts": dict(facts), "insisted": list(insisted)}
    if applicant_id:
        data["applicant"] = {"id_number": applicant_id}
    return Case(data, load_pack(region), TODAY)


@pytest.mark.parametrize(
    "region,service,facts,others,applicant_id,expected,failed_rule,clause",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[5]}-{c[6] or 'all'}-{i}" for i, c in enumerate(CASES)],
)
def test_rule(region, service, facts, others, applicant_id, expected, failed_rule, clause):
    result = evaluate_service(_case(region, service, facts, others, applicant_id), service)
    assert result["result"] == expected, result
    pack = load_pack(region)
    bases = [r.basis for r in pack.services[service].rules] + [
        pack.services[service].conditions_basis,
        pack.services[service].conditions_text,
    ]
    if failed_rule:
        failed = [r for r in result["rules"] if r["ok"] is False]
        assert [r["id"] for r in failed] == [failed_rule]
        assert clause in failed[0]["basis"], failed[0]["basis"]
    else:
        assert any(clause in b for b in bases), f"{clause!r} names no clause of {service}"


def test_insisting_on_an_excluded_service_records_it_as_may_not_qualify():
    case = _case("qingyang", "nursing_subsidy", {**QY_OK, "disability_level": 3}, [], ADULT_ID, insisted=["nursing_subsidy"])
    assert evaluate_service(case, "nursing_subsidy")["result"] == MAY_NOT_QUALIFY


@pytest.mark.parametrize("region", ["qingyang", "hulunbuir"])
def test_every_rule_material_and_deadline_carries_its_source(region):
    pack = load_pack(region)
    assert pack.raw["scheme"] and pack.raw["window_basis"] and pack.raw["declaration"]["basis"]
    for service in pack.services.values():
        assert service.basis and service.conditions_basis and service.result_basis, service.code
        assert service.deadline.get("basis") and service.deadline.get("text"), service.code
        for rule in service.rules:
            assert rule.basis and rule.reason, (service.code, rule.id)
    for material in pack.materials.values():
        assert material.basis, material.code
    assert pack.assessment.get("basis")
