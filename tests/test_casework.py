"""Casework after submission that stays true (issue 11 §2, issue 14 "After submission").

Through the real endpoint, the intake's POST /intake/events, the WeChat sandbox's inbox and the
operator commands on the same Redis. Dates come from the suite's clock, never written out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from bot import operator_cli as op
from bot.app import SERVICES
from bot.clock import CHINA
from bot.settings import OperatorError
from dialogs.assessment import format_day
from dialogs.deadlines import expected_from_session
from tests.conftest import WeChatUser
from tests.test_after_submission import MOTHER_CHILD, apply, inbox, reminders_due

BOOK_FIRST = MOTHER_CHILD[:17] + ["1", "1", "1", "1"]  # the first session offered


def at(day: date, hhmm: str) -> str:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(h, m), tzinfo=CHINA).isoformat()


async def appointment_day(services, ref: str) -> date:
    return date.fromisoformat((await services.registry.meta(ref))["appointment"]["session_date"])


def a_later_workday(services, day: date, *, after: int = 3) -> date:
    return services.calendar.add_workdays(day, after)


def a_weekend_after(day: date) -> date:
    return day + timedelta(days=(5 - day.weekday()) % 7 or 7)


# -- 1. moving a session -------------------------------------------------------------------------------------
async def test_a_moved_session_keeps_its_reminders_closes_the_old_day_and_can_be_undone(bot, clock, protocol):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMoveMother", protocol)
    ref = await apply(mother, BOOK_FIRST)
    old = await appointment_day(services, ref)
    # The 3-day reminder for the old day goes out; then the county moves the session.
    assert await reminders_due(bot, clock, at(old - timedelta(days=3), "09:05")) == 1
    new = a_later_workday(services, old)
    assert f"moved 1 bookings from {old} to {new}" in await op.move_session(services, old.isoformat(), new.isoformat())

    assert await services.book.holders(old.isoformat()) == [] and await services.book.holders(new.isoformat()) == [ref]
    # Nothing more for the old day; both reminders for the new one, each once.
    assert await reminders_due(bot, clock, at(old - timedelta(days=1), "09:05")) == 0
    assert await reminders_due(bot, clock, at(new - timedelta(days=3), "09:05")) == 1
    assert await reminders_due(bot, clock, at(new - timedelta(days=1), "09:05")) == 1
    reminders = [t for t in await inbox(bot, mother.openid) if "评定提醒" in t]
    assert len(reminders) == 3 and all(format_day(new) in t for t in reminders[1:]), reminders
    assert any(f"改到{format_day(new)}" in t for t in await inbox(bot, mother.openid))

    # What is counted from the assessment follows the new day; 进度 shows it.
    expected = expected_from_session(services.pack, services.calendar, "disability_certificate", new)
    assert (await services.registry.status(ref))["disability_certificate"]["expected"] == (expected and expected.isoformat())
    status = await mother.say("进度")
    assert format_day(new) in status and "系统有点忙" not in status

    # The old day is closed; the new one is offered with its places left.
    clock.set(at(old - timedelta(days=5), "10:00"))
    other = WeChatUser(bot, "oMoveOther", protocol)
    for text in MOTHER_CHILD[:17]:
        offer = await other.say(text)
    assert f"{format_day(new)} " in offer and "剩29个名额" in offer and f"{format_day(old)} " not in offer, offer
    listing = await op.sessions_list(services)
    assert f"{new},{old}," in listing and ",1,30" in listing

    # Undone: back on the old day, and the move forgotten.
    assert "moved 1 bookings back" in await op.undo_move(services, old.isoformat())
    assert await services.book.holders(old.isoformat()) == [ref] and await services.book.moves() == {}
    assert await appointment_day(services, ref) == old


async def test_a_move_is_validated_before_anything_moves(bot, clock, protocol):
    services = bot.server.app[SERVICES]
    ref = await apply(WeChatUser(bot, "oMoveBad", protocol), BOOK_FIRST)
    old = (await appointment_day(services, ref)).isoformat()
    today = services.clock.today()
    empty_day = a_later_workday(services, date.fromisoformat(old), after=1).isoformat()
    bad = {
        f"{today.year + 1}-02-30": "real date",
        f"{today.year + 1}-13-40": "real date",
        a_weekend_after(date.fromisoformat(old)).isoformat(): "not a working day",
        (today - timedelta(days=1)).isoformat(): "in the past",
        old: "the session's date",
    }
    for new, why in bad.items():
        with pytest.raises(OperatorError, match=why):
            await op.move_session(services, old, new)
    with pytest.raises(OperatorError, match="nobody is booked"):
        await op.move_session(services, empty_day, a_later_workday(services, date.fromisoformat(empty_day)).isoformat())
    assert await services.book.holders(old) == [ref] and await services.book.moves() == {}


async def test_a_bad_move_is_one_line_from_the_shell_and_the_status_still_answers(bot, settings, protocol, redis_url):
    services = bot.server.app[SERVICES]
    mother = WeChatUser(bot, "oMoveShell", protocol)
    ref = await apply(mother, BOOK_FIRST)
    old = (await appointment_day(services, ref)).isoformat()
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_PORT",)}
    env.update(
        {
            "REDIS_URL": redis_url,
            "BOT_VAR_DIR": str(settings.var_dir),
            "BOT_DATA_KEY": settings.data_keys,
            "WECHAT_ENCODING_AES_KEY": settings.wechat_encoding_aes_key,
            "WECHAT_APPID": settings.wechat_appid,
            "WECHAT_TOKEN": settings.wechat_token,
        }
    )
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-m", "bot", "sessions", "move", old, f"{int(old[:4]) + 1}-02-30"]
    out = await asyncio.to_thread(subprocess.run, args, env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "real date" in out.stderr, out.stderr
    assert await services.book.holders(old) == [ref]
    status = await mother.say("进度")
    assert ref in status and "系统有点忙" not in status
