"""After submission: status by message, family binding, withdrawal and the satisfaction rating.

Reached through global commands (进度, 绑定码, 绑定 …, 撤销 …) from any state, so a family member
who never applied can use them too. Wording is content/common/status.yaml.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from dialogs.assessment import format_day
from dialogs.pack import Pack
from dialogs.understanding import Understanding, compact
from dialogs.validators import ValidationError, parse_id_number
from integrations.applications import FINISHED, PROCESSING_STARTED, ApplicationRegistry, ApplicationView

_BIND_CODE = re.compile(r"^绑定(\d{6})$")
_BIND_ID = re.compile(r"^绑定([A-Z]{2}\d{8}[0-9A-Z]{6}|[0-9A-Za-z-]{4,40}?)(\d{17}[\dxX])$")


def _retry_time(now: datetime, wait_s: int) -> str:
    """When binding may be tried again, rounded up to the minute: "15:07", or "明天 0:12"."""
    at = now + timedelta(seconds=wait_s + 59)
    clock = f"{at.hour}:{at.minute:02d}"
    return clock if at.date() == now.date() else f"明天 {clock}"


def _day(iso: str) -> str:
    d = date.fromisoformat(iso[:10])
    return format_day(d)


class Aftercare:
    def __init__(self, pack: Pack, lang: Understanding, registry: ApplicationRegistry, outbox_events):
        self.pack = pack
        self.lang = lang
        self.registry = registry
        self.events = outbox_events
        self.words = pack.status

    # -- status -----------------------------------------------------------------------------------
    async def status_text(self, openid: str, today: date) -> str | None:
        views = await self.registry.visible_to(openid)
        if not views:
            return None
        return "\n".join(self.render(v, today) for v in views[-3:]) + "\n" + self.words["footer"]

    def render(self, view: ApplicationView, today: date) -> str:
        w = self.words
        lines = [w["header"].format(reference=view.id, date=_day(view.meta["submitted_at"]))]
        for service in view.meta["services"]:
            record = view.status.get(service, {"status": "submitted"})
            lines.append(
                w["line"].format(
                    service=self.pack.services[service].short,
                    label=w["labels"].get(record["status"], record["status"]),
                    note=w["note"].format(note=record["note"]) if record.get("note") else "",
                    expected=self._expected(record, today),
                )
            )
        appointment = view.meta.get("appointment")
        if appointment and appointment.get("session_date"):
            lines.append(
                w["appointment"].format(
                    date=_day(appointment["session_date"]), period=appointment["period"], place=appointment["place"]
                )
            )
        return "\n".join(lines)

    def _expected(self, record: dict[str, Any], today: date) -> str:
        expected = record.get("expected")
        if not expected or record["status"] in FINISHED:
            return ""
        if date.fromisoformat(expected) < today:
            return self.words["overdue"]
        return self.words["expected"].format(date=_day(expected))

    # -- commands -----------------------------------------------------------------------------------
    def command(self, text: str) -> str | None:
        t = compact(text).upper().replace("绑定吗", "绑定码")
        if t in ("绑定码", "要绑定码", "获取绑定码"):
            return "bind_code"
        if t.startswith("绑定"):
            return "bind"
        if t.startswith(("撤销", "撤回")):
            return "withdraw"
        return None

    async def handle(self, command: str, text: str, openid: str, now: datetime) -> str:
        if command == "bind_code":
            return await self._bind_code(openid)
        if command == "bind":
            return await self._bind(openid, text, now)
        return await self._withdraw(openid, text, now)

    async def _bind_code(self, openid: str) -> str:
        views = [v for v in await self.registry.visible_to(openid) if v.meta["viewers"][0] == openid]
        if not views:
            return self.words["bind_code_none"]
        code = await self.registry.new_bind_code(views[-1].id)
        return self.words["bind_code"].format(code=code)

    async def _bind(self, openid: str, text: str, now: datetime) -> str:
        t = compact(text).upper()
        by_code, by_id = _BIND_CODE.match(t), _BIND_ID.match(t)
        if not by_code and not by_id:
            return self.words["bind_usage"]
        wait_s = await self.registry.take_bind_attempt(openid, now.timestamp())
        if wait_s:
            return self.words["bind_limited"].format(time=_retry_time(now, wait_s))
        app_id = None
        if by_code:
            app_id = await self.registry.bind_with_code(openid, by_code.group(1))
        elif by_id:
            try:
                id_number = parse_id_number(by_id.group(2), today=now.date()).number
            except ValidationError:
                id_number = None
            if id_number:
                app_id = await self.registry.bind_with_id(openid, by_id.group(1), id_number)
        if app_id is None:
            return self.words["bind_failed"]
        await self.registry.forgive_bind_attempt(openid)
        return self.words["bind_ok"].format(status=await self.status_text(openid, now.date()) or "")

    async def _withdraw(self, openid: str, text: str, now: datetime) -> str:
        # Only the applicant side (the first viewer) may withdraw.
        views = [v for v in await self.registry.visible_to(openid) if v.meta["viewers"][0] == openid]
        open_ = [(v, s) for v in views for s in v.meta["services"] if v.status.get(s, {}).get("status") not in PROCESSING_STARTED]
        if not open_:
            return self.words["withdraw_none"]
        wanted = self.lang.services_in(text)
        if not wanted:
            return self.words["withdraw_which"].format(services="、".join(self.pack.services[s].short for _, s in open_))
        replies = []
        for service in wanted:
            match = [(v, s) for v, s in open_ if s == service]
            name = self.pack.services[service].short
            if not match:
                replies.append(self.words["withdraw_too_late"].format(service=name))
                continue
            view, _ = match[-1]
            event = {
                "event_id": f"{view.id}:withdraw:{service}",
                "application_id": view.id,
                "application_no": view.meta.get("application_no"),
                "service": service,
                "status": "withdrawn",
                "note": "申请人撤销",
                "at": now.isoformat(timespec="seconds"),
            }
            await self.registry.apply_event(view.id, event)
            await self.events.submit_event(event)
            await self.registry.expire_if_finished(view.id)
            replies.append(self.words["withdraw_done"].format(service=name))
        return "\n".join(replies)
