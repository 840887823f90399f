"""The application flow: from "who is applying" to a submitted application. Routing only.

Each step is one question. `answer` says how the reply is read (dialogs/answers.py), `ask_if`
names a condition (dialogs/conditions.py). A step is skipped when its condition is false, or when
the application already holds its answer (said earlier, or several facts in one message), so the
citizen is asked only what the chosen services need and what is still missing. Both are
transitions of the machine (trigger `skip`), so the diagram shows every skip.
Wording is in content/common/questions.yaml under the step's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class At(StrEnum):
    """Every step's name, declared once: the session's `state`, the step's key in content/common/questions.yaml
    and the diagram's states. Code names a step by its member (`At.summary`), never by a string."""

    who = "who"
    agent_relation = "agent_relation"
    agent_name = "agent_name"
    agent_id = "agent_id"
    agent_phone = "agent_phone"
    agent_residence = "agent_residence"
    choose_services = "choose_services"
    household_address_first = "household_address_first"
    fact_local_hukou = "fact_local_hukou"
    fact_has_certificate = "fact_has_certificate"
    certificate_first = "certificate_first"
    fact_disability_category = "fact_disability_category"
    fact_disability_level = "fact_disability_level"
    fact_hardship_status = "fact_hardship_status"
    fact_pension_enrolled = "fact_pension_enrolled"
    fact_pension_exceptions = "fact_pension_exceptions"
    fact_medical_insured = "fact_medical_insured"
    suggest_services = "suggest_services"
    eligibility_notice = "eligibility_notice"
    applicant_name = "applicant_name"
    applicant_id = "applicant_id"
    eligibility_recheck = "eligibility_recheck"
    applicant_phone = "applicant_phone"
    household_address = "household_address"
    household_place = "household_place"
    certificate_no = "certificate_no"
    subsidy_reason = "subsidy_reason"
    result_delivery = "result_delivery"
    mailing_address = "mailing_address"
    checklist = "checklist"
    booking = "booking"
    summary = "summary"
    consent_sensitive = "consent_sensitive"
    submitted = "submitted"


@dataclass(frozen=True)
class Step:
    name: str
    answer: str
    ask_if: str | None = None
    # Asked again even when answered: a confirmation is given for what the application says now.
    always_ask: bool = False
    # The citizen types free text here: a message that looks like a question is more likely an answer.
    free_text: bool = False
    # From here "改电话" (and the like) goes back to that answer.
    edits_from: bool = False
    # Told, not asked, when the next question asked is one of these: said just before it, in the same
    # message, and passed (the materials list needs no answer of its own where a question follows it).
    told_with: frozenset[str] = frozenset()


STEPS: tuple[Step, ...] = (
    # 1. who is applying (and the guardian or agent's own details)
    Step(At.who, "choice:who"),
    Step(At.agent_relation, "choice:agent.relation", ask_if="relation_not_said"),
    Step(At.agent_name, "name:agent.name", free_text=True, ask_if="applying_for_someone"),
    Step(At.agent_id, "id_number:agent.id_number", ask_if="applying_for_someone"),
    Step(At.agent_phone, "phone:agent.phone", ask_if="applying_for_someone"),
    Step(At.agent_residence, "address:agent.residence", ask_if="asks_agent_residence", free_text=True),
    # 2. which services
    Step(At.choose_services, "services"),
    # 3. the eligibility screen: only the facts the chosen services' rules read
    # the 户口本 address first where the 户籍 matters: an address in the pack's area answers it (the form asks it anyway)
    Step(At.household_address_first, "household_address:applicant.household_address", ask_if="needs_local_hukou", free_text=True),
    Step(At.fact_local_hukou, "fact", ask_if="needs_local_hukou"),
    Step(At.fact_has_certificate, "fact", ask_if="needs_has_certificate"),
    # a holder's 证号 first: it holds the ID number, the category and the level, so those are not asked
    Step(At.certificate_first, "certificate_no", ask_if="asks_certificate_first"),
    Step(At.fact_disability_category, "fact", ask_if="needs_disability_category"),
    Step(At.fact_disability_level, "fact", ask_if="needs_disability_level"),
    Step(At.fact_hardship_status, "fact", ask_if="needs_hardship_status"),
    Step(At.fact_pension_enrolled, "fact", ask_if="needs_pension_enrolled"),
    # 在校学生 and 职工养老保险: one sentence of the scheme (附件2 备注2), one question with several answers
    Step(At.fact_pension_exceptions, "facts", ask_if="needs_pension_exceptions"),
    Step(At.fact_medical_insured, "fact", ask_if="needs_medical_insured"),
    Step(At.suggest_services, "suggestion", ask_if="guided"),
    Step(At.eligibility_notice, "exclusions", ask_if="some_service_excluded"),
    # 4. the form
    Step(At.applicant_name, "name:applicant.name", free_text=True),
    Step(At.applicant_id, "id_number:applicant.id_number", ask_if="applicant_id_unknown"),
    # the age read from the ID number may exclude a service (内蒙古 年满16周岁): said before going on
    Step(At.eligibility_recheck, "exclusions", ask_if="some_service_excluded"),
    Step(At.applicant_phone, "applicant_phone"),
    Step(At.household_address, "household_address:applicant.household_address", free_text=True),
    Step(At.household_place, "household_place", ask_if="household_place_unread", free_text=True),
    # asked here when not given first (a corrected ID number that is not the certificate's drops it)
    Step(At.certificate_no, "certificate_no", ask_if="certificate_no_missing"),
    Step(At.subsidy_reason, "subsidy_reason:subsidy_reason", ask_if="asks_subsidy_reason", free_text=True),
    # 5. materials: told with how the result is collected where that is asked, else a step of its own
    Step(At.checklist, "checklist", told_with=frozenset({At.result_delivery})),
    Step(At.result_delivery, "delivery:delivery", ask_if="offers_result_delivery"),
    Step(At.mailing_address, "mailing_address", ask_if="wants_mail", free_text=True),
    # 6. the assessment session
    Step(At.booking, "booking", ask_if="needs_session_booking"),
    # 7. summary and consent, 8. submit. The declaration is printed with the summary and confirmed by the
    # same answer (it is an undertaking that what was checked is true, not a consent); the consent to
    # sensitive personal information stays a separate answer of its own (个人信息保护法 第二十九条). Only a
    # 法定监护人 consents as guardian (a neighbour or 村干部 is an agent): a relative who may be one says which there.
    Step(At.summary, "summary", always_ask=True, edits_from=True),
    Step(At.consent_sensitive, "consent", always_ask=True, edits_from=True),
    Step(At.submitted, "after_submit", always_ask=True),
)

# Detours, tried before the straight path.
DETOURS = [
    {"trigger": "next", "source": At.suggest_services, "dest": At.choose_services, "conditions": ["wants_to_rechoose"]},
    {"trigger": "next", "source": At.eligibility_notice, "dest": At.choose_services, "conditions": ["nothing_left_to_apply_for"]},
    {
        "trigger": "next",
        "source": At.eligibility_recheck,
        "dest": At.choose_services,
        "conditions": ["nothing_left_to_apply_for"],
    },
]

STRAIGHT = [{"trigger": "next", "source": here.name, "dest": there.name} for here, there in zip(STEPS, STEPS[1:], strict=False)]

# Entering a step that need not be asked moves straight on: `skip` is fired until it does not apply.
SKIPS = [
    transition
    for here, there in zip(STEPS, STEPS[1:], strict=False)
    for transition in (
        *([{"trigger": "skip", "source": here.name, "dest": there.name, "unless": [here.ask_if]}] if here.ask_if else []),
        *([] if here.always_ask else [{"trigger": "skip", "source": here.name, "dest": there.name, "conditions": ["answered"]}]),
    )
]

TRANSITIONS = DETOURS + STRAIGHT + SKIPS

INITIAL = At.who
FINAL = At.submitted
