"""Named conditions over one application in progress.

Three kinds, all plain functions of a Case (the answers so far, the policy pack and today):
- eligibility checks named by the pack's rules (`check: level_in`), returning True, False or None
  when the answer is not known yet (e.g. the level is assessed later);
- material conditions named by the pack's materials (`when: needs_guardian_proof`);
- flow conditions named in dialogs/application.py (`ask_if`, transition `conditions`).
Policy values (levels, statuses, ages) come from the rule's parameters in the pack, never from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

from dialogs.pack import SUBSIDIES, Pack, Rule
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

    @property
    def applicant_age(self) -> int | None:
        number = self.data.get("applicant", {}).get("id_number")
        if not number:
            return None
        try:
            return parse_id_number(number, today=self.today).age_on(self.today)
        except ValidationError:
            return None


# -- eligibility checks (True / False / None = not known yet) -------------------------------------
def _local_hukou(case: Case, rule: Rule) -> bool | None:
    return case.facts.get("local_hukou")


def _holds_certificate(case: Case, rule: Rule) -> bool | None:
    if case.facts.get("has_certificate"):
        return True
    return None if case.chose("disability_certificate") else case.facts.get("has_certificate")


def _level_in(case: Case, rule: Rule) -> bool | None:
    level = case.facts.get("disability_level")
    return None if level is None else level in rule.params["levels"]


def _hardship_in(case: Case, rule: Rule) -> bool | None:
    status = case.facts.get("hardship_status")
    return None if status is None else status in rule.params["statuses"]


def _pension_enrolled(case: Case, rule: Rule) -> bool | None:
    return case.facts.get("pension_enrolled")


def _medical_insured(case: Case, rule: Rule) -> bool | None:
    return case.facts.get("medical_insured")


def _age_at_least(case: Case, rule: Rule) -> bool | None:
    age = case.applicant_age
    return None if age is None else age >= rule.params["years"]


ELIGIBILITY_CHECKS: dict[str, Callable[[Case, Rule], bool | None]] = {
    "local_hukou": _local_hukou,
    "holds_certificate": _holds_certificate,
    "level_in": _level_in,
    "hardship_in": _hardship_in,
    "pension_enrolled": _pension_enrolled,
    "medical_insured": _medical_insured,
    "age_at_least": _age_at_least,
}

# The screening question (fact) each check needs answered; age comes from the ID number in the form.
FACTS_READ_BY_CHECK = {
    "local_hukou": "local_hukou",
    "holds_certificate": "has_certificate",
    "level_in": "disability_level",
    "hardship_in": "hardship_status",
    "pension_enrolled": "pension_enrolled",
    "medical_insured": "medical_insured",
    "age_at_least": None,
}


# -- material conditions ----------------------------------------------------------------------------
def applicant_is_minor(case: Case) -> bool:
    age = case.applicant_age
    return age is not None and age < ADULT_AGE


def category_is_mental(case: Case) -> bool:
    return case.facts.get("disability_category") == MENTAL


def needs_guardian_proof(case: Case) -> bool:
    return applicant_is_minor(case) or case.facts.get("disability_category") in (INTELLECTUAL, MENTAL)


def holds_certificate(case: Case) -> bool:
    return bool(case.facts.get("has_certificate"))


def hardship_claimed(case: Case) -> bool:
    return case.facts.get("hardship_status") not in (None, "none")


def hardship_is_illness_poverty(case: Case) -> bool:
    return case.facts.get("hardship_status") == "illness_poverty"


def publicity_skipped(case: Case, code: str) -> bool:
    """Whether the pack says this service's result is not publicly posted for this applicant."""
    rule = case.pack.services[code].raw.get("publicity")
    return bool(rule) and any(CONDITIONS[name](case) for name in rule.get("skip_when", []))


def needs_guardian_consent(case: Case) -> bool:
    age = case.applicant_age
    return age is not None and age < CONSENT_AGE


# -- flow conditions ----------------------------------------------------------------------------------
def applying_for_someone(case: Case) -> bool:
    return case.data.get("who") == "agent"


def guided(case: Case) -> bool:
    return bool(case.data.get("guided"))


def services_considered(case: Case) -> list[str]:
    """The services being screened: the chosen ones, or all of them while we help to choose."""
    from dialogs.pack import SERVICE_ORDER

    return list(SERVICE_ORDER) if guided(case) else case.services


def _fact_needed(case: Case, fact: str) -> bool:
    if fact in case.facts:
        return False
    for code in services_considered(case):
        for rule in case.pack.services[code].rules:
            if FACTS_READ_BY_CHECK[rule.check] == fact:
                return True
    return False


def needs_local_hukou(case: Case) -> bool:
    return _fact_needed(case, "local_hukou")


def needs_has_certificate(case: Case) -> bool:
    if "disability_certificate" in services_considered(case) and not guided(case):
        return False  # applying for the certificate now: the assessment decides
    return _fact_needed(case, "has_certificate")


def needs_disability_category(case: Case) -> bool:
    if "disability_category" in case.facts:
        return False
    considered = services_considered(case)
    return "disability_certificate" in considered or any(s in considered for s in SUBSIDIES)


def needs_disability_level(case: Case) -> bool:
    if case.facts.get("has_certificate") is False and not case.chose("disability_certificate") and not guided(case):
        return False  # no certificate, no level: the certificate rule already decides
    return _fact_needed(case, "disability_level")


def needs_hardship_status(case: Case) -> bool:
    if "hardship_status" in case.facts:
        return False
    return _fact_needed(case, "hardship_status") or any(s in services_considered(case) for s in SUBSIDIES)


def needs_pension_enrolled(case: Case) -> bool:
    return _fact_needed(case, "pension_enrolled")


def needs_medical_insured(case: Case) -> bool:
    return _fact_needed(case, "medical_insured")


def some_service_excluded(case: Case) -> bool:
    from dialogs.eligibility import excluded_services

    return bool(excluded_services(case))


def nothing_left_to_apply_for(case: Case) -> bool:
    return not case.services


def wants_to_rechoose(case: Case) -> bool:
    return case.data.get("suggestion") == "rechoose"


def needs_certificate_no(case: Case) -> bool:
    return bool(case.facts.get("has_certificate")) and case.chose("living_subsidy", "nursing_subsidy", "pension_subsidy")


def asks_subsidy_reason(case: Case) -> bool:
    return bool(case.pack.form.get("ask_subsidy_reason")) and case.chose(*SUBSIDIES)


def offers_result_delivery(case: Case) -> bool:
    return bool(case.pack.form.get("result_delivery"))


def wants_mail(case: Case) -> bool:
    return offers_result_delivery(case) and case.data.get("delivery") == "mail"


def needs_session_booking(case: Case) -> bool:
    return (
        case.chose("disability_certificate")
        and case.pack.assessment.get("mode") == "monthly_session"
        and not on_mental_waitlist(case)
    )


def on_mental_waitlist(case: Case) -> bool:
    """精神残疾 is assessed at its own announced sessions when the pack says so."""
    return case.chose("disability_certificate") and category_is_mental(case) and bool(case.pack.assessment.get("mental"))


def wants_to_revise(case: Case) -> bool:
    return case.data.get("declaration") == "back"


def consent_declined(case: Case) -> bool:
    return case.data.get("consent", {}).get("sensitive") is not True


CONDITIONS: dict[str, Callable[[Case], Any]] = {
    fn.__name__: fn
    for fn in (
        applicant_is_minor, category_is_mental, needs_guardian_proof, holds_certificate, hardship_claimed,
        hardship_is_illness_poverty, needs_guardian_consent, applying_for_someone, guided,
        needs_local_hukou, needs_has_certificate, needs_disability_category, needs_disability_level,
        needs_hardship_status, needs_pension_enrolled, needs_medical_insured, some_service_excluded,
        nothing_left_to_apply_for, wants_to_rechoose, needs_certificate_no, asks_subsidy_reason,
        offers_result_delivery, wants_mail, needs_session_booking, on_mental_waitlist, wants_to_revise, consent_declined,
    )
}
