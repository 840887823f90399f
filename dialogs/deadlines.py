"""When a service is expected to be finished: its deadline in working days or months, from the pack."""
from __future__ import annotations

from datetime import date

from dialogs.conditions import holds_certificate
from dialogs.turn import Turn
from dialogs.workdays import is_certain


def expected_date(turn: Turn, code: str) -> date | None:
    deadline = turn.pack.services[code].deadline
    if deadline.get("from") == "certificate" and not holds_certificate(turn.case):
        return None  # counted from the certificate, which a new applicant does not have yet
    if deadline.get("maintenance"):
        return None  # done at the twice-yearly list maintenance: no date of its own
    start = turn.now.date()
    booking = turn.data.get("booking")
    if deadline.get("from") == "assessment" and booking:
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
