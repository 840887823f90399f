"""The services are the pack's: a county that offers four, or a sixth, changes its pack.yaml only.

A copy of the real content with one service taken out (and, for the sixth, one added) is loaded as a
pack, and the real dialog is driven through it: the menu, its numbers, the readers and the roles follow.
"""

from __future__ import annotations

import shutil
from datetime import datetime

import yaml

from dialogs.conditions import Case, needs_session_booking
from dialogs.pack import CONTENT_DIR, load_pack
from dialogs.service_roles import CERTIFICATE, DISABILITY_SUBSIDY, READS_CERTIFICATE_NO, ROLES
from dialogs.turn import Ports, Turn, UserInput
from dialogs.understanding import Understanding
from dialogs.workdays import default_calendar


def _pack_without(tmp_path, drop: str, add: dict | None = None):
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    path = content / "qingyang" / "pack.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    del raw["services"][drop]
    if add:
        raw["services"].update(add)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_pack("qingyang", content)


def test_the_roles_are_declared_in_the_packs_and_only_known_ones():
    for region in ("qingyang", "hulunbuir"):
        pack = load_pack(region)
        assert pack.with_role(CERTIFICATE) == ("disability_certificate",)
        assert pack.with_role(DISABILITY_SUBSIDY) == ("living_subsidy", "nursing_subsidy")
        assert set(pack.with_role(READS_CERTIFICATE_NO)) == {"living_subsidy", "nursing_subsidy", "pension_subsidy"}
        assert all(set(s.roles) <= set(ROLES) for s in pack.services.values())


async def test_a_county_with_four_services_numbers_its_menu_from_its_pack(tmp_path):
    from dialogs.prompts import prompt

    pack = _pack_without(tmp_path, "medical_assistance")
    assert pack.service_order == ("disability_certificate", "living_subsidy", "nursing_subsidy", "pension_subsidy")
    data: dict = {"reference": "T1"}
    turn = Turn(
        Case(data, pack, datetime(2026, 12, 1).date()),
        Understanding(pack),
        Ports(None, None),
        default_calendar(),
        datetime(2026, 12, 1),
        "o",
    )  # type: ignore[arg-type]
    menu = await prompt(turn, "choose_services")
    assert "4 养老保险补助" in menu and "5 全部都办" in menu and "6 不确定" in menu and "医疗救助" not in menu

    from dialogs.answers import read_services
    from dialogs.application import STEPS

    step = next(s for s in STEPS if s.name == "choose_services")
    assert (await read_services(turn, step, UserInput("text", "5"), "")).advance
    assert data["services"] == list(pack.service_order)  # 5 = 全部都办 here
    assert (await read_services(turn, step, UserInput("text", "1 4"), "")).advance
    assert data["services"] == ["disability_certificate", "pension_subsidy"]
    assert (await read_services(turn, step, UserInput("text", "医疗救助"), "")).hint  # not offered here
    assert (await read_services(turn, step, UserInput("text", "6"), "")).advance and data["guided"]


async def test_the_certificate_is_whichever_service_plays_that_role(tmp_path):
    pack = _pack_without(tmp_path, "disability_certificate", add={})
    case = Case({"services": list(pack.service_order)}, pack, datetime(2026, 12, 1).date())
    assert not needs_session_booking(case)  # no service issues a certificate: no session is booked
    assert Understanding(pack).services_in("残疾证和两项补贴") == ["living_subsidy", "nursing_subsidy"]
