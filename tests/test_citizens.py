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
        "words",
    ): "“生活补贴、护理补贴和养老保险补助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p00",
        "voice",
    ): "“生活补贴、护理补贴和养老保险补助都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日。' refused: “请回复选项前面的数字。”",
    ("p00", "all_in_one"): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']",
    (
        "p00",
        "changes_mind",
    ): "“生活补贴、护理补贴和养老保险补助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p01",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; a guardian applying for all five needs 32 messages > 20 (numbers)",
    (
        "p01",
        "words",
    ): "“家里是农村低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; a guardian applying for all five needs 31 messages > 25 (words); '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p01",
        "voice",
    ): "“家里是农村低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '一及。' refused: “请回复选项前面的数字。”; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p01",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p01",
        "changes_mind",
    ): "“家里是农村低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    ("p02", "words"): "'12月11日' refused: “请回复选项前面的数字。”",
    ("p02", "voice"): "'12月11日。' refused: “请回复选项前面的数字。”",
    ("p02", "all_in_one"): "'12月11日' refused: “请回复选项前面的数字。”",
    ("p02", "changes_mind"): "'12月11日' refused: “请回复选项前面的数字。”",
    (
        "p03",
        "voice",
    ): "'想办护理不贴。' refused: “请回复事项前的数字，可以多选，如“1 3”。”; '两及。' refused: “请回复选项前面的数字。”",
    (
        "p04",
        "voice",
    ): "'想办生活不贴。' refused: “请回复事项前的数字，可以多选，如“1 3”。”; '三及。' refused: “请回复选项前面的数字。”",
    ("p05", "words"): "'寄到家里' refused: “请回复选项前面的数字。”",
    ("p05", "voice"): "'寄到家里。' refused: “请回复选项前面的数字。”",
    ("p05", "all_in_one"): "'寄到家里' refused: “请回复选项前面的数字。”",
    ("p05", "changes_mind"): "'寄到家里' refused: “请回复选项前面的数字。”",
    ("p06", "numbers"): "a guardian applying for all five needs 24 messages > 20 (numbers)",
    ("p06", "words"): "'12月11日' refused: “请回复选项前面的数字。”",
    ("p06", "voice"): "'12月11日。' refused: “请回复选项前面的数字。”",
    ("p06", "all_in_one"): "'12月11日' refused: “请回复选项前面的数字。”",
    ("p06", "changes_mind"): "'12月11日' refused: “请回复选项前面的数字。”",
    (
        "p08",
        "words",
    ): "“残疾证、生活补贴、护理补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户，也是脱贫户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban', 'tuopin'], the family is ['dibao_urban', 'tuopin']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p08",
        "voice",
    ): "“残疾证、生活补贴、护理补贴和医疗救助都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户，也是脱贫户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban', 'tuopin'], the family is ['dibao_urban', 'tuopin']; '12月11日。' refused: “请回复选项前面的数字。”",
    (
        "p08",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban', 'tuopin'], the family is ['dibao_urban', 'tuopin']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p08",
        "changes_mind",
    ): "“残疾证、生活补贴、护理补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户，也是脱贫户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban', 'tuopin'], the family is ['dibao_urban', 'tuopin']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p09",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：离不开人，家里要有…” is recorded as the reason of each",
    (
        "p09",
        "words",
    ): "“家里是农村低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：离不开人，家里要有…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p09",
        "voice",
    ): "“家里是农村低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：离不开人，家里要有…” is recorded as the reason of each; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p09",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：离不开人，家里要有…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p09",
        "changes_mind",
    ): "“不对，刚才说错了，是言语残疾” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：离不开人，家里要有…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p11",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each; a guardian applying for all five needs 28 messages > 20 (numbers)",
    (
        "p11",
        "words",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each; a guardian applying for all five needs 27 messages > 25 (words)",
    (
        "p11",
        "voice",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p11",
        "all_in_one",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p11",
        "changes_mind",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p12",
        "words",
    ): "“生活补贴和护理补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”",
    (
        "p12",
        "voice",
    ): "“生活补贴和护理补贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '两及。' refused: “请回复选项前面的数字。”",
    ("p12", "changes_mind"): "“电话写错了，应该是15074254481” at 要办哪些事 is read as “好的，已改过来了。”",
    (
        "p13",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each",
    (
        "p13",
        "words",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p13",
        "voice",
    ): "“我想办生活不贴、护理补贴、医疗救助和养老保险补助。” at 要办哪些事 is read as “护理补贴、医疗救助、养老保险代缴”; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '两及。' refused: “请回复选项前面的数字。”; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p13",
        "all_in_one",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p13",
        "changes_mind",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p14",
        "words",
    ): "“残疾证和生活补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p14",
        "voice",
    ): "“残疾证和生活补贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '12月11日。' refused: “请回复选项前面的数字。”",
    ("p14", "all_in_one"): "'12月11日' refused: “请回复选项前面的数字。”",
    (
        "p14",
        "changes_mind",
    ): "“电话写错了，应该是15058284662” at 要办哪些事 is read as “好的，已改过来了。”; '12月11日' refused: “请回复选项前面的数字。”",
    ("p15", "voice"): "'想办生活不贴。' refused: “请回复事项前的数字，可以多选，如“1 3”。”",
    (
        "p16",
        "words",
    ): "“家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p16",
        "voice",
    ): "“家里是城镇低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日。' refused: “请回复选项前面的数字。”",
    (
        "p16",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p16",
        "changes_mind",
    ): "“家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p17",
        "words",
    ): "“家里是农村低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p17",
        "voice",
    ): "“我想办残疾证、生活不贴和医疗救助。” at 要办哪些事 is read as “残疾人证、医疗救助”; “家里是农村低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p17",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p17",
        "changes_mind",
    ): "“不对，刚才说错了，是肢体残疾” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p18",
        "words",
    ): "“残疾证、生活补贴和护理补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '12月11日' refused: “请回复选项前面的数字。”",
    (
        "p18",
        "voice",
    ): "“残疾证、生活补贴和护理补贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日。' refused: “请回复选项前面的数字。”",
    ("p18", "all_in_one"): "'1月11日' refused: “请回复选项前面的数字。”",
    (
        "p18",
        "changes_mind",
    ): "“电话写错了，应该是13940932082” at 要办哪些事 is read as “好的，已改过来了。”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p20",
        "words",
    ): "“残疾证、生活补贴和护理补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '家里是返贫户' refused: “请回复选项前面的数字。”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p20",
        "voice",
    ): "“残疾证、生活不贴和护理补贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '家里是返贫户。' refused: “请回复选项前面的数字。”; '1月11日。' refused: “请回复选项前面的数字。”",
    ("p20", "all_in_one"): "'家里是返贫户' refused: “请回复选项前面的数字。”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p20",
        "changes_mind",
    ): "“电话写错了，应该是13843921814” at 要办哪些事 is read as “好的，已改过来了。”; '家里是返贫户' refused: “请回复选项前面的数字。”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p21",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; a guardian applying for all five needs 30 messages > 20 (numbers)",
    (
        "p21",
        "words",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; a guardian applying for all five needs 30 messages > 25 (words); '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p21",
        "voice",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '一及。' refused: “请回复选项前面的数字。”; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p21",
        "all_in_one",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p21",
        "changes_mind",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：瘫痪在床，需要人护…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p22",
        "words",
    ): "“护理补贴、医疗救助和养老保险补助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p22",
        "voice",
    ): "“护理不贴、医疗救助和养老保险补助都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日。' refused: “请回复选项前面的数字。”",
    (
        "p22",
        "changes_mind",
    ): "“护理补贴、医疗救助和养老保险补助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p24",
        "words",
    ): "“残疾证和生活补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p24",
        "voice",
    ): "“残疾证和生活不贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '三及。' refused: “请回复选项前面的数字。”; '1月11日。' refused: “请回复选项前面的数字。”",
    (
        "p24",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p24",
        "changes_mind",
    ): "“残疾证和生活补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p25",
        "words",
    ): "“家里是农村低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p25",
        "voice",
    ): "“家里是农村低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p25",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p25",
        "changes_mind",
    ): "“不对，刚才说错了，是智力残疾” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_rural'], the family is ['dibao_rural']; '寄到家里' refused: “请回复选项前面的数字。”",
    ("p26", "numbers"): "a guardian applying for all five needs 22 messages > 20 (numbers)",
    (
        "p28",
        "words",
    ): "“残疾证和生活补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p28",
        "voice",
    ): "“残疾证和生活不贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日。' refused: “请回复选项前面的数字。”",
    ("p28", "all_in_one"): "'1月11日' refused: “请回复选项前面的数字。”",
    (
        "p28",
        "changes_mind",
    ): "“电话写错了，应该是15135118193” at 要办哪些事 is read as “好的，已改过来了。”; '1月11日' refused: “请回复选项前面的数字。”",
    ("p29", "words"): "'寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p29",
        "voice",
    ): "“我想办残疾证、护理不贴和医疗救助。” at 要办哪些事 is read as “残疾人证、医疗救助”; '寄到家里。' refused: “请回复选项前面的数字。”",
    ("p29", "all_in_one"): "'寄到家里' refused: “请回复选项前面的数字。”",
    ("p29", "changes_mind"): "'寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p30",
        "words",
    ): "“生活补贴和护理补贴都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p30",
        "voice",
    ): "“生活补贴和护理补贴都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '一及。' refused: “请回复选项前面的数字。”; '1月11日。' refused: “请回复选项前面的数字。”",
    (
        "p30",
        "changes_mind",
    ): "“电话写错了，应该是15817398327” at 要办哪些事 is read as “好的，已改过来了。”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p31",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p31",
        "words",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p31",
        "voice",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each; '一及。' refused: “请回复选项前面的数字。”",
    (
        "p31",
        "all_in_one",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p31",
        "changes_mind",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：家里没有收入，生活困难；护理补贴：离不开人，家里要…” is recorded as the reason of each",
    (
        "p32",
        "words",
    ): "“残疾证、生活补贴、护理补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p32",
        "voice",
    ): "“残疾证、生活补贴、护理补贴和医疗救助都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日。' refused: “请回复选项前面的数字。”",
    (
        "p32",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p32",
        "changes_mind",
    ): "“残疾证、生活补贴、护理补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; “家里是城镇低保户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_urban'], the family is ['dibao_urban']; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p33",
        "numbers",
    ): "one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each",
    (
        "p33",
        "words",
    ): "“家里是农村低保户，也是低保边缘户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_edge', 'dibao_rural'], the family is ['dibao_rural', 'dibao_edge']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p33",
        "voice",
    ): "“家里是农村低保户，也是低保边缘户。” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_edge', 'dibao_rural'], the family is ['dibao_rural', 'dibao_edge']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '寄到家里。' refused: “请回复选项前面的数字。”",
    (
        "p33",
        "all_in_one",
    ): "“?” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_edge', 'dibao_rural'], the family is ['dibao_rural', 'dibao_edge']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p33",
        "changes_mind",
    ): "“家里是农村低保户，也是低保边缘户” at 家里属于哪种情况 is recorded as ['dibao', 'dibao_edge', 'dibao_rural'], the family is ['dibao_rural', 'dibao_edge']; one 申请理由 is asked for 生活补贴、护理补贴: “生活补贴：看病花销大，家庭困难；护理补贴：生活不能自理，长期…” is recorded as the reason of each; '寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p34",
        "words",
    ): "“生活补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '1月11日' refused: “请回复选项前面的数字。”",
    (
        "p34",
        "voice",
    ): "“生活补贴和医疗救助都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '三及。' refused: “请回复选项前面的数字。”; '2月11日。' refused: “请回复选项前面的数字。”",
    (
        "p34",
        "changes_mind",
    ): "“生活补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '2月11日' refused: “请回复选项前面的数字。”",
    ("p36", "numbers"): "a guardian applying for all five needs 24 messages > 20 (numbers)",
    ("p36", "words"): "'2月11日' refused: “请回复选项前面的数字。”",
    ("p36", "voice"): "'2月11日。' refused: “请回复选项前面的数字。”",
    ("p36", "all_in_one"): "'2月11日' refused: “请回复选项前面的数字。”",
    ("p36", "changes_mind"): "'2月11日' refused: “请回复选项前面的数字。”",
    ("p37", "words"): "'寄到家里' refused: “请回复选项前面的数字。”",
    ("p37", "voice"): "'寄到家里。' refused: “请回复选项前面的数字。”",
    ("p37", "all_in_one"): "'寄到家里' refused: “请回复选项前面的数字。”",
    ("p37", "changes_mind"): "'寄到家里' refused: “请回复选项前面的数字。”",
    (
        "p38",
        "words",
    ): "“残疾证、生活补贴和医疗救助都要办” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '2月11日' refused: “请回复选项前面的数字。”",
    (
        "p38",
        "voice",
    ): "“残疾证、生活补贴和医疗救助都要办。” at 要办哪些事 is read as “残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助”; '2月11日。' refused: “请回复选项前面的数字。”",
    ("p38", "all_in_one"): "'2月11日' refused: “请回复选项前面的数字。”",
    (
        "p38",
        "changes_mind",
    ): "“电话写错了，应该是13946142875” at 要办哪些事 is read as “好的，已改过来了。”; '2月11日' refused: “请回复选项前面的数字。”",
    ("p39", "voice"): "“我想办残疾证和护理不贴。” at 要办哪些事 is read as “残疾人证”",
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
