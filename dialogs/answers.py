"""How the reply to each step is read and recorded. One reader per kind of answer.

A reader validates, stores what the application needs and returns an Outcome; the flow
(dialogs/application.py) decides where to go next.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from dialogs import assessment
from dialogs.application import At, Step
from dialogs.conditions import consent_asks_guardian, consent_by, guardian_by_law, on_mental_waitlist
from dialogs.deadlines import expected_date
from dialogs.document import build_document, new_reference
from dialogs.effects import ReleasePlace, Submit
from dialogs.eligibility import excluded_services, suggested_services
from dialogs.materials import checklist
from dialogs.routing import in_area, read_place
from dialogs.service_roles import CERTIFICATE, DISABILITY_SUBSIDY, service_menu
from dialogs.slots import applicant_called, read_who
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


# An answer to a list of options is short: a long text that happens to hold an option's word (2,000
# random common characters held 本人 and 残疾证) is not taken as a choice.
MAX_OPTION_ANSWER_CHARS = 100


def _too_long(turn: Turn, text: str) -> Outcome | None:
    if len(turn.lang.normal(text)) > MAX_OPTION_ANSWER_CHARS:
        return Outcome.invalid(turn.pack.text("answer_too_long"))
    return None


async def read_choice(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if path == "who":
        return read_who(turn, step, inp)  # never "我" alone: who is read from what was said
    if path != "who" and (long := _too_long(turn, inp.text)):  # who: a long first message is read for all it says
        return long
    value = turn.lang.choose(inp.text, turn.pack.questions[step.name]["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    _put(turn.data, path, value)
    return Outcome.ok()


async def read_fact(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if long := _too_long(turn, inp.text):
        return long
    q = turn.pack.questions[step.name]
    if q.get("several"):
        value = turn.lang.choose_many(inp.text, q["options"], exclusive=q.get("exclusive"), unnumbered=q.get("unnumbered", []))
    elif step.name == At.fact_local_hukou:
        value = read_hukou(turn, inp.text)
    else:
        value = _choose_fact(turn, inp.text, q["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    turn.case.facts[step.name.removeprefix("fact_")] = value
    return Outcome.ok()


# A short answer may be one character ("在", "有"); in a sentence one character decides nothing:
# "户口在桐城，我在青阳打工十年了" was read as 青阳户籍 by its "在".
SHORT_ANSWER_CHARS = 4


def _choose_fact(turn: Turn, text: str, options: list[dict[str, Any]]) -> Any:
    short = len(turn.lang.normal(text)) <= SHORT_ANSWER_CHARS
    return turn.lang.choose(text, options, single_characters=short)


_HUKOU_PLACE = re.compile(
    r"(?:户口|户籍|户口本)(?:上)?(?:就|也|还|一直|本来)?(?:是|在|落在|迁到|属于)(?:我们|咱们)?(?P<place>[\u4e00-\u9fff]{1,12})"
)
_HERE = re.compile(r"[这此本]|当地|我们|咱")
_UNCLEAR_PLACE = ("老家", "家里", "原籍", "家")


def read_hukou(turn: Turn, text: str) -> Any:
    """Whether the household registration is in the pack's area, from the place it names ("户口在桐城"
    is not 青阳; "户口就在阿荣旗" is 呼伦贝尔), else from the option words."""
    said = _HUKOU_PLACE.search(unicodedata.normalize("NFKC", text or "")[:200])
    if said:
        place = said.group("place")
        if in_area(turn.pack, place) or _HERE.match(place):
            return True
        if not place.startswith(_UNCLEAR_PLACE) and turn.pack.raw.get("area", {}).get("names"):
            return False
    return _choose_fact(turn, text, turn.pack.questions[At.fact_local_hukou]["options"])


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


async def read_household_address(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    """The 户口本 address; where it names a 旗县/县 of the pack's area, the 户口 is here and is not asked
    (a county it does not know is asked: "阳光小区" reads like a 区)."""
    outcome = await read_address(turn, step, inp, path)
    if outcome.advance:
        _hukou_from_address(turn)
    return outcome


def _hukou_from_address(turn: Turn) -> None:
    facts = turn.case.facts
    derived = turn.data.get("hukou_from_address")
    if "local_hukou" in facts and not derived:
        return  # said by the citizen: the answer is what counts
    county = read_place(turn.data["applicant"]["household_address"])["county"] or ""
    if county and in_area(turn.pack, county):
        facts["local_hukou"] = True
        turn.data["hukou_from_address"] = True
    elif derived:  # a corrected address that no longer says it
        facts.pop("local_hukou", None)
        turn.data.pop("hukou_from_address", None)


# Words that deny what follows in a clause ("不是学生", "没参加职工养老保险").
_DENIED = re.compile(r"不|没|未|无")
_CLAUSES = re.compile(r"[，,。.；;、\s]+|也|又|还|但")


async def read_several_facts(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    """Several yes/no facts in one question: the options picked apply, the others do not. In words each
    clause is read on its own, and a clause that denies ("不是学生") picks nothing."""
    from dialogs.conditions import facts_asked_by

    if long := _too_long(turn, inp.text):
        return long
    q = turn.pack.questions[step.name]
    exclusive = q.get("exclusive")
    if _only_numbers(inp.text):
        picked = turn.lang.choose_many(inp.text, q["options"], exclusive=exclusive)
        if picked is NO_MATCH:
            return Outcome.invalid(turn.pack.text("choose_hint"))
    else:
        picked, understood = [], False
        for clause in (c for c in _CLAUSES.split(unicodedata.normalize("NFKC", inp.text)) if c):
            found = turn.lang.choose_many(clause, q["options"], exclusive=exclusive)
            if found is NO_MATCH:
                continue
            understood = True
            if not _DENIED.search(clause):
                picked += [v for v in found if v != exclusive]
        if not understood:
            return Outcome.invalid(turn.pack.text("choose_hint"))
    for fact in facts_asked_by(turn.pack, step.name):
        turn.case.facts[fact] = fact in picked
    return Outcome.ok()


def _hukou_answer(turn: Turn, inp: UserInput) -> Outcome | None:
    """The answer to the question about where the household is registered, asked after an ID number."""
    if turn.data.get("hukou_check") is not True:
        return None
    local = read_hukou(turn, inp.text)
    if not isinstance(local, bool):
        return None
    turn.case.facts["local_hukou"] = local
    turn.data["hukou_check"] = "answered"
    return Outcome.ok()


async def read_id_number(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if path == "applicant.id_number" and (answered := _hukou_answer(turn, inp)):
        return answered
    try:
        id_number = parse_id_number(inp.text, today=turn.now.date())
    except ValidationError as e:
        if turn.data.get("hukou_check") is True:
            return Outcome.stay(turn.pack.text("choose_hint"), _hukou_check_question(turn))
        return _invalid(turn, e)
    who = path.split(".")[0]
    other = "agent" if who == "applicant" else "applicant"
    if turn.data.get(other, {}).get("id_number") == id_number.number:
        return Outcome.invalid(turn.pack.text("id_same_as_agent"))
    _put(turn.data, path, id_number.number)
    if who == "applicant":
        turn.data.pop("id_from_certificate", None)
    if who == "agent":
        turn.data["agent"]["gender"] = id_number.gender
    if who == "applicant":
        applicant = turn.data["applicant"]
        applicant["birth_date"] = id_number.birth_date.isoformat()
        applicant["gender"] = id_number.gender
        # A certificate number given before a corrected ID must be checked again.
        if turn.data.get("certificate_no", "")[:18] not in ("", id_number.number):
            turn.data.pop("certificate_no")
        _child_phone_is_guardians(turn)
        if _hukou_disagrees(turn, id_number.number):
            turn.data["hukou_check"] = True
            return Outcome.stay(_hukou_check_question(turn))
    return Outcome.ok()


def _child_phone_is_guardians(turn: Turn) -> None:
    """A young child applied for by a parent: the child's 联系电话 is the parent's (the pack's
    form.child_phone_is_guardians), so it is not asked; the summary says it back."""
    rule = turn.pack.form.get("child_phone_is_guardians") or {}
    age = turn.case.applicant_age
    agent_phone = turn.data.get("agent", {}).get("phone")
    applicant = turn.data.get("applicant", {})
    young = age is not None and "under_age" in rule and age < rule["under_age"]
    if young and agent_phone and not applicant.get("phone") and guardian_by_law(turn.case):
        applicant["phone"] = agent_phone


def _hukou_disagrees(turn: Turn, number: str) -> bool:
    """Said to be registered here, with an ID number of elsewhere: asked once (the ID's code is where
    the birth was registered, so it may well differ; the answer is what counts)."""
    codes = turn.pack.raw.get("area", {}).get("id_codes", [])
    return (
        turn.case.facts.get("local_hukou") is True
        and not turn.data.get("hukou_from_address")  # the 户口本 address says it: the ID's birthplace does not matter
        and bool(codes)
        and not number.startswith(tuple(codes))
        and turn.data.get("hukou_check") != "answered"
    )


def _hukou_check_question(turn: Turn) -> str:
    return turn.pack.q(At.applicant_id, "hukou_check", applicant=applicant_called(turn))


async def read_applicant_phone(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    agent_phone = turn.data.get("agent", {}).get("phone")
    if agent_phone and turn.lang.matches_any(inp.text, turn.pack.questions[step.name]["same_words"]):
        turn.data.setdefault("applicant", {})["phone"] = agent_phone
        return Outcome.ok()
    return await read_phone(turn, step, inp, "applicant.phone")


def delivery_options(turn: Turn) -> list[dict[str, Any]]:
    """How the result may be collected, as offered now: to the agent's residence only where the agent
    gave one that is not the 户籍地址 (both already given: neither is asked again)."""
    known = _delivery_addresses(turn)
    return [
        o for o in turn.pack.questions[At.result_delivery]["options"] if o["value"] != "mail_agent" or known.get("mail_agent")
    ]


def _delivery_addresses(turn: Turn) -> dict[str, str]:
    home = turn.data.get("applicant", {}).get("household_address")
    residence = turn.data.get("agent", {}).get("residence") if turn.data.get("who") == "agent" else None
    found = {"mail_home": home} if home else {}
    if residence and residence != home:
        found["mail_agent"] = residence
    return found


_ADDRESS_PARTS = re.compile(r"(?:省|市|区|县|旗|镇|乡|苏木|街道|村|嘎查|社区|小区|路|街|巷|号|栋|单元)")


def _an_address(text: str) -> str | None:
    """A message that is an address (two of its parts: "某某镇某某村", "某某路10号"), as the address form takes it."""
    if len(_ADDRESS_PARTS.findall(text)) < 2:
        return None
    try:
        return parse_address(text)
    except ValidationError:
        return None


async def read_delivery(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    """自取, or 邮寄: to an address already given (the 户籍地址, the agent's residence: not asked again)
    or elsewhere (asked next)."""
    if long := _too_long(turn, inp.text):
        return long
    value = turn.lang.choose(inp.text, delivery_options(turn))
    if value is NO_MATCH and (address := _an_address(inp.text)):
        turn.data[path], turn.data["mailing_address"] = "mail", address  # "寄到哪": the answer is where
        return Outcome.ok()
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    known = _delivery_addresses(turn)
    if value in known:
        turn.data["mailing_address"] = known[value]
    elif turn.data.get("mailing_address") in known.values() or value != "mail":
        turn.data.pop("mailing_address", None)  # a changed choice: the address is the new choice's
    turn.data[path] = "mail" if value in ("mail_home", "mail_agent") else value
    return Outcome.ok()


async def read_mailing_address(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if turn.lang.matches_any(inp.text, turn.pack.questions[step.name]["same_words"]):
        turn.data["mailing_address"] = turn.data["applicant"]["household_address"]
        return Outcome.ok()
    return await read_address(turn, step, inp, "mailing_address")


async def read_certificate_no(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    """The 证号 encodes the category and level. Where it disagrees with what was said, the citizen is
    asked to check the card once; the same number sent again is what the card says, and the
    departments read the card: it is recorded and said back (refusing it every time was a dead end)."""
    if answered := _hukou_answer(turn, inp):
        return answered
    if step.name == At.certificate_first and turn.lang.matches_any(inp.text, turn.pack.questions[step.name]["later_words"]):
        turn.data["certificate_later"] = True  # "证号记不清": category and level are asked, the 证号 again later
        return Outcome.ok(turn.pack.q(step.name, "later"))
    facts = turn.case.facts
    # Given first, the 证号 is where the applicant's ID number comes from (and a new 证号 replaces it).
    derived = turn.data.get("id_from_certificate") or not turn.data.get("applicant", {}).get("id_number")
    try:
        cert = parse_certificate_no(
            inp.text, today=turn.now.date(), id_number=None if derived else turn.data["applicant"]["id_number"]
        )
    except ValidationError as e:
        if turn.data.get("hukou_check") is True:
            return Outcome.stay(turn.pack.text("choose_hint"), _hukou_check_question(turn))
        return _invalid(turn, e)
    if derived and turn.data.get("agent", {}).get("id_number") == cert.id_number:
        return Outcome.invalid(turn.pack.text("id_same_as_agent"))
    said = (facts.get("disability_category"), facts.get("disability_level"))
    differs = said[0] not in (None, cert.category) or said[1] not in (None, cert.level)
    if differs and turn.data.get("certificate_disputed") != cert.number:
        turn.data["certificate_disputed"] = cert.number
        code = "cert_category_mismatch" if said[0] not in (None, cert.category) else "cert_level_mismatch"
        return Outcome.invalid(turn.pack.validation[code] + turn.pack.q(At.certificate_no, "send_again"))
    turn.data.pop("certificate_disputed", None)
    turn.data["certificate_no"] = cert.number
    if derived:
        holder = parse_id_number(cert.id_number, today=turn.now.date())
        applicant = turn.data.setdefault("applicant", {})
        applicant.update(id_number=holder.number, birth_date=holder.birth_date.isoformat(), gender=holder.gender)
        turn.data["id_from_certificate"] = True
        _child_phone_is_guardians(turn)
        if _hukou_disagrees(turn, holder.number):
            turn.data["hukou_check"] = True
            return Outcome.stay(_hukou_check_question(turn))
    facts["disability_category"] = cert.category
    facts["disability_level"] = cert.level
    if differs:
        category = _option_label(turn, "fact_disability_category", cert.category)
        level = _option_label(turn, "fact_disability_level", cert.level)
        return Outcome.ok(turn.pack.q(At.certificate_no, "differs", disability=category + level))
    return Outcome.ok()


def _option_label(turn: Turn, question: str, value: Any) -> str:
    for option in turn.pack.questions[question]["options"]:
        if option["value"] == value:
            return str(option["label"])
    return str(value)


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


async def read_subsidy_reason(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    """附件4 has a 申请理由 for each subsidy: with both chosen, "生活补贴：…；护理补贴：…" is split, a
    reason for one only asks for the other, and a reason that names neither is the reason of both."""
    text = " ".join(inp.text.split())
    if len(text) < 2:
        return Outcome.invalid(turn.pack.text("text_too_short"))
    wanted = [c for c in turn.pack.with_role(DISABILITY_SUBSIDY) if turn.case.chose(c)]
    reasons = dict(turn.data.get("subsidy_reasons") or {})
    missing = [c for c in wanted if c not in reasons]
    found = _reasons_by_service(turn, text, wanted)
    if found:
        reasons.update(found)
    else:
        reasons.update({c: text[:200] for c in missing or wanted})
    turn.data["subsidy_reasons"] = {c: reasons[c] for c in wanted if c in reasons}
    still = [c for c in wanted if c not in reasons]
    if still:
        return Outcome.stay(turn.pack.q(At.subsidy_reason, "other", service=turn.pack.services[still[0]].short))
    turn.data["subsidy_reason"] = "；".join(reasons[c] for c in wanted) if len(set(reasons.values())) > 1 else reasons[wanted[0]]
    return Outcome.ok()


_REASON_EDGES = " :：,，;；.。、\u3000"
_REASON_LEAD = re.compile(r"^(?:的)?(?:申请)?(?:理由)?(?:是|为|因为)?[\s:：,，]*")


def _reasons_by_service(turn: Turn, text: str, wanted: list[str]) -> dict[str, str]:
    """The part after each subsidy's name, up to the next one named ("生活补贴：A；护理补贴：B")."""
    mentions = [m for m in turn.lang.service_mentions(text) if m[2] in wanted]
    if not mentions or mentions[0][0] > 8:  # a reason that only mentions a subsidy in passing
        return {}
    nfkc = unicodedata.normalize("NFKC", text)
    t = text if len(nfkc) == len(text) else nfkc  # the positions are the NFKC text's: keep what was typed
    found: dict[str, str] = {}
    for (_, end, code), following in zip(mentions, [*mentions[1:], None], strict=True):
        part = _REASON_LEAD.sub("", t[end : following[0] if following else len(t)].strip(_REASON_EDGES)).strip(_REASON_EDGES)
        if len(part) >= 2 and code not in found:
            found[code] = part[:200]
    return found


async def read_services(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    if long := _too_long(turn, inp.text):
        return long
    q = turn.pack.questions[step.name]
    lang = turn.lang
    order, all_n, unsure_n = service_menu(turn.pack)
    numbers = [n for n in lang.numbers(inp.text) if 1 <= n <= unsure_n] if _only_numbers(inp.text) else []
    if unsure_n in numbers or (not numbers and lang.matches_any(inp.text, q["unsure_words"])):
        turn.data["guided"] = True
        turn.data["services"] = []
        return Outcome.ok()
    named = [] if numbers else lang.services_in(inp.text)
    # "生活补贴和护理补贴都要办" names two services: 都要 is "both of these", not 全部 (only when none is named).
    if all_n in numbers or (not numbers and not named and lang.matches_any(inp.text, q["all_words"])):
        chosen = list(order)
    elif numbers:
        chosen = [order[n - 1] for n in sorted(set(numbers)) if n <= len(order)]
    else:
        chosen = named
    if not chosen:
        return Outcome.invalid(turn.pack.text("services_hint"))
    await _release_booking_unless(turn, any(c in chosen for c in turn.pack.with_role(CERTIFICATE)))
    _checklist_again_if_changed(turn, chosen)
    turn.data["services"] = chosen
    turn.data["guided"] = False
    turn.data.pop("insisted", None)
    turn.data.pop("assumed", None)
    # "我自己重新选" is answered by this choice: left set, it sent every later answer back here.
    turn.data.pop("suggestion", None)
    names = "、".join(turn.pack.services[c].short for c in chosen)
    unread = [] if numbers else lang.unread_service_words(inp.text)
    if unread:  # what was chosen, and what was not understood: added at the summary if meant
        return Outcome.ok(q["chosen_unread"].format(services=names, unread="、".join(unread[:3])[:30]))
    return Outcome.ok(q["chosen"].format(services=names))


def _only_numbers(text: str) -> bool:
    """An answer made of option numbers only ("1 3", "1、3和5", "一三五"), not words with digits."""
    t = unicodedata.normalize("NFKC", text or "")
    return bool(_NUMBERS_ONLY.fullmatch(t))


def _checklist_again_if_changed(turn: Turn, services: list[str]) -> None:
    """Other services need other materials: the personal checklist is shown again (also when editing)."""
    if set(services) != set(turn.data.get("services") or []):
        turn.data.pop("checklist_seen", None)


async def read_suggestion(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    value = turn.lang.choose(inp.text, turn.pack.questions[step.name]["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    suggested = suggested_services(turn.case)
    turn.data["guided"] = False
    if value == "accept" and suggested:
        _checklist_again_if_changed(turn, suggested)
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
        kept = [s for s in turn.data["services"] if s not in excluded]
        _checklist_again_if_changed(turn, kept)
        turn.data["services"] = kept
        await _release_booking_unless(turn, turn.case.chose_role(CERTIFICATE))
        if not turn.data["services"]:
            return Outcome.ok(turn.pack.q(At.eligibility_notice, "nothing_left"))
        return Outcome.ok(turn.pack.q(At.eligibility_notice, "dropped", services=names))
    turn.data["insisted"] = sorted(set(turn.data.get("insisted", [])) | set(excluded))
    return Outcome.ok(turn.pack.q(At.eligibility_notice, "insisted", services=names))


async def read_checklist(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    q = turn.pack.questions[At.checklist]
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
    early = turn.data.get("unassigned_photos") or []
    named = _material_named(turn, inp.text, items) if (pending or early) and n is None else None
    if named is not None:
        # "这是户口本" after a photo; "刚才发的照片是残疾证" for one sent before the checklist
        photo = turn.data.pop("pending_photo") if pending else early.pop()
        turn.data.setdefault("photos", {})[named.code] = photo
        return Outcome.stay(q["photo_saved"].format(material=named.name))
    if n == 0 or turn.lang.matches_any(inp.text, q["continue_words"]) or not pending:
        turn.data.pop("pending_photo", None)
        return Outcome.ok()
    return Outcome.invalid(turn.pack.text("checklist_which"))


_PHOTO_LABEL = re.compile(r"^(?:这是|这张是|这个是|刚才(?:发|拍)的(?:照片|图片|那张)?是|(?:照片|图片)是|发的是)")


def label_early_photo(turn: Turn, text: str) -> str | None:
    """ "刚才发的照片是残疾证" before the checklist: the last photo kept is that material's (it was lost,
    or read as an answer to the question open). None when the message labels no photo."""
    early = turn.data.get("unassigned_photos") or []
    said = turn.lang.normal(text)
    if not early or len(said) > 20 or not _PHOTO_LABEL.match(said):
        return None
    words = turn.pack.lexicon.get("material_words", {})
    named = [code for code, ws in words.items() if code in turn.pack.materials and any(w in said for w in ws)]
    if not named:
        return None
    # 身份证 names both 居民身份证 and 居民身份证或户口本: the one the chosen services ask for
    listed = {item.material.code for item in checklist(turn.case)}
    code = next((c for c in named if c in listed), named[0])
    turn.data.setdefault("photos", {})[code] = early.pop()
    return turn.pack.questions[At.checklist]["photo_saved_early"].format(material=turn.pack.materials[code].name)


def _material_named(turn: Turn, text: str, items) -> Any:
    """The one material on the checklist the words name, or None."""
    said = turn.lang.normal(text)
    words = turn.pack.lexicon.get("material_words", {})
    named = [i.material for i in items if any(w in said for w in words.get(i.material.code, ()))]
    return named[0] if len(named) == 1 else None


def _numbered(items) -> str:
    return "\n".join(f"{i} {item.material.name}" for i, item in enumerate(items, 1))


async def read_booking(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    sessions = await offered_sessions(turn)
    n = turn.lang.number(inp.text)
    if not sessions:
        return Outcome.ok() if n == 0 or inp.text.strip() else Outcome.invalid(turn.pack.text("choose_hint"))
    if n is None or not 1 <= n <= len(sessions) or "月" in inp.text:  # "11号" is a day, not option 11
        said = said_date(inp.text, turn.now.date())
        if said is not None:
            meant = [i for i, (s, _) in enumerate(sessions, 1) if _on(s, said)]
            if not meant:  # a day not offered: say kindly what is
                return Outcome.stay(turn.pack.q(At.booking, "not_offered", said=said.text, slots=await slot_lines(turn)))
            n = meant[0]  # "11号" when every session is on the 11th: the next one
    if n is None or not 1 <= n <= len(sessions):
        return Outcome.invalid(turn.pack.text("choose_hint"))
    chosen, _left = sessions[n - 1]
    holder = turn.data["reference"]
    capacity = int(turn.pack.assessment["capacity"])
    current = turn.data.get("booking")
    if current and current["session_date"] == chosen.key:
        return Outcome.ok()
    if not await turn.ports.book.reserve(chosen.key, holder, capacity):
        return Outcome.stay(turn.pack.q(At.booking, "full", slots=await slot_lines(turn)))
    if current:
        turn.do(ReleasePlace(current["session_date"], holder))
    turn.data["booking"] = {
        "session_date": chosen.key,
        "scheduled_date": chosen.scheduled.isoformat(),
        "period": chosen.period,
        "place": chosen.place,
    }
    return Outcome.ok(turn.pack.q(At.booking, "booked", date=assessment.format_day(chosen.day), period=chosen.period))


@dataclass(frozen=True)
class SaidDate:
    """A day as people name it at the booking: "12月11日", "11号", "1月", "下个月那次"."""

    text: str
    month: int | None
    day: int | None


_CN_NUMBER = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_SAID_MONTH = re.compile(r"(\d{1,2}|[一二三四五六七八九十]{1,3})月份?")
_SAID_DAY = re.compile(r"(\d{1,2}|[一二三四五六七八九十]{1,3})(?:日|号)")
_NEXT_MONTH = re.compile(r"下个?月")
_THIS_MONTH = re.compile(r"这个?月|本月")


def _said_number(token: str) -> int:
    if token.isdigit():
        return int(token)
    if "十" not in token:
        return _CN_NUMBER.get(token, 0)
    tens, _, ones = token.partition("十")
    return (_CN_NUMBER.get(tens, 0) if tens else 1) * 10 + (_CN_NUMBER.get(ones, 0) if ones else 0)


def said_date(text: str, today: date) -> SaidDate | None:
    """The month and day named in an answer, None when it names none."""
    t = unicodedata.normalize("NFKC", text or "")[:100]
    day_m = _SAID_DAY.search(t)
    month_m = _SAID_MONTH.search(t)
    month = _said_number(month_m.group(1)) if month_m else None
    if month is None and _NEXT_MONTH.search(t):
        month = today.month % 12 + 1
    elif month is None and _THIS_MONTH.search(t):
        month = today.month
    day = _said_number(day_m.group(1)) if day_m else None
    if month is None and day is None:
        return None
    shown = (f"{month}月" if month else "") + (f"{day}日" if day else "")
    return SaidDate(shown, month, day)


def _on(session: assessment.AssessmentSession, said: SaidDate) -> bool:
    return any(
        (said.month is None or d.month == said.month) and (said.day is None or d.day == said.day)
        for d in {session.day, session.scheduled}
    )


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
    q = turn.pack.questions[At.booking]
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
    # "不确认" holds 确认: a 不 anywhere leaves it unconfirmed
    confirmed = (
        "不" not in inp.text and turn.lang.choose(inp.text, turn.pack.questions[step.name]["confirm_options"]) == "confirm"
    )
    if turn.lang.number(inp.text) == 1 or turn.lang.is_yes(inp.text) or confirmed:
        turn.data["declaration"] = "confirm"  # the declaration is printed with the summary and confirmed with it
        turn.data.pop("guardian_asked", None)  # the consent is asked whole again, not its follow-up
        return Outcome.ok()
    return Outcome.invalid(turn.pack.text("summary_hint"))


async def read_consent(turn: Turn, step: Step, inp: UserInput, path: str) -> Outcome:
    q = turn.pack.questions[step.name]
    asks_guardian = consent_asks_guardian(turn.case)
    if turn.data.get("guardian_asked") or asks_guardian:
        value = _consent_and_guardian(turn, q, inp.text)
        if value == "ask":
            turn.data["guardian_asked"] = True
            return Outcome.stay(q["guardian_question"])
    else:
        value = turn.lang.choose(inp.text, q["options"])
    if value is NO_MATCH:
        return Outcome.invalid(turn.pack.text("choose_hint"))
    if value != "agree":
        turn.data["consent"] = {"sensitive": False}
        return Outcome.stay(q["declined_guardian" if asks_guardian else "declined"])
    turn.data["consent"] = {
        "declaration": True,
        "sensitive": True,
        "by": consent_by(turn.case),
        "at": turn.now.isoformat(timespec="seconds"),
    }
    await submit(turn)
    return Outcome.ok()


def _consent_and_guardian(turn: Turn, q: dict[str, Any], text: str) -> Any:
    """The consent of a relative who may be the 法定监护人, and whether they are: "agree" (the guardian
    answer stored), "decline", "ask" (a plain "同意": whether they are the guardian is asked, not guessed)
    or NO_MATCH."""
    agent = turn.data.setdefault("agent", {})
    if turn.data.get("guardian_asked"):
        said = turn.lang.choose(text, q["guardian_answers"])
        if said is NO_MATCH:
            return NO_MATCH
        turn.data.pop("guardian_asked")
        agent["legal_guardian"] = said
        return "agree"
    plain = None if turn.lang.number(text) is not None else turn.lang.choose(text, q["options"])
    if plain == "decline":  # before the guardian's words: "我是监护人，但不同意"
        return "decline"
    said = turn.lang.choose(text, q["guardian_options"])
    if said in ("guardian", "agent"):
        agent["legal_guardian"] = said == "guardian"
        return "agree"
    if said == "decline":
        return "decline"
    return "ask" if plain == "agree" else NO_MATCH


async def submit(turn: Turn) -> None:
    """Ask for the application to be registered and queued: an effect, carried out after the session
    is saved, and safe to repeat (the outbox keys on the reference)."""
    turn.data["submitted_at"] = turn.now.isoformat(timespec="seconds")
    booking = turn.data.get("booking")
    if booking and (moved_to := (await turn.ports.book.moves()).get(booking["session_date"])):
        booking["session_date"] = moved_to  # moved by the county while this form was being filled in
    document = build_document(turn.case, turn.openid, turn.now, channel=turn.channel)
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
    "facts": read_several_facts,
    "household_address": read_household_address,
    "name": read_name,
    "id_number": read_id_number,
    "phone": read_phone,
    "applicant_phone": read_applicant_phone,
    "address": read_address,
    "mailing_address": read_mailing_address,
    "delivery": read_delivery,
    "certificate_no": read_certificate_no,
    "text": read_text,
    "subsidy_reason": read_subsidy_reason,
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


__all__ = ["read_answer", "READERS", "label_early_photo", "offered_sessions", "slot_lines", "new_reference"]
