"""Assessment sessions: dates moved off holidays, and places booked atomically in Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import pytest
import redis.asyncio as aioredis

from dialogs.assessment import monthly_sessions, session_on
from dialogs.pack import load_pack
from dialogs.workdays import default_calendar
from integrations.assessment_book import RedisAssessmentBook


async def test_twenty_concurrent_bookings_for_five_places_book_exactly_five(redis_url, redis_client):
    clients = [aioredis.from_url(redis_url) for _ in range(20)]
    try:
        books = [RedisAssessmentBook(c, clock=time.time) for c in clients]
        results = await asyncio.gather(*(b.reserve("2026-12-11", f"QY-applicant-{i}", 5) for i, b in enumerate(books)))
        assert sum(results) == 5
        assert len(await books[0].holders("2026-12-11")) == 5
        assert await books[0].remaining(["2026-12-11", "2027-01-11"], 5) == {"2026-12-11": 0, "2027-01-11": 5}
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def test_booking_is_idempotent_and_cancelling_frees_the_place(redis_client):
    book = RedisAssessmentBook(redis_client, clock=time.time)
    assert await book.reserve("2026-12-11", "A", 1)
    assert await book.reserve("2026-12-11", "A", 1)  # the same applicant again: still theirs
    assert not await book.reserve("2026-12-11", "B", 1)
    await book.release("2026-12-11", "A")
    assert await book.reserve("2026-12-11", "B", 1)


async def test_mental_waitlist_keeps_order_and_no_duplicates(redis_client):
    book = RedisAssessmentBook(redis_client, clock=time.time)
    for holder in ["first", "second", "first"]:
        await book.join_waitlist("mental", holder)
    assert await book.waitlist("mental") == ["first", "second"]


@pytest.mark.parametrize(
    "today,expected",
    [
        # 2026-10-11 is a Sunday: held on Monday the 12th
        (date(2026, 9, 28), [date(2026, 10, 12), date(2026, 11, 11), date(2026, 12, 11)]),
        # 2026-01-11 Sunday -> 12th; 2026-04-11 Saturday -> 13th
        (date(2025, 12, 20), [date(2026, 1, 12), date(2026, 2, 11), date(2026, 3, 11)]),
        (date(2026, 3, 11), [date(2026, 4, 13), date(2026, 5, 11), date(2026, 6, 11)]),
        # the session day itself is no longer offered
        (date(2026, 12, 11), [date(2027, 1, 11), date(2027, 2, 11), date(2027, 3, 11)]),
    ],
)
def test_qingyang_sessions_are_on_the_11th_or_the_next_working_day(today, expected):
    pack = load_pack("qingyang")
    sessions = monthly_sessions(pack, default_calendar(), today, 3)
    assert [s.day for s in sessions] == expected
    assert all(s.period == "上午" and s.place == "青阳县医院门诊大厅一楼" for s in sessions)
    for s in sessions:
        assert session_on(pack, default_calendar(), s.day) == s


def test_hulunbuir_has_no_fixed_sessions():
    assert monthly_sessions(load_pack("hulunbuir"), default_calendar(), date(2026, 11, 23), 3) == []
