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


# Seen with a simulated citizen: a 呼伦贝尔 applicant whose 户口 is in 兴安盟 (asked, said 不是, applied anyway)
# was told "受理窗口：乌兰浩特市残联…窗口", a window of another 盟 that this county's bot does not reach.
@pytest.mark.parametrize(
    "region, address, county",
    [
        ("hulunbuir", "内蒙古兴安盟乌兰浩特市和平街道5号", "乌兰浩特市"),
        ("qingyang", "安徽省池州市东至县尧渡镇东风村3号", "东至县"),
    ],
)
async def test_no_window_of_another_county_is_named_for_a_household_outside_the_area(region, address, county):
    from dialogs.prompts import submitted_message
    from tests.test_dead_ends import _turn

    data = {"who": "self", "services": ["medical_assistance"], "applicant": {"household_address": address}}
    r = routing(load_pack(region), data)
    assert r["county"] == county and r["intake_office"] is None
    told = submitted_message(_turn(region, {**data, "reference": "X1", "submitted_at": "2026-11-23T10:00:00"}))
    assert f"受理窗口：户籍在{county}，由工作人员审核后确定" in told and "残联扶残助困" not in told


@pytest.mark.parametrize(
    "region, address",
    [
        ("hulunbuir", "内蒙古呼伦贝尔市莫力达瓦达斡尔族自治旗尼尔基镇1号"),
        ("hulunbuir", "满洲里市东山街道二道街15号"),
        ("qingyang", "安徽省池州市青阳县新河镇新河村8号"),
    ],
)
def test_every_county_of_the_area_still_gets_its_window(region, address):
    assert routing(load_pack(region), {"applicant": {"household_address": address}})["intake_office"]
