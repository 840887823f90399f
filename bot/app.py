"""The app factory: every resource opened once in a cleanup_ctx, shared through typed AppKeys."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import AsyncIterator, Callable

from aiohttp import web

from bot.conversation import ConversationService, china_now
from bot.metrics import Metrics
from bot.settings import Settings
from bot.wechat_protocol import ProtocolError, WeChatProtocol
from dialogs.engine import ApplicationDialog
from dialogs.pack import Pack, load_pack
from dialogs.turn import Ports
from dialogs.workdays import WorkCalendar, default_calendar
from integrations.assessment_book import RedisAssessmentBook
from integrations.conversations import ConversationStore
from integrations.outbox import RedisOutbox
from integrations.redis_connection import RedisHandle, connect
from integrations.sealing import Sealer

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
PACK = web.AppKey("pack", Pack)
PROTOCOL = web.AppKey("protocol", WeChatProtocol)
METRICS = web.AppKey("metrics", Metrics)
REDIS = web.AppKey("redis", RedisHandle)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
STORE = web.AppKey("store", ConversationStore)
BOOK = web.AppKey("book", RedisAssessmentBook)
OUTBOX = web.AppKey("outbox", RedisOutbox)
DIALOG = web.AppKey("dialog", ApplicationDialog)
CALENDAR = web.AppKey("calendar", WorkCalendar)
# The dialog's idea of "now" (China time); tests replace it to travel in time.
CLOCK = web.AppKey("clock", Callable[[], datetime])


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    # Content and the dialog machine are loaded here, once, before the first message.
    pack = app[PACK] = load_pack(settings.region)
    app[CALENDAR] = default_calendar()
    app[PROTOCOL] = WeChatProtocol(
        settings.wechat_token,
        settings.wechat_appid,
        settings.wechat_encoding_aes_key,
        max_skew_s=settings.max_clock_skew_s,
        max_body_bytes=settings.max_body_bytes,
    )
    app[METRICS] = Metrics.create()
    app[CLOCK] = china_now
    app.cleanup_ctx.append(_storage_and_dialog)
    app.router.add_get("/wechat", wechat_verify)
    app.router.add_post("/wechat", wechat_message)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if settings.simulator_enabled:
        from bot.simulator import setup_simulator

        setup_simulator(app, token=settings.wechat_token, menu=pack.menu, region_name=pack.name)
    return app


async def _storage_and_dialog(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    handle = app[REDIS] = connect(settings.redis_url, settings.var_dir)
    sealer = Sealer.from_setting(settings.data_keys, settings.var_dir)
    pack = app[PACK]
    app[STORE] = ConversationStore(handle.client, sealer, session_ttl_s=pack.conversation_days * 86400)
    app[BOOK] = RedisAssessmentBook(handle.client)
    app[OUTBOX] = RedisOutbox(handle.client, sealer)
    app[DIALOG] = ApplicationDialog(pack, Ports(book=app[BOOK], outbox=app[OUTBOX]), app[CALENDAR])
    app[CONVERSATIONS] = ConversationService(
        app[STORE], app[DIALOG], pack, app[METRICS], deadline_s=settings.turn_deadline_s, clock=app[CLOCK]
    )
    log.info("ready: region %s, Redis %s, %s mode", pack.region, handle.description, "safe" if settings.safe_mode else "plain")
    yield
    await handle.close()


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
        body = await request.read()
        message, encrypted = protocol.parse(request.query, body)
    except web.HTTPRequestEntityTooLarge:
        return _refuse(request, ProtocolError(413, "body too large"))
    except ProtocolError as e:
        return _refuse(request, e)
    reply = await request.app[CONVERSATIONS].reply_to(message)
    if not reply:
        return web.Response(text="success")
    xml = protocol.render_text(message, reply, encrypted)
    return web.Response(text=xml, content_type="application/xml")


def _refuse(request: web.Request, error: ProtocolError) -> web.Response:
    request.app[METRICS].rejected.labels(str(error.status)).inc()
    log.info("refused %s %s: %s", request.method, request.path, error.reason)
    return web.Response(status=error.status, text=error.reason)


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS].client.ping()
    except Exception:
        return web.json_response({"ok": False, "redis": "unavailable"}, status=503)
    return web.json_response({"ok": True, "region": request.app[PACK].region})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")
