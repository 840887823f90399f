"""The assessment sessions for the console: the coming sessions with their bookings, and a day's roster
(the same rows as `bot sessions roster`, bot/operator_cli.py) as a printable page and as xlsx."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta

from bot.composition import Services
from bot.operator_cli import ROSTER_COLUMNS, roster_rows
from dialogs.assessment import session_on, sessions_with_moves

COMING = 6


@dataclass(frozen=True)
class SessionRow:
    day: str
    scheduled: str
    moved_by_holiday: bool
    rescheduled: bool  # moved by the county (`bot sessions move`, or the console)
    period: str
    place: str
    booked: int
    capacity: int


async def coming_sessions(s: Services, count: int = COMING) -> list[SessionRow]:
    """The next sessions from today on, each on the day it was moved to, with how many are booked on each."""
    capacity = int(s.pack.assessment.get("capacity", 0))
    rows = []
    moves = await s.book.moves()
    for session in sessions_with_moves(s.pack, s.calendar, s.clock.today() - timedelta(days=1), count, moves):
        rows.append(
            SessionRow(
                session.key,
                session.scheduled.isoformat(),
                session.moved and not session.rescheduled,
                session.rescheduled,
                session.period,
                session.place,
                len(await s.book.holders(session.key)),
                capacity,
            )
        )
    return rows


async def mental_waiting(s: Services) -> int:
    return len(await s.book.waitlist("mental"))


async def is_session_day(s: Services, day: str) -> bool:
    """A day a session is held on: by the calendar, or the day one was moved to."""
    try:
        if session_on(s.pack, s.calendar, date.fromisoformat(day)) is not None:
            return True
    except ValueError:
        return False
    return day in (await s.book.moves()).values()


async def roster(s: Services, day: str) -> tuple[list[str], list[list[str]]]:
    return ROSTER_COLUMNS, await roster_rows(s, day)


async def roster_xlsx(s: Services, day: str) -> bytes:
    from openpyxl import Workbook

    columns, rows = await roster(s, day)
    book = Workbook()
    sheet = book.active
    sheet.title = day
    sheet.append(columns)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
