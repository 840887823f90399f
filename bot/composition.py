"""The composition root: every service of the bot is built here, once, and nowhere else.

`bot serve` (bot/app.py), every operator command (bot/cli.py) and the tests open the same
`Services` with `open_services`. Only the serving process also opens `Senders` (the WeChat API
client, the intake adapter and the delivery workers): an operator command queues into Redis and
the serving process sends, so a command never needs to know the server's port.

Before anything starts, `check_config` refuses a configuration that would lose data or fail a
citizen later, with one line naming the variable (`ConfigError`; `bot` exits 2), and
`open_services` refuses a data key that does not open what is already in Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from redis.exceptions import RedisError

from bot.clock import Clock, protocol_time
from bot.effects import EffectRunner
from bot.notifications import Notifier, SubmissionFollowup
from bot.privacy import PersonalDataEraser
from bot.settings import ConfigError, Settings
from dialogs.engine import ApplicationDialog
from dialogs.pack import Pack, load_pack
from dialogs.service_roles import CERTIFICATE
from dialogs.turn import Ports
from dialogs.workdays import WorkCalendar, default_calendar
from integrations.applications import ApplicationRegistry
from integrations.assessment_book import RedisAssessmentBook
from integrations.conversations import ConversationStore
from integrations.data_key_check import DataKeyMismatch, check_data_key, sealed_with
from integrations.delivery import DeliveryWorker, OutboxLedger, default_consumer
from integrations.feedback import FeedbackStore
from integrations.intake import HttpIntake
from integrations.outbox import RedisOutbox
from integrations.push import PushQueue
from integrations.redis_connection import RedisHandle, connect
from integrations.redis_health import RedisHealth
from integrations.reminders import Reminders
from integrations.replay_guard import ReplayGuard
from integrations.sealing import LOCAL_KID, MissingKey, Sealer, local_key_path
from integrations.tickets import Tickets
from integrations.wechat_api import WeChatApi
from integrations.wechat_notice import GENERIC, Notices, sandbox_ids, shared_notices_content
from integrations.wechat_sandbox import SANDBOX_SUBSCRIBE_PREFIX, SANDBOX_TEMPLATE_PREFIX

log = logging.getLogger(__name__)

SANDBOX_WECHAT_APPID, SANDBOX_WECHAT_SECRET = "sandbox-appid", "sandbox-secret"
SANDBOX_INTAKE_SECRET = "sandbox-intake-secret"

__all__ = ["ConfigError", "Services", "Senders", "check_config", "preflight", "open_services", "open_senders", "intake_secret"]


def check_config(settings: Settings) -> None:
    """Everything that can be known wrong before a single connection is made (raises ConfigError)."""
    settings.validate()


@dataclass
class Services:
    """Storage and the domain: what a turn, an intake event and an operator command work on."""

    settings: Settings
    clock: Clock
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
    push: PushQueue
    notifier: Notifier
    dialog: ApplicationDialog
    effects: EffectRunner
    health: RedisHealth
    replay: ReplayGuard

    async def outbox_depth(self) -> dict[str, dict[str, int]]:
        client = self.redis.client
        return {kind: await OutboxLedger(client, clock=self.clock.time, kind=kind).depth() for kind in ("application", "event")}


@dataclass
class Senders:
    """What only the serving process has: it talks to WeChat and to the intake."""

    wechat: WeChatApi
    intake: HttpIntake
    delivery: DeliveryWorker
    events: DeliveryWorker


@asynccontextmanager
async def open_services(
    settings: Settings, *, clock: Clock, pack: Pack | None = None, strict: bool = False
) -> AsyncIterator[Services]:
    """Connect to Redis, check the data key against what Redis holds, and build every component.
    `strict` (operator commands): Redis must answer now; else a serving worker starts anyway."""
    check_config(settings)
    pack = pack or load_pack(settings.region)
    calendar = default_calendar()
    handle = connect(settings.redis_url, settings.var_dir)
    try:
        sealer = await (_checked_sealer if strict else _sealer)(settings, handle)
        client = handle.client
        now = clock.time
        book = RedisAssessmentBook(client, clock=now)
        outbox = RedisOutbox(client, sealer)
        registry = ApplicationRegistry(
            client, sealer, retention_s=pack.application_days * 86400, certificate_services=pack.with_role(CERTIFICATE)
        )
        reminders = Reminders(client, sealer, pipeline=handle.pipeline)
        feedback = FeedbackStore(client, sealer, clock=now)
        push = PushQueue(client, sealer, None, clock=now, pipeline=handle.pipeline)
        notifier = Notifier(pack, registry, push, reminders, feedback, calendar, outbox, clock=clock)
        ports = Ports(
            book=book,
            outbox=outbox,
            followup=SubmissionFollowup(registry, notifier),
            feedback=feedback,
            eraser=PersonalDataEraser(registry, reminders, push, feedback),
            tickets=Tickets(client, sealer, outbox),
        )
        dialog = ApplicationDialog(pack, ports, calendar, registry=registry)
        store = ConversationStore(
            client,
            sealer,
            session_ttl_s=pack.conversation_days * 86400,
            pipeline=handle.pipeline,
            said_nothing=dialog.said_nothing,
        )
        effects = EffectRunner(outbox, registry, book, notifier, store, clock=now)
        yield Services(
            settings,
            clock,
            pack,
            calendar,
            handle,
            sealer,
            store,
            book,
            outbox,
            registry,
            reminders,
            feedback,
            push,
            notifier,
            dialog,
            effects,
            RedisHealth(),
            ReplayGuard(client, window_s=settings.max_clock_skew_s, pipeline=handle.pipeline),
        )
    finally:
        await handle.close()


async def preflight(settings: Settings) -> None:
    """What `bot serve` checks before it says it is serving: Redis answers and the data key opens its data.
    Raises ConfigError, DataKeyMismatch, or Redis's own error when it cannot be reached."""
    check_config(settings)
    handle = connect(settings.redis_url, settings.var_dir)
    try:
        await handle.client.ping()
        await _checked_sealer(settings, handle)
    finally:
        await handle.close()


async def _sealer(settings: Settings, handle: RedisHandle) -> Sealer:
    """The data keys, checked against the canaries in Redis before any citizen's data is touched.
    `bot serve` checks before it starts (preflight); a worker that finds Redis away at its start still
    starts (it answers "busy" until Redis is back) and its keys were checked by that preflight."""
    try:
        return await _checked_sealer(settings, handle)
    except (RedisError, OSError) as e:
        log.warning("data key not checked against Redis (unreachable: %s)", type(e).__name__)
        if settings.data_keys:
            return Sealer.from_setting(settings.data_keys)
        return Sealer.local(settings.var_dir)


async def _checked_sealer(settings: Settings, handle: RedisHandle) -> Sealer:
    if settings.data_keys:
        sealer, where = Sealer.from_setting(settings.data_keys), "BOT_DATA_KEY"
    else:
        path = local_key_path(settings.var_dir)
        try:
            sealer, where = Sealer.local(settings.var_dir, create=LOCAL_KID not in await sealed_with(handle.client)), str(path)
        except MissingKey:
            raise DataKeyMismatch(
                f"{path} is missing, and Redis holds data sealed with it (key id {LOCAL_KID!r}): "
                f"put the file back, or delete {settings.var_dir}/ to start afresh (development data only)"
            ) from None
    await check_data_key(handle.client, sealer, where=where)
    return sealer


@asynccontextmanager
async def open_senders(services: Services, http: aiohttp.ClientSession) -> AsyncIterator[Senders]:
    """The WeChat API client (the push queue's sender), the intake adapter and the delivery workers."""
    settings, s = services.settings, services
    wechat = wechat_api(settings, http, s.redis.client, clock=s.clock.time, content=s.pack.notices)
    warn_unconfigured_notices(settings, s.pack.notices)
    s.push.api = wechat
    base = settings.intake_url or f"{settings.self_url}/sandbox/intake"
    # The intake checks our signature's timestamp against its own clock: protocol time, not the bot's day.
    consumer = default_consumer()
    intake = HttpIntake(http, base_url=base, secret=intake_secret(settings), clock=protocol_time, instance=consumer)
    window = float(s.pack.raw.get("retention", {}).get("delivery_retry_hours", 72)) * 3600

    def worker(kind: str, **callbacks) -> DeliveryWorker:
        return DeliveryWorker(
            s.redis.client,
            s.outbox,
            intake,
            consumer=consumer,
            retry_window_s=window,
            health=s.health,
            clock=s.clock.time,
            kind=kind,
            **callbacks,
        )

    delivery = worker(
        "application",
        before_send=s.effects.complete_registration,
        on_delivered=s.notifier.on_delivered,
        on_rejected=s.notifier.on_rejected,
    )
    events = worker("event")
    try:
        yield Senders(wechat, intake, delivery, events)
    finally:
        s.push.api = None


def intake_secret(settings: Settings) -> str:
    """The intake's HMAC secret. The built-in sandbox's is public (above), fine on a laptop; on a real
    account (a BOT_INTAKE_SANDBOX=1 trial) it is derived from the account's secret (Settings.account_secret), the same in every worker,
    so strangers cannot sign status events for real citizens."""
    if settings.intake_url:
        return settings.intake_secret
    if secret := settings.account_secret:
        return hmac.new(secret.encode(), b"intake sandbox", hashlib.sha256).hexdigest()
    return SANDBOX_INTAKE_SECRET


def notices(settings: Settings, content: dict) -> Notices:
    """The notice layouts of the pack, with the template ids of this account (the sandbox has one of each)."""
    if not settings.has_wechat_credentials:
        return Notices(content, sandbox_ids(SANDBOX_TEMPLATE_PREFIX), sandbox_ids(SANDBOX_SUBSCRIBE_PREFIX))
    ids = dict(settings.wechat_templates)
    if settings.wechat_template_id:
        ids[GENERIC] = settings.wechat_template_id
    return Notices(content, ids, dict(settings.wechat_subscribe_templates))


def warn_unconfigured_notices(settings: Settings, content: dict) -> list[str]:
    """One line at start: the kinds that would fail outside the 48-hour window for want of a template."""
    n = notices(settings, content)
    missing = n.unconfigured()
    if missing:
        log.warning(
            "no WeChat template for %s: these pushes fail once a citizen has not written for 48 hours "
            "(set %s, or WECHAT_SUBSCRIBE_<KIND> for a subscription notice)",
            "、".join(f"{n.name(k)}({k})" for k in missing),
            ", ".join(f"WECHAT_TEMPLATE_{k.upper()}" for k in missing),
        )
    return missing


def wechat_api(settings: Settings, http: aiohttp.ClientSession, client, *, clock, content: dict | None = None) -> WeChatApi:
    layouts = notices(settings, shared_notices_content() if content is None else content)
    if settings.has_wechat_credentials:
        return WeChatApi(
            http,
            client,
            base_url=settings.api_base,
            appid=settings.wechat_appid,
            secret=settings.wechat_appsecret,
            notices=layouts,
            clock=clock,
        )
    return WeChatApi(
        http,
        client,
        base_url=f"{settings.self_url}/sandbox/wechat",
        appid=SANDBOX_WECHAT_APPID,
        secret=SANDBOX_WECHAT_SECRET,
        notices=layouts,
        clock=clock,
    )
