"""What is tried before a message is read as the answer to the pending question, in this order.

Each interceptor looks at one message and either answers it (a reply) or lets it pass (None); the
first that answers wins, like python-telegram-bot's fallbacks or aiogram's routers. When none
does, the message is the answer to the current step (dialogs/answers.py). The table is printed
in docs/application-flow.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dialogs.answers import label_early_photo
from dialogs.application import INITIAL
from dialogs.explain import answer_topic
from dialogs.prompts import brief, prompt
from dialogs.turn import Turn, UserInput

if TYPE_CHECKING:
    from dialogs.engine import ApplicationDialog

# What a session keeps of photos sent before the checklist: the media id only (WeChat's PicUrl is a
# temporary link nobody reads later), for at most this many photos.
MAX_UNASSIGNED_PHOTOS = 20
MAX_MEDIA_ID_CHARS = 128


@dataclass
class Message:
    """One message as the interceptors see it."""

    session: dict[str, Any]
    turn: Turn
    inp: UserInput
    text: str  # stripped
    resuming: bool  # back after a while away
    command: str | None  # a global command the message is ("帮助", "返回" ...), if any

    @property
    def state(self) -> str:
        return self.session["state"]


Interceptor = Callable[["ApplicationDialog", Message], Awaitable[str | None]]


async def subscribed(d: ApplicationDialog, m: Message) -> str | None:
    """A new follower, or one coming back: welcome, where they left off, the pending question."""
    if m.inp.kind != "subscribe":
        return None
    return d.join(d.pack.text("welcome"), d.recap(m.session, m.turn), await prompt(m.turn, m.state))


async def voice_not_understood(d: ApplicationDialog, m: Message) -> str | None:
    """A voice message WeChat could not transcribe: ask to say it again or to type it."""
    if m.inp.kind == "voice" and not m.inp.recognized:
        return d.pack.text("voice_unrecognized")
    return None


async def erase_confirmation(d: ApplicationDialog, m: Message) -> str | None:
    """The answer to "回复1确认删除": only a clear yes deletes; anything else goes on as usual."""
    if not m.session.pop("confirm_erase", False) or m.resuming:  # an old question is not answered by "1"
        return None
    confirmed = d.erase_answer(m.text)
    return None if confirmed is None else await d.erase_or_not(confirmed, m.session, m.turn)


async def aftercare(d: ApplicationDialog, m: Message) -> str | None:
    """Status, binding, withdrawal, 催办, 怎么补材料 (进度, 绑定…, 撤销…), from any step, also for family who never applied."""
    if not m.text or d.aftercare is None:
        return None
    # A question of its own ("回复1确认撤销") is answered only by the message right after it: no lookup for
    # each answer of a form, and a "1" sent later (to another question) never confirms a withdrawal.
    expecting = m.session.pop("aftercare_answered", False)
    replied = await d.aftercare.answer(m.text, m.turn.openid, m.turn.now, submitted=m.state == d.final, expecting=expecting)
    if replied:
        return replied
    after = d.aftercare.command(m.text)
    if not after:
        return None
    m.session["aftercare_answered"] = True
    return await d.aftercare.handle(after, m.text, m.turn.openid, m.turn.now)


async def resumed(d: ApplicationDialog, m: Message) -> str | None:
    """Back after a while away, mid-application, with no command: a recap, then the pending question."""
    if m.resuming and m.state not in (INITIAL, d.final) and m.command in (None, "greet"):
        return d.join(d.recap(m.session, m.turn), await prompt(m.turn, m.state))
    return None


async def command(d: ApplicationDialog, m: Message) -> str | None:
    """A global command: 帮助, 返回, 重新开始, 人工, 进度, 为什么, 删除我的信息."""
    if m.command and m.command != "greet":
        return await d.run_command(m.command, m.session, m.turn)
    return None


async def rating(d: ApplicationDialog, m: Message) -> str | None:
    """A 1-5 score (then a comment) for a finished service, read as one only while a rating is pending."""
    if m.text and (m.state == d.final or not m.session["history"]):
        return await d.rating(m.text, m.turn)
    return None


async def greeting(d: ApplicationDialog, m: Message) -> str | None:
    """A greeting ("你好"): carry on where we are."""
    return await prompt(m.turn, m.state) if m.command == "greet" else None


async def materials_photo(d: ApplicationDialog, m: Message) -> str | None:
    """A photo after submission, when the intake asked for missing materials: kept against that material."""
    if m.inp.kind != "image" or m.state != d.final or d.aftercare is None:
        return None
    return await d.aftercare.photo(m.inp.media_id or "", m.turn.openid, m.turn.now) or None


async def early_photo(d: ApplicationDialog, m: Message) -> str | None:
    """A photo before the checklist: its media id kept for the clerk (at most 20), the question again."""
    if m.inp.kind != "image" or d.steps[m.state].answer == "checklist":
        return None
    kept = m.session["data"].setdefault("unassigned_photos", [])
    if len(kept) >= MAX_UNASSIGNED_PHOTOS:  # a stranger's 300 photos once made a 17 MiB session
        return d.join(d.pack.text("images_enough"), await prompt(m.turn, m.state))
    kept.append({"media_id": (m.inp.media_id or "")[:MAX_MEDIA_ID_CHARS]})
    kept_text = "image_kept_after_list" if m.session["data"].get("checklist_seen") else "image_kept"
    return d.join(d.pack.text(kept_text), await prompt(m.turn, m.state))


async def labelled_photo(d: ApplicationDialog, m: Message) -> str | None:
    """Words that label a photo sent earlier ("这是户口本"): kept against that material, the question briefly."""
    if not m.text or d.steps[m.state].answer == "checklist":
        return None
    labelled = label_early_photo(m.turn, m.text)
    return d.join(labelled, await brief(m.turn, m.state)) if labelled else None


async def correction(d: ApplicationDialog, m: Message) -> str | None:
    """At the summary or the consent, "改电话": back to that answer, then straight back here."""
    if not m.text or not d.steps[m.state].edits_from:
        return None
    target = d.lang.edit_target(m.text)
    if not target:
        return None
    m.session["editing"] = True
    m.session["state"] = target
    return await prompt(m.turn, target)


async def policy_question(d: ApplicationDialog, m: Message) -> str | None:
    """A question about the rules ("护理补贴要带什么"): answered, then the pending question."""
    if not m.text or d.steps[m.state].free_text:
        return None
    topic = d.lang.topic(m.text)
    if not topic:
        return None
    return answer_topic(m.turn, *topic) + d.pack.text("question_answer_footer", prompt=await brief(m.turn, m.state))


INTERCEPTORS: tuple[Interceptor, ...] = (
    subscribed,
    voice_not_understood,
    erase_confirmation,
    aftercare,
    resumed,
    command,
    rating,
    greeting,
    materials_photo,
    early_photo,
    labelled_photo,
    correction,
    policy_question,
)


def table() -> list[tuple[str, str]]:
    """(name, what it takes) for each interceptor, in order: for the flow document."""
    return [(i.__name__, (i.__doc__ or "").strip()) for i in INTERCEPTORS]
