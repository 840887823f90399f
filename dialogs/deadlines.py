"""When a service is expected to be finished: its deadline in working days or months, from the pack."""

from __future__ import annotations

from datetime import date

from dialogs.conditions import holds_certificate
from dialogs.turn import Turn
from dialogs.workdays import is_certain


def expected_date(turn: Turn, code: str) -> date | None:
    deadline = turn.pack.services[code].deadline_on(turn.now.date())
    if deadline.get("from") == "certificate" and not holds_certificate(turn.case):
        return None  # counted from the certificate, which a new applicant does not have yet
    if deadline.get("maintenance"):
        return None  # done at the twice-yearly list maintenance: no date of its own
    start = turn.now.date()
    booking = turn.data.get("booking")
    if deadline.get("from") == "assessment":
        if not booking:
            # 精神残疾 waits for a session announced later (半年组织一次), and nothing is booked yet:
            # the month is counted from that session once it is known (expected_from_session).
            return None
        start = date.fromisoformat(booking["session_date"])
    if "months" in deadline:
        month = start.month - 1 + int(deadline["months"])
        year, month = start.year + month // 12, month % 12 + 1
        day = min(start.day, 28)
        return date(year, month, day)
    if "workdays" in deadline:
        end = turn.calendar.add_workdays(start, int(deadline["workdays"]))
        # Counted over a year with no published holiday schedule: not a date to promise.
        return end if is_certain(turn.calendar, start, end) else None
    return None


def expected_from_session(pack, calendar, code: str, session_day: date) -> date | None:
    """A service counted from the assessment, once its session is known (e.g. the announced 精神残疾
    session): the date the status and overdue marks should follow."""
    deadline = pack.services[code].deadline_on(session_day)
    if deadline.get("from") != "assessment":
        return None
    if "months" in deadline:
        month = session_day.month - 1 + int(deadline["months"])
        return date(session_day.year + month // 12, month % 12 + 1, min(session_day.day, 28))
    if "workdays" in deadline:
        end = calendar.add_workdays(session_day, int(deadline["workdays"]))
        return end if is_certain(calendar, session_day, end) else None
    return None


def expected_after_acceptance(pack, calendar, code: str, accepted_on: date, document: dict | None) -> date | None:
    """When the intake accepts a service: its expected completion, or None while it cannot be counted.

    A deadline that runs from the certificate (`from: certificate`) does not start at acceptance for
    an applicant who has none yet: the certificate comes after the assessment.
    """
    deadline = pack.services[code].deadline_on(accepted_on)
    if "workdays" not in deadline or deadline.get("maintenance"):
        return None
    if deadline.get("from") == "certificate":
        disability = (document or {}).get("disability") or {}
        if not disability.get("holds_certificate"):
            return None
    end = calendar.add_workdays(accepted_on, int(deadline["workdays"]))
    return end if is_certain(calendar, accepted_on, end) else None
