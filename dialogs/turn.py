"""What one turn of the dialog works with, and the outside services it may call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dialogs.conditions import Case
from dialogs.effects import Effect
from dialogs.pack import Pack
from dialogs.understanding import Understanding
from dialogs.workdays import WorkCalendar


class AssessmentBook(Protocol):
    """Places at assessment sessions (integrations/assessment_book.py)."""

    async def remaining(self, session_keys: list[str], capacity: int) -> dict[str, int]: ...
    async def reserve(self, session_key: str, holder: str, capacity: int) -> bool: ...
    async def release(self, session_key: str, holder: str) -> None: ...
    async def join_waitlist(self, kind: str, holder: str) -> None: ...
    async def leave_waitlist(self, kind: str, holder: str) -> None: ...
    async def moves(self) -> dict[str, str]: ...  # closed day -> the day its session is held instead


class EventOutbox(Protocol):
    """Where the bot's own events for the intake go (integrations/outbox.py), e.g. a withdrawal."""

    async def submit_event(self, event: dict[str, Any]) -> bool: ...  # a citizen's withdrawal, for the intake
    async def get(self, application_id: str) -> dict[str, Any] | None: ...


class Tickets(Protocol):
    """Handoffs to county staff (integrations/tickets.py)."""

    async def open(self, openid: str, app_id: str, asked: str, now: datetime) -> str: ...


class Followup(Protocol):
    """What the after-submission commands tell others (bot/notifications.py SubmissionFollowup)."""

    async def withdrawn(self, app_id: str, services: list[str], session_date: str | None) -> None: ...
    async def bound(self, app_id: str, openid: str) -> None: ...


class Feedback(Protocol):
    def pending_key(self, openid: str) -> str: ...
    async def pending(self, openid: str, *, stored: dict[bytes, bytes] | None = None) -> dict[str, Any] | None: ...
    async def pending_all(self, openid: str, *, stored: dict[bytes, bytes] | None = None) -> list[dict[str, Any]]: ...
    async def record_score(self, openid: str, pending: dict[str, Any], score: int) -> None: ...
    async def record_comment(self, openid: str, pending: dict[str, Any], comment: str) -> None: ...


class Eraser(Protocol):
    """Deletes what one openid left outside the conversation (bot/privacy.py)."""

    async def erase(self, openid: str) -> Any: ...


@dataclass
class Ports:
    """What a turn may ask while it runs. Whatever changes the world beyond this conversation and can
    wait until the session is saved is an Effect instead (dialogs/effects.py). A place at a session
    is claimed here because the reply depends on whether it was free."""

    book: AssessmentBook
    outbox: EventOutbox
    followup: Followup | None = None
    feedback: Feedback | None = None
    eraser: Eraser | None = None
    tickets: Tickets | None = None


@dataclass
class UserInput:
    kind: str  # text, voice, image, click, subscribe
    text: str = ""
    media_id: str | None = None
    pic_url: str | None = None
    recognized: bool = True  # a voice message WeChat could not transcribe has recognized=False
    channel: str = "wechat"  # what the conversation comes through: wechat, window (一窗)


@dataclass
class Turn:
    case: Case
    lang: Understanding
    ports: Ports
    calendar: WorkCalendar
    now: datetime
    openid: str
    effects: list[Effect] = field(default_factory=list)
    channel: str = "wechat"
    # What the conversation layer read with the turn's first round trip, by key (ratings asked, ...).
    known: Mapping[str, Any] = field(default_factory=dict)

    def do(self, effect: Effect) -> None:
        """Ask for an effect, carried out once the session is saved."""
        self.effects.append(effect)

    @property
    def pack(self) -> Pack:
        return self.case.pack

    @property
    def data(self) -> dict[str, Any]:
        return self.case.data


@dataclass
class Outcome:
    """How an answer went: advance to the next step, or stay and say why."""

    advance: bool
    say: list[str] = field(default_factory=list)  # said before the next question
    hint: str | None = None  # the answer was not valid: this, then the question again
    reprompt: bool = True  # when staying, repeat the question after `say`

    @classmethod
    def ok(cls, *say: str) -> Outcome:
        return cls(True, [s for s in say if s])

    @classmethod
    def invalid(cls, hint: str) -> Outcome:
        return cls(False, hint=hint)

    @classmethod
    def stay(cls, *say: str, reprompt: bool = False) -> Outcome:
        return cls(False, [s for s in say if s], reprompt=reprompt)
