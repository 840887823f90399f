"""What the bot tells citizens without being asked: status changes, reminders, announcements.

Everything goes through the durable push queue under an idempotency key, so each message is
queued once however often an event or a reminder is processed. Wording: content/common/status.yaml.
Each message that matters after the 48-hour window also carries its notice (kind and values), the form
WeChat lets us send then: content/common/notices.yaml says which template keyword each value fills.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import suppress
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.clock import ClockLike
from dialogs.application import FINAL
from dialogs.assessment import format_day
from dialogs.deadlines import expected_after_acceptance, expected_from_session
from dialogs.pack import Pack
from dialogs.service_roles import CERTIFICATE
from dialogs.workdays import WorkCalendar
from integrations.applications import ApplicationRegistry, BadEvent, StatusConflict, allowed_before
from integrations.delivery import delivery_state
from integrations.feedback import FeedbackStore
from integrations.reminders import Push, Reminders
from integrations.wechat_notice import Notices

log = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
# These statuses finish a service: the citizen is asked to rate it (not for a withdrawal).
PUBLICITY = {"publicity_started", "publicity_ended"}
FUTURE_TOLERANCE_S = 300  # the intake's clock and ours may differ a little, as in the signature's window


def assessment_reminder_id(app_id: str, session_date: str, days_before: int) -> str:
    """Named by the session's day too: after a move the new day's reminders are new ones, so the push
    queue (which sends each key once) does not take them for those already sent for the old day."""
    return f"assess:{app_id}:{session_date}:{days_before}d"


def full_day(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _at(day: date, hhmm: str) -> float:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(day, time(h, m), tzinfo=CHINA).timestamp()


class Notifier:
    def __init__(
        self,
        pack: Pack,
        registry: ApplicationRegistry,
        push: Push,
        reminders: Reminders,
        feedback: FeedbackStore,
        calendar: WorkCalendar,
        outbox,
        *,
        clock: ClockLike,
    ):
        self.clock = clock
        self.pack = pack
        self.registry = registry
        self.push = push
        self.reminders = reminders
        self.feedback = feedback
        self.calendar = calendar
        self.outbox = outbox
        self.words = pack.status
        self.notices = Notices(pack.notices)

    # -- notices ------------------------------------------------------------------------------------
    def notice(self, kind: str, **values: str) -> dict[str, Any]:
        """A message's notice form: its kind (content/common/notices.yaml) and the values that fill it."""
        return {"kind": kind, "values": {k: str(v) for k, v in values.items() if v is not None}}

    def status_notice(self, app_id: str, service: str, status: str, *, note: str = "", at: str | None = None) -> dict[str, Any]:
        when = datetime.fromisoformat(at).astimezone(CHINA) if at else self.clock.now().astimezone(CHINA)
        return self.notice(
            self.notices.kind_of_status(status),
            reference=app_id,
            service=self.pack.services[service].short if service in self.pack.services else service,
            label=self.words["labels"].get(status, status),
            phrase=self.notices.phrase(status),
            note=note,
            time=f"{full_day(when.date())} {when:%H:%M}",
        )

    # -- intake outcomes ------------------------------------------------------------------------
    async def on_delivered(self, app_id: str, application_no: str | None) -> None:
        if application_no:
            await self.registry.set_application_no(app_id, application_no)
        for service in await self.registry.status(app_id):
            # From 已提交, or from 暂未送达 once an operator's retry got it through; never over an
            # intake event that arrived first.
            with suppress(StatusConflict):
                await self.registry.apply_event(
                    app_id,
                    {
                        # Applied once by the status it may follow, not by its id: after 暂未送达 a
                        # retry's delivery is a new one.
                        "event_id": f"{app_id}:delivered:{service}:{secrets.token_hex(4)}",
                        "service": service,
                        "status": "delivered",
                        "note": "",
                        "at": self._now_iso(),
                    },
                    allowed_from=["submitted", "delivery_failed"],
                )
        await self.registry.expire_if_finished(app_id)  # everything was withdrawn before it arrived

    async def on_rejected(self, app_id: str, detail: str) -> None:
        meta = await self.registry.meta(app_id)
        if meta is None:
            return
        for service in meta["services"]:
            await self.registry.apply_event(
                app_id,
                {
                    "event_id": f"{app_id}:delivery_failed:{service}",
                    "service": service,
                    "status": "delivery_failed",
                    "note": "",
                    "at": self._now_iso(),
                },
            )
        text = self.words["push_rejected_delivery"].format(reference=app_id)
        notice = self.status_notice(app_id, meta["services"][0] if meta["services"] else "", "delivery_failed")
        notice["values"]["service"] = "、".join(self.pack.services[c].short for c in meta["services"] if c in self.pack.services)
        for openid in meta["viewers"]:
            await self.push.enqueue(openid, text, key=f"{app_id}:delivery_failed:{openid}", notice=notice)

    async def on_status_event(self, app_id: str, event: dict[str, Any]) -> bool:
        """Apply an intake event and tell everyone allowed to see the application. False: seen before.
        StatusConflict when it contradicts what we know: recorded for operators, the citizen not told."""
        meta = await self.registry.meta(app_id)
        if meta is None:
            return False
        service = event["service"]
        if event.get("at"):
            at = datetime.fromisoformat(event["at"])
            if (at if at.tzinfo else at.replace(tzinfo=CHINA)).timestamp() > self.clock.time() + FUTURE_TOLERANCE_S:
                raise BadEvent("at is in the future")
        try:
            if service not in meta["services"]:
                raise StatusConflict("service_not_applied")
            if event["status"] in PUBLICITY and meta.get("publicity", {}).get(service) is False:
                # Minors and 精神 applicants are not publicly posted (the pack's publicity rule).
                raise StatusConflict("exempt_from_publicity")
            expected = await self._expected_after(app_id, event)
            try:
                applied = await self.registry.apply_event(
                    app_id, event, expected=expected, allowed_from=allowed_before(event["status"])
                )
            except StatusConflict:
                now_status = (await self.registry.status(app_id)).get(service, {}).get("status")
                raise StatusConflict("after_withdrawal" if now_status == "withdrawn" else "regression") from None
        except StatusConflict as conflict:
            await self.registry.record_conflict(app_id, event, conflict.reason, self.clock.time())
            log.warning(
                "intake event %s conflicts with the application (%s): %s %s, left to operators",
                event["event_id"],
                conflict.reason,
                service,
                event["status"],
            )
            raise
        if not applied:
            return False
        label = self.words["labels"].get(event["status"], event["status"])
        text = self.words["push_status"].format(
            reference=app_id,
            service=self.pack.services[service].short if service in self.pack.services else service,
            label=label,
            note=self.words["note"].format(note=event["note"]) if event.get("note") else "",
        )
        notice = self.status_notice(app_id, service, event["status"], note=event.get("note") or "", at=event.get("at"))
        ask = ""
        finished = self.registry.is_finished(service, event["status"]) and event["status"] != "withdrawn"
        if finished and meta["viewers"] and await self.feedback.ask(meta["viewers"][0], app_id, service):
            ask = self.words["rating_ask"].format(service=self.pack.services[service].short)
        for i, openid in enumerate(meta["viewers"]):
            # The request to rate rides in the result's own message: it can never arrive before it.
            message = f"{text}\n{ask}" if ask and i == 0 else text
            await self.push.enqueue(
                openid, message, key=f"{event['event_id']}:{openid}", notice=notice, group=f"{app_id}:{service}"
            )
        await self.registry.expire_if_finished(app_id)  # the final result: kept for the pack's retention from now
        return True

    async def _expected_after(self, app_id: str, event: dict[str, Any]) -> str | None:
        """On acceptance a service's clock starts, in working days from the pack; for a deadline that
        runs from the certificate, only once the applicant has one (dialogs/deadlines.py)."""
        if event["status"] != "accepted" or event["service"] not in self.pack.services:
            return None
        start = datetime.fromisoformat(event["at"]).date() if event.get("at") else self.clock.now().date()
        day = expected_after_acceptance(self.pack, self.calendar, event["service"], start, await self.outbox.get(app_id))
        return day.isoformat() if day else None

    def _now_iso(self) -> str:
        return self.clock.now().isoformat(timespec="seconds")

    # -- reminders ----------------------------------------------------------------------------------
    async def schedule_assessment_reminders(self, app_id: str, appointment: dict[str, Any], materials: list[str]) -> None:
        day = date.fromisoformat(appointment["session_date"])
        for rule in self._before_assessment():
            when = _at(day - timedelta(days=int(rule["days"])), rule["at"])
            if when <= self.clock.time():
                continue  # a session moved close: a reminder for a moment already past would arrive late
            await self.reminders.schedule(
                assessment_reminder_id(app_id, appointment["session_date"], int(rule["days"])),
                when,
                {"kind": "assessment", "app_id": app_id, "appointment": appointment, "materials": materials},
            )

    def assessment_materials(self, document: dict[str, Any] | None) -> list[str]:
        """What to bring to the assessment: the materials of the service that issues the certificate."""
        certificate = set(self.pack.with_role(CERTIFICATE))
        return [m["name"] for m in (document or {}).get("materials", []) if certificate & set(m["service"] or ())]

    async def cancel_assessment_reminders(self, app_id: str, session_date: str) -> None:
        for rule in self._before_assessment():
            await self.reminders.cancel(assessment_reminder_id(app_id, session_date, int(rule["days"])))

    def _before_assessment(self) -> list[dict[str, Any]]:
        return list(self.pack.raw.get("reminders", {}).get("before_assessment", []))

    async def schedule_unfinished(self, openid: str, reference: str, now: datetime) -> None:
        rules = self.pack.raw.get("reminders", {})
        hours = float(rules.get("unfinished_after_hours", 44))
        await self.reminders.schedule(
            f"unfinished:{reference}",
            (now + timedelta(hours=hours)).timestamp(),
            {"kind": "unfinished", "openid": openid, "reference": reference},
        )

    async def render_reminder(self, reminder_id: str, payload: dict[str, Any], *, conversations=None) -> list[tuple]:
        """(openid, text) or (openid, text, notice) for each message the reminder makes now; [] when it no longer applies."""
        if payload["kind"] == "assessment":
            meta = await self.registry.meta(payload["app_id"])
            if meta is None or (meta.get("appointment") or {}).get("session_date") != payload["appointment"]["session_date"]:
                return []  # cancelled or moved since
            a = payload["appointment"]
            text = self.words["reminder_assessment"].format(
                date=format_day(date.fromisoformat(a["session_date"])),
                period=a["period"],
                place=a["place"],
                reference=payload["app_id"],
                materials="、".join(payload["materials"]),
            )
            day = date.fromisoformat(a["session_date"])
            notice = self.notice(
                "assessment_reminder",
                date=full_day(day),
                period=a["period"],
                place=a["place"],
                reference=payload["app_id"],
                materials="、".join(payload["materials"]),
            )
            return [(openid, text, notice) for openid in meta["viewers"]]
        if payload["kind"] == "delivery_late":
            # Told once, a day after submitting, only if it has still not reached the intake (a refusal
            # has its own message: push_rejected_delivery).
            if await delivery_state(self.registry.redis, "application", payload["app_id"]) in ("delivered", "failed"):
                return []
            meta = await self.registry.meta(payload["app_id"])
            if meta is None:
                return []
            text = self.words["push_delivery_late"].format(reference=payload["app_id"])
            return [(openid, text) for openid in meta["viewers"]]
        if payload["kind"] == "unfinished" and conversations is not None:
            session = await conversations.load(payload["openid"])
            if not session or session["state"] == FINAL or session["data"].get("reference") != payload["reference"]:
                return []
            return [(payload["openid"], self.words["reminder_unfinished"])]
        return []

    # -- operators ------------------------------------------------------------------------------------
    async def announce(
        self, app_id: str, appointment: dict[str, Any], *, kind: str, old: str | None = None, occasion: str = ""
    ) -> None:
        """Tell everyone who may see the application of its (new) session; `occasion` tells one move from
        another to the same day (moved, undone, moved again), so each is pushed once."""
        before = await self.registry.meta(app_id)
        if before is None:
            return
        meta = await self.registry.update_meta(app_id, appointment=appointment)
        if meta is None:
            return
        previous = (before.get("appointment") or {}).get("session_date")
        day = date.fromisoformat(appointment["session_date"])
        # What is counted from the assessment (the certificate's month) now follows this session.
        for service in meta.get("services", []):
            if service in self.pack.services and (expected := expected_from_session(self.pack, self.calendar, service, day)):
                await self.registry.set_expected(app_id, service, expected.isoformat())
        if kind == "moved":
            if old is None:
                raise ValueError("a moved session needs the old date")
            text = self.words["session_moved"].format(
                old=format_day(date.fromisoformat(old)),
                new=format_day(day),
                period=appointment["period"],
                place=appointment["place"],
                reference=app_id,
            )
            notice = self.notice(
                "session_moved",
                old=full_day(date.fromisoformat(old)),
                new=full_day(day),
                date=full_day(day),
                period=appointment["period"],
                place=appointment["place"],
                reference=app_id,
            )
        else:
            text = self.words["mental_announced"].format(
                date=format_day(day), period=appointment["period"], place=appointment["place"], reference=app_id
            )
            notice = self.notice(
                "assessment_reminder",
                date=full_day(day),
                period=appointment["period"],
                place=appointment["place"],
                reference=app_id,
            )
        for openid in meta["viewers"]:
            tag = f"{kind}:{appointment['session_date']}" + (f":{occasion}" if occasion else "")
            await self.push.enqueue(openid, text, key=f"{app_id}:{tag}:{openid}", notice=notice)
        document = await self.outbox.get(app_id)
        materials = self.assessment_materials(document)
        if previous:
            await self.cancel_assessment_reminders(app_id, previous)
        await self.schedule_assessment_reminders(app_id, appointment, materials)


class SubmissionFollowup:
    """What the after-submission commands tell others: a withdrawal to bound family, a binding to the applicant side."""

    def __init__(self, registry: ApplicationRegistry, notifier: Notifier):
        self.registry = registry
        self.notifier = notifier

    async def withdrawn(self, app_id: str, services: list[str], session_date: str | None) -> None:
        """After a citizen's withdrawal: the released session's reminders cancelled, bound family told."""
        if session_date:
            await self.notifier.cancel_assessment_reminders(app_id, session_date)
        meta = await self.registry.meta(app_id)
        if meta is None:
            return
        words = self.notifier.words
        names = "、".join(self.notifier.pack.services[s].short for s in services)
        text = words["push_withdrawn_family"].format(reference=app_id, services=names)
        for openid in meta["viewers"][1:]:
            await self.notifier.push.enqueue(openid, text, key=f"{app_id}:withdrawn:{'+'.join(services)}:{openid}")

    async def bound(self, app_id: str, openid: str) -> None:
        """The applicant side is told each time someone binds, so a stranger's binding is noticed."""
        meta = await self.registry.meta(app_id)
        if meta is None or not meta["viewers"] or meta["viewers"][0] == openid:
            return
        n = meta["viewers"].index(openid) if openid in meta["viewers"] else len(meta["viewers"])
        text = self.notifier.words["push_bound"].format(reference=app_id)
        await self.notifier.push.enqueue(meta["viewers"][0], text, key=f"{app_id}:bound:{n}:{meta['viewers'][0]}")
