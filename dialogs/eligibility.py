"""Eligibility of each service from the pack's rules: eligible, excluded (which rule, why) or pending.

The bot never refuses to record an application: a citizen who insists on an excluded service
gets it marked "may_not_qualify" for the clerk to decide. A chosen service that only rules the seed
does not state (`assumption`) exclude is told, not asked, and kept the same way (`assumed`).
"""

from __future__ import annotations

from typing import Any

from dialogs.conditions import ELIGIBILITY_CHECKS, Case, services_considered

ELIGIBLE, EXCLUDED, PENDING, MAY_NOT_QUALIFY = "eligible", "excluded", "pending", "may_not_qualify"


def evaluate_service(case: Case, code: str) -> dict[str, Any]:
    rules = []
    outcome = ELIGIBLE
    for rule in case.pack.services[code].rules:
        ok = ELIGIBILITY_CHECKS[rule.check](case, rule)
        rules.append({"id": rule.id, "ok": ok, "reason": rule.reason, "basis": rule.basis})
        if ok is False:
            outcome = EXCLUDED
        elif ok is None and outcome == ELIGIBLE:
            outcome = PENDING
    if outcome == EXCLUDED and (code in case.data.get("insisted", []) or code in case.data.get("assumed", [])):
        outcome = MAY_NOT_QUALIFY
    return {"result": outcome, "rules": rules}


def assumed_only(case: Case, code: str, result: dict[str, Any]) -> bool:
    """Only rules the seed does not state exclude this service."""
    assumed = {r.id for r in case.pack.services[code].rules if "assumption" in r.params}
    return all(r["id"] in assumed for r in failed_rules(result))


def excluded_by_assumption(case: Case) -> list[str]:
    """Chosen services that only rules the seed does not state exclude, not yet told."""
    found = []
    for code in case.services:
        result = evaluate_service(case, code)
        if result["result"] == EXCLUDED and assumed_only(case, code, result):
            found.append(code)
    return found


def evaluate(case: Case) -> dict[str, dict[str, Any]]:
    return {code: evaluate_service(case, code) for code in services_considered(case)}


def failed_rules(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result["rules"] if r["ok"] is False]


def excluded_services(case: Case) -> list[str]:
    """Chosen services that a rule excludes and the citizen has not yet insisted on."""
    return [code for code in case.services if evaluate_service(case, code)["result"] == EXCLUDED]


def excluded_by_the_scheme(case: Case) -> list[str]:
    """Chosen services that a rule the seed states excludes (asked: drop them or apply anyway)."""
    return [code for code in excluded_services(case) if not assumed_only(case, code, evaluate_service(case, code))]


def suggested_services(case: Case) -> list[str]:
    """In the guided path: everything not excluded by the answers given."""
    return [code for code, r in evaluate(case).items() if r["result"] != EXCLUDED]
