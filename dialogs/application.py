"""The application flow: from "who is applying" to a submitted application. Routing only.

Each step is one question. `answer` says how the reply is read (dialogs/answers.py), `ask_if`
names a condition (dialogs/conditions.py): a step whose condition is false is skipped, so the
citizen is asked only what the chosen services need and the application does not already say.
Wording is in content/common/questions.yaml under the step's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str
    answer: str
    ask_if: str | None = None


STEPS: tuple[Step, ...] = (
    # 1. who is applying (and the guardian or agent's own details)
    Step("who", "choice:who"),
    Step("agent_relation", "choice:agent.relation", ask_if="applying_for_someone"),
    Step("agent_name", "name:agent.name", ask_if="applying_for_someone"),
    Step("agent_id", "id_number:agent.id_number", ask_if="applying_for_someone"),
    Step("agent_phone", "phone:agent.phone", ask_if="applying_for_someone"),
    Step("agent_residence", "address:agent.residence", ask_if="asks_agent_residence"),
    # 2. which services
    Step("choose_services", "services"),
    # 3. the eligibility screen: only the facts the chosen services' rules read
    Step("fact_local_hukou", "fact", ask_if="needs_local_hukou"),
    Step("fact_has_certificate", "fact", ask_if="needs_has_certificate"),
    # a holder's 证号 first: it holds the ID number, the category and the level, so those are not asked
    Step("certificate_first", "certificate_no", ask_if="asks_certificate_first"),
    Step("fact_disability_category", "fact", ask_if="needs_disability_category"),
    Step("fact_disability_level", "fact", ask_if="needs_disability_level"),
    Step("fact_hardship_status", "fact", ask_if="needs_hardship_status"),
    Step("fact_pension_enrolled", "fact", ask_if="needs_pension_enrolled"),
    Step("fact_in_school", "fact", ask_if="needs_in_school"),
    Step("fact_employee_pension", "fact", ask_if="needs_employee_pension"),
    Step("fact_medical_insured", "fact", ask_if="needs_medical_insured"),
    Step("suggest_services", "suggestion", ask_if="guided"),
    Step("eligibility_notice", "exclusions", ask_if="some_service_excluded"),
    # 4. the form
    Step("applicant_name", "name:applicant.name"),
    Step("applicant_id", "id_number:applicant.id_number", ask_if="applicant_id_unknown"),
    # the age read from the ID number may exclude a service (内蒙古 年满16周岁): said before going on
    Step("eligibility_recheck", "exclusions", ask_if="some_service_excluded"),
    # only a 法定监护人 consents as guardian; a neighbour or 村干部 is an agent
    Step("agent_is_guardian", "choice:agent.legal_guardian", ask_if="may_be_legal_guardian"),
    Step("applicant_phone", "applicant_phone"),
    Step("household_address", "address:applicant.household_address"),
    Step("household_place", "household_place", ask_if="household_place_unread"),
    # asked here when not given first (a corrected ID number that is not the certificate's drops it)
    Step("certificate_no", "certificate_no", ask_if="certificate_no_missing"),
    Step("subsidy_reason", "subsidy_reason:subsidy_reason", ask_if="asks_subsidy_reason"),
    Step("result_delivery", "choice:delivery", ask_if="offers_result_delivery"),
    Step("mailing_address", "mailing_address", ask_if="wants_mail"),
    # 5. materials, 6. the assessment session
    Step("checklist", "checklist"),
    Step("booking", "booking", ask_if="needs_session_booking"),
    # 7. summary and consent, 8. submit
    Step("summary", "summary"),
    Step("declaration", "choice:declaration"),
    Step("consent_sensitive", "consent"),
    Step("submitted", "after_submit"),
)

# Detours, tried before the straight path.
DETOURS = [
    {"trigger": "next", "source": "suggest_services", "dest": "choose_services", "conditions": "wants_to_rechoose"},
    {"trigger": "next", "source": "eligibility_notice", "dest": "choose_services", "conditions": "nothing_left_to_apply_for"},
    {"trigger": "next", "source": "eligibility_recheck", "dest": "choose_services", "conditions": "nothing_left_to_apply_for"},
    {"trigger": "next", "source": "declaration", "dest": "summary", "conditions": "wants_to_revise"},
]

TRANSITIONS = DETOURS + [
    {"trigger": "next", "source": here.name, "dest": there.name} for here, there in zip(STEPS, STEPS[1:], strict=False)
]

INITIAL = "who"
FINAL = "submitted"
