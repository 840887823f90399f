"""Cases for the console: finding an application, and what its page shows, masked unless asked.

An application's record is the outbox document (the one the intake received), the registry's meta
and status, and the delivery state. Search by 申请编号 or 受理编号 is a direct lookup; by ID number
(the registry's keyed digest, full match only) or by name and birth date it reads the newest
SEARCH_LIMIT applications of the delivery ledger one by one: enough for a county's months of
applications, and the only index there is (a digest index kept at registration would make it direct).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from bot.composition import Services
from bot.console.roles import Role, may_see
from integrations.applications import FINISHED
from integrations.delivery import OutboxLedger
from integrations.tickets import Tickets
from integrations.wechat_api import mask_openid

T = TypeVar("T")
SEARCH_LIMIT = 5000
GENDER = {"male": "男", "female": "女"}
SEARCH_KINDS = {
    "application_id": "申请编号",
    "application_no": "受理编号",
    "id_number": "身份证号",
    "name_birth": "姓名+出生日期",
}
DELIVERY_STATES = {"queued": "排队待送", "retrying": "重试中", "delivered": "已送达", "failed": "送达失败"}


def mask_name(name: str | None) -> str:
    return "" if not name else name[0] + "*" * (len(name) - 1)


def mask_id(number: str | None) -> str:
    return "" if not number else number[:6] + "*" * max(len(number) - 10, 0) + number[-4:]


def mask_phone(phone: str | None) -> str:
    return "" if not phone else phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]


def mask_address(address: str | None) -> str:
    return "" if not address else address[:6] + "****"


def mask_birth(birth: str | None) -> str:
    return "" if not birth else birth[:4] + "-**-**"


@dataclass
class CaseView:
    id: str
    document: dict[str, Any]
    meta: dict[str, Any]
    status: dict[str, dict[str, Any]]
    delivery: dict[str, Any] | None
    unmasked: bool = False
    applicant: list[tuple[str, str]] = field(default_factory=list)
    agent: list[tuple[str, str]] = field(default_factory=list)


def ledger(s: Services) -> OutboxLedger:
    return OutboxLedger(s.redis.client, clock=s.clock.time, kind="application")


async def candidates(s: Services) -> list[str]:
    return [row["application_id"] for row in await ledger(s).list(limit=SEARCH_LIMIT)]


BATCH = 64


async def each(ids: list[str], read: Callable[[str], Awaitable[T]]) -> list[T]:
    """`read` of every id, in order, BATCH at a time (one round trip's wait for a batch, not for each)."""
    out: list[T] = []
    for start in range(0, len(ids), BATCH):
        out += await asyncio.gather(*(read(i) for i in ids[start : start + BATCH]))
    return out


async def search(s: Services, kind: str, query: str, birth_date: str = "") -> list[str]:
    """Application ids matching exactly (ID numbers and names in full, never a part)."""
    query = query.strip()
    if not query:
        return []
    if kind == "application_id":
        return [query.upper()] if await s.registry.meta(query.upper()) is not None else []
    if kind == "application_no":
        numbered = await s.registry.find_by_number(query)
        return [numbered] if numbered else []
    if kind == "id_number":
        digest = await s.registry.id_digest(query)
        ids = await candidates(s)
        metas = await each(ids, s.registry.meta)
        return [
            app_id
            for app_id, meta in zip(ids, metas, strict=True)
            if meta is not None and hmac.compare_digest(meta.get("applicant_id_digest", ""), digest)
        ]
    if kind == "name_birth":
        if not birth_date.strip():
            return []  # a name alone finds namesakes: the birth date must come with it
        ids = await candidates(s)
        docs = await each(ids, s.outbox.get)
        return [
            app_id
            for app_id, doc in zip(ids, docs, strict=True)
            if ((doc or {}).get("applicant") or {}).get("name") == query
            and ((doc or {}).get("applicant") or {}).get("birth_date") == birth_date.strip()
        ]
    raise ValueError(f"unknown search kind {kind!r}")


async def case(s: Services, app_id: str, role: Role, *, unmasked: bool = False) -> CaseView | None:
    """The case, or None when it does not exist or this role may not see it (the same answer)."""
    doc = await s.outbox.get(app_id)
    meta = await s.registry.meta(app_id)
    if doc is None or meta is None or not may_see(role, s.pack, doc["services"]):
        return None
    view = CaseView(app_id, doc, meta, await s.registry.status(app_id), await ledger(s).status(app_id), unmasked)
    a = doc["applicant"]
    show = _shown if unmasked else _masked
    view.applicant = [
        ("姓名", show(mask_name, a.get("name"))),
        ("性别", GENDER.get(a.get("gender") or "", "")),
        ("身份证号", show(mask_id, a.get("id_number"))),
        ("出生日期", show(mask_birth, a.get("birth_date"))),
        ("联系电话", show(mask_phone, a.get("phone"))),
        ("户籍地址", show(mask_address, a.get("household_address"))),
    ]
    agent = doc.get("agent")
    if agent:
        view.agent = [
            ("姓名", show(mask_name, agent.get("name"))),
            ("与申请人关系", agent.get("relation") or ""),
            ("身份证号", show(mask_id, agent.get("id_number"))),
            ("联系电话", show(mask_phone, agent.get("phone"))),
            ("法定监护人", "是" if agent.get("legal_guardian") else "否"),
        ]
    return view


def _shown(_mask, value: str | None) -> str:
    return value or ""


def _masked(mask, value: str | None) -> str:
    return mask(value)


async def submitted_on(s: Services, day: str) -> list[str]:
    """Applications submitted on this day (YYYY-MM-DD, the bot's clock), newest first."""
    ids = await candidates(s)
    metas = await each(ids, s.registry.meta)
    return [
        app_id
        for app_id, meta in zip(ids, metas, strict=True)
        if meta is not None and str(meta.get("submitted_at", "")).startswith(day)
    ]


async def failed_pushes(s: Services, app_id: str | None = None) -> list[dict[str, Any]]:
    """Messages to citizens given up on (the push queue's failed list), newest first, each with the
    application it was about when its key names one. A key ends with the openid: never shown."""
    rows = []
    for item in reversed(await s.push.failed()):
        head, _, rest = item["key"].partition(":")
        about = head if await s.registry.meta(head) is not None else ""
        if app_id is not None and about != app_id:
            continue
        rows.append({**item, "application_id": about, "kind": rest.split(":")[0] if about else "", "key": None})
    return rows


def tickets(s: Services) -> Tickets:
    return Tickets(s.redis.client, s.sealer, s.outbox)


async def tickets_of(s: Services, app_id: str | None = None, *, only_open: bool = False) -> list[dict[str, Any]]:
    """Handoff tickets, newest first, the openid left out; names and the call-back number masked
    (the clerk shows the case in full, logged, to call)."""
    rows = []
    for t in reversed(await tickets(s).list()):
        if (app_id is not None and t["application_id"] != app_id) or (only_open and t["state"] != "open"):
            continue
        t = {k: v for k, v in t.items() if k != "openid"}
        t.update(applicant=mask_name(t["applicant"]), agent=mask_name(t["agent"]), callback=mask_phone(t["callback"]))
        rows.append(t)
    return rows


def viewer_id(openid: str) -> str:
    """How the case page names a viewer in a form: never the openid itself."""
    return hashlib.sha256(("viewer:" + openid).encode()).hexdigest()[:16]


def bindings(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Who may follow the application in WeChat: the applicant side first, then bound family members."""
    bound_at = meta.get("bound_at", {})
    return [
        {
            "id": viewer_id(openid),
            "openid": mask_openid(openid),
            "who": "申请时的微信用户" if i == 0 else "绑定的家属",
            "at": bound_at.get(openid, "") if i else meta.get("submitted_at", ""),
            "revocable": i > 0,
        }
        for i, openid in enumerate(meta.get("viewers", []))
    ]


PUSH_KINDS = {
    "text": "消息",
    "accepted": "受理通知",
    "result": "审核结果",
    "materials_missing": "补齐材料",
    "assessment_reminder": "评定提醒",
    "session_moved": "评定改期",
    "pickup": "领取通知",
}
PUSH_STATES = {"queued": "待发送", "sent": "已发送", "failed": "发送失败", "expired": "未发出（超过48小时且无模板）"}


async def pushes_to_followers(s: Services, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The push queue's messages to each openid following the application, masked: what WeChat was asked
    to deliver (sent ones are remembered 7 days, failed ones 30). A follower of several applications
    shows here the messages of all of them (the queue does not keep which application a message was about)."""
    rows = []
    for openid in meta.get("viewers", []):
        for m in await s.push.to(openid):
            labels = {"state_label": PUSH_STATES.get(m["state"], m["state"]), "kind_label": PUSH_KINDS.get(m["kind"], m["kind"])}
            rows.append({**m, "openid": mask_openid(openid), **labels})
    return sorted(rows, key=lambda m: m["due_at"])


def photos(document: dict[str, Any], supplied: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Photos received in WeChat: with the application, and later for a missing material (补齐材料)."""
    rows = [
        {"material": m["name"], "media_ids": [m["media_id"]], "at": document.get("submitted_at", ""), "when": "申请时"}
        for m in document.get("materials", [])
        if m.get("media_id")
    ]
    rows += [{"material": e["material"], "media_ids": e["media_ids"], "at": e["at"], "when": "补齐材料"} for e in supplied]
    return rows


def is_overdue(record: dict[str, Any], today: date) -> bool:
    """Past its expected completion and not finished: the rule the citizen's 进度 marks (dialogs/aftercare.py)."""
    expected = record.get("expected")
    if not expected or record.get("status") in FINISHED:
        return False
    return date.fromisoformat(expected) < today


async def overdue(s: Services) -> list[tuple[str, list[str]]]:
    """Applications with a service past its expected date, and which services."""
    today = s.clock.today()
    ids = await candidates(s)
    found = []
    for app_id, status in zip(ids, await each(ids, s.registry.status), strict=True):
        late = [code for code, record in status.items() if is_overdue(record, today)]
        if late:
            found.append((app_id, late))
    return found
