"""One message through the application flow: a turn is (session, input) -> (session, reply, effects).

The interceptors (dialogs/interceptors.py) are tried first, in their table's order; a message none
of them takes is the answer to the current step, read by its reader (dialogs/answers.py), and the
machine (dialogs/application.py) says which step comes next. Nothing outside the conversation is
changed while the turn runs: what must happen (submit, give back a place, remind later) is
returned as effects, carried out by the conversation layer once the session is saved.

The transitions Machine is built once at start-up (model=None) with one shared model; routing is
synchronous, so turns of different users on one event loop can share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from transitions import Machine

from dialogs.aftercare import Aftercare
from dialogs.answers import read_answer  # hook: lang2 (label_early_photo)
from dialogs.application import FINAL, INITIAL, STEPS, TRANSITIONS, At, Step
from dialogs.conditions import CONDITIONS, Case
from dialogs.document import new_reference
from dialogs.effects import Effect, ReleasePlace, Started
from dialogs.explain import why
from dialogs.interceptors import INTERCEPTORS, Message
from dialogs.pack import Pack
from dialogs.prompts import brief, prompt, recap, submitted_message, tell
from dialogs.slots import read as read_slots
from dialogs.turn import Outcome, Ports, Turn, UserInput
from dialogs.understanding import Understanding, compact
from dialogs.workdays import WorkCalendar

FAILS_BEFORE_OFFERING_HUMAN = 3


@dataclass
class TurnResult:
    session: dict[str, Any] | None  # None: erased, the caller deletes it and every cached reply
    reply: str
    effects: list[Effect] = field(default_factory=list)


class FlowModel:
    """The model the shared Machine routes; conditions are looked up by name on the case it holds."""

    def __init__(self, steps: dict[str, Step]) -> None:
        self.case: Case | None = None
        self.steps = steps

    def answered(self, *args: Any) -> bool:
        """The application already holds the current step's answer (so `skip` may pass it)."""
        return answered(self.steps[self.state], self._case())

    def _case(self) -> Case:
        if self.case is None:
            raise RuntimeError("the flow model is routed without a case")
        return self.case

    def __getattr__(self, name: str):
        condition = CONDITIONS.get(name)
        if condition is None:
            raise AttributeError(name)
        return lambda *args, **kwargs: condition(self._case())

    state: str  # set by the Machine


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
    final = FINAL

    def __init__(
        self, pack: Pack, ports: Ports, calendar: WorkCalendar, *, resume_after: timedelta = timedelta(hours=1), registry=None
    ):
        self.pack = pack
        self.ports = ports
        self.calendar = calendar
        self.lang = Understanding(pack)
        self.aftercare = Aftercare(pack, self.lang, registry, ports) if registry is not None else None  # hook: casework
        self.machine = build_machine()
        self.steps: dict[str, Step] = {s.name: s for s in STEPS}
        # One model, registered once: add_model costs ~0.7 ms (it wires every state onto the model).
        self._router = FlowModel(self.steps)
        self.machine.add_model(self._router, initial=INITIAL)
        self.resume_after = resume_after
        self.interceptors = INTERCEPTORS
        long_erase_words = [w for w in self.lang.commands["erase"] if len(w) >= 4]
        self._erase_phrase = re.compile("|".join(map(re.escape, long_erase_words)) or "(?!)")
        # Each step's skip transitions, as the machine has them: a step none of whose skips applies is
        # where the flow settles, without firing a trigger that would do nothing (a quarter of a turn's routing).
        self._skips: dict[str, list[dict[str, Any]]] = {}
        for t in TRANSITIONS:
            if t["trigger"] == "skip":
                self._skips.setdefault(str(t["source"]), []).append(t)

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

    @staticmethod
    def said_nothing(session: dict[str, Any]) -> bool:
        """Still as new_session made it (failed tries aside): the citizen has answered nothing, so the
        session holds nothing of theirs (the store keeps such a session for a day only)."""
        return (
            session.get("state") == INITIAL
            and not session.get("history")
            and set(session.get("data", {})) <= {"reference", "created_at"}
        )

    def _turn(
        self, session: dict[str, Any], openid: str, now: datetime, channel: str = "wechat", known: Mapping[str, Any] | None = None
    ) -> Turn:
        case = Case(session["data"], self.pack, now.date())
        return Turn(case, self.lang, self.ports, self.calendar, now, openid, channel=channel, known=known or {})

    # -- one message ----------------------------------------------------------------------------
    async def handle(
        self,
        session: dict[str, Any] | None,
        inp: UserInput,
        openid: str,
        now: datetime,
        *,
        known: Mapping[str, Any] | None = None,
    ) -> TurnResult:
        """`known`: what the conversation layer read with the turn (by key; see reads())."""
        fresh = session is None
        if session is None:
            session = self.new_session(now)
        idle = now - datetime.fromisoformat(session["updated_at"])
        session["updated_at"] = now.isoformat(timespec="seconds")
        turn = self._turn(session, openid, now, inp.channel, known)
        reply = await self._respond(session, turn, inp, resuming=not fresh and idle > self.resume_after)
        return TurnResult(None if session.get("erased") else session, reply, turn.effects)

    async def _respond(self, session: dict[str, Any], turn: Turn, inp: UserInput, *, resuming: bool) -> str:
        text = inp.text.strip()
        message = Message(session, turn, inp, text, resuming, self.command_in(text) if text else None)
        for interceptor in self.interceptors:
            reply = await interceptor(self, message)
            if reply is not None:
                return reply
        state = session["state"]
        step = self.steps[state]
        # Several facts in one message fill every slot they name; otherwise the step's own reader.
        outcome = await read_slots(turn, step, inp, session) or await read_answer(turn, step, inp)
        return await self._after(session, turn, state, outcome)

    async def _after(self, session: dict[str, Any], turn: Turn, state: str, outcome: Outcome) -> str:
        if outcome.hint:
            fails = session["fails"][state] = session["fails"].get(state, 0) + 1
            extra = self.pack.text("too_many_tries") if fails >= FAILS_BEFORE_OFFERING_HUMAN else ""
            return self.join(outcome.hint, extra, await prompt(turn, state))
        if not outcome.advance:
            return self.join(*outcome.say, await prompt(turn, state) if outcome.reprompt else "")
        session["fails"].pop(state, None)
        if not session["history"]:
            turn.do(Started(turn.openid, session["data"]["reference"], turn.now.isoformat(timespec="seconds")))
        self._passed(session, state)
        new_state = self.advance(session, turn.case, state)
        told = ""
        if self.steps[new_state].told_with:
            editing = session.get("editing")
            following = self.advance(session, turn.case, new_state)
            if following in self.steps[new_state].told_with:
                told = await tell(turn, new_state)
                self._passed(session, new_state)
                new_state = following
            else:
                session["editing"] = editing  # only looked ahead: it is asked on its own
        session["state"] = new_state
        if new_state == FINAL:
            reply = self.join(*outcome.say, submitted_message(turn))
            _keep_only_what_a_submitted_session_needs(session)
            return reply
        return self.join(*outcome.say, told, await prompt(turn, new_state))

    @staticmethod
    def _passed(session: dict[str, Any], state: str) -> None:
        if state == At.checklist:
            session["data"]["checklist_seen"] = True
        session["history"].append(state)

    def _skip_applies(self, router: FlowModel) -> bool:
        return any(
            all(getattr(router, c)() for c in t.get("conditions", ()))
            and not any(getattr(router, c)() for c in t.get("unless", ()))
            for t in self._skips.get(router.state, ())
        )

    def advance(self, session: dict[str, Any], case: Case, state: str) -> str:
        """Fire `next`, then `skip` for as long as the step reached need not be asked."""
        router = self._router
        router.case = case
        self.machine.set_state(state, model=router)
        router.trigger("next")
        for _ in range(len(STEPS)):
            if router.state == At.summary and session.get("editing"):
                session["editing"] = False
            if not self._skip_applies(router) or not router.trigger("skip"):
                return router.state
        raise RuntimeError(f"flow does not settle after {state}")

    # -- global commands ------------------------------------------------------------------------
    def command_in(self, text: str) -> str | None:
        command = self.lang.command(text)
        if command == "erase" and self.lang.services_in(text):
            return None  # "残疾证怎么注销" asks about cancelling a certificate, not about our data
        if command is None and self._asks_to_erase(text):
            return "erase"
        return command

    def _asks_to_erase(self, text: str) -> bool:
        """ "删除我的信息" inside a short sentence ("请帮我删除我的个人信息")."""
        text_c = compact(text)
        return len(text_c) <= 16 and bool(self._erase_phrase.search(text_c)) and not self.lang.services_in(text)

    async def run_command(self, command: str, session: dict[str, Any], turn: Turn) -> str:
        state = session["state"]
        if command == "erase":
            session["confirm_erase"] = True  # deleting cannot be undone: asked first
            return self.pack.text("erase_confirm")
        if command == "help":
            return self.join(self.pack.text("help"), await prompt(turn, state))
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
            return self.join(why(turn, state), await brief(turn, state))
        if command == "restart":
            for effect in self.holds(session):
                turn.do(effect)
            fresh = self.new_session(turn.now)
            session.clear()
            session.update(fresh)
            return self.join(
                self.pack.text("restarted"), await prompt(self._turn(session, turn.openid, turn.now, turn.channel), INITIAL)
            )
        if command == "back":
            if state == FINAL:
                return await prompt(turn, state)
            if not session["history"]:
                return self.join(self.pack.text("back_at_start"), await prompt(turn, state))
            session["editing"] = False
            session["state"] = session["history"].pop()
            return self.join(self.pack.text("back"), await prompt(turn, session["state"]))
        # greet: carry on where we are
        return await prompt(turn, state)

    def reads(self, openid: str) -> list[str]:
        """Keys of this person's (with the {openid} hash tag) a turn may read: the conversation layer reads
        them with the turn's first round trip and hands them back as `known`."""
        return [self.ports.feedback.pending_key(openid)] if self.ports.feedback is not None else []

    async def rating(self, text: str, turn: Turn) -> str | None:
        """A 1-5 score (and then an optional comment) for a finished service, when one was asked."""
        feedback = self.ports.feedback
        if feedback is None:
            return None
        pending = await feedback.pending(turn.openid, stored=turn.known.get(feedback.pending_key(turn.openid)))
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
    def erase_answer(self, text: str) -> bool | None:
        """True only for a clear yes to "回复1确认删除，回复2取消"; False for a no; None for anything else."""
        number = self.lang.number(text)
        if number in (1, 2):
            return number == 1
        words, text_c = self.pack.lexicon["erase_answers"], compact(text)
        if text_c in words["cancel"] or any(len(w) >= 2 and w in text_c for w in words["cancel"]):
            return False  # before "confirm": "不要删除" contains "删除"
        return True if text_c in words["confirm"] else None

    async def erase_or_not(self, confirmed: bool, session: dict[str, Any], turn: Turn) -> str:
        if not confirmed:
            return self.join(self.pack.text("erase_cancelled"), await prompt(turn, session["state"]))
        erasure = await self.erase(session, turn.openid)
        session["erased"] = True
        kept = getattr(erasure, "kept", 0)
        if kept:
            return self.join(
                self.pack.text("erase_done"), self.pack.text("erase_kept", count=kept, days=self.pack.application_days)
            )
        return self.join(self.pack.text("erase_done"), self.pack.text("erase_kept_none"))

    async def erase(self, session: dict[str, Any] | None, openid: str) -> Any:
        """Delete what this citizen left that no submitted application needs, except the session and
        cached replies (the conversation store's, deleted by the caller). Returns the eraser's account."""
        # Erasure is done at once, not as an effect: nothing of this citizen may wait for a later save.
        for hold in self.holds(session) if session else ():
            await self.ports.book.release(hold.session_date, hold.holder)
        return await self.ports.eraser.erase(openid) if self.ports.eraser else None

    def holds(self, session: dict[str, Any]) -> list[ReleasePlace]:
        """The assessment place of an application that was never submitted, to be given back."""
        if session["state"] == FINAL:
            return []  # a submitted application keeps its appointment
        booking = session["data"].get("booking")
        return [ReleasePlace(booking["session_date"], session["data"]["reference"])] if booking else []

    def recap(self, session: dict[str, Any], turn: Turn) -> str:
        """Where a citizen coming back left off: the services and fields filled (never empty)."""
        if not session["history"]:
            return ""
        return self.pack.text("resume", recap=recap(turn))

    @staticmethod
    def join(*parts: str) -> str:
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
