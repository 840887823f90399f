import logging
from datetime import date, timedelta

import chinese_calendar
import pytest
import yaml

from dialogs import workdays as wd
from dialogs.workdays import DEFAULT_PATH, WorkCalendar, default_calendar

YAML_YEARS = sorted(yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))["years"])
LIBRARY_KNOWS_2027 = date(2027, 1, 1) <= max(chinese_calendar.holidays)


@pytest.fixture(scope="module")
def cal():
    return WorkCalendar.from_yaml()


def days_of(year):
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


@pytest.mark.parametrize("year", YAML_YEARS)
def test_yaml_matches_chinesecalendar_every_day(year):
    if not date(year, 1, 1) <= max(chinese_calendar.holidays):
        pytest.skip(f"chinesecalendar does not know {year} yet; check it by hand")
    yaml_only = WorkCalendar.from_yaml(use_library=False)
    diff = [d for d in days_of(year) if yaml_only.is_workday(d) != chinese_calendar.is_workday(d)]
    assert diff == []


def test_yaml_covers_2025_and_2026(cal):
    assert {2025, 2026} <= set(cal.schedules)
    assert "2026年部分节假日安排" in cal.schedules[2026].source


def test_2026_spring_festival(cal):
    for day in range(15, 24):
        assert not cal.is_workday(date(2026, 2, day)), day
    assert cal.is_workday(date(2026, 2, 13))  # Friday before
    assert cal.is_workday(date(2026, 2, 14))  # Saturday, 调休上班
    assert cal.is_workday(date(2026, 2, 24))  # Tuesday after
    assert not cal.is_workday(date(2026, 2, 21))  # Saturday inside the holiday
    assert cal.is_workday(date(2026, 2, 28))  # Saturday, 调休上班
    assert not cal.is_workday(date(2026, 3, 1))  # ordinary Sunday


@pytest.mark.parametrize(
    "eleventh,booked",
    [
        (date(2026, 1, 11), date(2026, 1, 12)),  # Sunday
        (date(2026, 2, 11), date(2026, 2, 11)),  # Wednesday
        (date(2026, 4, 11), date(2026, 4, 13)),  # Saturday
        (date(2026, 7, 11), date(2026, 7, 13)),  # Saturday
        (date(2026, 10, 11), date(2026, 10, 12)),  # Sunday right after 国庆 (10-10 was 调休上班)
        (date(2025, 10, 11), date(2025, 10, 11)),  # Saturday, but 调休上班
        (date(2025, 5, 11), date(2025, 5, 12)),  # Sunday
    ],
)
def test_eleventh_of_month_moves_to_next_workday(cal, eleventh, booked):
    assert cal.next_workday(eleventh) == booked


def test_2026_10_11_facts(cal):
    assert date(2026, 10, 11).weekday() == 6
    assert not cal.is_workday(date(2026, 10, 11))
    assert cal.is_workday(date(2026, 10, 10))  # Saturday, 调休上班


@pytest.mark.parametrize(
    "start,n,expected",
    [
        (date(2026, 2, 12), 1, date(2026, 2, 13)),
        (date(2026, 2, 13), 1, date(2026, 2, 14)),  # 调休 Saturday counts
        (date(2026, 2, 13), 2, date(2026, 2, 24)),  # skips the whole Spring Festival
        (date(2026, 2, 15), 1, date(2026, 2, 24)),  # starting inside the holiday
        (date(2026, 9, 30), 1, date(2026, 10, 8)),
        (date(2026, 9, 30), 3, date(2026, 10, 10)),
        (date(2026, 12, 30), 1, date(2026, 12, 31)),
        (date(2026, 2, 24), -1, date(2026, 2, 14)),
        (date(2026, 2, 24), 0, date(2026, 2, 24)),
        (date(2026, 2, 15), 0, date(2026, 2, 15)),
    ],
)
def test_add_workdays(cal, start, n, expected):
    assert cal.add_workdays(start, n) == expected


def test_workdays_between_is_the_inverse_of_add_workdays(cal):
    start = date(2026, 1, 20)
    for n in range(0, 60):
        end = cal.add_workdays(start, n)
        assert cal.workdays_between(start, end) == n
        assert cal.workdays_between(end, start) == -n
    # Spring Festival week: 2-13 (Fri) .. 2-24 (Tue) -> 2-14 and 2-24.
    assert cal.workdays_between(date(2026, 2, 13), date(2026, 2, 24)) == 2


def test_knows_year(cal):
    assert cal.knows_year(2026)
    assert cal.knows_year(2010)  # from the library
    assert not cal.knows_year(1999)
    assert not WorkCalendar.from_yaml(use_library=False).knows_year(2024)


@pytest.mark.skipif(LIBRARY_KNOWS_2027, reason="chinesecalendar now knows 2027")
def test_default_calendar_does_not_know_2027(cal):
    assert not cal.knows_year(2027)


def test_unknown_year_falls_back_to_weekends_with_one_warning_per_year(caplog):
    cal = WorkCalendar.from_yaml(use_library=False)
    with caplog.at_level(logging.WARNING, logger=wd.__name__):
        assert cal.is_workday(date(2027, 1, 1))  # a Friday; really 元旦, but unknown
        assert not cal.is_workday(date(2027, 1, 2))
        assert cal.next_workday(date(2027, 10, 2)) == date(2027, 10, 4)
        assert cal.add_workdays(date(2027, 3, 5), 1) == date(2027, 3, 8)
        cal.workdays_between(date(2027, 1, 1), date(2027, 12, 31))
        assert cal.is_workday(date(2028, 1, 3))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "no holiday schedule for 2027: treating only weekends as non-working days; add it to content/common/holidays.yaml",
        "no holiday schedule for 2028: treating only weekends as non-working days; add it to content/common/holidays.yaml",
    ]


def test_known_years_do_not_warn(cal, caplog):
    with caplog.at_level(logging.WARNING, logger=wd.__name__):
        cal.workdays_between(date(2024, 1, 1), date(2026, 12, 31))
    assert caplog.records == []


NEW_YEAR_2027 = {
    "years": {
        2027: {
            "source": "国务院办公厅关于2027年部分节假日安排的通知",
            "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"}],
            "workdays": ["2027-01-09"],  # a Saturday, made up for the test
        }
    }
}


def test_adding_a_year_as_data_takes_effect(caplog):
    data = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    data["years"].update(NEW_YEAR_2027["years"])
    cal = WorkCalendar.from_mapping(data, use_library=False)
    with caplog.at_level(logging.WARNING, logger=wd.__name__):
        assert cal.knows_year(2027)
        assert not cal.is_workday(date(2027, 1, 1))  # Friday, now a holiday
        assert cal.is_workday(date(2027, 1, 9))  # Saturday, now a workday
        assert cal.is_workday(date(2027, 1, 4))
        assert not cal.is_workday(date(2027, 1, 10))
        assert cal.next_workday(date(2026, 12, 31)) == date(2026, 12, 31)
        assert cal.add_workdays(date(2026, 12, 31), 1) == date(2027, 1, 4)
    assert caplog.records == []


def test_adding_a_year_in_a_yaml_file(tmp_path):
    data = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    data["years"].update(NEW_YEAR_2027["years"])
    path = tmp_path / "holidays.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cal = WorkCalendar.from_yaml(path)
    assert not cal.is_workday(date(2027, 1, 1))
    assert not cal.is_workday(date(2026, 2, 16))


def test_holiday_range_spilling_into_previous_year():
    data = {"years": {2023: {"holidays": [{"name": "元旦", "from": "2022-12-31", "to": "2023-01-02"}]}}}
    cal = WorkCalendar.from_mapping(data, use_library=False)
    assert not cal.is_workday(date(2023, 1, 2))  # a Monday
    assert not cal.is_workday(date(2022, 12, 31))


@pytest.mark.parametrize(
    "block",
    [
        {"workdays": ["2026-01-05"]},  # a Monday: typo
        {"holidays": [{"name": "x", "from": "2026-01-03", "to": "2026-01-01"}]},
        {"holidays": [{"name": "x", "from": "2026-01-03", "to": "2026-01-04"}], "workdays": ["2026-01-04"]},
    ],
)
def test_bad_data_is_rejected(block):
    with pytest.raises(ValueError):
        WorkCalendar.from_mapping({"years": {2026: block}})


def test_is_workday_is_memoized(monkeypatch):
    calls = []
    real = chinese_calendar.is_workday
    monkeypatch.setattr(chinese_calendar, "is_workday", lambda d: calls.append(d) or real(d))
    cal = WorkCalendar.from_yaml()
    for _ in range(1000):
        cal.is_workday(date(2024, 10, 1))
    assert calls == [date(2024, 10, 1)]


def test_default_calendar_is_loaded_once():
    assert default_calendar() is default_calendar()
    assert not default_calendar().is_workday(date(2026, 2, 17))


# -- a year without a published schedule (issue point 13) ---------------------------------------------
def test_a_day_in_a_year_without_a_schedule_is_not_certain(cal):
    from dialogs.workdays import is_certain

    assert is_certain(cal, date(2026, 11, 23), date(2026, 12, 7))
    assert not is_certain(cal, date(2027, 1, 1))
    assert not is_certain(cal, date(2026, 12, 28), date(2027, 1, 8))  # a deadline counted into 2027


def test_calendar_check_lists_the_years_the_next_120_days_need(cal):
    from dialogs.workdays import calendar_check

    assert calendar_check(cal, date(2026, 6, 1)) == []
    lines = calendar_check(cal, date(2026, 11, 23))
    assert len(lines) == 1 and "2027年" in lines[0] and "2027-01-01 至 2027-03-23" in lines[0]


def test_sessions_in_2027_are_offered_as_to_be_announced(cal):
    from dialogs.assessment import monthly_sessions
    from dialogs.pack import load_pack

    sessions = monthly_sessions(load_pack("qingyang"), cal, date(2026, 11, 23), 3)
    assert [s.certain for s in sessions] == [True, False, False]
    assert sessions[2].day == date(2027, 2, 11)  # likely inside 春节: not a date to promise
