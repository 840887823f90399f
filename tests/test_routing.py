"""The place an application is routed to, read from the household address (what the intake receives)."""

from __future__ import annotations

import pytest

from dialogs.pack import load_pack
from dialogs.routing import read_place, routing


@pytest.mark.parametrize(
    "address,county,township,village",
    [
        ("青阳县蓉城镇五溪村12号", "青阳县", "蓉城镇", "五溪村"),
        ("安徽省池州市青阳县新河镇新河村8号", "青阳县", "新河镇", "新河村"),
        ("青阳县木镇木镇村3组", "青阳县", "木镇", "木镇村"),
        ("青阳县蓉城街道九华社区5栋", "青阳县", "蓉城街道", "九华社区"),
        ("内蒙古呼伦贝尔市鄂温克族自治旗巴彦托海镇团结嘎查3号", "鄂温克族自治旗", "巴彦托海镇", "团结嘎查"),
        ("内蒙古呼伦贝尔市海拉尔区胜利街道10号", "海拉尔区", "胜利街道", None),
        ("胜利街道光明社区", None, "胜利街道", "光明社区"),
    ],
)
def test_read_place(address, county, township, village):
    assert read_place(address) == {"county": county, "township": township, "village": village}


def test_routing_names_the_office_and_the_application_place():
    data = {"applicant": {"household_address": "青阳县蓉城镇五溪村12号"}}
    assert routing(load_pack("qingyang"), data)["intake_office"] == "蓉城镇为民服务中心"
    data = {
        "applicant": {"household_address": "内蒙古呼伦贝尔市海拉尔区胜利街道10号"},
        "household_place": {"village": "光明社区"},
    }
    r = routing(load_pack("hulunbuir"), data)
    assert (r["village"], r["application_place"]) == ("光明社区", "海拉尔区胜利街道")
    assert r["intake_office"] == "海拉尔区残联扶残助困“一件事一次办”窗口"
