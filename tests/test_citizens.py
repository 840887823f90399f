"""Measured, not asserted: simulated citizens apply through the real /wechat endpoint.

Each persona (tests/citizens/facts.py: ≥ 40, generated from facts with a seeded random) talks to the
real app (safe mode, on loopback, one app per region for the module, a fresh openid per run) in each
answering style (numbers, words, voice with slips, all_in_one, changes_mind). The citizen
(tests/citizens/answerer.py) reads only the bot's replies. Each run's submitted application is
compared with the persona's facts field by field (tests/citizens/run.py).

Targets (the "conversation" issue, part 4): every run complete with a correct application; no refusal
of an answer a person would give; no question the citizen cannot understand; a guardian applying for
all five in ≤ 20 messages with numbers and ≤ 25 in words. What the bot does not meet today is marked
xfail(strict=True) in KNOWN with the shortcoming quoted from the failing transcript: when the
conversation engine is fixed the run passes, the xfail turns into a failure, and the mark is removed.
The comparison is never weakened to make a run pass.

    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_citizens.py -s
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest

from bot.clock import Clock
from tests.citizens.facts import STYLES, coverage, generate, id_is_valid
from tests.citizens.run import NOW, Apps, Outcome, figures, shortcomings, table, targets_missed

PERSONAS = generate(40)
BY_KEY = {p.key: p for p in PERSONAS}

# (persona, style) → the bot's shortcoming that makes the run miss a target today.
# Regenerate after a change of the bot:  .venv/bin/python benchmarks/citizens.py --known
KNOWN: dict[tuple[str, str], str] = {
    (
        "p00",
        "changes_mind",
    ): "applicant.phone: application has '13887842615', the citizen said '13887842651'; applicant.household_address: application has '电话写错了,应该是13887842651', the citizen said '青阳县庙前镇庙前村上屋组2号'",
    ("p01", "numbers"): "a guardian applying for all five needs 26 messages > 20 (numbers)",
    ("p01", "words"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p01", "voice"): "“帮我女儿申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p01",
        "all_in_one",
    ): "one long first message (“你好，我是曹国庆，帮我女儿巴特尔申请，我是她爸爸…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p01", "changes_mind"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p02", "words"): "“帮我父亲申请” at 请问是谁申请 is read as 本人申请",
    ("p02", "voice"): "“帮我父亲申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p02",
        "all_in_one",
    ): "one long first message (“你好，我是梁宏伟，帮我父亲曹宏伟申请，我是他女儿…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p02", "changes_mind"): "“帮我父亲申请” at 请问是谁申请 is read as 本人申请",
    ("p03", "words"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p03", "voice"): "“帮我老伴申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p03",
        "all_in_one",
    ): "one long first message (“你好，我是其其格，帮我老伴朱志强申请，我是她老伴…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p03", "changes_mind"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p04", "words"): "“帮我哥哥申请” at 请问是谁申请 is read as 本人申请",
    ("p04", "voice"): "“帮我哥哥申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p04",
        "all_in_one",
    ): "one long first message (“你好，我是罗长林，帮我哥哥孙玉梅申请，我是他弟弟…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p04", "changes_mind"): "“帮我哥哥申请” at 请问是谁申请 is read as 本人申请",
    ("p05", "words"): "“帮我爷爷申请” at 请问是谁申请 is read as 本人申请",
    ("p05", "voice"): "“帮我爷爷申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p05",
        "all_in_one",
    ): "one long first message (“你好，我是朱国庆，帮我爷爷阿拉坦申请，我是他侄子…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p05", "changes_mind"): "“帮我爷爷申请” at 请问是谁申请 is read as 本人申请",
    ("p06", "words"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    ("p06", "voice"): "“帮我村民申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p06",
        "all_in_one",
    ): "one long first message (“你好，我是赵秀英，帮我村民何德福申请，我是他邻居…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p06", "changes_mind"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    (
        "p08",
        "changes_mind",
    ): "applicant.phone: application has '18618632513', the citizen said '18618632531'; applicant.household_address: application has '电话写错了,应该是18618632531', the citizen said '青阳县陵阳镇陵阳村桥头组5号'",
    ("p09", "words"): "“帮我儿子申请” at 请问是谁申请 is read as 本人申请",
    ("p09", "voice"): "“帮我儿子申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p09",
        "all_in_one",
    ): "one long first message (“你好，我是周晓东，帮我儿子林建国申请，我是他爸爸…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p09", "changes_mind"): "“帮我儿子申请” at 请问是谁申请 is read as 本人申请",
    ("p10", "words"): "“帮我爸爸申请” at 请问是谁申请 is read as 本人申请",
    ("p10", "voice"): "“帮我爸爸申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p10",
        "all_in_one",
    ): "one long first message (“你好，我是郑丽娟，帮我爸爸李小宝申请，我是他女儿…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p10", "changes_mind"): "“帮我爸爸申请” at 请问是谁申请 is read as 本人申请",
    ("p11", "numbers"): "a guardian applying for all five needs 28 messages > 20 (numbers)",
    ("p11", "words"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p11", "voice"): "“帮我老伴申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p11",
        "all_in_one",
    ): "one long first message (“你好，我是萨仁，帮我老伴周长林申请，我是她老伴，…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p11", "changes_mind"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p12", "words"): "“帮我弟弟申请” at 请问是谁申请 is read as 本人申请",
    ("p12", "voice"): "“帮我弟弟申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p12",
        "all_in_one",
    ): "one long first message (“你好，我是杨建国，帮我弟弟许淑珍申请，我是他弟弟…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p12", "changes_mind"): "“帮我弟弟申请” at 请问是谁申请 is read as 本人申请",
    ("p13", "words"): "“帮我姑姑申请” at 请问是谁申请 is read as 本人申请",
    ("p13", "voice"): "“帮我姑姑申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p13",
        "all_in_one",
    ): "one long first message (“你好，我是邓金凤，帮我姑姑赵大山申请，我是她孙子…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p13", "changes_mind"): "“帮我姑姑申请” at 请问是谁申请 is read as 本人申请",
    ("p14", "words"): "“帮我邻居申请” at 请问是谁申请 is read as 本人申请",
    ("p14", "voice"): "“帮我邻居申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p14",
        "all_in_one",
    ): "one long first message (“你好，我是冯桂兰，帮我邻居杨雪梅申请，我是她网格…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p14", "changes_mind"): "“帮我邻居申请” at 请问是谁申请 is read as 本人申请",
    (
        "p15",
        "changes_mind",
    ): "applicant.phone: application has '13933161892', the citizen said '13933161829'; applicant.household_address: application has '电话写错了,应该是13933161829', the citizen said '内蒙古呼伦贝尔市满洲里市东山街道二道街15号'",
    ("p17", "words"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p17", "voice"): "“帮我女儿申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p17",
        "all_in_one",
    ): "one long first message (“你好，我是罗晓东，帮我女儿邓小军申请，我是她妈妈…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p17", "changes_mind"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p18", "words"): "“帮我妈妈申请” at 请问是谁申请 is read as 本人申请",
    ("p18", "voice"): "“帮我妈妈申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p18",
        "all_in_one",
    ): "one long first message (“你好，我是吴小宝，帮我妈妈梁翠兰申请，我是她儿子…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p18", "changes_mind"): "“帮我妈妈申请” at 请问是谁申请 is read as 本人申请",
    ("p19", "words"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p19", "voice"): "“帮我老伴申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p19",
        "all_in_one",
    ): "one long first message (“你好，我是王海燕，帮我老伴陈翠兰申请，我是他爱人…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p19", "changes_mind"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p20", "words"): "“帮我妹妹申请” at 请问是谁申请 is read as 本人申请",
    ("p20", "voice"): "“帮我妹妹申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p20",
        "all_in_one",
    ): "one long first message (“你好，我是罗桂兰，帮我妹妹孙宏伟申请，我是她妹妹…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p20", "changes_mind"): "“帮我妹妹申请” at 请问是谁申请 is read as 本人申请",
    ("p21", "numbers"): "a guardian applying for all five needs 27 messages > 20 (numbers)",
    ("p21", "words"): "“帮我奶奶申请” at 请问是谁申请 is read as 本人申请",
    ("p21", "voice"): "“帮我奶奶申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p21",
        "all_in_one",
    ): "one long first message (“你好，我是李大山，帮我奶奶赵晓东申请，我是她孙子…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p21", "changes_mind"): "“帮我奶奶申请” at 请问是谁申请 is read as 本人申请",
    ("p22", "words"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    ("p22", "voice"): "“帮我村民申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p22",
        "all_in_one",
    ): "one long first message (“你好，我是黄玉梅，帮我村民宋翠兰申请，我是他网格…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p22", "changes_mind"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    (
        "p24",
        "changes_mind",
    ): "applicant.phone: application has '13943594092', the citizen said '13943594029'; applicant.household_address: application has '电话写错了,应该是13943594029', the citizen said '青阳县陵阳镇陵阳村桥头组5号'",
    ("p25", "words"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p25", "voice"): "“帮我女儿申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p25",
        "all_in_one",
    ): "one long first message (“你好，我是黄国庆，帮我女儿吴小军申请，我是她爸爸…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p25", "changes_mind"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p26", "numbers"): "a guardian applying for all five needs 22 messages > 20 (numbers)",
    ("p26", "words"): "“帮我母亲申请” at 请问是谁申请 is read as 本人申请",
    ("p26", "voice"): "“帮我母亲申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p26",
        "all_in_one",
    ): "one long first message (“你好，我是胡玉梅，帮我母亲杨志强申请，我是她女儿…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p26", "changes_mind"): "“帮我母亲申请” at 请问是谁申请 is read as 本人申请",
    ("p27", "words"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p27", "voice"): "“帮我老伴申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p27",
        "all_in_one",
    ): "one long first message (“你好，我是何国庆，帮我老伴斯琴申请，我是她爱人，…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p27", "changes_mind"): "“帮我老伴申请” at 请问是谁申请 is read as 本人申请",
    ("p28", "words"): "“帮我哥哥申请” at 请问是谁申请 is read as 本人申请",
    ("p28", "voice"): "“帮我哥哥申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p28",
        "all_in_one",
    ): "one long first message (“你好，我是郭雪梅，帮我哥哥梁桂兰申请，我是他妹妹…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p28", "changes_mind"): "“帮我哥哥申请” at 请问是谁申请 is read as 本人申请",
    ("p29", "words"): "“帮我姑姑申请” at 请问是谁申请 is read as 本人申请",
    ("p29", "voice"): "“帮我姑姑申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p29",
        "all_in_one",
    ): "one long first message (“你好，我是朱文斌，帮我姑姑罗秀英申请，我是她外甥…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p29", "changes_mind"): "“帮我姑姑申请” at 请问是谁申请 is read as 本人申请",
    ("p30", "words"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    ("p30", "voice"): "“帮我村民申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p30",
        "all_in_one",
    ): "one long first message (“你好，我是曹桂兰，帮我村民徐淑珍申请，我是他邻居…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p30", "changes_mind"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    (
        "p32",
        "changes_mind",
    ): "applicant.phone: application has '15044901786', the citizen said '15044901768'; applicant.household_address: application has '电话写错了,应该是15044901768', the citizen said '青阳县庙前镇庙前村上屋组2号'",
    ("p33", "words"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p33", "voice"): "“帮我女儿申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p33",
        "all_in_one",
    ): "one long first message (“你好，我是乌云，帮我女儿许金凤申请，我是她妈妈，…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p33", "changes_mind"): "“帮我女儿申请” at 请问是谁申请 is read as 本人申请",
    ("p34", "words"): "“帮我母亲申请” at 请问是谁申请 is read as 本人申请",
    ("p34", "voice"): "“帮我母亲申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p34",
        "all_in_one",
    ): "one long first message (“你好，我是许小军，帮我母亲林晓东申请，我是她儿子…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p34", "changes_mind"): "“帮我母亲申请” at 请问是谁申请 is read as 本人申请",
    ("p35", "words"): "“帮我爱人申请” at 请问是谁申请 is read as 本人申请",
    ("p35", "voice"): "“帮我爱人申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p35",
        "all_in_one",
    ): "one long first message (“你好，我是梁小军，帮我爱人李玉梅申请，我是他爱人…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p35", "changes_mind"): "“帮我爱人申请” at 请问是谁申请 is read as 本人申请",
    ("p36", "words"): "“帮我哥哥申请” at 请问是谁申请 is read as 本人申请",
    ("p36", "voice"): "“帮我哥哥申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p36",
        "all_in_one",
    ): "one long first message (“你好，我是周德福，帮我哥哥梁巧云申请，我是他妹妹…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p36", "changes_mind"): "“帮我哥哥申请” at 请问是谁申请 is read as 本人申请",
    ("p37", "words"): "“帮我舅舅申请” at 请问是谁申请 is read as 本人申请",
    ("p37", "voice"): "“帮我舅舅申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p37",
        "all_in_one",
    ): "one long first message (“你好，我是额尔敦，帮我舅舅李桂兰申请，我是他侄子…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p37", "changes_mind"): "“帮我舅舅申请” at 请问是谁申请 is read as 本人申请",
    ("p38", "words"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
    ("p38", "voice"): "“帮我村民申请。” at 请问是谁申请 is read as 本人申请",
    (
        "p38",
        "all_in_one",
    ): "one long first message (“你好，我是郭海燕，帮我村民郑翠兰申请，我是他网格…”) is read as the answer to 请问是谁申请: 本人申请",
    ("p38", "changes_mind"): "“帮我村民申请” at 请问是谁申请 is read as 本人申请",
}


def _case(persona, style):
    marks = []
    reason = KNOWN.get((persona.key, style))
    if reason:
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return pytest.param(persona.key, style, marks=marks, id=f"{persona.key}-{style}")


CASES = [_case(p, s) for p in PERSONAS for s in STYLES]
OUTCOMES: dict[tuple[str, str], Outcome] = {}


@pytest.fixture(scope="module")
def citizens(redis_url, tmp_path_factory):
    """The real app of each region, started once for the module on its own event loop, on a clock
    frozen at Monday 2026-11-23 10:00; Redis (REDIS_URL's database) flushed once before the runs."""
    import redis.asyncio as aioredis

    loop = asyncio.new_event_loop()

    async def flush():
        client = aioredis.from_url(redis_url)
        await client.flushdb()
        await client.aclose()

    loop.run_until_complete(flush())
    clock = Clock(frozen_at=datetime.fromisoformat(NOW).timestamp())
    clock.set(NOW)
    apps = Apps(redis_url, tmp_path_factory.mktemp("citizens-var"), clock)

    def run(key: str, style: str) -> Outcome:
        if (key, style) not in OUTCOMES:
            OUTCOMES[(key, style)] = loop.run_until_complete(apps.run(BY_KEY[key], style))
        return OUTCOMES[(key, style)]

    yield run
    loop.run_until_complete(apps.close())
    loop.close()


def test_personas_cover_the_facts():
    assert len(PERSONAS) >= 40 and len({p.key for p in PERSONAS}) == len(PERSONAS)
    assert [p.applicant.id_number for p in generate(40)] == [p.applicant.id_number for p in PERSONAS], "not deterministic"
    cov = coverage(PERSONAS)
    assert cov["relation"] == {None, "parent", "child", "spouse", "sibling", "relative", "other"}
    assert cov["category"] == set(range(1, 8))
    assert cov["level"] == {1, 2, 3, 4, None}
    assert cov["holds"] == {True, False}
    assert cov["hardship"] >= {
        "dibao_urban",
        "dibao_rural",
        "tekun",
        "dibao_edge",
        "tuopin",
        "monitored",
        "illness_poverty",
        "none",
    }
    assert cov["region"] == {"qingyang", "hulunbuir"} and cov["hukou"] == {True, False}
    assert {"minor", "elderly"} <= cov["tags"]
    assert "returned_to_poverty" in cov["hardship"]
    assert cov["in_school"] == {True, False} and cov["employee_pension"] == {True, False}
    assert cov["certificate_trouble"] >= {None, "lost", "damaged", "reassess"}
    assert cov["legal_guardian"] == {True, False}
    assert any(len(p.hardships) > 1 for p in PERSONAS)
    assert any(p.agent is not None and len(p.services) == 5 for p in PERSONAS)
    for p in PERSONAS:
        assert id_is_valid(p.applicant.id_number) and (p.agent is None or id_is_valid(p.agent.id_number))
        assert p.applicant.id_number[:6] in (("341723",) if p.region == "qingyang" else ("150702", "150781", "150783", "150721"))
        if p.age < 18:
            assert p.agent is not None, f"{p.key}: a minor applies through a guardian"
        if p.in_school:
            assert 16 <= p.age <= 24, f"{p.key}: a student of {p.age}"
        if p.certificate_trouble:
            assert p.holds_certificate and "disability_certificate" in p.services
        assert set(p.subsidy_reasons) == {s for s in p.services if s in ("living_subsidy", "nursing_subsidy")}
        if p.certificate_no:
            assert p.certificate_no == f"{p.applicant.id_number}{p.category}{p.level}" and len(p.certificate_no) == 20


@pytest.mark.parametrize("key,style", CASES)
def test_citizen(citizens, key, style):
    persona = BY_KEY[key]
    outcome = citizens(key, style)
    missed = targets_missed(outcome, persona)
    assert not missed, (
        persona.describe()
        + "\n"
        + "\n".join(missed)
        + "\nwhy: "
        + " | ".join(shortcomings(outcome, persona))
        + "\n"
        + outcome.text()
    )


def test_figures(citizens, tmp_path_factory):
    """The figures of all the runs (those the tests above made, and any that -k left out)."""
    for p in PERSONAS:
        for s in STYLES:
            citizens(p.key, s)
    outcomes = [OUTCOMES[(p.key, s)] for p in PERSONAS for s in STYLES]
    figs = figures(outcomes)
    assert figs["all"]["runs"] == len(PERSONAS) * len(STYLES) == len(outcomes)
    assert all(o.messages == len(o.transcript) > 0 for o in outcomes), "a run sent nothing"
    assert figs["all"]["refusals"] == sum(o.refusals for o in outcomes)
    assert sum(b["runs"] for b in figs["by_style"].values()) == figs["all"]["runs"]
    missed = {(o.persona, o.style) for o in outcomes if targets_missed(o, BY_KEY[o.persona])}
    print(
        f"\nsimulated citizens: {len(PERSONAS)} personas × {len(STYLES)} styles = {len(outcomes)} conversations, "
        f"{len(missed)} miss a target (xfail: {len(KNOWN)})"
    )
    print(table(figs))
    out = tmp_path_factory.mktemp("citizens") / "figures.json"
    out.write_text(json.dumps(figs, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"figures written to {out}")
    # the marks say exactly which runs miss a target today (strict xfail catches the other direction)
    assert missed <= set(KNOWN), f"runs that miss a target without a KNOWN mark: {sorted(missed - set(KNOWN))}"
