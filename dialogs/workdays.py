"""China's working-day calendar: the State Council's yearly schedule, incl. 调休上班.

Lookup order for a day: content/common/holidays.yaml (data we control), then the
chinesecalendar library when it knows the year, then weekends only, with one
warning per year so a missing schedule is noticed in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

# libyaml's C loader when present (10x faster start-up), else the pure-Python safe loader.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

try:
    import chinese_calendar
except ImportError:  # pragma: no cover - it is a declared dependency
    chinese_calendar = None

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "content" / "common" / "holidays.yaml"
_DEFAULT_SOURCE = "content/common/holidays.yaml"
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class YearSchedule:
    year: int
    source: str
    holidays: frozenset[date]
    workdays: frozenset[date]


def _as_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _parse_year(year: int, block: Mapping[str, Any]) -> YearSchedule:
    holidays: set[date] = set()
    for item in block.get("holidays") or ():
        start, end = _as_date(item["from"]), _as_date(item["to"])
        if end < start:
            raise ValueError(f"holidays.yaml {year}: {item.get('name')} ends before it starts")
        day = start
        while day <= end:
            holidays.add(day)
            day += _ONE_DAY
    workdays = {_as_date(d) for d in block.get("workdays") or ()}
    weekdays = sorted(d for d in workdays if d.weekday() < 5)
    if weekdays:
        # Such a line is a typo: a weekday is a workday anyway.
        raise ValueError(f"holidays.yaml {year}: workdays must be weekend days, got {weekdays}")
    both = sorted(holidays & workdays)
    if both:
        raise ValueError(f"holidays.yaml {year}: both holiday and workday: {both}")
    return YearSchedule(int(year), str(block.get("source", "")), frozenset(holidays), frozenset(workdays))


def _library_years() -> range:
    if chinese_calendar is None:
        return range(0)
    known = chinese_calendar.holidays.keys()
    return range(min(known).year, max(known).year + 1)


class WorkCalendar:
    def __init__(
        self,
        schedules: Mapping[int, YearSchedule] | None = None,
        *,
        use_library: bool = True,
        source: str = _DEFAULT_SOURCE,
    ) -> None:
        self.schedules = dict(schedules or {})
        self.source = source
        self._library_years = _library_years() if use_library else range(0)
        self._holidays: set[date] = set()
        self._workdays: set[date] = set()
        for sched in self.schedules.values():
            self._holidays |= sched.holidays
            self._workdays |= sched.workdays
        clash = sorted(self._holidays & self._workdays)
        if clash:
            raise ValueError(f"holidays.yaml: days listed as holiday in one year and workday in another: {clash}")
        self._cache: dict[date, bool] = {}
        self._warned_years: set[int] = set()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **kwargs: Any) -> WorkCalendar:
        years = (data or {}).get("years") or {}
        schedules = {int(y): _parse_year(int(y), block or {}) for y, block in years.items()}
        return cls(schedules, **kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path = DEFAULT_PATH, **kwargs: Any) -> WorkCalendar:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_YAML_LOADER)
        kwargs.setdefault("source", _DEFAULT_SOURCE if Path(path) == DEFAULT_PATH else str(path))
        return cls.from_mapping(data, **kwargs)

    def knows_year(self, year: int) -> bool:
        return year in self.schedules or year in self._library_years

    def is_workday(self, day: date) -> bool:
        try:
            return self._cache[day]
        except KeyError:
            pass
        result = self._compute(day)
        self._cache[day] = result
        return result

    def _compute(self, day: date) -> bool:
        # Explicit days first: a range may spill into the neighbouring year (元旦).
        if day in self._holidays:
            return False
        if day in self._workdays:
            return True
        if day.year in self.schedules:
            return day.weekday() < 5
        if day.year in self._library_years:
            return chinese_calendar.is_workday(day)
        if day.year not in self._warned_years:
            self._warned_years.add(day.year)
            log.warning(
                "no holiday schedule for %d: treating only weekends as non-working days; add it to %s",
                day.year,
                self.source,
            )
        return day.weekday() < 5

    def next_workday(self, day: date) -> date:
        """`day` itself when it is a workday, else the first workday after it."""
        while not self.is_workday(day):
            day += _ONE_DAY
        return day

    def add_workdays(self, day: date, n: int) -> date:
        """The date `n` working days after `day` (`day` itself not counted).

        n == 0 returns `day` unchanged; a negative n counts backwards.
        """
        step = _ONE_DAY if n >= 0 else -_ONE_DAY
        remaining = abs(n)
        while remaining:
            day += step
            if self.is_workday(day):
                remaining -= 1
        return day

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: the inverse of add_workdays.

        add_workdays(a, n) == b implies workdays_between(a, b) == n. Negative if end < start.
        """
        if end < start:
            return -self.workdays_between(end, start)
        count = 0
        day = start
        while day < end:
            day += _ONE_DAY
            count += self.is_workday(day)
        return count


def is_certain(calendar: WorkCalendar, *days: date) -> bool:
    """Whether working days up to these dates can be counted as certain: every year they touch has a
    published schedule. A session or deadline in a year without one is shown as "以通知为准"."""
    if not days:
        return True
    first, last = min(days), max(days)
    return all(calendar.knows_year(y) for y in range(first.year, last.year + 1))


def calendar_check(calendar: WorkCalendar, today: date, horizon_days: int = 120) -> list[str]:
    """What the next `horizon_days` need that the calendar does not have, one line per missing year.

    For operators: `bot calendar check` prints these, and start-up logs them as a warning. An empty
    list means every day in the horizon is counted from a published schedule.
    """
    end = today + timedelta(days=horizon_days)
    missing = [y for y in range(today.year, end.year + 1) if not calendar.knows_year(y)]
    return [
        f"{y}年的节假日安排还没有：{max(today, date(y, 1, 1)).isoformat()} 至 {min(end, date(y, 12, 31)).isoformat()} "
        f"的评定日期和办结日期只按周末计算，对群众显示“以通知为准”。国务院办公厅公布后请补进 {calendar.source}。"
        for y in missing
    ]


@lru_cache(maxsize=1)
def default_calendar() -> WorkCalendar:
    """The calendar from content/common/holidays.yaml, loaded once per process."""
    return WorkCalendar.from_yaml()
