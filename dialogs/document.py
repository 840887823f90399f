"""The application document handed to the intake system, and the application reference."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from dialogs.conditions import (
    Case,
    hardship_statuses,
    is_legal_guardian,
    on_mental_waitlist,
    publicity_skipped,
    renewing_certificate,
)
from dialogs.eligibility import evaluate_service
from dialogs.materials import checklist
from dialogs.routing import routing
from dialogs.service_roles import CERTIFICATE, DISABILITY_SUBSIDY

_REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud on the phone


def new_reference(prefix: str, now: datetime) -> str:
    """A reference a citizen can read out: the region's prefix, the date, six unambiguous characters."""
    tail = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(6))
    return f"{prefix}{now:%Y%m%d}{tail}"


def build_document(case: Case, openid: str, now: datetime, *, channel: str = "wechat") -> dict[str, Any]:
    data = case.data
    facts = case.facts
    applicant = data.get("applicant", {})
    agent = data.get("agent") if data.get("who") == "agent" else None
    photos = data.get("photos", {})
    statuses = sorted(hardship_statuses(case) or [])
    has_disability_info = any(k in facts for k in ("disability_category", "disability_level")) or data.get("certificate_no")
    return {
        "id": data["reference"],
        "region": case.pack.region,
        "created_at": data["created_at"],
        "submitted_at": data.get("submitted_at") or now.isoformat(timespec="seconds"),
        "channel": channel,
        "openid": openid,
        "services": list(case.services),
        "applicant": {
            "name": applicant.get("name"),
            "gender": applicant.get("gender"),
            "id_number": applicant.get("id_number"),
            "birth_date": applicant.get("birth_date"),
            "phone": applicant.get("phone"),
            "household_address": applicant.get("household_address"),
        },
        "agent": None
        if not agent
        else {
            "name": agent.get("name"),
            "id_number": agent.get("id_number"),
            "phone": agent.get("phone"),
            "relation": agent.get("relation"),
            "gender": agent.get("gender"),
            "residence": agent.get("residence"),
            # 法定监护人 (审批表 监护人信息), or someone applying on the applicant's behalf
            "legal_guardian": is_legal_guardian(case),
        },
        "routing": routing(case.pack, data),
        "disability": None
        if not has_disability_info
        else {
            "certificate_no": data.get("certificate_no"),
            "category": facts.get("disability_category"),
            "level": facts.get("disability_level"),
            "holds_certificate": facts.get("has_certificate") in (True, "renewal") if "has_certificate" in facts else None,
            "certificate_request": None
            if not case.chose_role(CERTIFICATE)
            else ("renewal" if renewing_certificate(case) else "new"),
        },
        "hardship": {
            # `status`: one category (the first), kept for older readers; `statuses`: all that apply.
            "status": statuses[0] if statuses else None,
            "statuses": statuses,
            "local_hukou": facts.get("local_hukou"),
            "pension_enrolled": facts.get("pension_enrolled"),
            "medical_insured": facts.get("medical_insured"),
            "subsidy_reason": data.get("subsidy_reason"),
            # 审批表: 困难残疾人生活补贴申请理由 / 重度残疾人护理补贴申请理由, one per chosen subsidy
            "subsidy_reasons": {code: reason for code, reason in _subsidy_reasons(case).items() if code in case.services},
        },
        "eligibility": {code: evaluate_service(case, code) for code in case.services},
        "materials": [
            {
                "service": list(item.services),
                "code": item.material.code,
                "name": item.material.name,
                "status": "photo" if item.material.code in photos else "bring",
                **({"media_id": photos[item.material.code]["media_id"]} if item.material.code in photos else {}),
            }
            for item in checklist(case)
        ],
        "appointment": _appointment(case),
        "publicity": {
            code: not publicity_skipped(case, code) for code in case.services if case.pack.services[code].raw.get("publicity")
        },
        "result_delivery": None
        if not data.get("delivery")
        else {
            "method": data.get("delivery"),
            "address": data.get("mailing_address"),
        },
        "consent": data.get("consent", {}),
        "declaration": {
            "text": case.pack.raw["declaration"]["text"],
            "version": case.pack.raw["declaration"].get("version"),
            "basis": case.pack.raw["declaration"]["basis"],
        },
    }


def _appointment(case: Case) -> dict[str, Any] | None:
    if not case.chose_role(CERTIFICATE):
        return None
    if on_mental_waitlist(case):
        return {"session_date": None, "period": None, "place": None, "kind": "mental_waitlist"}
    booking = case.data.get("booking")
    if not booking:
        return None
    return {
        "session_date": booking["session_date"],
        "period": booking["period"],
        "place": booking["place"],
        "kind": "monthly_session",
    }


def _subsidy_reasons(case: Case) -> dict[str, str]:
    """The reason given for each subsidy (older sessions hold one reason for both)."""
    data = case.data
    if data.get("subsidy_reasons"):
        return dict(data["subsidy_reasons"])
    subsidies = case.pack.with_role(DISABILITY_SUBSIDY)
    return {code: data["subsidy_reason"] for code in subsidies} if data.get("subsidy_reason") else {}
