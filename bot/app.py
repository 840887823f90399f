"""The app factory: every resource opened once in a cleanup_ctx, shared through typed AppKeys.

Without real WeChat credentials the bot mounts WeChat's API sandbox at /sandbox/wechat, and without
INTAKE_URL the intake sandbox at /sandbox/intake, so the whole journey (apply, delivery, status
events, pushed messages) works on a laptop with no configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bot.clock import Clock, clock_from_setting, protocol_time
from bot.composition import (
    SANDBOX_INTAKE_SECRET,
    SANDBOX_WECHAT_APPID,
    SANDBOX_WECHAT_SECRET,
    Senders,
    Services,
    check_config,
    intake_secret,
    open_senders,
    open_services,
)
from bot.conversation import ConversationService
from bot.intake_events import events_handler
from bot.metrics import Metrics, state_gauges
from bot.settings import Settings
from bot.wechat_protocol import ProtocolError, WeChatProtocol
from dialogs.pack import Pack, load_pack
from dialogs.workdays import calendar_check
from integrations.delivery import running
from integrations.operator_auth import operator_refusal
from integrations.redis_health import is_redis_error

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
PACK = web.AppKey("pack", Pack)
PROTOCOL = web.AppKey("protocol", WeChatProtocol)
METRICS = web.AppKey("metrics", Metrics)
SERVICES = web.AppKey("services", Services)
SENDERS = web.AppKey("senders", Senders)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CLOCK = web.AppKey("clock", Clock)

__all__ = ["create_app", "intake_secret", "SANDBOX_INTAKE_SECRET", "SANDBOX_WECHAT_APPID", "SANDBOX_WECHAT_SECRET"]

PUSH_EVERY_S = 1.0
REMINDERS_EVERY_S = 30.0
EFFECTS_EVERY_S = 10.0


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    check_config(settings)
    for warning in settings.start_warnings():
        log.warning("%s", warning)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    clock = app[CLOCK] = clock or clock_from_setting(settings.today)
    # Content and the dialog machine are loaded here, once, before the first message.
    pack = app[PACK] = load_pack(settings.region)
    app[PROTOCOL] = WeChatProtocol(
        settings.wechat_token,
        settings.wechat_appid,
        settings.wechat_encoding_aes_key,
        max_skew_s=settings.max_clock_skew_s,
        max_body_bytes=settings.max_body_bytes,
        compatible_mode=settings.wechat_compatible_mode,
    )
    app[METRICS] = Metrics.create()
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(_background_work)
    app.router.add_get("/wechat", wechat_verify)
    app.router.add_post("/wechat", wechat_message)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post(
        "/intake/events",
        events_handler(
            secret=lambda: intake_secret(settings),
            registry=lambda: app[SERVICES].registry,
            services=lambda: set(pack.services),
            apply=lambda app_id, event: app[SERVICES].notifier.on_status_event(app_id, event),
            clock=protocol_time,
        ),
    )
    if settings.wechat_sandbox_enabled:
        from integrations.wechat_sandbox import create_wechat_sandbox

        app.add_subapp(
            "/sandbox/wechat",
            create_wechat_sandbox(
                appid=SANDBOX_WECHAT_APPID, secret=SANDBOX_WECHAT_SECRET, clock=clock.time, notices=pack.notices
            ),
        )
    if settings.intake_sandbox_enabled:
        from integrations.intake_sandbox import create_intake_sandbox

        app.add_subapp(
            "/sandbox/intake",
            create_intake_sandbox(
                lambda: app[SERVICES].redis.client,
                lambda: app[SERVICES].sealer,
                secret=intake_secret(settings),
                bot_events_url=f"{settings.self_url}/intake/events",
                operator_token=settings.operator_token,
                clock=protocol_time,
            ),
        )
    if settings.simulator_enabled:
        from bot.simulator import setup_simulator

        setup_simulator(
            app,
            token=settings.wechat_token,
            menu=pack.menu,
            region_name=pack.name,
            inbox="/sandbox/wechat/inbox/" if settings.wechat_sandbox_enabled else None,
        )
    if settings.console:
        from bot.console.web import setup_console

        setup_console(app, settings, services=lambda: app[SERVICES], conversations=lambda: app[CONVERSATIONS])
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with aiohttp.ClientSession() as http, open_services(settings, clock=app[CLOCK], pack=app[PACK]) as services:
        app[HTTP] = http
        app[SERVICES] = services
        app[CONVERSATIONS] = ConversationService(
            services.store,
            services.dialog,
            services.pack,
            app[METRICS],
            deadline_s=settings.turn_deadline_s,
            clock=services.clock,
            effects=services.effects,
            health=services.health,
        )
        for line in calendar_check(services.calendar, services.clock.today()):
            log.warning("calendar: %s", line)
        log.info(
            "ready: region %s, Redis %s, %s mode, today %s",
            services.pack.region,
            services.redis.description,
            "safe" if settings.safe_mode else "plain",
            services.clock.today().isoformat(),
        )
        yield


async def _background_work(app: web.Application) -> AsyncIterator[None]:
    """Delivery to the intake, pushed messages, reminders and effects left by an interrupted turn:
    tracked tasks, stopped on shutdown."""
    services = app[SERVICES]
    failed = app[METRICS].push_failed
    services.push.on_failed = lambda kind, errcode: failed.labels(kind, str(errcode)).inc()
    async with open_senders(services, app[HTTP]) as senders:
        app[SENDERS] = senders
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_every(PUSH_EVERY_S, stop, services, "pushes", lambda: services.push.send_due()), name="push"),
            asyncio.create_task(
                _every(REMINDERS_EVERY_S, stop, services, "reminders", lambda: send_due_reminders(services)), name="reminders"
            ),
            asyncio.create_task(_every(EFFECTS_EVERY_S, stop, services, "effects", services.effects.sweep), name="effects"),
        ]
        async with running(senders.delivery, senders.events):
            yield
            stop.set()  # the push and reminder loops stop while the delivery workers finish
        await asyncio.gather(*tasks, return_exceptions=True)


async def send_due_reminders(services: Services) -> int:
    """Hand the reminders due by the services' clock to the push queue (the serving process sends them)."""
    return await services.reminders.send_due(
        services.clock.time(),
        services.push,
        lambda rid, payload: services.notifier.render_reminder(rid, payload, conversations=services.store),
    )


async def _every(seconds: float, stop: asyncio.Event, services: Services, what: str, work) -> None:
    while not stop.is_set():
        try:
            await work()
        except Exception as exc:  # a background loop must outlive Redis restarts and bugs in one message
            if is_redis_error(exc):
                services.health.failed(what, exc)
            else:
                log.exception("sending %s failed; trying again in %.0f s", what, seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


# -- handlers ----------------------------------------------------------------------------------
async def wechat_verify(request: web.Request) -> web.Response:
    try:
        echostr = request.app[PROTOCOL].verify_url(request.query)
    except ProtocolError as e:
        return _refuse(request, e)
    return web.Response(text=echostr)


async def wechat_message(request: web.Request) -> web.Response:
    protocol = request.app[PROTOCOL]
    try:
        # WeChat sends the whole body at once and waits 5 s: a client dribbling it is not WeChat.
        # (Nearly always it came with the headers: then there is nothing to wait for, and no timer.)
        if request.content.is_eof():
            body = await request.read()
        else:
            async with asyncio.timeout(request.app[SETTINGS].body_read_timeout_s):
                body = await request.read()
        message, encrypted = protocol.parse(request.query, body)
    except TimeoutError:
        return _refuse(request, ProtocolError(408, "body not received in time"))
    except web.HTTPRequestEntityTooLarge:
        return _refuse(request, ProtocolError(413, "body too large"))
    except ProtocolError as e:
        return _refuse(request, e)
    services = request.app[SERVICES]
    if not encrypted:
        # Plain mode signs the query, never the body: a signed query may carry the one message it came
        # with. (In safe mode msg_signature covers the encrypted body, so a query can carry no other.)
        try:
            fresh = await services.replay.first_use(request.query, f"{message.from_user}:{message.dedup_id}")
        except Exception:  # Redis away: the turn itself will answer "busy"
            fresh = True
        if not fresh:
            return _refuse(request, ProtocolError(403, "signature already used for another message"))
    seen = None
    if message.msg_type != "event":
        # The citizen wrote: customer-service messages may be sent for 48 hours (integrations/push.py).
        # Started with the turn, so both go to Redis in one write, not one round trip after the other.
        seen = asyncio.ensure_future(services.push.seen(message.from_user))
    reply = await request.app[CONVERSATIONS].reply_to(message)
    if seen is not None:
        with contextlib.suppress(Exception):  # Redis away: the turn itself answered "busy"
            await seen
    if not reply:
        return web.Response(text="success")
    xml = protocol.render_text(message, reply, encrypted)
    return web.Response(text=xml, content_type="application/xml")


def _refuse(request: web.Request, error: ProtocolError) -> web.Response:
    request.app[METRICS].rejected.labels(str(error.status)).inc()
    if error.skew_s is not None:
        _clock_skew(request.app, error.skew_s)
        return web.Response(status=error.status, text=error.reason)
    log.info("refused %s %s: %s", request.method, request.path, error.reason)
    return web.Response(status=error.status, text=error.reason)


def _clock_skew(app: web.Application, skew_s: float) -> None:
    """Every message is refused while our clock is more than the window from WeChat's: say it loudly
    (once a minute, not once a message) and show it in /metrics."""
    metrics = app[METRICS]
    metrics.clock_skew.set(skew_s)
    now = time.monotonic()
    if now - metrics.skew_logged_at >= 60:
        metrics.skew_logged_at = now
        log.error(
            "WeChat's clock is %+.0f s from ours (the window is %d s): every message is refused until "
            "this machine's clock is set right (NTP)",
            skew_s,
            app[SETTINGS].max_clock_skew_s,
        )


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[SERVICES].redis.client.ping()
    except Exception:
        return web.json_response({"ok": False, "redis": "unavailable"}, status=503)
    return web.json_response({"ok": True, "region": request.app[PACK].region})


async def metrics(request: web.Request) -> web.Response:
    if (refused := operator_refusal(request, request.app[SETTINGS].operator_token)) is not None:
        return refused
    body = request.app[METRICS].render() + await state_gauges(request.app[SERVICES])
    return web.Response(body=body, content_type="text/plain")
