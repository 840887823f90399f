"""The flow as a graph: every step has wording, is reachable, leads on; the diagram is current."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import transitions.core

from dialogs import diagram
from dialogs.answers import READERS
from dialogs.application import FINAL, INITIAL, STEPS, TRANSITIONS
from dialogs.conditions import CONDITIONS, ELIGIBILITY_CHECKS
from dialogs.pack import available_regions, load_pack
from dialogs.prompts import PROMPTS

REGIONS = available_regions()
STEP_NAMES = [s.name for s in STEPS]
MAX_QUESTION_CHARS = 100  # "about 100 Chinese characters", without the filled-in lists


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for t in TRANSITIONS:
        edges[t["source"]].add(t["dest"])
    return edges


def test_both_packs_exist():
    assert {"qingyang", "hulunbuir"} <= set(REGIONS)


@pytest.mark.parametrize("region", REGIONS)
def test_every_step_has_a_question_in_content(region):
    pack = load_pack(region)
    for step in STEPS:
        assert step.name in pack.questions, f"{step.name} has no wording in questions.yaml"
        assert "prompt" in pack.questions[step.name] or step.name in PROMPTS
        for option in pack.questions[step.name].get("options", []):
            assert option["label"] and isinstance(option.get("words", []), list)


@pytest.mark.parametrize("region", REGIONS)
def test_questions_are_short_and_say_what_to_do(region):
    pack = load_pack(region)
    for step in STEPS:
        template = pack.questions[step.name]["prompt"]
        fixed = re.sub(r"\{[a-z_]+\}", "", template)
        assert len(fixed) <= MAX_QUESTION_CHARS, (step.name, len(fixed))
        has_options = bool(pack.questions[step.name].get("options"))
        says_what_to_do = "回复" in template or (not has_options and "请" in template)
        assert says_what_to_do, step.name


def test_every_step_is_reachable_and_none_is_a_dead_end():
    edges = _graph()
    seen, todo = {INITIAL}, [INITIAL]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(STEP_NAMES)
    reverse: dict[str, set[str]] = defaultdict(set)
    for src, dests in edges.items():
        for d in dests:
            reverse[d].add(src)
    reaches_final, todo = {FINAL}, [FINAL]
    while todo:
        for prev in reverse[todo.pop()]:
            if prev not in reaches_final:
                reaches_final.add(prev)
                todo.append(prev)
    assert reaches_final == set(STEP_NAMES)
    for name in STEP_NAMES:
        if name != FINAL:
            assert edges[name], f"{name} leads nowhere"


def test_every_named_condition_and_answer_kind_exists():
    for step in STEPS:
        assert step.answer.split(":")[0] in READERS, step
        assert step.ask_if is None or step.ask_if in CONDITIONS, step
    flow_model_own = {"answered"}  # dialogs/engine.py FlowModel: the current step's answer is known
    for t in TRANSITIONS:
        for c in [*t.get("conditions", []), *t.get("unless", [])]:
            assert c in CONDITIONS or c in flow_model_own, t
    for region in REGIONS:
        pack = load_pack(region)
        for service in pack.services.values():
            for rule in service.rules:
                assert rule.check in ELIGIBILITY_CHECKS, (region, rule.id)
            for m in service.materials:
                assert m in pack.materials, (region, service.code, m)
        for material in pack.materials.values():
            assert material.when is None or material.when in CONDITIONS, (region, material.code)


def test_checked_in_diagram_is_current():
    assert diagram.DIAGRAM_FILE.read_text(encoding="utf-8") == diagram.document(), (
        "docs/application-flow.md is stale: run `python -m dialogs.diagram`"
    )


async def test_the_machine_is_built_at_start_up_not_per_message(make_user, monkeypatch):
    built = []
    original = transitions.core.Machine.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(transitions.core.Machine, "__init__", counting_init)
    user = make_user()
    for text in ("你好", "1", "1", "4", "5"):
        await user.say(text)
    assert built == []
