"""When the disability assessment sessions are: the pack's day of month, moved off holidays."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from dialogs.pack import Pack
from dialogs.workdays import WorkCalendar, is_certain

WEEKDAYS = "一二三四五六日"


@dataclass(frozen=True)
class AssessmentSession:
    day: date  # when it is held
    scheduled: date  # the pack's nominal day (the 11th)
    period: str
    place: str
    certain: bool = True  # False: its year has no published holiday schedule ("以通知为准")
    rescheduled: bool = False  # moved by an operator (`bot sessions move`), not by the holiday rule

    @property
    def key(self) -> str:
        return self.day.isoformat()

    @property
    def moved(self) -> bool:
        return self.day != self.scheduled


def held_on(pack: Pack, calendar: WorkCalendar, scheduled: date) -> date:
    rule = pack.assessment.get("move_rule", "next_workday")
    if rule == "next_workday":
        return calendar.next_workday(scheduled)
    if rule == "previous_workday":
        d = scheduled
        while not calendar.is_workday(d):
            d -= timedelta(days=1)
        return d
    raise ValueError(f"unknown move_rule {rule!r} in pack {pack.region}")


def monthly_sessions(pack: Pack, calendar: WorkCalendar, after: date, count: int) -> list[AssessmentSession]:
    """The next `count` sessions held strictly after `after`."""
    a = pack.assessment
    if a.get("mode") != "monthly_session":
        return []
    sessions: list[AssessmentSession] = []
    year, month = after.year, after.month
    while len(sessions) < count:
        scheduled = date(year, month, int(a["day_of_month"]))
        day = held_on(pack, calendar, scheduled)
        if day > after:
            sessions.append(
                AssessmentSession(
                    day, scheduled, a.get("period", ""), a.get("place", ""), certain=is_certain(calendar, scheduled, day)
                )
            )
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return sessions


def sessions_with_moves(
    pack: Pack, calendar: WorkCalendar, after: date, count: int, moves: dict[str, str]
) -> list[AssessmentSession]:
    """The next `count` sessions held after `after`, each moved session on its new day (a session
    moved from before `after` to after it still counts)."""
    a = pack.assessment
    if a.get("mode") != "monthly_session":
        return []
    sessions = []
    for s in monthly_sessions(pack, calendar, after - timedelta(days=62), count + 3):
        new = moves.get(s.key)
        if new is not None:
            s = replace(s, day=date.fromisoformat(new), rescheduled=True)
        if s.day > after:
            sessions.append(s)
    return sorted(sessions, key=lambda s: s.day)[:count]


def session_on(pack: Pack, calendar: WorkCalendar, day: date) -> AssessmentSession | None:
    """The session held on `day`, if one is."""
    a = pack.assessment
    if a.get("mode") != "monthly_session":
        return None
    for months_back in (0, 1):
        y, m = day.year, day.month - months_back
        if m == 0:
            y, m = y - 1, 12
        scheduled = date(y, m, int(a["day_of_month"]))
        if held_on(pack, calendar, scheduled) == day:
            return AssessmentSession(
                day, scheduled, a.get("period", ""), a.get("place", ""), certain=is_certain(calendar, scheduled, day)
            )
    return None


def format_day(d: date) -> str:
    return f"{d.month}月{d.day}日"


def weekday(d: date) -> str:
    return "周" + WEEKDAYS[d.weekday()]
