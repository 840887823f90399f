"""The seeds as the oracle: content/<region>/cases.yaml, run through the real policy code.

Each case (OpenFisca's YAML tests are the model) quotes the seed sentence it tests, verbatim; this
file checks that the quote really is in the seed (whitespace aside), then evaluates the facts with
dialogs/conditions.py, dialogs/eligibility.py and dialogs/materials.py and compares per service:
`eligible`, `pending`, `may_not_qualify` or `{excluded: <rule id>}`. Optional checks: `materials`
(exactly these codes, in order), `materials_include` / `materials_exclude`, `asks` / `not_asked`
(the screening questions the flow asks, given the other facts), `suggested` (the guided path),
`expected` (the expected date of a service: null when none can be given yet).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from dialogs.conditions import CONDITIONS, Case
from dialogs.deadlines import expected_date
from dialogs.eligibility import evaluate_service, suggested_services
from dialogs.materials import checklist
from dialogs.pack import CONTENT_DIR, load_pack
from dialogs.workdays import default_calendar

SEEDS = {
    "qingyang": Path("/work/shared/seeds/qingyang-2023-scheme.txt"),
    "hulunbuir": Path("/work/shared/seeds/neimenggu-hulunbuir-2022-scheme.txt"),
}
REGION_CODE = {"qingyang": "341723", "hulunbuir": "150702"}
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _seed_text(region: str) -> str:
    path = SEEDS[region]
    if not path.exists():  # a copy shipped with the code, for machines without /work/shared
        path = CONTENT_DIR / region / "seed.txt"
    return path.read_text(encoding="utf-8")


def normalise(text: str) -> str:
    return re.sub(r"\s+", "", text)


@cache
def _pack(region: str):
    return load_pack(region)


def id_number(region: str, born: date, serial: str = "003") -> str:
    body = f"{REGION_CODE[region]}{born:%Y%m%d}{serial}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]
    return body + check


def _load(region: str) -> dict:
    return yaml.safe_load((CONTENT_DIR / region / "cases.yaml").read_text(encoding="utf-8"))


def _all_cases():
    for region in SEEDS:
        book = _load(region)
        for n, case in enumerate(book["cases"], 1):
            yield pytest.param(region, book, case, id=f"{region}-{n:02d}-{case['name']}")


def _case(region: str, book: dict, spec: dict) -> Case:
    today = date.fromisoformat(str(spec.get("today", book["today"])))
    given = spec.get("input", {})
    data = {
        "services": list(given.get("services", [])),
        "facts": dict(given.get("facts", {})),
        "insisted": list(given.get("insisted", [])),
        "guided": bool(given.get("guided")),
    }
    if "booking" in given:
        data["booking"] = {k: str(v) for k, v in given["booking"].items()}
    if "age" in given or "born" in given:
        # `age: N`: the Nth birthday is today; `born:` a date, for the day before a birthday
        born = (
            date.fromisoformat(str(given["born"]))
            if "born" in given
            else date(today.year - int(given["age"]), today.month, today.day)
        )
        data["applicant"] = {"id_number": id_number(region, born)}
    return Case(data, _pack(region), today)


def _result(outcome: dict) -> object:
    if outcome["result"] == "excluded":
        failed = [r["id"] for r in outcome["rules"] if r["ok"] is False]
        return {"excluded": failed[0]}
    return outcome["result"]


@pytest.mark.parametrize("region,book,spec", list(_all_cases()))
def test_case(region, book, spec):
    seed = normalise(_seed_text(region))
    quotes = spec["quote"] if isinstance(spec["quote"], list) else [spec["quote"]]
    for quote in quotes:
        assert normalise(quote) in seed, f"not in the {region} seed: {quote!r}"
    case = _case(region, book, spec)
    for service, wanted in (spec.get("output") or {}).items():
        got = _result(evaluate_service(case, service))
        assert got == wanted, f"{service}: {got!r} != {wanted!r}\n{evaluate_service(case, service)}"
    codes = [item.material.code for item in checklist(case)]
    if "materials" in spec:
        assert codes == spec["materials"]
    for code in spec.get("materials_include", []):
        assert code in codes, codes
    for code in spec.get("materials_exclude", []):
        assert code not in codes, codes
    for fact in spec.get("asks", []):
        probe = Case({**case.data, "facts": {k: v for k, v in case.facts.items() if k != fact}}, case.pack, case.today)
        assert CONDITIONS[f"needs_{fact}"](probe), f"{fact} is not asked"
    for fact in spec.get("not_asked", []):
        probe = Case({**case.data, "facts": {k: v for k, v in case.facts.items() if k != fact}}, case.pack, case.today)
        assert not CONDITIONS[f"needs_{fact}"](probe), f"{fact} is asked"
    if "suggested" in spec:
        assert suggested_services(case) == spec["suggested"]
    for service, wanted in (spec.get("expected") or {}).items():
        turn = SimpleNamespace(
            pack=case.pack,
            case=case,
            data=case.data,
            calendar=default_calendar(),
            now=datetime.combine(case.today, datetime.min.time()),
        )
        got = expected_date(turn, service)
        assert (got.isoformat() if got else None) == (str(wanted) if wanted else None)


@pytest.mark.parametrize("region,minimum", [("qingyang", 60), ("hulunbuir", 40)])
def test_enough_cases(region, minimum):
    assert len(_load(region)["cases"]) >= minimum


def _assumptions(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).endswith("assumption") or key in ("conflict", "materials_conflict"):
                yield f"{path}.{key}".lstrip("."), value
            else:
                yield from _assumptions(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _assumptions(value, f"{path}.{i}")


@pytest.mark.parametrize("region", list(SEEDS))
def test_every_assumption_names_who_must_confirm_it(region):
    found = list(_assumptions(_pack(region).raw))
    assert found
    for where, value in found:
        assert isinstance(value, dict) and value.get("what") and value.get("confirm"), where


@pytest.mark.parametrize("region", list(SEEDS))
def test_no_rule_basis_quotes_what_the_seed_does_not_say(region):
    """A rule's basis quotes its seed after "：", unless the rule is marked as an assumption or cites another law."""
    seed = normalise(_seed_text(region))
    for service in _pack(region).services.values():
        for rule in service.rules:
            if "assumption" in rule.params:
                continue
            for part in rule.basis.split("；"):
                if "：" in part:
                    quoted = part.split("：", 1)[1]
                    assert normalise(quoted).rstrip("…") in seed or "……" in quoted, (service.code, rule.id, quoted)


def test_the_certificate_month_follows_the_announced_mental_session():
    """Issue point 8: once the 精神残疾 session is announced, its date is where the month starts."""
    from dialogs.deadlines import expected_from_session

    pack = _pack("qingyang")
    assert expected_from_session(pack, default_calendar(), "disability_certificate", date(2027, 3, 2)) == date(2027, 4, 2)
    assert expected_from_session(pack, default_calendar(), "living_subsidy", date(2027, 3, 2)) is None


def test_acceptance_starts_the_subsidy_clock_only_for_a_certificate_holder():
    """Issue point 9: 10 working days from acceptance would be marked 已超过预计时间 before the assessment."""
    from dialogs.deadlines import expected_after_acceptance

    pack, cal, day = _pack("qingyang"), default_calendar(), date(2026, 11, 23)
    holder = {"disability": {"holds_certificate": True}}
    new = {"disability": {"holds_certificate": False}}
    assert expected_after_acceptance(pack, cal, "nursing_subsidy", day, holder) == date(2026, 12, 7)
    assert expected_after_acceptance(pack, cal, "nursing_subsidy", day, new) is None
    assert expected_after_acceptance(pack, cal, "pension_subsidy", day, holder) is None  # 年初、年末维护
    assert expected_after_acceptance(pack, cal, "medical_assistance", date(2026, 6, 1), new) is not None
    assert expected_after_acceptance(pack, cal, "medical_assistance", day, new) is None  # 30 days run into 2027


@pytest.mark.parametrize("region", list(SEEDS))
def test_every_dated_policy_value_starts_on_or_after_the_scheme(region):
    """Deadline values are dated (OpenFisca style) and none predates the pack's scheme."""
    from dialogs.pack import DATED_KEYS

    pack = _pack(region)
    start = date.fromisoformat(str(pack.raw["valid_from"]))
    dated = 0
    for service in pack.services.values():
        for key in DATED_KEYS:
            value = service.raw.get("deadline", {}).get(key)
            if value is not None:
                assert isinstance(value, dict), (service.code, key, "not dated")
                assert all(date.fromisoformat(str(d)) >= start for d in value), (service.code, key)
                dated += 1
                assert key not in service.deadline_on(date(start.year - 1, 1, 1))  # not in force before
    assert dated


def test_a_value_dated_later_applies_from_its_date_only():
    from dialogs.pack import value_on

    history = {"2023-02-15": 10, "2027-01-01": 8}
    assert value_on(history, date(2026, 12, 31)) == 10
    assert value_on(history, date(2027, 1, 1)) == 8
    assert value_on(history, date(2023, 1, 1)) is None
    assert value_on(history, None) == 8


async def test_an_assumed_rule_is_not_told_as_the_schemes_rule():
    """Issue point 12: 内蒙古's 已持证 rule is an assumption; the notice says so instead of citing a clause."""
    from dialogs.prompts import eligibility_notice

    case = _case(
        "hulunbuir",
        {"today": "2026-11-23"},
        {"input": {"services": ["disability_certificate"], "facts": {"has_certificate": True}}},
    )
    text = await eligibility_notice(SimpleNamespace(pack=case.pack, case=case, data=case.data))
    assert "方案没有写明" in text and "依据" not in text
    case = _case(
        "qingyang",
        {"today": "2026-11-23"},
        {"input": {"services": ["disability_certificate"], "facts": {"has_certificate": True, "local_hukou": True}}},
    )
    text = await eligibility_notice(SimpleNamespace(pack=case.pack, case=case, data=case.data))
    assert "依据：青民务〔2023〕2号" in text
