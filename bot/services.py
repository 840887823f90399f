"""Everything the bot runs on, opened once: used by the web app (cleanup_ctx) and the operator CLI."""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from bot.notifications import Notifier, SubmissionFollowup
from bot.privacy import PersonalDataEraser
from bot.settings import Settings
from dialogs.engine import ApplicationDialog
from dialogs.pack import Pack, load_pack
from dialogs.turn import Ports
from dialogs.workdays import WorkCalendar, default_calendar
from integrations.applications import ApplicationRegistry
from integrations.assessment_book import RedisAssessmentBook
from integrations.conversations import ConversationStore
from integrations.feedback import FeedbackStore
from integrations.outbox import RedisOutbox
from integrations.redis_connection import RedisHandle, connect
from integrations.reminders import Reminders
from integrations.sealing import Sealer


@dataclass
class Services:
    settings: Settings
    pack: Pack
    calendar: WorkCalendar
    redis: RedisHandle
    sealer: Sealer
    store: ConversationStore
    book: RedisAssessmentBook
    outbox: RedisOutbox
    registry: ApplicationRegistry
    reminders: Reminders
    feedback: FeedbackStore
    push: object
    notifier: Notifier
    dialog: ApplicationDialog


@asynccontextmanager
async def open_services(settings: Settings, *, pack: Pack | None = None, push_factory=None) -> AsyncIterator[Services]:
    """Connect to Redis and build every component; `push_factory(redis_client, sealer)` gives the push queue."""
    pack = pack or load_pack(settings.region)
    calendar = default_calendar()
    handle = connect(settings.redis_url, settings.var_dir)
    try:
        sealer = Sealer.from_setting(settings.data_keys, settings.var_dir)
        client = handle.client
        book = RedisAssessmentBook(client)
        outbox = RedisOutbox(client, sealer)
        registry = ApplicationRegistry(client, sealer, retention_s=pack.application_days * 86400)
        reminders = Reminders(client, sealer)
        feedback = FeedbackStore(client, sealer)
        push = push_factory(client, sealer)
        notifier = Notifier(pack, registry, push, reminders, feedback, calendar, outbox)
        followup = SubmissionFollowup(registry, notifier)
        ports = Ports(book=book, outbox=outbox, followup=followup, feedback=feedback,
                      eraser=PersonalDataEraser(registry, reminders, push, feedback))
        dialog = ApplicationDialog(pack, ports, calendar, registry=registry)
        store = ConversationStore(client, sealer, session_ttl_s=pack.conversation_days * 86400, pipeline=handle.pipeline)
        yield Services(settings, pack, calendar, handle, sealer, store, book, outbox, registry, reminders, feedback,
                       push, notifier, dialog)
    finally:
        await handle.close()
