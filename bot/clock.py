"""The one clock: every part of the bot that asks what time it is asks an instance of `Clock`.

It is built once, in the composition root (bot/composition.py), and handed to everything that reads
the time: the dialog, the push queue, reminders, notifications, feedback, the booking waitlist,
intake events, delivery, retention. Only the WeChat protocol's replay window and the signed
intake's timestamp check read the machine's time directly (`protocol_time`): WeChat and the intake
sign with real time, whatever date the bot is told to act on.

A clock can be shifted to another day (`BOT_TODAY=2027-06-15`, or `bot reminders send-due --now`),
so the whole suite, and an operator's simulation, runs as on that day. The shift is a whole number
of days from the machine's date, computed when the clock is built, so several processes started on
one day with the same `BOT_TODAY` agree on the time to the millisecond.
"""

from __future__ import annotations

import time as _time
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


class ClockLike(Protocol):
    def time(self) -> float: ...

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class Clock:
    """Wall time (epoch seconds, or an aware datetime in China time) and monotonic time.

    `offset_s` moves the wall time; it still advances with the machine's. A frozen clock (tests)
    stands still until `set` or `advance` moves it. Monotonic time is always the machine's: it
    measures waits and deadlines, which must pass in real seconds.
    """

    def __init__(self, *, offset_s: float = 0.0, frozen_at: float | None = None):
        self.offset_s = offset_s
        self.frozen_at = frozen_at

    @classmethod
    def shifted_to(cls, day: date | str) -> Clock:
        """Today is `day`, at the machine's time of day (China time)."""
        day = date.fromisoformat(day) if isinstance(day, str) else day
        return cls(offset_s=(day - datetime.now(CHINA).date()).days * 86400.0)

    @classmethod
    def at(cls, when: datetime | str, *, frozen: bool = False) -> Clock:
        """Now is `when` (China time when it has no zone); it runs on from there unless frozen."""
        clock = cls()
        clock.set(when, frozen=frozen)
        return clock

    def time(self) -> float:
        if self.frozen_at is not None:
            return self.frozen_at
        return _time.time() + self.offset_s

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), CHINA)

    def today(self) -> date:
        return self.now().date()

    def monotonic(self) -> float:
        return _time.monotonic()

    def set(self, when: datetime | str, *, frozen: bool | None = None) -> None:
        when = datetime.fromisoformat(when) if isinstance(when, str) else when
        target = (when if when.tzinfo else when.replace(tzinfo=CHINA)).timestamp()
        if frozen if frozen is not None else self.frozen_at is not None:
            self.frozen_at = target
        else:
            self.frozen_at = None
            self.offset_s = target - _time.time()

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        step = seconds + timedelta(**delta).total_seconds()
        if self.frozen_at is not None:
            self.frozen_at += step
        else:
            self.offset_s += step

    def __repr__(self) -> str:
        return f"Clock({self.now().isoformat(timespec='seconds')}{', frozen' if self.frozen_at is not None else ''})"


def clock_from_setting(today: str) -> Clock:
    """The clock `bot serve` and the operator commands run on: the machine's, or BOT_TODAY's day."""
    return Clock.shifted_to(today) if today else Clock()


def protocol_time() -> float:
    """The machine's time, for the replay windows of signed messages (WeChat's, the intake's) only."""
    return _time.time()
