"""Where an application goes: the 旗县/县, 乡镇（苏木、街道） and 村（社区、嘎查） read from the household
address, and the receiving office the pack names for them. The departments route by these."""

from __future__ import annotations

import re
from typing import Any

# A county-level name after an optional province and city: 青阳县, 海拉尔区, 鄂温克族自治旗, 满洲里市.
_COUNTY = re.compile(
    r"(?:.{0,8}?(?:省|自治区))?(?:.{1,8}?(?:市|盟|地区|自治州))?(?P<county>[^省市盟州镇乡村街道社苏嘎\d]{1,10}?(?:自治县|自治旗|县|区|旗|市))"
)
_TOWNSHIP = re.compile(r"(?P<township>[^县区旗市]{1,10}?(?:街道办事处|街道|镇|乡|苏木|办事处))")
_VILLAGE = re.compile(r"(?P<village>[^\d号组栋]{1,12}?(?:社区|村委会|居委会|嘎查|村))")


def read_place(address: str | None) -> dict[str, str | None]:
    """{county, township, village} from an address; None for a part it does not name."""
    text = address or ""
    county = _COUNTY.match(text)
    rest = text[county.end() :] if county else text
    township = _TOWNSHIP.search(rest)
    rest = rest[township.end() :] if township else rest
    village = _VILLAGE.match(rest)
    return {
        "county": county.group("county") if county else None,
        "township": township.group("township") if township else None,
        "village": village.group("village") if village else None,
    }


def place(data: dict[str, Any]) -> dict[str, str | None]:
    """The applicant's place: what the address says, completed by the answer to household_place."""
    found = read_place(data.get("applicant", {}).get("household_address"))
    given = data.get("household_place") or {}
    return {k: found.get(k) or given.get(k) for k in ("county", "township", "village")}


def place_unread(data: dict[str, Any], parts: tuple[str, ...] = ("township", "village")) -> bool:
    """Some part of the place the pack routes by (`routing.place_parts`) is neither in the address nor said."""
    p = place(data)
    return not all(p[k] for k in parts)


def in_area(pack, place: str) -> bool:
    """The place (a county, or what an answer names: "阿荣旗", "青阳") is one the pack serves: it begins
    with one of the pack's area.names."""
    return any(place.startswith(name) for name in pack.raw.get("area", {}).get("names", []))


def outside_area(pack, county: str | None) -> bool:
    """An address names a county the pack does not serve (one naming none is taken as the pack's; a pack
    that names no area serves any)."""
    return bool(county) and bool(pack.raw.get("area", {}).get("names")) and not in_area(pack, county or "")


def routing(pack, data: dict[str, Any]) -> dict[str, Any]:
    """The document's routing block: place, receiving office (受理单位) and 申请地, from the pack's wording.
    No office for a 户籍 outside the pack's area (someone who applies anyway): the pack's rule names an
    office of the 户籍 place, which is not this county's, so the clerk decides and the citizen is told so."""
    p = place(data)
    rules = pack.raw.get("routing", {})
    values = {k: v or "" for k, v in p.items()}
    office = (
        rules.get("intake_office", "").format(**values)
        if (p["township"] or "{township}" not in rules.get("intake_office", "")) and not outside_area(pack, p["county"])
        else None
    )
    applied_at = rules.get("application_place", "").format(**values) if rules.get("application_place") else None
    return {**p, "intake_office": office or None, "application_place": applied_at or None}
