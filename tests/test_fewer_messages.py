"""Node tests of the questions a guardian is no longer asked (issue 14, part 4: all five in ≤ 20 messages
with numbers): given the answers so far, the step that comes next."""

from __future__ import annotations

from datetime import date

import pytest

from dialogs.conditions import Case
from dialogs.engine import ApplicationDialog
from dialogs.pack import load_pack
from dialogs.turn import Ports
from dialogs.workdays import default_calendar

_DIALOGS: dict[str, ApplicationDialog] = {}


def next_step(region: str, data: dict, state: str) -> str:
    """The step asked after `state` is answered, for an application holding `data`."""
    if region not in _DIALOGS:
        ports = Ports(book=None, outbox=None)  # type: ignore[arg-type]  # routing books and submits nothing
        _DIALOGS[region] = ApplicationDialog(load_pack(region), ports, default_calendar())
    dialog = _DIALOGS[region]
    return dialog.advance({}, Case(data, dialog.pack, date(2026, 11, 23)), state)


def _guardian(region: str, address: str, **more) -> dict:
    return {
        "who": "agent",
        "agent": {"relation": "spouse", "name": "萨仁"},
        "services": ["living_subsidy", "nursing_subsidy"],
        "applicant": {"name": "周长林", "id_number": "150781195810066549", "household_address": address},
        **more,
    }


# 附件4《残疾人两项补贴申请审批表》 has "申请地" and "苏木乡镇（街道办事处）民政部门审核意见"; it has no field for
# the 村（嘎查、社区）, so an address naming its 街道 is not followed by a question about the 社区.
def test_hulunbuir_asks_no_village_when_the_address_names_the_township():
    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区胜利街道10号")
    assert next_step("hulunbuir", data, "household_address") == "subsidy_reason"


def test_hulunbuir_still_asks_the_township_when_the_address_does_not_name_it():
    data = _guardian("hulunbuir", "内蒙古呼伦贝尔市海拉尔区10号")
    assert next_step("hulunbuir", data, "household_address") == "household_place"


@pytest.mark.parametrize(
    "address, asked",
    [("青阳县蓉城镇12号", "household_place"), ("青阳县蓉城镇五溪村12号", "checklist")],
)
def test_qingyang_still_asks_the_village_its_offices_route_by(address, asked):
    # 青民务〔2023〕2号 附件2 受理单位：县（区）政务服务中心/乡镇为民服务中心/村（社区）
    data = _guardian("qingyang", address)
    assert next_step("qingyang", data, "household_address") == asked
