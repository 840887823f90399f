"""The question of each step, filled in from the application so far. Wording is content."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from dialogs import assessment
from dialogs.answers import delivery_options, slot_lines
from dialogs.application import At
from dialogs.conditions import (
    consent_asks_guardian,
    hardship_claimed,
    hardship_statuses,
    holds_certificate,
    needs_guardian_consent,
    on_mental_waitlist,
    publicity_skipped,
)
from dialogs.deadlines import expected_date
from dialogs.eligibility import (
    MAY_NOT_QUALIFY,
    PENDING,
    evaluate_service,
    excluded_by_assumption,
    excluded_services,
    failed_rules,
    suggested_services,
)
from dialogs.materials import checklist
from dialogs.routing import outside_area, routing
from dialogs.service_roles import CERTIFICATE, DISABILITY_SUBSIDY, service_menu
from dialogs.slots import applicant_called
from dialogs.turn import Turn
from dialogs.validators import mask_id
from dialogs.workdays import is_certain

GENDER = {"male": "男", "female": "女"}


async def applicant_name(turn: Turn) -> str:
    key = "prompt_self" if turn.data.get("who") == "self" else "prompt"
    return turn.pack.q(At.applicant_name, key, applicant=applicant_called(turn))


async def applicant_phone(turn: Turn) -> str:
    key = "prompt_agent" if turn.data.get("who") == "agent" else "prompt"
    return turn.pack.q(At.applicant_phone, key, applicant=applicant_called(turn))


async def subsidy_reason(turn: Turn) -> str:
    return turn.pack.q(
        At.subsidy_reason, "prompt_both" if all(turn.case.chose(c) for c in turn.pack.with_role(DISABILITY_SUBSIDY)) else "prompt"
    )


async def suggest_services(turn: Turn) -> str:
    suggested = suggested_services(turn.case)
    if not suggested:
        return turn.pack.q(At.suggest_services, "nothing")
    names = "\n".join(f"· {turn.pack.services[c].name}" for c in suggested)
    return turn.pack.q(At.suggest_services, suggested=names)


def _notices(turn: Turn) -> str:
    q = turn.pack.questions[At.eligibility_notice]
    lines = []
    for code in excluded_services(turn.case):
        service = turn.pack.services[code]
        assumed = {r.id for r in service.rules if "assumption" in r.params}
        for rule in failed_rules(evaluate_service(turn.case, code))[:1]:
            # A rule the seed does not state is never told as the scheme's rule.
            key = "line_assumption" if rule["id"] in assumed else "line"
            lines.append(q[key].format(service=service.short, reason=rule["reason"], basis=_short_basis(rule["basis"])))
    return "\n".join(lines)


def assumption_notes(turn: Turn) -> str:
    """Told once, before the next question: a chosen service that only a rule the seed does not state
    excludes goes on, for the clerk to decide (as if insisted on); the citizen is not asked."""
    q = turn.pack.questions[At.eligibility_notice]
    lines = []
    for code in excluded_by_assumption(turn.case):
        for rule in failed_rules(evaluate_service(turn.case, code))[:1]:
            lines.append(q["line_noted"].format(service=turn.pack.services[code].short, reason=rule["reason"]))
        turn.data["assumed"] = [*turn.data.get("assumed", []), code]
    return "\n".join(lines)


async def eligibility_notice(turn: Turn) -> str:
    return turn.pack.q(At.eligibility_notice, notices=_notices(turn))


async def eligibility_recheck(turn: Turn) -> str:
    return turn.pack.q(At.eligibility_recheck, notices=_notices(turn))


def _short_basis(basis: str) -> str:
    """The document number of a basis, without the quoted clause (kept for "为什么")."""
    return basis.split("：")[0].split("，")[0]


async def checklist_prompt(turn: Turn, template: str = "prompt") -> str:
    q = turn.pack.questions[At.checklist]
    items = checklist(turn.case)
    if not items:
        return q["none_needed"] if template == "prompt" else ""
    photos = turn.data.get("photos", {})
    lines = []
    for i, item in enumerate(items, 1):
        needed_by = "、".join(turn.pack.services[s].short for s in item.services)
        mark = q["photo_mark"] if item.material.code in photos else ""
        lines.append(f"{i} {item.material.name}{mark}" + q["needed_by"].format(services=needed_by))
    return turn.pack.q(At.checklist, template, materials="\n".join(lines))


async def tell(turn: Turn, state: str) -> str:
    """What a step told, not asked, says before the question that follows it (Step.told_with)."""
    if state == At.checklist:
        return await checklist_prompt(turn, "told")
    raise ValueError(f"{state} is not told")


def numbered(options: list[dict]) -> str:
    """An option list as shown: each option's `line` (else its label), numbered from 1 as the readers count."""
    return "\n".join(f"{n} {o.get('line', o['label'])}" for n, o in enumerate(options, 1))


async def result_delivery(turn: Turn) -> str:
    return turn.pack.q(At.result_delivery, options=numbered(delivery_options(turn)))


async def booking(turn: Turn) -> str:
    slots = await slot_lines(turn)
    if not slots:
        return turn.pack.q(At.booking, "none")
    return turn.pack.q(At.booking, slots=slots)


async def summary(turn: Turn) -> str:
    q = turn.pack.questions[At.summary]
    data = turn.data
    a = data.get("applicant", {})
    facts = turn.case.facts
    lines = [
        q["applicant"].format(name=a.get("name", ""), gender=GENDER.get(a.get("gender"), ""), birth=a.get("birth_date", "")),
        q["id"].format(id=mask_id(a["id_number"])) if a.get("id_number") else "",
        q["phone"].format(phone=a.get("phone", "")),
        q["address"].format(address=a.get("household_address", "")),
    ]
    if data.get("who") == "agent" and data.get("agent"):
        ag = data["agent"]
        relation = _label(turn, At.agent_relation, ag.get("relation"))
        lines.append(q["agent"].format(name=ag.get("name", ""), relation=relation, phone=ag.get("phone", "")))
    if "disability_category" in facts:
        level = facts.get("disability_level")
        lines.append(
            q["disability"].format(
                category=_label(turn, At.fact_disability_category, facts["disability_category"]),
                level=" " + _label(turn, At.fact_disability_level, level) if level else "",
            )
        )
    if data.get("certificate_no"):
        lines.append(q["certificate"].format(certificate=mask_id(data["certificate_no"])))
    if hardship_claimed(turn.case):
        labels = [_label(turn, At.fact_hardship_status, v) for v in sorted(hardship_statuses(turn.case) or ())]
        lines.append(q["hardship"].format(hardship="、".join(labels)))
    if data.get("delivery"):
        lines.append(q["delivery"].format(delivery=_label(turn, At.result_delivery, data["delivery"])))
    lines.append(q["services_header"])
    for code in turn.case.services:
        service = turn.pack.services[code]
        result = evaluate_service(turn.case, code)["result"]
        # A result that waits for the assessment has no date of its own yet.
        expected = None if result == PENDING else expected_date(turn, code)
        flag = q["may_not_qualify"] if result == MAY_NOT_QUALIFY else q["pending"] if result == PENDING else ""
        if not flag and service.deadline.get("from") == "certificate" and not holds_certificate(turn.case):
            flag = q["after_certificate"]
        if publicity_skipped(turn.case, code):
            flag += q["no_publicity"]
        lines.append(
            q["service_line"].format(
                service=service.short,
                deadline=service.deadline.get("text", ""),
                expected=f"，约{assessment.format_day(expected)}" if expected else "",
                flag=flag,
            )
        )
        for note in service.raw.get("notes", []):
            lines.append(q["note"].format(note=note["text"]))
    booking_ = data.get("booking")
    if booking_ and turn.case.chose_role(CERTIFICATE):
        day = date.fromisoformat(booking_["session_date"])
        lines.append(
            q["appointment"].format(date=assessment.format_day(day), period=booking_["period"], place=booking_["place"])
            + ("" if is_certain(turn.calendar, day) else q["uncertain"])
        )
    elif on_mental_waitlist(turn.case):
        lines.append(turn.pack.q(At.summary, "waitlist"))
    items = checklist(turn.case)
    if items:
        photos = sum(1 for i in items if i.material.code in data.get("photos", {}))
        lines.append(q["materials"].format(count=len(items), photos=q["photos"].format(count=photos) if photos else ""))
    return turn.pack.q(
        At.summary, details="\n".join(line for line in lines if line), declaration=turn.pack.raw["declaration"]["text"]
    )


def _label(turn: Turn, question: str, value) -> str:
    q = turn.pack.questions[question]
    for option in [*q.get("options", []), *q.get("unnumbered", [])]:
        if option["value"] == value:
            return option["label"]
    return str(value)


RECAP_FIELDS = (
    ("agent", "name", "代办人姓名"),
    ("applicant", "name", "申请人姓名"),
    ("applicant", "id_number", "身份证号"),
    ("applicant", "phone", "电话"),
    ("applicant", "household_address", "户籍地址"),
)


def recap(turn: Turn) -> str:
    """What the application holds so far, in a line: "已选残疾人证、生活补贴。已填申请人姓名、身份证号。"."""
    data = turn.data
    parts = []
    if data.get("services"):
        parts.append(turn.pack.text("resume_recap", services="、".join(turn.pack.services[s].short for s in data["services"])))
    filled = [label for part, key, label in RECAP_FIELDS if (data.get(part) or {}).get(key)]
    if filled:
        parts.append(turn.pack.text("resume_filled", fields="、".join(filled)))
    return "".join(parts) or turn.pack.text("resume_started")


async def consent_sensitive(turn: Turn) -> str:
    departments = []
    for code in turn.case.services:
        d = turn.pack.services[code].department
        if d not in departments:
            departments.append(d)
    note = turn.pack.q(At.consent_sensitive, "guardian_note") if needs_guardian_consent(turn.case) else ""
    if turn.data.get("guardian_asked"):
        return turn.pack.q(At.consent_sensitive, "guardian_question")
    q = turn.pack.questions[At.consent_sensitive]
    options = q["guardian_options"] if consent_asks_guardian(turn.case) else q["options"]
    return turn.pack.q(At.consent_sensitive, departments="、".join(departments), guardian_note=note, options=numbered(options))


async def submitted(turn: Turn) -> str:
    return turn.pack.q(At.submitted, "again", reference=turn.data["reference"])


async def choose_services(turn: Turn) -> str:
    q = turn.pack.questions[At.choose_services]
    order, all_n, unsure_n = service_menu(turn.pack)
    lines = [f"{n} {q['labels'].get(code, turn.pack.services[code].short)}" for n, code in enumerate(order, 1)]
    lines += [f"{all_n} {q['all_line']}", f"{unsure_n} {q['unsure_line']}"]
    menu = turn.pack.q(At.choose_services, menu="\n".join(lines))
    chosen = turn.data.get("services")
    if not chosen:
        return menu
    # coming back to it (a change at the summary, "返回"): what is chosen now, then the whole list again
    names = "、".join(turn.pack.services[c].short for c in chosen)
    return turn.pack.q(At.choose_services, "now", services=names) + "\n" + menu


PROMPTS: dict[str, Callable[[Turn], Awaitable[str]]] = {
    At.applicant_name: applicant_name,
    At.applicant_phone: applicant_phone,
    At.subsidy_reason: subsidy_reason,
    At.choose_services: choose_services,
    At.suggest_services: suggest_services,
    At.eligibility_notice: eligibility_notice,
    At.eligibility_recheck: eligibility_recheck,
    At.checklist: checklist_prompt,
    At.result_delivery: result_delivery,
    At.booking: booking,
    At.summary: summary,
    At.consent_sensitive: consent_sensitive,
    At.submitted: submitted,
}


async def brief(turn: Turn, state: str) -> str:
    """The pending question repeated after an answer to something asked mid-way: the summary (up to
    1,272 bytes) is not sent again, only what to reply to it."""
    if state in turn.pack.questions and "brief" in turn.pack.questions[state]:
        return turn.pack.q(state, "brief")
    return await prompt(turn, state)


# With the summary or after it the note is not printed: the summary flags a service that may not qualify.
_NO_NOTES = {At.summary, At.consent_sensitive, At.submitted}


async def prompt(turn: Turn, state: str) -> str:
    notes = assumption_notes(turn)  # first: the question (a notice, the summary) reads what it kept
    special = PROMPTS.get(state)
    question = await special(turn) if special else turn.pack.q(state, applicant=applicant_called(turn))
    return f"{notes}\n{question}" if notes and state not in _NO_NOTES else question


def submitted_message(turn: Turn) -> str:
    appointment = ""
    booking_ = turn.data.get("booking")
    if booking_ and turn.case.chose_role(CERTIFICATE):
        day = date.fromisoformat(booking_["session_date"])
        appointment = turn.pack.q(
            At.submitted, "appointment", date=assessment.format_day(day), period=booking_["period"], place=booking_["place"]
        )
        if not is_certain(turn.calendar, day):
            appointment += turn.pack.q(At.summary, "uncertain")
    elif on_mental_waitlist(turn.case):
        appointment = turn.pack.q(At.submitted, "waitlist")
    return turn.pack.q(At.submitted, reference=turn.data["reference"], next_steps=next_steps(turn), appointment=appointment)


def next_steps(turn: Turn) -> str:
    """What happens next, one line per chosen service (who decides, how long, from the pack), then
    where it is received and what to bring, then what the region's scheme says of all of them."""
    q = turn.pack.questions[At.submitted]
    lines = [q["next_header"]]
    for code in turn.case.services:
        service = turn.pack.services[code]
        flag = ""
        if service.deadline.get("from") == "certificate" and not holds_certificate(turn.case):
            flag = turn.pack.q(At.summary, "after_certificate")
        elif evaluate_service(turn.case, code)["result"] == PENDING:
            flag = turn.pack.q(At.summary, "pending")
        lines.append(
            q["service_line"].format(
                service=service.short, department=service.department, deadline=service.deadline.get("text", ""), flag=flag
            )
        )
    where = routing(turn.pack, turn.data)
    if where.get("intake_office"):
        lines.append(q["office"].format(office=where["intake_office"]))
    elif outside_area(turn.pack, where.get("county")):
        lines.append(q["office_elsewhere"].format(county=where["county"]))
    items = checklist(turn.case)
    if items:
        lines.append(q["materials"].format(count=len(items)))
    if turn.pack.raw.get("next_steps"):
        lines.append(turn.pack.raw["next_steps"])
    return "\n".join(lines)


__all__ = ["brief", "prompt", "submitted_message"]
