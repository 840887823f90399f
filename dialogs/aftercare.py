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
from dialogs.service_roles import CERTIFICATE
from dialogs.turn import Ports
from dialogs.understanding import Understanding, compact
from dialogs.validators import ValidationError, parse_id_number
from integrations.applications import (
    PROCESSING_STARTED,
    STAGE,
    ApplicationRegistry,
    ApplicationView,
    StatusConflict,
)
from integrations.delivery import delivered

_BIND_CODE = re.compile(r"^绑定(\d{6})$")
_BIND_ID = re.compile(r"^绑定([A-Z]{2}\d{8}[0-9A-Z]{6}|[0-9A-Za-z-]{4,40}?)(\d{17}[\dxX])$")


def _retry_time(now: datetime, wait_s: int) -> str:
    """When binding may be tried again, rounded up to the minute: "15:07", or "明天 0:12"."""
    at = now + timedelta(seconds=wait_s + 59)
    clock = f"{at.hour}:{at.minute:02d}"
    return clock if at.date() == now.date() else f"明天 {clock}"


def _day(iso: str) -> str:
    try:
        return format_day(date.fromisoformat(iso[:10]))
    except ValueError:
        # A date no calendar has, written before moves were validated (2027-02-30): shown as it is,
        # so the status still answers instead of failing for ever.
        return iso[:10]


# The service whose assessment place, roster row and reminders go with it.


class Aftercare:
    def __init__(self, pack: Pack, lang: Understanding, registry: ApplicationRegistry, ports: Ports):
        self.pack = pack
        self.lang = lang
        self.registry = registry
        self.ports = ports
        self.events = ports.outbox
        self.words = pack.status
        self.phrases = pack.lexicon.get("after_submission", {})
        # Each phrase's words as one pattern, in the lexicon's order (the first phrase found wins).
        self._phrase_patterns = [
            (name, re.compile("|".join(re.escape(w) for w in words)))
            for name, words in self.phrases.items()
            if name not in ("no", "human") and words
        ]

    # -- status -----------------------------------------------------------------------------------
    async def status_text(self, openid: str, today: date) -> str | None:
        views = await self.registry.visible_to(openid)
        if not views:
            return None
        rendered = [self.render(v, today, await self._intake_told(v)) for v in views[-3:]]
        return "\n".join(rendered) + "\n" + self.words["footer"]

    async def _intake_told(self, view: ApplicationView) -> set[str]:
        """The services whose withdrawal the intake has received (until then: 正在通知)."""
        withdrawn = [s for s in view.meta["services"] if view.status.get(s, {}).get("status") == "withdrawn"]
        return {s for s in withdrawn if await delivered(self.registry.redis, "event", withdrawal_event_id(view.id, s))}

    def render(self, view: ApplicationView, today: date, told: set[str] | frozenset[str] = frozenset()) -> str:
        w = self.words
        lines = [w["header"].format(reference=view.id, date=_day(view.meta["submitted_at"]))]
        for service in view.meta["services"]:
            record = view.status.get(service, {"status": "submitted"})
            label = w["labels"].get(record["status"], record["status"])
            if record["status"] == "withdrawn" and record.get("by_citizen"):
                label += w["withdrawn_told" if service in told else "withdrawn_telling"]
            elif record["status"] == "approved" and not self.registry.is_finished(service, "approved"):
                label += w["certificate_on_the_way"]  # approved is not in hand: say how it comes
            lines.append(
                w["line"].format(
                    service=self.pack.services[service].short,
                    label=label,
                    note=w["note"].format(note=record["note"]) if record.get("note") else "",
                    expected=self._expected(service, record, today),
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

    def _expected(self, service: str, record: dict[str, Any], today: date) -> str:
        expected = record.get("expected")
        if not expected or self.registry.is_finished(service, record["status"]):
            return ""
        if date.fromisoformat(expected) < today:
            return self.words["overdue"]
        return self.words["expected"].format(date=_day(expected))

    # -- answers and phrases after submission ---------------------------------------------------------
    async def answer(self, text: str, openid: str, now: datetime, *, submitted: bool, expecting: bool = True) -> str | None:
        """A reply when the message answers a question asked here (回复1确认撤销) or is one of the
        phrases about a submitted application (取消预约, 改日期, 谁能看我的申请, ...); None: not ours.
        Nothing is read from Redis unless the words could be one of them."""
        t = compact(text)
        if not t or len(t) > 16:
            return None
        number = self.lang.number(text)
        if expecting and len(t) <= 4 and (number in (1, 2) or self.lang.is_yes(text) or t in self.phrases.get("no", [])):
            pending = await self.registry.take_pending_withdrawal(openid)
            if pending is not None:
                if number == 1 or (number is None and self.lang.is_yes(text)):
                    return await self._confirm_withdrawal(openid, pending, now)
                return self.words["withdraw_kept"]
        if submitted and number is not None and len(t) <= 3:  # photos are held only after submission
            held = await self.registry.held_photos(openid)
            if held is not None:
                return await self._label_photos(openid, held, number, now)
        if submitted and number is not None and 1 <= number <= 5 and len(t) <= 3 and self.ports.feedback:
            rated = await self._score(openid, number)
            if rated:
                return rated
        phrase = self._phrase(t)
        if phrase is None and not (submitted and self.lang.command(text) == "restart"):
            return None
        if phrase == "new_application" or (phrase == "chase" and t in self.phrases.get("human", []) and not submitted):
            # The one way to start again after submission: the dialog's restart. And 人工 in the middle of
            # a form is about that form: the dialog's help.
            return None
        views = await self.registry.visible_to(openid)
        if not views and not submitted:
            return None
        if phrase is None:
            return self.words["restart_after_submission"].format(reference=views[-1].id if views else "")
        return await self._phrase_reply(phrase, views, openid, now)

    # -- 补齐材料: photos after materials_missing ------------------------------------------------------
    async def photo(self, media_id: str, openid: str, now: datetime) -> str | None:
        """A photo while an application this openid may see is missing materials: kept for it and the
        citizen asked which material it is. None: nothing is missing (the dialog keeps it as before)."""
        choices = await self._missing_materials(openid)
        if not choices:
            return None
        app_id = choices[0][0]
        count = await self.registry.hold_photo(openid, app_id, media_id[:128])
        lines = "\n".join(f"{i} {self.pack.services[service].short}：{name}" for i, (_, service, name) in enumerate(choices, 1))
        return self.words["supply_which"].format(count=count, lines=lines)

    async def _missing_materials(self, openid: str) -> list[tuple[str, str, str]]:
        """(application, service, material) for the latest application with a service missing materials."""
        for view in reversed(await self.registry.visible_to(openid)):
            missing = [s for s in view.meta["services"] if view.status.get(s, {}).get("status") == "materials_missing"]
            if not missing:
                continue
            document = await self.ports.outbox.get(view.id)
            materials = (document or {}).get("materials", [])
            choices = [(view.id, s, m["name"]) for s in missing for m in materials if s in (m.get("service") or [])]
            return choices or [(view.id, s, self.words["supply_other"]) for s in missing]
        return []

    async def _label_photos(self, openid: str, held: dict[str, Any], number: int, now: datetime) -> str | None:
        choices = [c for c in await self._missing_materials(openid) if c[0] == held["app_id"]]
        if not choices:
            await self.registry.take_held_photos(openid)
            return None
        if not 1 <= number <= len(choices):
            return self.words["supply_which_again"].format(count=len(choices))
        held = await self.registry.take_held_photos(openid) or held
        app_id, service, material = choices[number - 1]
        at = now.isoformat(timespec="seconds")
        n = await self.registry.record_supplied(
            app_id, {"service": service, "material": material, "media_ids": held["media_ids"], "at": at}
        )
        meta = await self.registry.meta(app_id) or {}
        await self.events.submit_event(
            {
                "event_id": f"{app_id}:supplied:{service}:{n}",
                "application_id": app_id,
                "application_no": meta.get("application_no"),
                "service": service,
                "status": "materials_supplied",
                "material": material,
                "media_ids": held["media_ids"],
                "note": "申请人在公众号补交材料照片",
                "at": at,
            }
        )
        return self.words["supply_kept"].format(
            count=len(held["media_ids"]), material=material, service=self.pack.services[service].short
        )

    async def _score(self, openid: str, score: int) -> str | None:
        """A 1-5 while a service waits for its score: that service's, named back (None: no rating asked)."""
        feedback = self.ports.feedback
        assert feedback is not None
        waiting = [e for e in await feedback.pending_all(openid) if e["stage"] == "score"]
        if not waiting:
            return None
        await feedback.record_score(openid, waiting[0], score)
        service = self.pack.services[waiting[0]["service"]].short
        more = "、".join(self.pack.services[e["service"]].short for e in waiting[1:])
        thanks = self.words["rating_thanks_service"].format(service=service, score=score)
        return thanks + (self.words["rating_more"].format(services=more) if more else "")

    def _phrase(self, t: str) -> str | None:
        for name, pattern in self._phrase_patterns:
            if pattern.search(t):
                return name
        return None

    async def _phrase_reply(self, phrase: str, views: list[ApplicationView], openid: str, now: datetime) -> str | None:
        w = self.words
        own = [v for v in views if v.meta["viewers"][0] == openid]
        if phrase == "viewers":
            return self._viewers(views, openid)
        if phrase == "unbind":
            if own:
                return w["unbind_family"].format(count=await self.registry.unbind_family(openid))
            _, unbound = await self.registry.unbind_follower(openid)
            return w["unbind_self"] if unbound else w["unbind_none"]
        if not views:
            return self.words["none"]
        view = (own or views)[-1]
        if phrase == "chase":
            return await self._handoff(view, openid, now, asked="chase")
        if phrase == "change_date":
            return await self._handoff(view, openid, now, asked="change_date")
        if phrase == "cancel_booking":
            appointment = view.meta.get("appointment") or {}
            if not appointment.get("session_date"):
                return w["cancel_booking_none"]
            return w["cancel_booking"].format(date=_day(appointment["session_date"]))
        if phrase == "supply":
            return self._missing(view)
        return await self._pickup(view)

    def _viewers(self, views: list[ApplicationView], openid: str) -> str:
        w, lines = self.words, []
        for v in views[-3:]:
            if v.meta["viewers"][0] != openid:
                lines.append(w["viewers_follower"].format(reference=v.id))
                continue
            family = v.meta["viewers"][1:]
            bound_at = v.meta.get("bound_at", {})
            days = "、".join(_day(bound_at[f]) for f in family if bound_at.get(f))
            lines.append(
                w["viewers_own"].format(
                    reference=v.id, count=len(family), days=w["viewers_days"].format(days=days) if days else ""
                )
                if family
                else w["viewers_own_alone"].format(reference=v.id)
            )
        return "\n".join(lines) + ("\n" + w["viewers_footer"] if any(v.meta["viewers"][0] == openid for v in views) else "")

    def _missing(self, view: ApplicationView) -> str:
        missing = [(s, r) for s, r in view.status.items() if r.get("status") == "materials_missing"]
        if not missing:
            return self.words["supply_none"].format(reference=view.id)
        lines = [
            self.words["supply_line"].format(
                service=self.pack.services[s].short, note=self.words["note"].format(note=r["note"]) if r.get("note") else ""
            )
            for s, r in missing
        ]
        return self.words["supply"].format(reference=view.id, lines="\n".join(lines), window=self.pack.window)

    async def _pickup(self, view: ApplicationView) -> str:
        """As the citizen chose when applying (内蒙古: 自取 or 邮寄), else as the pack's seed says."""
        chosen = ((await self.ports.outbox.get(view.id) or {}).get("result_delivery") or {}).get("method")
        if chosen in ("pickup", "mail"):
            return self.words[f"pickup_{chosen}"].format(window=self.pack.window)
        delivery = self.pack.raw.get("certificate_delivery", {})
        if not set(self.pack.with_role(CERTIFICATE)) & set(view.meta["services"]) or not delivery.get("text"):
            return self.words["pickup_unknown"]
        return self.words["pickup"].format(text=delivery["text"])

    async def _handoff(self, view: ApplicationView, openid: str, now: datetime, *, asked: str) -> str:
        tickets = self.ports.tickets
        if tickets is None:
            return self.pack.text("human")
        ticket = await tickets.open(openid, view.id, asked, now)
        return self.words["ticket_" + asked].format(
            ticket=ticket, reference=view.id, workdays=self.words["ticket_callback_workdays"]
        )

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
        at = now.isoformat(timespec="seconds")
        if by_code:
            app_id = await self.registry.bind_with_code(openid, by_code.group(1), at)
        elif by_id:
            try:
                id_number = parse_id_number(by_id.group(2), today=now.date()).number
            except ValidationError:
                id_number = None
            if id_number:
                app_id = await self.registry.bind_with_id(openid, by_id.group(1), id_number, now=now.timestamp(), at=at)
        if app_id is None:
            return self.words["bind_failed"]
        await self.registry.forgive_bind_attempt(openid)
        if self.ports.followup:
            await self.ports.followup.bound(app_id, openid)
        return self.words["bind_ok"].format(status=await self.status_text(openid, now.date()) or "")

    async def _withdraw(self, openid: str, text: str, now: datetime) -> str:
        """List what can be withdrawn, or ask to confirm; nothing changes before "1"."""
        open_ = await self._withdrawable(openid)
        if not open_:
            return self.words["withdraw_none"]
        wanted = self.lang.services_in(text)
        names = "、".join(self.pack.services[s].short for _, s in open_)
        if not wanted:
            return self.words["withdraw_which"].format(services=names)
        chosen = [(v, s) for v, s in open_ if s in wanted]
        late = [s for s in wanted if s not in {s for _, s in chosen}]
        replies = [self.words["withdraw_too_late"].format(service=self.pack.services[s].short) for s in late]
        if chosen:
            view = chosen[-1][0]  # one application at a time: the latest that has it
            services = [s for v, s in chosen if v.id == view.id]
            await self.registry.ask_withdrawal(openid, view.id, services)
            appointment = view.meta.get("appointment") or {}
            booking = ""
            if set(self.pack.with_role(CERTIFICATE)) & set(services) and appointment.get("session_date"):
                booking = self.words["withdraw_confirm_booking"].format(date=_day(appointment["session_date"]))
            replies.append(
                self.words["withdraw_confirm"].format(
                    services="、".join(self.pack.services[s].short for s in services), reference=view.id, booking=booking
                )
            )
        return "\n".join(replies)

    async def _withdrawable(self, openid: str) -> list[tuple[ApplicationView, str]]:
        # Only the applicant side (the first viewer) may withdraw.
        views = [v for v in await self.registry.visible_to(openid) if v.meta["viewers"][0] == openid]
        return [(v, s) for v in views for s in v.meta["services"] if v.status.get(s, {}).get("status") not in PROCESSING_STARTED]

    async def _confirm_withdrawal(self, openid: str, pending: dict[str, Any], now: datetime) -> str:
        app_id, done, replies = pending["app_id"], [], []
        meta = await self.registry.meta(app_id)
        if meta is None or meta["viewers"][0] != openid:
            return self.words["withdraw_none"]
        may_withdraw = [s for s in STAGE if s not in PROCESSING_STARTED]
        for service in pending["services"]:
            event = {
                "event_id": withdrawal_event_id(app_id, service),
                "application_id": app_id,
                "application_no": meta.get("application_no"),
                "service": service,
                "status": "withdrawn",
                "note": "申请人撤销",
                "at": now.isoformat(timespec="seconds"),
            }
            try:  # atomic: the intake may have started on it since the question
                await self.registry.apply_event(app_id, {**event, "by_citizen": True}, allowed_from=may_withdraw)
            except StatusConflict:
                replies.append(self.words["withdraw_too_late"].format(service=self.pack.services[service].short))
                continue
            await self.events.submit_event(event)
            done.append(service)
        if not done:
            return "\n".join(replies)
        appointment = meta.get("appointment") or {}
        session_date = None
        if set(self.pack.with_role(CERTIFICATE)) & set(done):
            # The place at the assessment goes back (and with it the hospital's roster row), as do the reminders.
            if appointment.get("session_date"):
                session_date = appointment["session_date"]
                await self.ports.book.release(session_date, app_id)
                await self.registry.update_meta(app_id, appointment=None)
            await self.ports.book.leave_waitlist("mental", app_id)
        if self.ports.followup:
            await self.ports.followup.withdrawn(app_id, done, session_date)
        await self.registry.expire_if_finished(app_id)
        names = "、".join(self.pack.services[s].short for s in done)
        rest = [s for s in meta["services"] if s not in done]
        replies.append(self.words["withdraw_done" if rest else "withdraw_done_all"].format(service=names))
        return "\n".join(replies)


def withdrawal_event_id(app_id: str, service: str) -> str:
    return f"{app_id}:withdraw:{service}"
