"""How the reply to each step is read and recorded. One reader per kind of answer.

A reader validates, stores what the application needs and returns an Outcome; the flow
(dialogs/application.py) decides where to go next.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from dialogs import assessment
from dialogs.application import Step
from dialogs.conditions import consent_by, on_mental_waitlist
from dialogs.deadlines import expected_date
from dialogs.document import build_document, new_reference
from dialogs.effects import ReleasePlace, Submit
from dialogs.eligibility import excluded_services, suggested_services
from dialogs.materials import checklist
from dialogs.routing import read_place
from dialogs.service_roles import CERTIFICATE, service_menu
from dialogs.slots import read_who
from dialogs.turn import Outcome, Turn, UserInput
from dialogs.understanding import NO_MATCH
from dialogs.validators import (
    ValidationError,
    parse_address,
    parse_certificate_no,
    parse_id_number,
    parse_name,
    parse_phone,
)

_NUMBERS_ONLY = re.compile(r"[\s\d,，、和及与.。;；/+第个项]+|[一二三四五六七\s、，,和还有第个项。]+")

Reader = Callable[[Turn, Step, UserInput, str], Awaitable[Outcome]]


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        if not isinstance(data.get(p), dict):
            data[p] = {}
        data = data[p]
    data[leaf] = value


def _invalid(turn: Turn, error: ValidationError) -> Outcome:
    return Outcome.invalid(turn.pack.validation[error.code])


async def read_choice(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if path == "who":
        return read_who(turn, step, inp)  # never "我" alone: who is read from what was said
    value = turn.lang.choose(inp.text, turn.pack.questions[step.name]["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    _put(turn.data, path, value)
    return Outcome.ok()


async def read_fact(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    q = turn.pack.questions[step.name]
    if q.get("several"):
        value = turn.lang.choose_many(inp.text, q["options"], exclusive=q.get("exclusive"), unnumbered=q.get("unnumbered", []))
    else:
        value = turn.lang.choose(inp.text, q["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    turn.case.facts[step.name.removeprefix("fact_")] = value
    return Outcome.ok()


def validated(parse: Callable[[str], Any]) -> Reader:
    """A reader that stores what `parse` makes of the answer, or gives its hint."""

    async def read(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
        try:
            _put(turn.data, path, parse(inp.text))
        except ValidationError as e:
            return _invalid(turn, e)
        return Outcome.ok()

    return read


read_name, read_phone, read_address = validated(parse_name), validated(parse_phone), validated(parse_address)


async def read_id_number(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    try:
        id_number = parse_id_number(inp.text, today=turn.now.date())
    except ValidationError as e:
        return _invalid(turn, e)
    who = path.split(".")[0]
    other = "agent" if who == "applicant" else "applicant"
    if turn.data.get(other, {}).get("id_number") == id_number.number:
        return Outcome.invalid(turn.pack.text("id_same_as_agent"))
    _put(turn.data, path, id_number.number)
    if who == "agent":
        turn.data["agent"]["gender"] = id_number.gender
    if who == "applicant":
        applicant = turn.data["applicant"]
        applicant["birth_date"] = id_number.birth_date.isoformat()
        applicant["gender"] = id_number.gender
        # A certificate number given before a corrected ID must be checked again.
        if turn.data.get("certificate_no", "")[:18] not in ("", id_number.number):
            turn.data.pop("certificate_no")
    return Outcome.ok()


async def read_applicant_phone(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    agent_phone = turn.data.get("agent", {}).get("phone")
    if agent_phone and turn.lang.matches_any(inp.text, turn.pack.questions[step.name]["same_words"]):
        turn.data.setdefault("applicant", {})["phone"] = agent_phone
        return Outcome.ok()
    return await read_phone(turn, step, inp, "applicant.phone")


async def read_mailing_address(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if turn.lang.matches_any(inp.text, turn.pack.questions[step.name]["same_words"]):
        turn.data["mailing_address"] = turn.data["applicant"]["household_address"]
        return Outcome.ok()
    return await read_address(turn, step, inp, "mailing_address")


async def read_certificate_no(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    facts = turn.case.facts
    try:
        cert = parse_certificate_no(
            inp.text,
            today=turn.now.date(),
            id_number=turn.data.get("applicant", {}).get("id_number"),
            category=facts.get("disability_category"),
            level=facts.get("disability_level"),
        )
    except ValidationError as e:
        return _invalid(turn, e)
    turn.data["certificate_no"] = cert.number
    facts["disability_category"] = cert.category
    facts["disability_level"] = cert.level
    return Outcome.ok()


async def read_household_place(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    text = " ".join(inp.text.split())
    if len(text) < 2:
        return Outcome.invalid(turn.pack.text("text_too_short"))
    found = read_place(text)
    if not (found["township"] or found["village"]):
        found["village"] = text[:40]  # said in the citizen's own words: the clerk reads it
    turn.data["household_place"] = {k: v for k, v in found.items() if v}
    return Outcome.ok()


async def read_text(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    text = " ".join(inp.text.split())
    if len(text) < 2:
        return Outcome.invalid(turn.pack.text("text_too_short"))
    _put(turn.data, path, text[:200])
    return Outcome.ok()


async def read_services(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    q = turn.pack.questions[step.name]
    lang = turn.lang
    order, all_n, unsure_n = service_menu(turn.pack)
    numbers = [n for n in lang.numbers(inp.text) if 1 <= n <= unsure_n] if _only_numbers(inp.text) else []
    if unsure_n in numbers or (not numbers and lang.matches_any(inp.text, q["unsure_words"])):
        turn.data["guided"] = True
        turn.data["services"] = []
        return Outcome.ok()
    if all_n in numbers or (not numbers and lang.matches_any(inp.text, q["all_words"])):
        chosen = list(order)
    elif numbers:
        chosen = [order[n - 1] for n in sorted(set(numbers)) if n <= len(order)]
    else:
        chosen = lang.services_in(inp.text)
    if not chosen:
        return Outcome.invalid(turn.pack.text("services_hint"))
    await _release_booking_unless(turn, any(c in chosen for c in turn.pack.with_role(CERTIFICATE)))
    turn.data["services"] = chosen
    turn.data["guided"] = False
    turn.data.pop("insisted", None)
    names = "、".join(turn.pack.services[c].short for c in chosen)
    return Outcome.ok(q["chosen"].format(services=names))


def _only_numbers(text: str) -> bool:
    """An answer made of option numbers only ("1 3", "1、3和5", "一三五"), not words with digits."""
    t = unicodedata.normalize("NFKC", text or "")
    return bool(_NUMBERS_ONLY.fullmatch(t))


async def read_suggestion(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    value = turn.lang.choose(inp.text, turn.pack.questions[step.name]["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    suggested = suggested_services(turn.case)
    turn.data["guided"] = False
    if value == "accept" and suggested:
        turn.data["services"] = suggested
        turn.data["suggestion"] = "accept"
    else:
        turn.data["services"] = []
        turn.data["suggestion"] = "rechoose"
    return Outcome.ok()


async def read_exclusions(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    value = turn.lang.choose(inp.text, turn.pack.questions[step.name]["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    excluded = excluded_services(turn.case)
    names = "、".join(turn.pack.services[c].short for c in excluded)
    if value == "drop":
        turn.data["services"] = [s for s in turn.data["services"] if s not in excluded]
        await _release_booking_unless(turn, turn.case.chose_role(CERTIFICATE))
        if not turn.data["services"]:
            return Outcome.ok(turn.pack.q("eligibility_notice", "nothing_left"))
        return Outcome.ok(turn.pack.q("eligibility_notice", "dropped", services=names))
    turn.data["insisted"] = sorted(set(turn.data.get("insisted", [])) | set(excluded))
    return Outcome.ok(turn.pack.q("eligibility_notice", "insisted", services=names))


async def read_checklist(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    q = turn.pack.questions["checklist"]
    items = checklist(turn.case)
    if inp.kind == "image":
        turn.data["pending_photo"] = {"media_id": (inp.media_id or "")[:128]}
        return Outcome.stay(q["photo_received"].format(materials=_numbered(items)))
    pending = turn.data.get("pending_photo")
    n = turn.lang.number(inp.text)
    if pending and n not in (None, 0):  # 0 carries on, as the checklist says, photo or not
        if not 1 <= n <= len(items):
            return Outcome.invalid(turn.pack.text("checklist_which"))
        material = items[n - 1].material
        turn.data.setdefault("photos", {})[material.code] = turn.data.pop("pending_photo")
        return Outcome.stay(q["photo_saved"].format(material=material.name))
    if n == 0 or turn.lang.matches_any(inp.text, q["continue_words"]) or not pending:
        turn.data.pop("pending_photo", None)
        return Outcome.ok()
    return Outcome.invalid(turn.pack.text("checklist_which"))


def _numbered(items) -> str:
    return "\n".join(f"{i} {item.material.name}" for i, item in enumerate(items, 1))


async def read_booking(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    sessions = await offered_sessions(turn)
    n = turn.lang.number(inp.text)
    if not sessions:
        return Outcome.ok() if n == 0 or inp.text.strip() else Outcome.invalid(turn.pack.text("choose_hint"))
    if n is None or not 1 <= n <= len(sessions):
        return Outcome.invalid(turn.pack.text("choose_hint"))
    chosen, _left = sessions[n - 1]
    holder = turn.data["reference"]
    capacity = int(turn.pack.assessment["capacity"])
    current = turn.data.get("booking")
    if current and current["session_date"] == chosen.key:
        return Outcome.ok()
    if not await turn.ports.book.reserve(chosen.key, holder, capacity):
        return Outcome.stay(turn.pack.q("booking", "full", slots=await slot_lines(turn)))
    if current:
        turn.do(ReleasePlace(current["session_date"], holder))
    turn.data["booking"] = {
        "session_date": chosen.key,
        "scheduled_date": chosen.scheduled.isoformat(),
        "period": chosen.period,
        "place": chosen.place,
    }
    return Outcome.ok(turn.pack.q("booking", "booked", date=assessment.format_day(chosen.day), period=chosen.period))


async def offered_sessions(turn: Turn) -> list[tuple[assessment.AssessmentSession, int]]:
    """The next sessions with places left, as offered to the citizen (fixed count from the pack)."""
    a = turn.pack.assessment
    count = int(a.get("offer_sessions", 3)) + 3
    sessions = assessment.sessions_with_moves(turn.pack, turn.calendar, turn.now.date(), count, await turn.ports.book.moves())
    left = await turn.ports.book.remaining([s.key for s in sessions], int(a["capacity"]))
    mine = (turn.data.get("booking") or {}).get("session_date")
    open_ = [(s, left[s.key]) for s in sessions if left[s.key] > 0 or s.key == mine]
    return open_[: int(a.get("offer_sessions", 3))]


async def slot_lines(turn: Turn) -> str:
    q = turn.pack.questions["booking"]
    lines = []
    for i, (s, left) in enumerate(await offered_sessions(turn), 1):
        key = "slot_rescheduled" if s.rescheduled else "slot_uncertain" if not s.certain else "slot_moved" if s.moved else "slot"
        lines.append(
            f"{i} "
            + q[key].format(
                date=assessment.format_day(s.day),
                weekday=assessment.weekday(s.day),
                period=s.period,
                left=left,
                original=assessment.format_day(s.scheduled),
                year=s.day.year,
            )
        )
    return "\n".join(lines)


async def read_summary(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if turn.lang.number(inp.text) == 1 or turn.lang.is_yes(inp.text):
        turn.data.pop("declaration", None)  # a summary confirmed again is declared again
        return Outcome.ok()
    return Outcome.invalid(turn.pack.text("summary_hint"))


async def read_consent(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    value = turn.lang.choose(inp.text, turn.pack.questions[step.name]["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    if value != "agree":
        turn.data["consent"] = {"sensitive": False}
        return Outcome.stay(turn.pack.q("consent_sensitive", "declined"))
    turn.data["consent"] = {
        "declaration": True,
        "sensitive": True,
        "by": consent_by(turn.case),
        "at": turn.now.isoformat(timespec="seconds"),
    }
    await submit(turn)
    return Outcome.ok()


async def submit(turn: Turn) -> None:
    """Ask for the application to be registered and queued: an effect, carried out after the session
    is saved, and safe to repeat (the outbox keys on the reference)."""
    turn.data["submitted_at"] = turn.now.isoformat(timespec="seconds")
    booking = turn.data.get("booking")
    if booking and (moved_to := (await turn.ports.book.moves()).get(booking["session_date"])):
        booking["session_date"] = moved_to  # moved by the county while this form was being filled in
    document = build_document(turn.case, turn.openid, turn.now)
    expected: dict[str, str | None] = {}
    for code, result in document["eligibility"].items():
        # A result that waits for the assessment has no date of its own yet.
        day = None if result["result"] == "pending" else expected_date(turn, code)
        expected[code] = day.isoformat() if day else None
    waitlist = "mental" if on_mental_waitlist(turn.case) else None
    turn.do(Submit(document, turn.openid, expected, waitlist))


async def read_after_submit(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    return Outcome.stay(reprompt=True)


async def _release_booking_unless(turn: Turn, keep: bool) -> None:
    booking = turn.data.get("booking")
    if booking and not keep:
        turn.do(ReleasePlace(booking["session_date"], turn.data["reference"]))
        turn.data.pop("booking")


READERS: dict[str, Reader] = {
    "choice": read_choice,
    "fact": read_fact,
    "name": read_name,
    "id_number": read_id_number,
    "phone": read_phone,
    "applicant_phone": read_applicant_phone,
    "address": read_address,
    "mailing_address": read_mailing_address,
    "certificate_no": read_certificate_no,
    "text": read_text,
    "household_place": read_household_place,
    "services": read_services,
    "suggestion": read_suggestion,
    "exclusions": read_exclusions,
    "checklist": read_checklist,
    "booking": read_booking,
    "summary": read_summary,
    "consent": read_consent,
    "after_submit": read_after_submit,
}


async def read_answer(turn: Turn, step: Step, inp: UserInput) -> Outcome:
    kind, _, path = step.answer.partition(":")
    return await READERS[kind](turn, step, inp, path)


__all__ = ["read_answer", "READERS", "offered_sessions", "slot_lines", "new_reference"]
