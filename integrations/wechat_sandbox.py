"""WeChat's API, imitated on loopback: the token, customer-service, template and subscription endpoints,
and the temporary media a citizen's photos are fetched from (/cgi-bin/media/get).

With WeChat's rules (content/common/notices.yaml quotes them): a customer-service message only within 48
hours of the citizen's last message and 5 per message (45015 outside, 45047 over), 3 within a minute of
a follow or a menu click; 43004 once the citizen has unfollowed; a template shows its title and its
keywords (first and remark are dropped, line breaks removed, each keyword cut at 20 units with "…"); a
subscription notice field that breaks its type's limit is refused (47003). The sandbox learns what the
citizen did as WeChat would, from the messages themselves: whoever plays WeChat in front of the bot (the
simulator, the tests' WeChatUser) posts each one to POST /sandbox/message {"openid", "event"} too, and a
photo's bytes with it ({"media_id", "image": base64}), kept as WeChat keeps temporary media: 3 days.

Two uses. In development the bot mounts it at /sandbox/wechat when no real WeChat credentials are
set, so pushed messages land in an inbox the simulator polls (GET /inbox/{openid}, `?consume=1`
to take them). In tests it runs as a real HTTP server with error injection (allow_faults=True):
POST /sandbox/fail {"endpoint": "custom"|"template"|"token", "errcodes": [45015, ...],
"http_status": [500, ...], "delay_s": 2} queues answers given in order before succeeding again
(errcode 0 in the queue lets one request through), and makes that endpoint slow until reset.

State is in memory, per application: it is a sandbox. Tokens are signed rather than remembered,
so every worker's sandbox accepts the tokens another one issued (the token is shared in Redis).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from integrations.wechat_notice import Layout, Notices, fit_template, shared_notices_content, subscribe_value_ok

TOKEN_LIFETIME_S = 7200
MAX_TEXT_BYTES = 2048
INBOX_LIMIT = 200  # per openid: the development inbox must not grow without bound
ENDPOINTS = ("token", "custom", "template", "subscribe", "menu", "media")
MEDIA_TTL_S = 3 * 86400  # WeChat keeps a temporary media file (a photo a citizen sent) 3 days
MEDIA_LIMIT = 200
WINDOWS = {None: (48 * 3600.0, 5), "subscribe": (60.0, 3), "click": (60.0, 3), "scan": (60.0, 3)}

_ERRMSG = {
    0: "ok",
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40023: "invalid sub button size",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    47003: "argument invalid!",
}


@dataclass
class SandboxState:
    appid: str
    secret: str
    allow_faults: bool
    clock: Callable[[], float]
    token_fetches: int = 0
    inbox: dict[str, deque] = field(default_factory=dict)
    errcodes: dict[str, deque] = field(default_factory=lambda: {e: deque() for e in ENDPOINTS})
    http_status: dict[str, deque] = field(default_factory=lambda: {e: deque() for e in ENDPOINTS})
    delay_s: dict[str, float] = field(default_factory=lambda: {e: 0.0 for e in ENDPOINTS})
    sent: dict[str, int] = field(default_factory=lambda: {"custom": 0, "template": 0, "subscribe": 0})
    menu: dict[str, Any] | None = None
    templates: dict[str, Layout] = field(default_factory=dict)
    subscribe_templates: dict[str, Layout] = field(default_factory=dict)
    windows: dict[str, list[float]] = field(default_factory=dict)  # openid -> [until, messages left]
    unsubscribed: set[str] = field(default_factory=set)
    media: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # media_id -> (bytes, kept until)

    def saw(self, openid: str, event: str | None = None) -> None:
        """What the citizen did in WeChat: a message (event None), or an event (subscribe, unsubscribe, click, scan)."""
        event = event.lower() if event else None
        if event == "unsubscribe":
            self.unsubscribed.add(openid)
            self.windows.pop(openid, None)
            return
        if event == "subscribe":
            self.unsubscribed.discard(openid)
        length, quota = WINDOWS.get(event, WINDOWS["click"])
        until = self.clock() + length
        current = self.windows.get(openid)
        if current is None or current[0] < until:
            self.windows[openid] = [until, float(quota)]

    def messages(self, openid: str) -> list[dict[str, Any]]:
        return list(self.inbox.get(openid, ()))


SANDBOX = web.AppKey("wechat_sandbox", SandboxState)


SANDBOX_TEMPLATE_PREFIX = "sandbox-"
SANDBOX_SUBSCRIBE_PREFIX = "sandbox-sub-"


def create_wechat_sandbox(
    *,
    clock: Callable[[], float],
    appid: str = "sandbox-appid",
    secret: str = "sandbox-secret",
    allow_faults: bool = False,
    notices: dict[str, Any] | None = None,
) -> web.Application:
    """`clock` is WeChat's: the bot's own clock in development (so a simulated day is WeChat's too).
    The account's templates: one per kind of content/common/notices.yaml (or `notices`), id `sandbox-<kind>`,
    and its subscription notices `sandbox-sub-<kind>`."""
    app = web.Application()
    state = app[SANDBOX] = SandboxState(appid, secret, allow_faults, clock)
    layouts = Notices(notices if notices is not None else shared_notices_content())
    state.templates = layouts.sandbox_templates("template", SANDBOX_TEMPLATE_PREFIX)
    state.subscribe_templates = layouts.sandbox_templates("subscribe", SANDBOX_SUBSCRIBE_PREFIX)
    app.router.add_get("/cgi-bin/token", _token)
    app.router.add_post("/cgi-bin/message/custom/send", _custom_send)
    app.router.add_post("/cgi-bin/message/template/send", _template_send)
    app.router.add_post("/cgi-bin/message/subscribe/bizsend", _subscribe_send)
    app.router.add_post("/sandbox/message", _citizen_did)
    app.router.add_post("/cgi-bin/menu/create", _menu_create)
    app.router.add_get("/cgi-bin/media/get", _media_get)
    app.router.add_get("/menu", _menu)
    app.router.add_get("/inbox/{openid}", _inbox)
    if allow_faults:
        app.router.add_post("/sandbox/fail", _fail)
    return app


# -- WeChat's endpoints ------------------------------------------------------------------------------
async def _token(request: web.Request) -> web.Response:
    state = request.app[SANDBOX]
    if (fault := await _injected(state, "token")) is not None:
        return fault
    q = request.query
    if q.get("grant_type") != "client_credential":
        return _error(40002)
    if q.get("appid") != state.appid:
        return _error(40013)
    if not hmac.compare_digest(q.get("secret", "").encode(), state.secret.encode()):
        return _error(40125)
    state.token_fetches += 1
    return web.json_response({"access_token": _issue(state), "expires_in": TOKEN_LIFETIME_S})


async def _message(request: web.Request, endpoint: str) -> tuple[dict, str] | web.Response:
    """The checks both send endpoints share: injected faults, the token, a JSON body, the recipient."""
    if (refused := await _check(request, endpoint)) is not None:
        return refused
    body = await _json(request)
    if body is None:
        return _error(47001)
    openid = body.get("touser")
    if not isinstance(openid, str) or not openid:
        return _error(40003)
    return body, openid


async def _custom_send(request: web.Request) -> web.Response:
    got = await _message(request, "custom")
    if isinstance(got, web.Response):
        return got
    body, openid = got
    if body.get("msgtype") != "text":
        return _error(40008 if body.get("msgtype") else 47001)
    content = (body.get("text") or {}).get("content", "")
    if not content:
        return _error(44004)
    if len(content.encode()) > MAX_TEXT_BYTES:
        return _error(45002)
    state = request.app[SANDBOX]
    if openid in state.unsubscribed:
        return _error(43004)
    window = state.windows.get(openid)
    if window is None or window[0] < state.clock():
        return _error(45015)
    if window[1] < 1:
        return _error(45047)
    window[1] -= 1
    _record(state, openid, content, "custom")
    return _error(0)


async def _notice(request: web.Request, endpoint: str, layouts: dict) -> tuple[Any, dict, str] | web.Response:
    """What a template or subscription send names: its layout, its data and the openid (or WeChat's error)."""
    got = await _message(request, endpoint)
    if isinstance(got, web.Response):
        return got
    body, openid = got
    layout = layouts.get(body.get("template_id") or "")
    if layout is None:
        return _error(40037)
    data = body.get("data") or {}
    if not isinstance(data, dict):
        return _error(47001)
    return layout, data, openid


async def _template_send(request: web.Request) -> web.Response:
    state = request.app[SANDBOX]
    got = await _notice(request, "template", state.templates)
    if isinstance(got, web.Response):
        return got
    layout, data, openid = got
    if openid in state.unsubscribed:
        return _error(43004)
    # As a phone shows it since 2023-05-04: the title, then each keyword of the template (first and remark
    # are not among them), one line, at most 20 units; an over-long value is cut, not refused.
    fields = [[label, fit_template(_value(data, key).replace("\r", "").replace("\n", ""))] for key, label, _ in layout.fields]
    _record(state, openid, _card(layout.title, fields), "template", title=layout.title, fields=fields)
    return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": int(state.clock() * 1000)})


async def _subscribe_send(request: web.Request) -> web.Response:
    """subscribe/bizsend: a long-term subscription notice; every follower is taken to have accepted it (an
    assumption of the sandbox) until they unfollow."""
    state = request.app[SANDBOX]
    got = await _notice(request, "subscribe", state.subscribe_templates)
    if isinstance(got, web.Response):
        return got
    layout, data, openid = got
    if openid in state.unsubscribed:
        return _error(43101)
    for key, _, _ in layout.fields:
        if not subscribe_value_ok(key, _value(data, key)):
            return web.json_response({"errcode": 47003, "errmsg": f"argument invalid! data.{key}.value invalid"})
    fields = [[label, _value(data, key)] for key, label, _ in layout.fields]
    _record(state, openid, _card(layout.title, fields), "subscribe", title=layout.title, fields=fields)
    return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": int(state.clock() * 1000)})


def _value(data: dict, key: str) -> str:
    item = data.get(key)
    return str(item.get("value", "")) if isinstance(item, dict) else ""


def _card(title: str, fields: list[list[str]]) -> str:
    return "\n".join([title, *(f"{label}：{value}" for label, value in fields)])


async def _menu_create(request: web.Request) -> web.Response:
    """createCustomMenu, with WeChat's limits (integrations/wechat_menu.py)."""
    from integrations.wechat_menu import MenuError, check_menu

    if (refused := await _check(request, "menu")) is not None:
        return refused
    body = await _json(request)
    try:
        check_menu(body)
    except MenuError as e:
        return _error(e.errcode)
    request.app[SANDBOX].menu = body
    return web.json_response({"errcode": 0, "errmsg": "ok"})


async def _menu(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX].menu)


# -- ours --------------------------------------------------------------------------------------------
async def _inbox(request: web.Request) -> web.Response:
    state = request.app[SANDBOX]
    openid = request.match_info["openid"]
    messages = state.messages(openid)
    if request.query.get("consume") == "1":
        state.inbox.pop(openid, None)
    return web.json_response(messages)


async def _citizen_did(request: web.Request) -> web.Response:
    """What WeChat sees before the bot does: a citizen's message or event (the simulator and the tests post it)."""
    body = await _json(request) or {}
    openid, event = body.get("openid"), body.get("event")
    if not isinstance(openid, str) or not openid or not (event is None or isinstance(event, str)):
        return web.json_response({"error": "needs openid, and event or null"}, status=400)
    state = request.app[SANDBOX]
    state.saw(openid, event)
    media_id, image = body.get("media_id"), body.get("image")
    if isinstance(media_id, str) and media_id and isinstance(image, str):
        try:
            data = base64.b64decode(image, validate=True)
        except ValueError:
            return web.json_response({"error": "image must be base64"}, status=400)
        state.media[media_id] = (data, state.clock() + MEDIA_TTL_S)
        while len(state.media) > MEDIA_LIMIT:
            state.media.pop(next(iter(state.media)))
    return web.json_response({"ok": True})


async def _media_get(request: web.Request) -> web.Response:
    """Temporary media: the file itself, or 40007 once it is gone (after 3 days) or never was."""
    if (refused := await _check(request, "media")) is not None:
        return refused
    state = request.app[SANDBOX]
    kept = state.media.get(request.query.get("media_id", ""))
    if kept is None or kept[1] < state.clock():
        return _error(40007)
    return web.Response(
        body=kept[0],
        content_type="image/jpeg",
        headers={"Content-disposition": f'attachment; filename="{request.query["media_id"]}.jpg"'},
    )


async def _fail(request: web.Request) -> web.Response:
    state = request.app[SANDBOX]
    body = await _json(request) or {}
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        return web.json_response({"error": f"endpoint must be one of {ENDPOINTS}"}, status=400)
    state.errcodes[endpoint].extend(int(c) for c in body.get("errcodes", ()))
    state.http_status[endpoint].extend(int(s) for s in body.get("http_status", ()))
    if "delay_s" in body:
        state.delay_s[endpoint] = float(body["delay_s"])
    return web.json_response({"ok": True})


# -- helpers -----------------------------------------------------------------------------------------
async def _check(request: web.Request, endpoint: str) -> web.Response | None:
    """Injected faults first, then the access token, as WeChat checks it."""
    state = request.app[SANDBOX]
    if (fault := await _injected(state, endpoint)) is not None:
        return fault
    token = request.query.get("access_token", "")
    if not token:
        return _error(41001)
    return _verify(state, token)


async def _injected(state: SandboxState, endpoint: str) -> web.Response | None:
    if state.delay_s[endpoint]:
        await asyncio.sleep(state.delay_s[endpoint])
    if state.http_status[endpoint]:
        return web.Response(status=state.http_status[endpoint].popleft(), text="injected")
    if state.errcodes[endpoint]:
        code = state.errcodes[endpoint].popleft()
        if code != 0:
            return _error(code)
    return None


def _issue(state: SandboxState) -> str:
    payload = f"{os.urandom(12).hex()}_{int(state.clock()) + TOKEN_LIFETIME_S}"
    return f"{payload}_{_sign(state, payload)}"


def _verify(state: SandboxState, token: str) -> web.Response | None:
    payload, _, mac = token.rpartition("_")
    if not payload or not hmac.compare_digest(mac, _sign(state, payload)):
        return _error(40001)
    if int(payload.rpartition("_")[2]) < state.clock():
        return _error(42001)
    return None


def _sign(state: SandboxState, payload: str) -> str:
    key = f"{state.appid}:{state.secret}".encode()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def _record(state: SandboxState, openid: str, text: str, kind: str, **card: Any) -> None:
    inbox = state.inbox.setdefault(openid, deque(maxlen=INBOX_LIMIT))
    inbox.append({"text": text, "at": state.clock(), "kind": kind, **card})
    state.sent[kind] += 1


async def _json(request: web.Request) -> dict | None:
    try:
        body = json.loads(await request.read())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(errcode: int) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": _ERRMSG.get(errcode, "injected")})
