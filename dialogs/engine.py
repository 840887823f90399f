"""Runs one message through the application flow: global commands first, then the current step.

The transitions Machine is built once at start-up (model=None); each turn adds a light model
holding the citizen's answers, fires `next`, and removes it again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from transitions import Machine

from dialogs.aftercare import Aftercare
from dialogs.answers import label_early_photo, read_answer  # hook: lang2 (label_early_photo)
from dialogs.application import FINAL, INITIAL, STEPS, TRANSITIONS, Step
from dialogs.conditions import CONDITIONS, Case
from dialogs.document import new_reference
from dialogs.explain import answer_topic, why
from dialogs.pack import Pack
from dialogs.prompts import brief, prompt, recap, submitted_message  # hook: lang2 (brief, recap)
from dialogs.turn import Outcome, Ports, Turn, UserInput
from dialogs.understanding import Understanding, compact
from dialogs.workdays import WorkCalendar

log = logging.getLogger(__name__)

WECHAT_TEXT_LIMIT = 2048  # bytes, UTF-8
FAILS_BEFORE_OFFERING_HUMAN = 3
# Steps where the citizen types free text: a "question" there is more likely an answer.
FREE_TEXT_STEPS = {
    "household_address",
    "household_place",
    "agent_residence",
    "subsidy_reason",
    "mailing_address",
    "agent_name",
    "applicant_name",
}
EDITABLE_AT = {"summary", "declaration", "consent_sensitive"}
# What a session keeps of photos sent before the checklist: the media id only (WeChat's PicUrl is a
# temporary link nobody reads later), for at most this many photos.
MAX_UNASSIGNED_PHOTOS = 20
MAX_MEDIA_ID_CHARS = 128


class FlowModel:
    """The model the shared Machine routes; conditions are looked up by name on the case it holds."""

    def __init__(self) -> None:
        self.case: Case | None = None

    def __getattr__(self, name: str):
        condition = CONDITIONS.get(name)
        if condition is None:
            raise AttributeError(name)
        case = self.case
        if case is None:
            raise RuntimeError("the flow model is routed without a case")
        return lambda *args, **kwargs: condition(case)


def build_machine() -> Machine:
    return Machine(
        model=None,
        states=[s.name for s in STEPS],
        transitions=TRANSITIONS,
        initial=INITIAL,
        auto_transitions=False,
        send_event=False,
    )


class ApplicationDialog:
    def __init__(
        self, pack: Pack, ports: Ports, calendar: WorkCalendar, *, resume_after: timedelta = timedelta(hours=1), registry=None
    ):
        self.pack = pack
        self.ports = ports
        self.calendar = calendar
        self.lang = Understanding(pack)
        self.aftercare = Aftercare(pack, self.lang, registry, ports.outbox) if registry is not None else None
        self.machine = build_machine()
        # One model, registered once: add_model costs ~0.7 ms (it wires every state onto the model).
        # Routing is synchronous (no await between setting the case and reading the state), so
        # turns of different users on this event loop can share it.
        self._router = FlowModel()
        self.machine.add_model(self._router, initial=INITIAL)
        self.steps: dict[str, Step] = {s.name: s for s in STEPS}
        self.resume_after = resume_after

    # -- sessions -------------------------------------------------------------------------------
    def new_session(self, now: datetime) -> dict[str, Any]:
        return {
            "state": INITIAL,
            "history": [],
            "fails": {},
            "editing": False,
            "updated_at": now.isoformat(timespec="seconds"),
            "data": {
                "reference": new_reference(self.pack.raw["reference_prefix"], now),
                "created_at": now.isoformat(timespec="seconds"),
            },
        }

    def _turn(self, session: dict[str, Any], openid: str, now: datetime) -> Turn:
        return Turn(Case(session["data"], self.pack, now.date()), self.lang, self.ports, self.calendar, now, openid)

    # -- one message ----------------------------------------------------------------------------
    async def handle(
        self, session: dict[str, Any] | None, inp: UserInput, openid: str, now: datetime
    ) -> tuple[dict[str, Any] | None, str]:
        """The new session (None: erased, the caller deletes it) and the reply."""
        fresh = session is None
        if session is None:
            session = self.new_session(now)
        idle = now - datetime.fromisoformat(session["updated_at"])
        session["updated_at"] = now.isoformat(timespec="seconds")
        turn = self._turn(session, openid, now)
        reply = await self._respond(session, turn, inp, resuming=not fresh and idle > self.resume_after)
        if session.get("erased"):
            return None, _fit(reply)  # the caller deletes the session and every cached reply
        return session, _fit(reply)

    async def _respond(self, session: dict[str, Any], turn: Turn, inp: UserInput, *, resuming: bool) -> str:
        state = session["state"]
        if inp.kind == "subscribe":
            return await self._join(self.pack.text("welcome"), self._recap(session, turn), await prompt(turn, state))
        if inp.kind == "voice" and not inp.recognized:
            return self.pack.text("voice_unrecognized")
        text = inp.text.strip()
        if session.pop("confirm_erase", False) and not resuming:  # an old question is not answered by "1"
            confirmed = self._erase_answer(text)
            if confirmed is not None:
                return await self._erase_or_not(confirmed, session, turn)
            # Anything else: nothing is deleted, and the message is answered as usual.
        if text and self.aftercare:
            after = self.aftercare.command(text)
            if after:
                return await self.aftercare.handle(after, text, turn.openid, turn.now)
        command = self._command_in(text) if text else None
        if resuming and state not in (INITIAL, FINAL) and command in (None, "greet"):
            return await self._join(self._recap(session, turn), await prompt(turn, state))
        if command and command != "greet":
            return await self._command(command, session, turn)
        if text and self.ports.feedback and (state == FINAL or not session["history"]):
            rated = await self._rating(text, turn)
            if rated:
                return rated
        if command:
            return await self._command(command, session, turn)
        if inp.kind == "image" and state != "checklist":
            kept = session["data"].setdefault("unassigned_photos", [])
            if len(kept) >= MAX_UNASSIGNED_PHOTOS:  # a stranger's 300 photos once made a 17 MiB session
                return await self._join(self.pack.text("images_enough"), await prompt(turn, state))
            kept.append({"media_id": (inp.media_id or "")[:MAX_MEDIA_ID_CHARS]})
            return await self._join(self.pack.text("image_kept"), await prompt(turn, state))
        if text and state != "checklist" and (labelled := label_early_photo(turn, text)):  # hook: lang2
            return await self._join(labelled, await brief(turn, state))  # hook: lang2
        if text and state in EDITABLE_AT:
            target = self.lang.edit_target(text)
            if target:
                session["editing"] = True
                session["state"] = target
                return await prompt(turn, target)
        if text and state not in FREE_TEXT_STEPS:
            topic = self.lang.topic(text)
            if topic:
                answer = answer_topic(turn, *topic)
                return answer + self.pack.text("question_answer_footer", prompt=await brief(turn, state))  # hook: lang2
        outcome = await read_answer(turn, self.steps[state], inp)
        return await self._after(session, turn, state, outcome)

    async def _after(self, session: dict[str, Any], turn: Turn, state: str, outcome: Outcome) -> str:
        if outcome.hint:
            fails = session["fails"][state] = session["fails"].get(state, 0) + 1
            extra = self.pack.text("too_many_tries") if fails >= FAILS_BEFORE_OFFERING_HUMAN else ""
            return await self._join(outcome.hint, extra, await prompt(turn, state))
        if not outcome.advance:
            return await self._join(*outcome.say, await prompt(turn, state) if outcome.reprompt else "")
        session["fails"].pop(state, None)
        if not session["history"] and self.ports.followup:
            await self.ports.followup.started(turn.openid, session["data"]["reference"], turn.now)
        if state == "checklist":
            session["data"]["checklist_seen"] = True
        session["history"].append(state)
        new_state = self.advance(session, turn.case, state)
        session["state"] = new_state
        if new_state == FINAL:
            reply = await self._join(*outcome.say, submitted_message(turn))
            _keep_only_what_a_submitted_session_needs(session)
            return reply
        return await self._join(*outcome.say, await prompt(turn, new_state))

    def advance(self, session: dict[str, Any], case: Case, state: str) -> str:
        """Fire `next` until a step that must be asked; while editing, skip what is answered."""
        router = self._router
        router.case = case
        for _ in range(len(STEPS) + 5):
            self.machine.set_state(state, model=router)
            router.trigger("next")
            state = router.state
            step = self.steps[state]
            if step.ask_if and not CONDITIONS[step.ask_if](case):
                continue
            if session.get("editing"):
                if state == "summary":
                    session["editing"] = False
                elif answered(step, case):
                    continue
            return state
        raise RuntimeError(f"flow does not settle after {state}")

    # -- global commands ------------------------------------------------------------------------
    def _command_in(self, text: str) -> str | None:
        command = self.lang.command(text)
        if command == "erase" and self.lang.services_in(text):
            return None  # "残疾证怎么注销" asks about cancelling a certificate, not about our data
        if command is None and self._asks_to_erase(text):
            return "erase"
        return command

    def _asks_to_erase(self, text: str) -> bool:
        """ "删除我的信息" inside a short sentence ("请帮我删除我的个人信息")."""
        text_c = compact(text)
        return (
            len(text_c) <= 16
            and any(len(w) >= 4 and w in text_c for w in self.lang.commands["erase"])
            and not self.lang.services_in(text)
        )

    async def _command(self, command: str, session: dict[str, Any], turn: Turn) -> str:
        state = session["state"]
        if command == "erase":
            session["confirm_erase"] = True  # deleting cannot be undone: asked first
            return self.pack.text("erase_confirm")
        if command == "help":
            return await self._join(self.pack.text("help"), await prompt(turn, state))
        if command == "human":
            session["data"]["wants_human"] = turn.now.isoformat(timespec="seconds")
            return self.pack.text("human")
        if command == "status":
            if self.aftercare:
                found = await self.aftercare.status_text(turn.openid, turn.now.date())
                if found:
                    return found
                if not session["history"]:
                    return self.pack.status["none"]
            return self._status(session)
        if command == "why":
            return await self._join(why(turn, state), await brief(turn, state))  # hook: lang2
        if command == "restart":
            await self.release_holds(session)
            fresh = self.new_session(turn.now)
            session.clear()
            session.update(fresh)
            return await self._join(
                self.pack.text("restarted"), await prompt(self._turn(session, turn.openid, turn.now), INITIAL)
            )
        if command == "back":
            if state == FINAL:
                return await prompt(turn, state)
            if not session["history"]:
                return await self._join(self.pack.text("back_at_start"), await prompt(turn, state))
            session["editing"] = False
            session["state"] = session["history"].pop()
            return await self._join(self.pack.text("back"), await prompt(turn, session["state"]))
        # greet: carry on where we are
        return await prompt(turn, state)

    async def _rating(self, text: str, turn: Turn) -> str | None:
        """A 1-5 score (and then an optional comment) for a finished service, when one was asked."""
        feedback = self.ports.feedback
        if feedback is None:
            return None
        pending = await feedback.pending(turn.openid)
        if not pending:
            return None
        words = self.pack.status
        if pending["stage"] == "score":
            score = self.lang.number(text)
            if score is None or not 1 <= score <= 5:
                return None
            await feedback.record_score(turn.openid, pending, score)
            return words["rating_thanks"]
        comment = "" if self.lang.number(text) == 0 else text[:500]
        await feedback.record_comment(turn.openid, pending, comment)
        return words["rating_comment_thanks"]

    def _status(self, session: dict[str, Any]) -> str:
        data = session["data"]
        if session["state"] == FINAL:
            submitted = datetime.fromisoformat(data["submitted_at"])
            return self.pack.text("status_submitted", reference=data["reference"], date=f"{submitted.month}月{submitted.day}日")
        if session["history"]:
            return self.pack.text("status_in_progress")
        return self.pack.text("status_none")

    # -- "删除我的信息" and unsubscribing ---------------------------------------------------------------
    def _erase_answer(self, text: str) -> bool | None:
        """True only for a clear yes to "回复1确认删除，回复2取消"; False for a no; None for anything else."""
        number = self.lang.number(text)
        if number in (1, 2):
            return number == 1
        words, text_c = self.pack.lexicon["erase_answers"], compact(text)
        if text_c in words["cancel"] or any(len(w) >= 2 and w in text_c for w in words["cancel"]):
            return False  # before "confirm": "不要删除" contains "删除"
        return True if text_c in words["confirm"] else None

    async def _erase_or_not(self, confirmed: bool, session: dict[str, Any], turn: Turn) -> str:
        if not confirmed:
            return await self._join(self.pack.text("erase_cancelled"), await prompt(turn, session["state"]))
        erasure = await self.erase(session, turn.openid)
        session["erased"] = True
        kept = getattr(erasure, "kept", 0)
        if kept:
            return await self._join(
                self.pack.text("erase_done"), self.pack.text("erase_kept", count=kept, days=self.pack.application_days)
            )
        return await self._join(self.pack.text("erase_done"), self.pack.text("erase_kept_none"))

    async def erase(self, session: dict[str, Any] | None, openid: str) -> Any:
        """Delete what this citizen left that no submitted application needs, except the session and
        cached replies (the conversation store's, deleted by the caller). Returns the eraser's account."""
        if session:
            await self.release_holds(session)
        return await self.ports.eraser.erase(openid) if self.ports.eraser else None

    async def release_holds(self, session: dict[str, Any]) -> None:
        """Give back the assessment place of an application that was never submitted."""
        if session["state"] == FINAL:
            return  # a submitted application keeps its appointment
        booking = session["data"].get("booking")
        if booking:
            await self.ports.book.release(booking["session_date"], session["data"]["reference"])

    def _recap(self, session: dict[str, Any], turn: Turn) -> str:
        if not session["history"]:
            return ""
        return self.pack.text("resume", recap=recap(turn))  # hook: lang2 (services and fields filled, never empty)

    @staticmethod
    async def _join(*parts: str) -> str:
        return "\n".join(p for p in parts if p)


def answered(step: Step, case: Case) -> bool:
    """Whether the application already holds this step's answer (used when editing)."""
    data = case.data
    kind, _, path = step.answer.partition(":")
    if kind == "fact":
        return step.name.removeprefix("fact_") in case.facts
    if path:
        value: Any = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value is not None
    return {
        "services": bool(case.services),
        "applicant_phone": bool(data.get("applicant", {}).get("phone")),
        "mailing_address": bool(data.get("mailing_address")),
        "certificate_no": bool(data.get("certificate_no")),
        "checklist": bool(data.get("checklist_seen")),
        "booking": bool(data.get("booking")),
        "suggestion": not data.get("guided"),
    }.get(kind, False)


# Once submitted, the application lives in the outbox and the registry; the conversation keeps
# only what its later messages use (status, appointment, recap), not the form's personal data.
KEPT_AFTER_SUBMISSION = ("reference", "created_at", "submitted_at", "services", "booking")


def _keep_only_what_a_submitted_session_needs(session: dict[str, Any]) -> None:
    data = session["data"]
    session["data"] = {key: data[key] for key in KEPT_AFTER_SUBMISSION if key in data}
    session["history"] = []
    session["fails"] = {}


def _fit(reply: str) -> str:
    """Keep a passive reply inside WeChat's 2048-byte text limit."""
    raw = reply.encode()
    if len(raw) <= WECHAT_TEXT_LIMIT:
        return reply
    log.warning("reply of %d bytes shortened to fit WeChat's limit", len(raw))
    return raw[: WECHAT_TEXT_LIMIT - 3].decode(errors="ignore") + "…"
