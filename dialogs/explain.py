"""Answers from the pack: "为什么" (the basis of the current question) and policy questions."""

from __future__ import annotations

from dialogs.application import At
from dialogs.conditions import FACTS_READ_BY_CHECK, facts_asked_by
from dialogs.service_roles import CERTIFICATE
from dialogs.turn import Turn

MAX_SERVICES_PER_ANSWER = 3


def why(turn: Turn, state: str) -> str:
    pack = turn.pack
    bases: list[str] = []
    if state.startswith("fact_"):
        facts = facts_asked_by(pack, state)
        for code in turn.case.services or pack.service_order:
            for rule in pack.services[code].rules:
                if FACTS_READ_BY_CHECK[rule.check] in facts:
                    note = pack.text("why_assumption") if "assumption" in rule.params else ""
                    bases.append(f"{pack.services[code].short}{rule.reason}：{rule.basis}{note}")
    elif state in (At.eligibility_notice, At.eligibility_recheck):
        from dialogs.eligibility import evaluate_service, failed_rules

        for code in turn.case.services:
            for failed in failed_rules(evaluate_service(turn.case, code)):
                bases.append(f"{pack.services[code].short}{failed['reason']}：{failed['basis']}")
    elif state == At.booking:
        bases.append(pack.assessment.get("basis", ""))
    elif state == At.summary:
        bases.append(pack.raw["declaration"]["basis"])
    elif state == At.checklist:
        from dialogs.materials import checklist

        bases.extend(f"{item.material.name}：{item.material.basis}" for item in checklist(turn.case)[:6])
    elif state in (At.result_delivery, At.mailing_address):
        bases.append(pack.form.get("result_delivery_basis", ""))
    elif state == At.consent_sensitive:
        bases.append("《中华人民共和国个人信息保护法》第二十八、二十九、三十一条")
    else:
        field = pack.form.get("fields", {}).get(state)
        if field:
            return pack.text("why_field", field=field, basis=pack.form.get("form_basis", ""))
        purpose = pack.questions.get(state, {}).get("why")
        if purpose:  # asked although the county's form has no such field: say so, and why
            return pack.text("why_not_on_form", purpose=purpose)
        bases.append(pack.form.get("form_basis", ""))
    bases = [b for b in dict.fromkeys(bases) if b]
    if not bases:
        return pack.text("why_none")
    return pack.text("why", basis="\n".join(bases))


def answer_topic(turn: Turn, topic: str, services: list[str]) -> str:
    pack = turn.pack
    if topic == "materials" and not services and turn.case.services:
        # "要带什么材料" once services are chosen: the personal checklist, every chosen service
        from dialogs.materials import checklist

        items = checklist(turn.case)
        if items:
            chosen = "、".join(pack.services[c].short for c in turn.case.services)
            listed = "\n".join(f"{i} {item.material.name}" for i, item in enumerate(items, 1))
            return pack.text("materials_for_chosen", services=chosen, materials=listed)
    if topic == "where":
        from dialogs.prompts import recap

        return pack.text("where_now", recap=recap(turn))
    if topic in ("assessment_attend", "home_assessment"):
        return pack.text(topic)
    codes = services or turn.case.services or list(pack.service_order)
    codes = codes[:MAX_SERVICES_PER_ANSWER]
    lines: list[str] = []
    if topic == "assessment_date":
        a = pack.assessment
        lines.append(f"残疾评定：{a.get('time_text') or a.get('text', '')}。（依据：{_doc(a.get('basis', ''))}）")
        if a.get("mental"):
            lines.append(f"{a['mental']['text']}。")
    elif topic == "amount":
        lines.append(f"{pack.raw['amounts']['text']}（依据：{pack.raw['amounts']['basis']}）")
    elif topic == "place":
        a = pack.assessment
        if any(code in codes for code in pack.with_role(CERTIFICATE)) and a.get("place"):
            lines.append(f"残疾评定：{a['time_text']}，地点{a['place']}。（依据：{_doc(a['basis'])}）")
        lines.append(f"申请窗口：{pack.window}。（依据：{pack.raw['window_basis']}）")
    else:
        for code in codes:
            s = pack.services[code]
            if topic == "deadline":
                lines.append(f"{s.short}：{s.deadline.get('text', '')}。（依据：{_doc(s.deadline.get('basis', ''))}）")
            elif topic == "materials":
                names = [pack.materials[m].name for m in s.materials]
                text = "、".join(names) if names else s.raw.get("materials_note", "无需材料")
                lines.append(f"{s.short}要带：{text}。")
            elif topic == "conditions":
                lines.append(f"{s.short}：{s.conditions_text}（依据：{_doc(s.conditions_basis)}）")
            elif topic == "result":
                lines.append(f"{s.short}：{s.result}")
    return "\n".join(lines) or pack.text("unknown_topic")


def _doc(basis: str) -> str:
    return basis.split("：")[0]
