"""The citizens' personal data outside the sealed store: masked in every log, erased on request.

Logs: every log record is masked when it is made (a LogRecord factory), so whichever logger made
it (ours, aiohttp.access, asyncio, redis, a library with its own handler) and whichever handler
writes it, ID numbers, certificate numbers and phones come out masked: in the message, its
arguments, the exception's traceback and the stack. Names and addresses cannot be recognised in
free text, so no code logs them (the test suite scans all it logs: tests/conftest.py).

Erasure ("删除我的信息", or unsubscribing): `PersonalDataEraser` deletes what one openid left behind
outside the conversation store that no submitted application needs; the dialog gives back the
assessment place of an unsubmitted application and the conversation store deletes the session
and cached replies. Submitted applications stay (the departments are processing them; they expire
by the pack's retention.application_days after the final result).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from integrations.applications import ApplicationRegistry
    from integrations.feedback import FeedbackStore
    from integrations.push import PushQueue
    from integrations.reminders import Reminders

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# 20-char certificate numbers first, then 18-char IDs, 15-digit old IDs, mobiles, landlines.
_PATTERNS = [
    (re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{13}[\dXx](\d{2})(?![0-9A-Za-z])"), r"\1****************\2"),
    (re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{10}(\d{3}[\dXx])(?![0-9A-Za-z])"), r"\1**********\2"),
    (re.compile(r"(?<!\d)(\d{4})\d{8}(\d{3})(?!\d)"), r"\1********\2"),
    (re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d)\d{4}(\d{4})(?!\d)"), r"\1****\2"),
    (re.compile(r"(?<!\d)(0\d{2,3})-?\d{3,4}(\d{4})(?!\d)"), r"\1-****\2"),
]


def mask_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace the record's message, arguments, traceback and stack by their masked text."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: still logged (it is a bug), but masked
        message = f"{record.msg!s} (log arguments that do not fit: {record.args!r})"
    record.msg, record.args = mask_text(message), None
    if record.exc_info:
        # Formatters print exc_text; the exception object itself (with its values) is not kept.
        record.exc_text = mask_text(record.exc_text or logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)
    return record


def install_masking() -> None:
    """Mask every log record of this process from now on, at its creation (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "masks_personal_data", False):
        return

    def masked(*args, **kwargs) -> logging.LogRecord:
        return mask_record(factory(*args, **kwargs))

    masked.masks_personal_data = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked)


class _TextFormatter(logging.Formatter):
    """`2026-12-01T18:09:35.123+0800 INFO bot.app: …`: times with their zone, so logs of hosts in
    different zones (or a container in UTC) line up."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.localtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}" + time.strftime("%z", t)


class _JsonFormatter(_TextFormatter):
    """One JSON object a line (BOT_LOG_FORMAT=json), for a county's log collector."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def log_formatter(fmt: str = "text") -> logging.Formatter:
    return _JsonFormatter() if fmt == "json" else _TextFormatter(LOG_FORMAT)


def configure_logging(*, fmt: str = "text", level: str = "INFO") -> None:
    install_masking()
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter(fmt))
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "bot_handler", False)]
    handler.bot_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
    logging.captureWarnings(True)  # warnings go through logging, hence through the masking
    # transitions logs every state change at INFO: three lines a turn.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    # aiohttp logs a client that went away mid-upload with a traceback; one line is enough.
    logging.getLogger("aiohttp.server").addFilter(_one_line_for_aborted_uploads)


_ABORTED = ("ClientPayloadError", "ConnectionResetError", "CancelledError", "ClientConnectionResetError")


def _one_line_for_aborted_uploads(record: logging.LogRecord) -> bool:
    """A client that goes away mid-request is not our error: one line, not aiohttp's traceback. (The
    masking record factory has already turned the exception into exc_text.)"""
    last = (record.exc_text or "").strip().rsplit("\n", 1)[-1]
    cause = last.split(":", 1)[0].rsplit(".", 1)[-1]
    if cause in _ABORTED:
        record.msg, record.args, record.exc_info, record.exc_text = f"request aborted by the client ({cause})", None, None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


# -- erasure --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Erasure:
    kept: int  # applications this openid submitted (for themselves or as guardian/agent): kept
    unbound: int  # applications this openid was following as a family member: no longer


class PersonalDataEraser:
    """Deletes what one openid left outside the conversation: family bindings, the reminder of an
    unsubmitted application, a pending rating, and queued or remembered pushed messages (for a
    citizen who keeps submitted applications, their status messages and assessment reminders stay)."""

    def __init__(self, registry: ApplicationRegistry, reminders: Reminders, push: PushQueue, feedback: FeedbackStore):
        self.registry = registry
        self.reminders = reminders
        self.push = push
        self.feedback = feedback

    async def erase(self, openid: str) -> Erasure:
        kept, unbound = await self.registry.unbind_follower(openid)
        await self.reminders.forget(openid)
        await self.feedback.forget(openid)
        await self.registry.forget_pending(openid)
        if kept:
            # Still owed to them: news of their applications. Not: prompts about what was deleted, nor
            # questions that wait for their answer (a rating, "was this binding yours?").
            await self.push.forget(
                openid, keep=lambda key: not key.startswith("unfinished:") and ":rate:" not in key and ":bound:" not in key
            )
        else:
            await self.push.forget(openid, keep=lambda key: False)
        return Erasure(kept, unbound)
