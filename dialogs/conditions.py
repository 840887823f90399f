"""Named conditions over one application in progress.

Three kinds, all plain functions of a Case (the answers so far, the policy pack and today):
- eligibility checks named by the pack's rules (`check: level_in`), returning True, False or None
  when the answer is not known yet (e.g. the level is assessed later);
- material conditions named by the pack's materials (`when: needs_guardian_proof`);
- flow conditions named in dialogs/application.py (`ask_if`, transition `conditions`).
Policy values (levels, statuses, ages) come from the rule's parameters in the pack, never from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from dialogs.pack import Pack, Rule
from dialogs.service_roles import CERTIFICATE, DISABILITY_SUBSIDY, READS_CERTIFICATE_NO
from dialogs.validators import ValidationError, parse_id_number

MENTAL = 6
INTELLECTUAL = 5
ADULT_AGE = 18
CONSENT_AGE = 14  # PIPL art. 31: personal information of a minor under 14 needs the guardian's consent


@dataclass
class Case:
    data: dict[str, Any]
    pack: Pack
    today: date

    @property
    def facts(self) -> dict[str, Any]:
        return self.data.setdefault("facts", {})

    @property
    def services(self) -> list[str]:
        return self.data.get("services", [])

    def chose(self, *codes: str) -> bool:
        return any(c in self.services for c in codes)

    def chose_role(self, role: str) -> bool:
        """Whether a chosen service plays this role (dialogs/service_roles.py)."""
        return self.chose(*self.pack.with_role(role))

    @property
    def applicant_age(self) -> int | None:
        number = self.data.get("applicant", {}).get("id_number")
        if not number:
            return None
        try:
            return parse_id_number(number, today=self.today).age_on(self.today)
        except ValidationError:
            return None


# -- facts as the screen records them -----------------------------------------------------------
# has_certificate: True (holds one), False (none yet), RENEWAL (holds one but it is lost, damaged or
# needs a new assessment: a 换领/补办/重新评定 case, which the certificate service handles).
RENEWAL = "renewal"


def holds_certificate(case: Case) -> bool:
    return case.facts.get("has_certificate") in (True, RENEWAL)


def renewing_certificate(case: Case) -> bool:
    return case.facts.get("has_certificate") == RENEWAL


def hardship_statuses(case: Case) -> set[str] | None:
    """The family's hardship categories (several may apply: 低保 and 脱贫); None when not asked."""
    value = case.facts.get("hardship_status")
    if value is None:
        return None
    values = {value} if isinstance(value, str) else set(value)
    return values - {"none"} if len(values) > 1 else values


def certificate_on_the_way(case: Case) -> bool:
    """No certificate yet, but one is being applied for (chosen, or the guided path will suggest it)."""
    return not holds_certificate(case) and (case.chose_role(CERTIFICATE) or guided(case))


# -- eligibility checks (True / False / None = not known yet) -------------------------------------
def _local_hukou(case: Case, rule: Rule) -> bool | None:
    return case.facts.get("local_hukou")


def _holds_certificate(case: Case, rule: Rule) -> bool | None:
    if holds_certificate(case):
        return True
    if certificate_on_the_way(case):
        return None  # decided by the assessment
    return case.facts.get("has_certificate")


def _no_certificate_yet(case: Case, rule: Rule) -> bool | None:
    value = case.facts.get("has_certificate")
    return None if value is None else value is not True


def _level_in(case: Case, rule: Rule) -> bool | None:
    # The level that counts is the one assessed and written on a certificate; a level the citizen
    # guesses before the assessment decides nothing.
    if not holds_certificate(case):
        return None
    level = case.facts.get("disability_level")
    return None if level is None else level in rule.params["levels"]


def _hardship_in(case: Case, rule: Rule) -> bool | None:
    statuses = hardship_statuses(case)
    return None if statuses is None else bool(statuses & set(rule.params["statuses"]))


def _pension_enrolled(case: Case, rule: Rule) -> bool | None:
    return case.facts.get("pension_enrolled")


def _not_in_school(case: Case, rule: Rule) -> bool | None:
    value = case.facts.get("in_school")
    return None if value is None else not value


def _no_employee_pension(case: Case, rule: Rule) -> bool | None:
    value = case.facts.get("employee_pension")
    return None if value is None else not value


def _medical_insured(case: Case, rule: Rule) -> bool | None:
    return case.facts.get("medical_insured")


def _age_at_least(case: Case, rule: Rule) -> bool | None:
    age = case.applicant_age
    return None if age is None else age >= rule.params["years"]


ELIGIBILITY_CHECKS: dict[str, Callable[[Case, Rule], bool | None]] = {
    "local_hukou": _local_hukou,
    "holds_certificate": _holds_certificate,
    "no_certificate_yet": _no_certificate_yet,
    "level_in": _level_in,
    "hardship_in": _hardship_in,
    "pension_enrolled": _pension_enrolled,
    "not_in_school": _not_in_school,
    "no_employee_pension": _no_employee_pension,
    "medical_insured": _medical_insured,
    "age_at_least": _age_at_least,
}

# The screening question (fact) each check needs answered; age comes from the ID number in the form.
FACTS_READ_BY_CHECK = {
    "local_hukou": "local_hukou",
    "holds_certificate": "has_certificate",
    "no_certificate_yet": "has_certificate",
    "level_in": "disability_level",
    "hardship_in": "hardship_status",
    "pension_enrolled": "pension_enrolled",
    "not_in_school": "in_school",
    "no_employee_pension": "employee_pension",
    "medical_insured": "medical_insured",
    "age_at_least": None,
}


def facts_asked_by(pack: Pack, step: str) -> tuple[str, ...]:
    """fact_<name> asks <name>; a question that asks several facts names them (`asks:` in questions.yaml)."""
    return tuple(pack.questions.get(step, {}).get("asks") or (step.removeprefix("fact_"),))


# -- material conditions ----------------------------------------------------------------------------
def applicant_is_minor(case: Case) -> bool:
    age = case.applicant_age
    return age is not None and age < ADULT_AGE


def category_is_mental(case: Case) -> bool:
    return case.facts.get("disability_category") == MENTAL


def needs_guardian_proof(case: Case) -> bool:
    return applicant_is_minor(case) or case.facts.get("disability_category") in (INTELLECTUAL, MENTAL)


def hardship_claimed(case: Case) -> bool:
    return bool((hardship_statuses(case) or set()) - {"none"})


def hardship_is_illness_poverty(case: Case) -> bool:
    return "illness_poverty" in (hardship_statuses(case) or set())


def publicity_skipped(case: Case, code: str) -> bool:
    """Whether the pack says this service's result is not publicly posted for this applicant."""
    rule = case.pack.services[code].raw.get("publicity") or {}
    return any(CONDITIONS[name](case) for name in rule.get("skip_when", []))


def needs_guardian_consent(case: Case) -> bool:
    age = case.applicant_age
    return age is not None and age < CONSENT_AGE


# -- flow conditions ----------------------------------------------------------------------------------
def applying_for_someone(case: Case) -> bool:
    return case.data.get("who") == "agent"


def relation_not_said(case: Case) -> bool:
    """Asked for someone, and "帮我父亲申请" did not already say how the citizen is related."""
    return applying_for_someone(case) and not case.data.get("agent", {}).get("relation")


def guided(case: Case) -> bool:
    return bool(case.data.get("guided"))


def services_considered(case: Case) -> list[str]:
    """The services being screened: the chosen ones, or all of them while we help to choose."""
    return list(case.pack.service_order) if guided(case) else case.services


def _fact_needed(case: Case, fact: str, *, describes_the_person: bool = False) -> bool:
    """A rule of a service being screened reads it, and (unless it describes the person, as the
    certificate and level do for the application) no answer so far already excludes that service:
    养老保险 is not asked about once 户籍 or age has excluded the pension."""
    if fact in case.facts:
        return False
    for code in services_considered(case):
        rules = case.pack.services[code].rules
        if any(FACTS_READ_BY_CHECK[rule.check] == fact for rule in rules) and (
            describes_the_person or not _already_excluded(case, rules)
        ):
            return True
    return False


def _already_excluded(case: Case, rules: tuple[Rule, ...]) -> bool:
    return any(ELIGIBILITY_CHECKS[rule.check](case, rule) is False for rule in rules)


def needs_local_hukou(case: Case) -> bool:
    return _fact_needed(case, "local_hukou")


def needs_has_certificate(case: Case) -> bool:
    # Asked before a certificate is offered or booked: a holder needs no new one (受理条件：疑似残疾人).
    return _fact_needed(case, "has_certificate", describes_the_person=True)


def needs_disability_category(case: Case) -> bool:
    if "disability_category" in case.facts:
        return False
    considered = services_considered(case)
    return any(s in considered for s in (*case.pack.with_role(CERTIFICATE), *case.pack.with_role(DISABILITY_SUBSIDY)))


def needs_disability_level(case: Case) -> bool:
    if not holds_certificate(case):
        return False  # no certificate, no level yet: the assessment decides it
    return _fact_needed(case, "disability_level", describes_the_person=True)


def needs_hardship_status(case: Case) -> bool:
    # Only where a rule reads it: not for 护理补贴 alone.
    return _fact_needed(case, "hardship_status")


def needs_pension_enrolled(case: Case) -> bool:
    return _fact_needed(case, "pension_enrolled")


def needs_in_school(case: Case) -> bool:
    return _fact_needed(case, "in_school")


def needs_employee_pension(case: Case) -> bool:
    return _fact_needed(case, "employee_pension")


def needs_pension_exceptions(case: Case) -> bool:
    """在校学生 or 职工养老保险: asked together (one sentence of the scheme) when a rule still reads either."""
    return needs_in_school(case) or needs_employee_pension(case)


def needs_medical_insured(case: Case) -> bool:
    return _fact_needed(case, "medical_insured")


def some_service_excluded(case: Case) -> bool:
    """A rule the seed states excludes a chosen service: asked. One the seed does not state is told with
    the next question instead (dialogs/prompts.py assumption_notes)."""
    from dialogs.eligibility import excluded_by_the_scheme

    return bool(excluded_by_the_scheme(case))


def nothing_left_to_apply_for(case: Case) -> bool:
    return not case.services


def wants_to_rechoose(case: Case) -> bool:
    return case.data.get("suggestion") == "rechoose"


def needs_certificate_no(case: Case) -> bool:
    """A holder's 证号: read by the subsidies and the pension, and by a 换领/补办/重新评定."""
    return _certificate_read_by(case, case.services)


def _certificate_read_by(case: Case, services: list[str]) -> bool:
    if not holds_certificate(case):
        return False
    return any(s in services for s in case.pack.with_role(READS_CERTIFICATE_NO)) or (
        renewing_certificate(case) and any(s in services for s in case.pack.with_role(CERTIFICATE))
    )


def asks_certificate_first(case: Case) -> bool:
    """Right after "有证": the 证号 gives the ID number, category and level (also while helping to choose)."""
    return (
        _certificate_read_by(case, services_considered(case))
        and not case.data.get("certificate_no")
        and not case.data.get("certificate_later")
    )


def certificate_no_missing(case: Case) -> bool:
    return needs_certificate_no(case) and not case.data.get("certificate_no")


def applicant_id_unknown(case: Case) -> bool:
    return not case.data.get("applicant", {}).get("id_number")


def asks_agent_residence(case: Case) -> bool:
    return applying_for_someone(case) and bool(case.pack.form.get("ask_agent_residence"))


def guardian_by_law(case: Case) -> bool:
    """The agent is the 法定监护人 by law, so it is not asked: the pack's form.guardian_by_law (a parent
    applying for a minor child, 民法典 第二十七条)."""
    rule = case.pack.form.get("guardian_by_law")
    if not rule or not applying_for_someone(case):
        return False
    relation_ok = case.data.get("agent", {}).get("relation") in rule["agent_relations"]
    return relation_ok and (rule["applicant"] != "minor" or applicant_is_minor(case))


def is_legal_guardian(case: Case) -> bool:
    return bool(case.data.get("agent", {}).get("legal_guardian")) or guardian_by_law(case)


def may_be_legal_guardian(case: Case) -> bool:
    """A relative applying for a minor or a person with 智力/精神残疾 may be the 法定监护人; anyone else is an agent."""
    if not applying_for_someone(case) or case.data.get("agent", {}).get("relation") in (None, "other"):
        return False
    if guardian_by_law(case):
        return False
    return applicant_is_minor(case) or case.facts.get("disability_category") in (INTELLECTUAL, MENTAL)


def consent_asks_guardian(case: Case) -> bool:
    """Whether the agent is the 法定监护人 is still to be said: asked with the consent, where it decides who consents."""
    return may_be_legal_guardian(case) and case.data.get("agent", {}).get("legal_guardian") is None


def household_place_unread(case: Case) -> bool:
    from dialogs.routing import place_unread

    return (
        bool(case.data.get("applicant", {}).get("household_address"))
        and not case.data.get("household_place")
        and place_unread(case.data, tuple(case.pack.raw.get("routing", {}).get("place_parts", ("township", "village"))))
    )


def consent_by(case: Case) -> str:
    if not applying_for_someone(case):
        return "applicant"
    return "guardian" if is_legal_guardian(case) else "agent"


def asks_subsidy_reason(case: Case) -> bool:
    return bool(case.pack.form.get("ask_subsidy_reason")) and case.chose_role(DISABILITY_SUBSIDY)


def offers_result_delivery(case: Case) -> bool:
    return bool(case.pack.form.get("result_delivery"))


def wants_mail(case: Case) -> bool:
    return offers_result_delivery(case) and case.data.get("delivery") == "mail"


def needs_session_booking(case: Case) -> bool:
    return case.chose_role(CERTIFICATE) and case.pack.assessment.get("mode") == "monthly_session" and not on_mental_waitlist(case)


def on_mental_waitlist(case: Case) -> bool:
    """精神残疾 is assessed at its own announced sessions when the pack says so."""
    return case.chose_role(CERTIFICATE) and category_is_mental(case) and bool(case.pack.assessment.get("mental"))


def consent_declined(case: Case) -> bool:
    return case.data.get("consent", {}).get("sensitive") is not True


CONDITIONS: dict[str, Callable[[Case], Any]] = {
    fn.__name__: fn
    for fn in (
        applicant_is_minor,
        category_is_mental,
        needs_guardian_proof,
        holds_certificate,
        hardship_claimed,
        hardship_is_illness_poverty,
        needs_guardian_consent,
        applying_for_someone,
        relation_not_said,
        guided,
        needs_local_hukou,
        needs_has_certificate,
        needs_disability_category,
        needs_disability_level,
        needs_hardship_status,
        needs_pension_enrolled,
        needs_in_school,
        needs_employee_pension,
        needs_pension_exceptions,
        needs_medical_insured,
        renewing_certificate,
        some_service_excluded,
        nothing_left_to_apply_for,
        wants_to_rechoose,
        needs_certificate_no,
        asks_certificate_first,
        certificate_no_missing,
        applicant_id_unknown,
        asks_subsidy_reason,
        asks_agent_residence,
        may_be_legal_guardian,
        guardian_by_law,
        household_place_unread,
        offers_result_delivery,
        wants_mail,
        needs_session_booking,
        on_mental_waitlist,
        consent_declined,
    )
}
