"""Free text, typed or spoken, understood with jieba and the lexicon in content."""

from __future__ import annotations

import pytest

from dialogs.pack import load_pack
from dialogs.understanding import NO_MATCH, Understanding

LANG = Understanding(load_pack("qingyang"))
PACK = load_pack("qingyang")


@pytest.mark.parametrize(
    "text,services",
    [
        ("我想给儿子办残疾证，再申请护理补贴", ["disability_certificate", "nursing_subsidy"]),
        ("两项补贴", ["living_subsidy", "nursing_subsidy"]),
        ("看病报销和养老保险", ["medical_assistance", "pension_subsidy"]),
        ("办残疾人证。", ["disability_certificate"]),
        ("困难残疾人生活补贴", ["living_subsidy"]),
        ("今天天气不错", []),
    ],
)
def test_services_from_free_text(text, services):
    assert LANG.services_in(text) == services


@pytest.mark.parametrize(
    "text,command",
    [
        ("帮助", "help"),
        ("返回", "back"),
        ("重新开始", "restart"),
        ("取消", "restart"),
        ("人工", "human"),
        ("转人工！", "human"),
        ("进度", "status"),
        ("查询", "status"),
        ("为什么", "why"),
        ("你好", "greet"),
        ("我想查询护理补贴的条件是什么", None),
        ("1", None),
        ("王小明", None),
    ],
)
def test_global_commands(text, command):
    assert LANG.command(text) == command


@pytest.mark.parametrize(
    "text,topic",
    [
        ("护理补贴多少钱", ("amount", ["nursing_subsidy"])),
        ("护理补贴要带什么", ("materials", ["nursing_subsidy"])),
        ("残疾证多久能办好？", ("deadline", ["disability_certificate"])),
        ("在哪里办", ("place", [])),
        ("1", None),
        ("青阳县蓉城镇五溪村12号", None),
    ],
)
def test_policy_questions(text, topic):
    assert LANG.topic(text) == topic


@pytest.mark.parametrize(
    "text,value",
    [
        ("1", True),
        ("一", True),
        ("是的。", True),
        ("2", False),
        ("不是", False),
        ("第二个", False),
        ("9", NO_MATCH),
        ("随便吧", NO_MATCH),
    ],
)
def test_choice_by_number_word_or_voice(text, value):
    assert LANG.choose(text, PACK.questions["fact_local_hukou"]["options"]) == value


@pytest.mark.parametrize("text,value", [("我是他妈妈", "parent"), ("儿子", "child"), ("老伴", "spouse"), ("3", "spouse")])
def test_relation_words(text, value):
    assert LANG.choose(text, PACK.questions["agent_relation"]["options"]) == value


@pytest.mark.parametrize(
    "text,target",
    [
        ("改电话", "applicant_phone"),
        ("电话填错了，我要改电话", "applicant_phone"),
        ("重新选事项", "choose_services"),
        ("修改地址", "household_address"),
        ("改预约", "booking"),
        ("电话", None),
    ],
)
def test_edits_at_the_summary(text, target):
    assert LANG.edit_target(text) == target
