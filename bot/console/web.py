"""The console's pages: server-rendered Jinja2 templates in Chinese, plain HTML forms, no JavaScript.

Every request passes `guard`: refused (404) from an address outside BOT_CONSOLE_NETWORKS, sent to
the login page without a live session, and every POST must carry the session's CSRF token (the login
form a token of its own, a cookie it must match). Each page checks its role's permission; a refusal
is logged in the audit log too. Personal data is shown masked; in full only after a POST that is
logged (显示完整, print).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot import operator_cli
from bot.clock import CHINA
from bot.composition import Services
from bot.console import cases as case_lookup
from bot.console import sessions_page
from bot.console.accounts import Account, Accounts
from bot.console.audit import AuditLog
from bot.console.calls import OUTCOMES, CallLog
from bot.console.networks import client_address, is_proxy, parse_networks
from bot.console.printing import NoForm, application_form_pdf
from bot.console.roles import (
    AUDIT,
    CALLS,
    CASEWORK,
    DASHBOARD,
    INTAKE,
    PRINT,
    RETRY,
    SCHEDULE,
    SEARCH,
    SESSIONS,
    UNMASK,
    VIEW,
    home,
)
from bot.console.staff_sessions import StaffSession, StaffSessions
from bot.console.window import WindowIntakes
from bot.conversation import ConversationService
from bot.settings import OperatorError, Settings
from integrations.wechat_api import INVALID_MEDIA, MediaUnavailable

COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
PREFIX = "/console"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICES_OF: web.AppKey[Callable[[], Services]] = web.AppKey("console_services")
CONVERSATIONS_OF: web.AppKey[Callable[[], ConversationService]] = web.AppKey("console_conversations")
NETWORKS = web.AppKey("console_networks", list)
PROXIES = web.AppKey("console_proxies", list)


@dataclass(frozen=True)
class Staff:
    account: Account
    session: StaffSession


STAFF: web.RequestKey[Staff | None] = web.RequestKey("console_staff")


def staff_of(request: web.Request) -> Staff:
    """The logged-in staff of a page behind the guard (which sends everyone else to the login page)."""
    staff = request[STAFF]
    assert staff is not None
    return staff


def setup_console(
    app: web.Application,
    settings: Settings,
    *,
    services: Callable[[], Services],
    conversations: Callable[[], ConversationService],
) -> None:
    console = web.Application(middlewares=[guard])
    console[SERVICES_OF] = services
    console[CONVERSATIONS_OF] = conversations
    console[NETWORKS] = parse_networks(settings.console_networks)
    console[PROXIES] = parse_networks(settings.console_proxies)
    env = aiohttp_jinja2.setup(
        console,
        loader=jinja2.PackageLoader("bot.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.filters["when"] = _when
    r = console.router
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", dashboard)
    r.add_get("/search", search_page)
    r.add_post("/search", search)
    r.add_get("/today", today_list)
    r.add_get("/deliveries", deliveries)
    r.add_get("/pushes", pushes)
    r.add_get("/overdue", overdue_list)
    r.add_get(r"/cases/{app_id:[A-Z0-9]{4,40}}", case_page)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/unmask", case_unmasked)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/print", case_print)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/retry", case_retry)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/calls", case_call)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/bindings/{viewer:[0-9a-f]{16}}/revoke", case_revoke)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/tickets/{ticket:T\d{1,12}}/close", case_close_ticket)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/photos/{media_id:[A-Za-z0-9_-]{1,128}}", case_photo)
    r.add_post(r"/cases/{app_id:[A-Z0-9]{4,40}}/pushes/{push_id:[0-9a-f]{12}}/resend", case_resend_push)
    r.add_get("/tickets", tickets_list)
    r.add_get("/audit", audit_page)
    r.add_get("/sessions", sessions_list)
    r.add_get("/intake", intake_page)
    r.add_post("/intake", intake_start)
    r.add_post(r"/intake/{intake_id:[A-Za-z0-9_-]{16,40}}", intake_answer)
    r.add_post(r"/intake/{intake_id:[A-Za-z0-9_-]{16,40}}/receipt", intake_receipt)
    r.add_post(r"/sessions/{day:\d{4}-\d{2}-\d{2}}/move", session_move)
    r.add_post("/sessions/announce", session_announce)
    r.add_post(r"/sessions/{day:\d{4}-\d{2}-\d{2}}/roster", session_roster)
    r.add_post(r"/sessions/{day:\d{4}-\d{2}-\d{2}}/roster.xlsx", session_roster_xlsx)
    r.add_static("/static", Path(__file__).parent / "static")
    app.add_subapp(PREFIX, console)

    async def to_console(request: web.Request) -> web.Response:
        if not _allowed(request, console[NETWORKS], console[PROXIES]):
            raise web.HTTPNotFound()
        raise web.HTTPFound(PREFIX + "/")

    app.router.add_get(PREFIX, to_console)


# -- the guard -----------------------------------------------------------------------------------
PUBLIC = {"login_page", "login"}


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES_OF]()


def address_of(request: web.Request) -> str:
    """Where the request comes from: behind BOT_CONSOLE_PROXIES, the address they forwarded for."""
    return client_address(request.remote, request.headers.get("X-Forwarded-For"), request.app[PROXIES])


def _over_https(request: web.Request) -> bool:
    """HTTPS to us, or to our proxy (its X-Forwarded-Proto): then the cookies are Secure."""
    if request.secure:
        return True
    from_proxy = is_proxy(request.remote or "", request.app[PROXIES])
    return from_proxy and request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _allowed(request: web.Request, networks: list, proxies: list) -> bool:
    try:
        address = ipaddress.ip_address(client_address(request.remote, request.headers.get("X-Forwarded-For"), proxies))
    except ValueError:
        return False
    return any(address in network for network in networks)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _allowed(request, request.app[NETWORKS], request.app[PROXIES]):
        raise web.HTTPNotFound()
    s = services_of(request)
    staff = None
    session_id = request.cookies.get(COOKIE)
    if session_id:
        session = await StaffSessions(s.redis.client).get(session_id)
        account = await Accounts(s.redis.client).get(session.username) if session else None
        if session and account and not account.disabled:
            staff = Staff(account, session)
    request[STAFF] = staff
    resource = request.match_info.route.resource
    public = getattr(handler, "__name__", "") in PUBLIC or isinstance(resource, web.StaticResource)
    if staff is None and not public:
        if request.method == "POST":
            raise web.HTTPForbidden(text="请先登录")
        raise web.HTTPFound(PREFIX + "/login")
    if request.method == "POST":
        form = await request.post()
        sent = str(form.get("csrf", ""))
        expected = staff.session.csrf if staff else request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            return _hardened(_error(request, 403, "表单已过期或来源不明（CSRF 校验未通过），请返回刷新后再试。"))
    return _hardened(await handler(request))


def _hardened(response: web.StreamResponse) -> web.StreamResponse:
    """Personal data is never cached, framed or sniffed; the pages run no script and post only here."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = "default-src 'self'; form-action 'self'; frame-ancestors 'none'"
    return response


def needs(permission: str):
    """The page needs this permission of the staff's role; a refusal is audit-logged."""

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            staff = staff_of(request)
            if permission not in staff.account.role.may:
                await audit(request, "refused", target=request.path, detail=permission)
                return _error(request, 403, "您的角色没有这项权限。")
            return await handler(request)

        checked.__name__ = handler.__name__
        return checked

    return wrap


async def audit(request: web.Request, action: str, *, target: str = "", detail: str = "", staff: Account | None = None) -> None:
    s = services_of(request)
    logged_in = request.get(STAFF)
    who = staff or (logged_in.account if logged_in else None)
    await audit_log(s).record(
        user=who.username if who else "",
        role=who.role.code if who else "",
        action=action,
        target=target,
        detail=detail,
        address=address_of(request),
    )


def call_log(s: Services) -> CallLog:
    return CallLog(s.redis.client, s.sealer, s.clock, retention_s=s.pack.application_days * 86400)


def audit_log(s: Services) -> AuditLog:
    days = int(s.pack.raw.get("retention", {}).get("audit_days", 365))
    return AuditLog(s.redis.client, s.clock, retention_s=days * 86400)


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    staff: Staff | None = request.get(STAFF)
    s = services_of(request)
    base = {
        "staff": staff.account if staff else None,
        "may": staff.account.role.may if staff else frozenset(),
        "csrf": staff.session.csrf if staff else "",
        "region": s.pack.name,
    }
    return aiohttp_jinja2.render_template(template, request, base | context, status=status)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, message=message)


def _when(value: float | str | None) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, CHINA).strftime("%Y-%m-%d %H:%M")
    return str(value).replace("T", " ")[:16]


# -- log in and out ------------------------------------------------------------------------------
async def login_page(request: web.Request, *, message: str = "", status: int = 200) -> web.Response:
    logged_in = request.get(STAFF)
    if logged_in is not None and request.method == "GET":
        raise web.HTTPFound(home(logged_in.account.role))
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, login_csrf=token, message=message)
    response.set_cookie(LOGIN_COOKIE, token, path=PREFIX, httponly=True, samesite="Strict", secure=_over_https(request))
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username, password = str(form.get("username", "")).strip().lower(), str(form.get("password", ""))
    s = services_of(request)
    accounts = Accounts(s.redis.client)
    result = await accounts.login(username, password, address_of(request))
    # A name that is no account may be a password typed in the wrong box: not written down.
    named = username if result or await accounts.get(username) is not None else "（不存在的用户名）"
    if result is False:
        await audit(request, "login_limited", target=named)
        return await login_page(request, message="错误次数过多，请15分钟后再试，或请管理员重置密码。", status=429)
    if result is None or result is True:
        await audit(request, "login_failed", target=named)
        return await login_page(request, message="用户名或密码不对。", status=401)
    session = await StaffSessions(s.redis.client).start(result)
    await audit(request, "login", target=username, staff=result)
    moved = web.HTTPFound(home(result.role))
    moved.set_cookie(COOKIE, session.id, path=PREFIX, httponly=True, samesite="Strict", secure=_over_https(request))
    moved.del_cookie(LOGIN_COOKIE, path=PREFIX)
    raise moved


async def logout(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    await StaffSessions(services_of(request).redis.client).end(staff.session.id)
    await audit(request, "logout")
    moved = web.HTTPFound(PREFIX + "/login")
    moved.del_cookie(COOKIE, path=PREFIX)
    raise moved


# -- pages ---------------------------------------------------------------------------------------
@needs(DASHBOARD)
async def dashboard(request: web.Request) -> web.Response:
    s = services_of(request)
    today = s.clock.today().isoformat()
    depth = await case_lookup.ledger(s).depth()
    submitted = await case_lookup.submitted_on(s, today)
    coming = await sessions_page.coming_sessions(s, 1)
    return render(
        request,
        "dashboard.html",
        today=today,
        submitted=len(submitted),
        depth=depth,
        pushes_failed=(await s.push.depth())["failed"],
        open_tickets=len(await case_lookup.tickets_of(s, only_open=True)),
        overdue=len(await case_lookup.overdue(s)),
        next_session=coming[0] if coming else None,
    )


@needs(DASHBOARD)
async def today_list(request: web.Request) -> web.Response:
    s = services_of(request)
    today = s.clock.today().isoformat()
    rows = [await _row(s, app_id) for app_id in await case_lookup.submitted_on(s, today)]
    return render(request, "list.html", title=f"今日提交（{today}）", rows=rows)


@needs(DASHBOARD)
async def deliveries(request: web.Request) -> web.Response:
    s = services_of(request)
    state = request.query.get("state") or None
    if state is not None and state not in case_lookup.DELIVERY_STATES:
        raise web.HTTPNotFound()
    rows = []
    for item in await case_lookup.ledger(s).list(state, limit=500):
        row = await _row(s, item["application_id"])
        row["delivery"] = item
        rows.append(row)
    title = "送达受理平台：" + (case_lookup.DELIVERY_STATES[state] if state else "全部")
    return render(request, "list.html", title=title, rows=rows, states=case_lookup.DELIVERY_STATES)


@needs(DASHBOARD)
async def overdue_list(request: web.Request) -> web.Response:
    s = services_of(request)
    rows = []
    for app_id, late in await case_lookup.overdue(s):
        row = await _row(s, app_id)
        row["late"] = "、".join(s.pack.services[c].short for c in late if c in s.pack.services)
        rows.append(row)
    return render(request, "list.html", title="超过预计办结时间的申请", rows=rows)


@needs(DASHBOARD)
async def tickets_list(request: web.Request) -> web.Response:
    s = services_of(request)
    staff = staff_of(request)
    rows = []
    for t in await case_lookup.tickets_of(s, only_open=True):
        if await case_lookup.case(s, t["application_id"], staff.account.role) is not None:
            rows.append(t)
    return render(request, "tickets.html", rows=rows)


@needs(DASHBOARD)
async def pushes(request: web.Request) -> web.Response:
    return render(request, "pushes.html", rows=await case_lookup.failed_pushes(services_of(request)))


async def _row(s: Services, app_id: str) -> dict[str, Any]:
    meta = await s.registry.meta(app_id) or {}
    return {
        "id": app_id,
        "submitted_at": meta.get("submitted_at", ""),
        "services": "、".join(s.pack.services[c].short for c in meta.get("services", []) if c in s.pack.services),
        "application_no": meta.get("application_no") or "",
    }


@needs(SEARCH)
async def search_page(request: web.Request) -> web.Response:
    return render(request, "search.html", kinds=case_lookup.SEARCH_KINDS, kind="application_id", rows=None)


@needs(SEARCH)
async def search(request: web.Request) -> web.Response:
    """A POST, so that an ID number or a name never lands in a URL, a proxy's log or the history."""
    form = await request.post()
    kind = str(form.get("kind", ""))
    if kind not in case_lookup.SEARCH_KINDS:
        kind = "application_id"
    s = services_of(request)
    found = await case_lookup.search(s, kind, str(form.get("q", "")), str(form.get("birth_date", "")))
    staff = staff_of(request)
    visible = []
    for app_id in found:
        view = await case_lookup.case(s, app_id, staff.account.role)
        if view is not None:
            visible.append(await _row(s, app_id))
    await audit(request, "search", detail=f"{case_lookup.SEARCH_KINDS[kind]}，{len(visible)}条")
    if len(visible) == 1:
        raise web.HTTPSeeOther(f"{PREFIX}/cases/{visible[0]['id']}")
    return render(request, "search.html", kinds=case_lookup.SEARCH_KINDS, kind=kind, rows=visible)


NOT_IN_REACH = "没有这个申请，或您的角色不能查看它。"


async def _case_of(request: web.Request) -> Any:
    """The application the URL names, as this staff member's role may see it (None: not there, or not theirs)."""
    return await case_lookup.case(services_of(request), request.match_info["app_id"], staff_of(request).account.role)


async def _back_to_case(request: web.Request, notice: str) -> web.Response:
    """After an action on a case: its page again, with what happened said at the top."""
    return await _case(request, unmasked=False, action="view_case", notice=notice)


async def _case(request: web.Request, *, unmasked: bool, action: str, notice: str = "") -> web.Response:
    s = services_of(request)
    staff = staff_of(request)
    app_id = request.match_info["app_id"]
    view = await case_lookup.case(s, app_id, staff.account.role, unmasked=unmasked)
    if view is None:
        return _error(request, 404, NOT_IN_REACH)
    await audit(request, action, target=app_id)
    history: dict[str, list[dict[str, Any]]] = {}
    for entry in await s.registry.history(app_id):
        label = s.pack.status["labels"].get(entry.get("status"), entry.get("status"))
        history.setdefault(entry.get("service", ""), []).append({**entry, "label": label})
    services = [
        {
            "name": s.pack.services[code].name if code in s.pack.services else code,
            "department": s.pack.services[code].department if code in s.pack.services else "",
            "status": s.pack.status["labels"].get(record.get("status"), record.get("status")),
            "note": record.get("note", ""),
            "at": record.get("at", ""),
            "expected": record.get("expected") or "",
            "overdue": case_lookup.is_overdue(record, s.clock.today()),
            "history": history.get(code, []),
        }
        for code, record in ((c, view.status.get(c, {})) for c in view.document["services"])
    ]
    return render(
        request,
        "case.html",
        case=view,
        services=services,
        delivery_states=case_lookup.DELIVERY_STATES,
        materials=view.document.get("materials", []),
        appointment=view.meta.get("appointment") or view.document.get("appointment"),
        bindings=case_lookup.bindings(view.meta),
        tickets=await case_lookup.tickets_of(s, app_id),
        photos=case_lookup.photos(view.document, await s.registry.supplied(app_id)),
        pushes_failed=await case_lookup.failed_pushes(s, app_id),
        pushes=await case_lookup.pushes_to_followers(s, view.meta),
        calls=await call_log(s).of(app_id),
        outcomes=OUTCOMES,
        notice=notice,
    )


@needs(VIEW)
async def case_page(request: web.Request) -> web.Response:
    return await _case(request, unmasked=False, action="view_case")


@needs(UNMASK)
async def case_unmasked(request: web.Request) -> web.Response:
    return await _case(request, unmasked=True, action="unmask")


@needs(RETRY)
async def case_retry(request: web.Request) -> web.Response:
    """Put a failed delivery back in the queue (the serving process's worker sends it at once)."""
    s = services_of(request)
    app_id = request.match_info["app_id"]
    if await _case_of(request) is None:
        return _error(request, 404, NOT_IN_REACH)
    if not await case_lookup.ledger(s).retry(app_id):
        return await _back_to_case(request, "只有送达失败的申请可以重新送达。")
    await audit(request, "retry_delivery", target=app_id)
    return await _back_to_case(request, "已重新排队送达受理平台。")


@needs(CALLS)
async def case_call(request: web.Request) -> web.Response:
    s = services_of(request)
    staff = staff_of(request)
    app_id = request.match_info["app_id"]
    if await _case_of(request) is None:
        return _error(request, 404, NOT_IN_REACH)
    form = await request.post()
    outcome = str(form.get("outcome", ""))
    if outcome not in OUTCOMES:
        return await _back_to_case(request, "请选择联系结果。")
    await call_log(s).record(app_id, user=staff.account.name, outcome=outcome, note=str(form.get("note", "")))
    await audit(request, "record_call", target=app_id, detail=OUTCOMES[outcome])
    return await _back_to_case(request, "联系记录已保存。")


@needs(RETRY)
async def case_resend_push(request: web.Request) -> web.Response:
    """`bot push resend`: a notice given up on, queued again (the serving process sends it)."""
    s = services_of(request)
    app_id, push_id = request.match_info["app_id"], request.match_info["push_id"]
    if await _case_of(request) is None:
        return _error(request, 404, NOT_IN_REACH)
    ours = any(p["id"] == push_id for p in await case_lookup.failed_pushes(s, app_id))
    if not ours or not await s.push.resend(push_id):
        return await _back_to_case(request, "这条通知不是此申请发送失败的通知。")
    await audit(request, "resend_push", target=app_id, detail=push_id)
    return await _back_to_case(request, "已重新排队发送这条微信通知。")


@needs(CASEWORK)
async def case_revoke(request: web.Request) -> web.Response:
    """A family member's binding ended by the clerk (asked by the applicant at the window, say)."""
    s = services_of(request)
    staff = staff_of(request)
    app_id = request.match_info["app_id"]
    view = await case_lookup.case(s, app_id, staff.account.role)
    if view is None:
        return _error(request, 404, NOT_IN_REACH)
    wanted = request.match_info["viewer"]
    openid = next((v for v in view.meta["viewers"][1:] if case_lookup.viewer_id(v) == wanted), None)
    if openid is None or not await s.registry.revoke_viewer(app_id, openid):
        return await _back_to_case(request, "没有这个家属绑定（可能已解除）。")
    await audit(request, "revoke_binding", target=app_id, detail=wanted)
    return await _back_to_case(request, "已解除该家属的绑定，对方不再收到此申请的通知。")


@needs(CASEWORK)
async def case_close_ticket(request: web.Request) -> web.Response:
    s = services_of(request)
    staff = staff_of(request)
    app_id, ticket = request.match_info["app_id"], request.match_info["ticket"]
    if await _case_of(request) is None:
        return _error(request, 404, NOT_IN_REACH)
    if not any(t["ticket"] == ticket and t["state"] == "open" for t in await case_lookup.tickets_of(s, app_id)):
        return await _back_to_case(request, f"工单 {ticket} 不是此申请的未结工单。")
    await case_lookup.tickets(s).close(ticket, by=staff.account.username, at=s.clock.now())
    await audit(request, "close_ticket", target=app_id, detail=ticket)
    return await _back_to_case(request, f"工单 {ticket} 已关闭。")


@needs(UNMASK)
async def case_photo(request: web.Request) -> web.StreamResponse:
    """A photo the citizen sent (an ID card, a certificate: personal data in full, so a logged POST),
    fetched from WeChat's temporary media when viewed: nothing of it is kept here."""
    s = services_of(request)
    staff = staff_of(request)
    app_id, media_id = request.match_info["app_id"], request.match_info["media_id"]
    view = await case_lookup.case(s, app_id, staff.account.role)
    if view is None:
        return _error(request, 404, NOT_IN_REACH)
    received = case_lookup.photos(view.document, await s.registry.supplied(app_id))
    if not any(media_id in p["media_ids"] for p in received):
        return _error(request, 404, "此申请没有这张照片。")
    if s.push.api is None:
        return _error(request, 503, "此进程不连接微信，取不到照片。")
    await audit(request, "view_photo", target=app_id, detail=media_id)
    try:
        content_type, body = await s.push.api.get_media(media_id)
    except MediaUnavailable as e:
        if e.errcode == INVALID_MEDIA:
            return _error(request, 410, "微信服务器上已没有这张照片（临时素材只保存3天），请联系申请人到窗口提供原件。")
        return _error(request, 502, f"暂时取不到照片（微信 errcode {e.errcode}），请稍后再试。")
    if not content_type.startswith("image/"):
        return _error(request, 502, "微信返回的不是图片。")
    return web.Response(body=body, content_type=content_type, headers={"Content-Disposition": f'inline; filename="{media_id}"'})


@needs(PRINT)
async def case_print(request: web.Request) -> web.StreamResponse:
    s = services_of(request)
    staff = staff_of(request)
    app_id = request.match_info["app_id"]
    view = await case_lookup.case(s, app_id, staff.account.role)
    if view is None:
        return _error(request, 404, NOT_IN_REACH)
    try:
        relations = {o["value"]: o["label"] for o in s.pack.questions.get("agent_relation", {}).get("options", [])}
        pdf = application_form_pdf(view.document, relations)
    except NoForm:
        return _error(request, 404, "本地区的政策包没有可打印的申请表。")
    await audit(request, "print_form", target=app_id)
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{app_id}.pdf"'},
    )


@needs(AUDIT)
async def audit_page(request: web.Request) -> web.Response:
    s = services_of(request)
    before = request.query.get("before") or None
    if before is not None and not re.fullmatch(r"\d{1,20}-\d{1,20}", before):
        raise web.HTTPNotFound()
    entries = await audit_log(s).latest(100, before=before)
    await audit(request, "view_audit")
    return render(request, "audit.html", entries=entries)


@needs(SESSIONS)
async def sessions_list(request: web.Request) -> web.Response:
    return await _sessions(request)


async def _sessions(request: web.Request, *, notice: str = "", refused: str = "", status: int = 200) -> web.Response:
    s = services_of(request)
    return render(
        request,
        "sessions.html",
        status=status,
        sessions=await sessions_page.coming_sessions(s),
        waiting=await sessions_page.mental_waiting(s),
        notice=notice,
        refused=refused,
    )


@needs(SCHEDULE)
async def session_move(request: web.Request) -> web.Response:
    """`bot sessions move` itself: validated before anything moves, journalled, reminders rescheduled."""
    day = request.match_info["day"]
    new_day = str((await request.post()).get("new_day", "")).strip()
    s = services_of(request)
    try:
        said = await operator_cli.move_session(s, day, new_day)
    except OperatorError as e:
        await audit(request, "move_session_refused", target=day, detail=f"{new_day[:30]}: {e}")
        return await _sessions(request, refused=f"改期未执行：{e}", status=409)
    await audit(request, "move_session", target=day, detail=f"{new_day}; {said.strip()}")
    return await _sessions(request, notice=f"已改期：{said.strip()}（已通知预约的申请人，评定提醒按新日期发送）。")


@needs(SCHEDULE)
async def session_announce(request: web.Request) -> web.Response:
    """`bot sessions announce --kind mental`: everyone waiting is booked on that day and told."""
    form = await request.post()
    day = str(form.get("day", "")).strip()
    period, place = str(form.get("period", "")).strip() or None, str(form.get("place", "")).strip() or None
    try:
        said = await operator_cli.announce_mental(services_of(request), day, period, place)
    except OperatorError as e:
        await audit(request, "announce_refused", target=day[:30], detail=str(e))
        return await _sessions(request, refused=f"通知未发出：{e}", status=409)
    await audit(request, "announce_mental", target=day, detail=said.strip())
    return await _sessions(request, notice=f"已通知：{said.strip()}。")


async def _roster_day(request: web.Request) -> str:
    day = request.match_info["day"]
    if not await sessions_page.is_session_day(services_of(request), day):
        raise web.HTTPNotFound()
    return day


@needs(PRINT)
async def session_roster(request: web.Request) -> web.Response:
    """Names and phones for the hospital: a POST, logged, printed with the page's print stylesheet."""
    day = await _roster_day(request)
    columns, rows = await sessions_page.roster(services_of(request), day)
    await audit(request, "roster", target=day, detail=f"{len(rows)}人")
    return render(request, "roster.html", day=day, columns=columns, rows=rows)


@needs(PRINT)
async def session_roster_xlsx(request: web.Request) -> web.Response:
    day = await _roster_day(request)
    body = await sessions_page.roster_xlsx(services_of(request), day)
    await audit(request, "roster_xlsx", target=day)
    return web.Response(
        body=body,
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="roster-{day}.xlsx"'},
    )


# -- window intake (一窗) ---------------------------------------------------------------------------
def window_intakes(request: web.Request) -> WindowIntakes:
    s = services_of(request)
    return WindowIntakes(s.redis.client, request.app[CONVERSATIONS_OF](), s.registry)


@needs(INTAKE)
async def intake_page(request: web.Request) -> web.Response:
    return render(request, "intake.html", intake=None, reply="", submitted=None)


@needs(INTAKE)
async def intake_start(request: web.Request) -> web.Response:
    intakes = window_intakes(request)
    intake = await intakes.start(staff_of(request).account.username)
    await audit(request, "window_intake", target=intake.user)
    reply = await intakes.say(intake, "你好")
    return render(request, "intake.html", intake=intake, reply=reply, submitted=None)


async def _own_intake(request: web.Request):
    intakes = window_intakes(request)
    intake = await intakes.get(request.match_info["intake_id"], staff_of(request).account.username)
    if intake is None:
        raise web.HTTPNotFound(text="没有这次受理，或不是您开始的。")
    return intakes, intake


@needs(INTAKE)
async def intake_answer(request: web.Request) -> web.Response:
    """One answer of the walk-in citizen, typed by the clerk, through the chat's own conversation."""
    intakes, intake = await _own_intake(request)
    answer = str((await request.post()).get("answer", "")).strip()
    before = await intakes.submitted(intake)
    reply = await intakes.say(intake, answer) if answer else ""
    submitted = await intakes.submitted(intake)
    if submitted and not before:
        await audit(request, "window_submitted", target=submitted)
    return render(request, "intake.html", intake=intake, reply=reply, submitted=submitted)


@needs(INTAKE)
async def intake_receipt(request: web.Request) -> web.Response:
    """The receipt to hand over: the application id and a 绑定码, from the conversation's own “绑定码”."""
    intakes, intake = await _own_intake(request)
    submitted = await intakes.submitted(intake)
    if submitted is None:
        return _error(request, 409, "申请还没有提交，不能打印回执。")
    bind = await intakes.hand_over(intake, submitted)
    await audit(request, "window_receipt", target=submitted)
    return render(request, "receipt.html", application_id=submitted, bind=bind)
