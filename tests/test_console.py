"""The staff console through the real app on loopback and a real Redis: switched on and reachable
only as configured, roles, CSRF, the login limit, search, the masked case page, 显示完整 and the
printed form, each staff action in the audit log."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from bot.app import SERVICES
from bot.console import keys
from bot.console.accounts import FAILURES_PER_ACCOUNT, FAILURES_PER_ADDRESS, Accounts
from bot.console.audit import AuditLog
from bot.console.staff_sessions import IDLE_TIMEOUT_S
from tests.conftest import start_client
from tests.console_support import (
    APPLICANT,
    PASSWORD,
    ROLES,
    add_staff,
    csrf_of,
    log_in,
    page_csrf,
    submit_application,
)


@pytest.fixture
async def console(settings, clock):
    client = await start_client(settings.with_(console=True), clock)
    yield client
    await client.close()


@pytest.fixture
async def case_id(console, protocol) -> str:
    return await submit_application(console, protocol)


async def audit_entries(client):
    s = client.server.app[SERVICES]
    return await AuditLog(s.redis.client, s.clock).latest(1000)


async def test_the_console_is_off_unless_switched_on(bot_client):
    assert (await bot_client.get("/console/login")).status == 404
    assert (await bot_client.get("/console")).status == 404


async def test_the_console_answers_only_its_configured_networks(settings, clock):
    client = await start_client(settings.with_(console=True, console_networks="10.12.0.0/16"), clock)
    try:
        assert (await client.get("/console/login")).status == 404
        assert (await client.post("/console/login", data={})).status == 404
        assert (await client.get("/console", allow_redirects=False)).status == 404
    finally:
        await client.close()


def test_a_malformed_network_setting_is_refused_in_one_line(settings):
    from bot.settings import ConfigError

    with pytest.raises(ConfigError, match="BOT_CONSOLE_NETWORKS"):
        settings.with_(console=True, console_networks="10.12.0.0/33").validate()


async def test_pages_need_a_login_and_the_login_form_its_own_token(console):
    resp = await console.get("/console/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/login"
    await add_staff(console, "clerk")
    # The right password, but no token from the login page (a cross-site login): refused.
    console.session.cookie_jar.clear()
    resp = await console.post("/console/login", data={"username": "clerk", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 403 and "CSRF" in await resp.text() and resp.headers["X-Frame-Options"] == "DENY"
    resp = await log_in(console, "clerk")
    assert resp.headers["Location"] == "/console/"
    cookie = resp.cookies["console_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    page = await console.get("/console/")
    assert page.status == 200 and "今日概况" in await page.text()
    assert page.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_nothing_is_shown(console, case_id):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    for data in ({}, {"csrf": "forged"}):
        resp = await console.post(f"/console/cases/{case_id}/unmask", data=data)
        assert resp.status == 403
        body = await resp.text()
        assert "CSRF" in body and APPLICANT["id_number"] not in body
        resp = await console.post("/console/search", data={**data, "kind": "id_number", "q": APPLICANT["id_number"]})
        assert resp.status == 403
    assert not [e for e in await audit_entries(console) if e.action in ("unmask", "search")]
    # With the token the same POST works.
    resp = await console.post(f"/console/cases/{case_id}/unmask", data={"csrf": await page_csrf(console)})
    assert resp.status == 200 and APPLICANT["id_number"] in await resp.text()


async def test_a_wrong_password_five_times_locks_the_account_even_for_the_right_one(console):
    await add_staff(console, "clerk", "admin")
    for _ in range(FAILURES_PER_ACCOUNT):
        resp = await log_in(console, "clerk", "not the password at all", expect=401)
        assert "用户名或密码不对" in await resp.text()
    resp = await log_in(console, "clerk", expect=429)
    assert "错误次数过多" in await resp.text()
    # Another account from the same address is not locked by that.
    await log_in(console, "admin")
    actions = [e.action for e in await audit_entries(console)]
    assert actions.count("login_failed") == FAILURES_PER_ACCOUNT and "login_limited" in actions
    # The lock lasts the window, in Redis's time.
    ttl = await console.server.app[SERVICES].redis.client.ttl(keys.login_failures_of_account("clerk"))
    assert 0 < ttl <= 15 * 60


async def test_too_many_wrong_logins_from_one_address_lock_that_address(console):
    await add_staff(console, "clerk")
    for n in range(FAILURES_PER_ADDRESS):
        await log_in(console, f"guess{n}", "whatever-password", expect=401)
    await log_in(console, "clerk", expect=429)


async def test_a_disabled_account_cannot_log_in_and_its_session_ends(console):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    await Accounts(console.server.app[SERVICES].redis.client).set_disabled("clerk")
    assert (await console.get("/console/", allow_redirects=False)).status == 302
    await log_in(console, "clerk", expect=401)


async def test_a_session_ends_after_its_idle_timeout(console):
    await add_staff(console, "clerk")
    resp = await log_in(console, "clerk")
    key = keys.session(resp.cookies["console_session"].value)
    redis = console.server.app[SERVICES].redis.client
    assert 0 < await redis.ttl(key) <= IDLE_TIMEOUT_S
    await redis.expire(key, 5)
    assert (await console.get("/console/search")).status == 200
    assert await redis.ttl(key) > 5  # a request starts the idle timeout again
    await redis.delete(key)  # what the timeout does
    resp = await console.get("/console/search", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/console/login"


async def test_logout_needs_the_token_and_ends_the_session(console):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    assert (await console.post("/console/logout", data={})).status == 403
    resp = await console.post("/console/logout", data={"csrf": await page_csrf(console)}, allow_redirects=False)
    assert resp.status == 302
    assert (await console.get("/console/search", allow_redirects=False)).status == 302


@pytest.mark.parametrize(
    ("role", "dashboard", "sees_case", "unmask", "audit"),
    [
        ("clerk", 200, True, 200, 403),
        ("disability_officer", 200, True, 200, 403),
        # The case is a disability certificate only: the 残联's, none of these departments'.
        ("civil_affairs", 403, False, 404, 403),
        ("medical_insurance", 403, False, 404, 403),
        ("human_resources", 403, False, 404, 403),
        ("admin", 200, True, 403, 200),
    ],
)
async def test_each_role_sees_only_what_it_may(console, case_id, role, dashboard, sees_case, unmask, audit):
    await add_staff(console, role)
    await log_in(console, role)
    assert (await console.get("/console/")).status == dashboard
    assert (await console.get("/console/audit")).status == audit
    page = await console.get(f"/console/cases/{case_id}")
    assert page.status == (200 if sees_case else 404)
    csrf = await page_csrf(console)
    resp = await console.post(f"/console/cases/{case_id}/unmask", data={"csrf": csrf})
    assert resp.status == unmask
    assert (APPLICANT["id_number"] in await resp.text()) == (unmask == 200)
    resp = await console.post(
        "/console/search", data={"csrf": csrf, "kind": "application_id", "q": case_id}, allow_redirects=False
    )
    assert resp.status == (303 if sees_case else 200)
    refused = [e for e in await audit_entries(console) if e.action == "refused"]
    assert len(refused) == (dashboard == 403) + (audit == 403) + (unmask == 403)
    assert all(e.user == role and e.address == "127.0.0.1" for e in refused)


def test_a_viewer_sees_the_cases_of_its_departments_services():
    from bot.console.roles import may_see, role
    from dialogs.pack import load_pack

    for region in ("qingyang", "hulunbuir"):
        pack = load_pack(region)
        assert may_see(role("civil_affairs"), pack, ["disability_certificate", "nursing_subsidy"])
        assert may_see(role("civil_affairs"), pack, ["living_subsidy"])
        assert not may_see(role("civil_affairs"), pack, ["disability_certificate", "medical_assistance"])
        assert may_see(role("medical_insurance"), pack, ["medical_assistance"])
        assert may_see(role("human_resources"), pack, ["pension_subsidy"])
        assert not may_see(role("human_resources"), pack, ["living_subsidy", "nursing_subsidy"])
        assert all(may_see(role(r), pack, ["disability_certificate"]) for r in ("clerk", "disability_officer", "admin"))


async def test_search_finds_a_case_by_its_numbers_and_by_id_number_in_full_only(console, case_id):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    csrf = await page_csrf(console)

    async def search(kind: str, q: str, birth_date: str = ""):
        return await console.post(
            "/console/search", data={"csrf": csrf, "kind": kind, "q": q, "birth_date": birth_date}, allow_redirects=False
        )

    for kind, q, birth in (
        ("application_id", case_id, ""),
        ("application_id", case_id.lower(), ""),
        ("id_number", APPLICANT["id_number"], ""),
        ("name_birth", APPLICANT["name"], APPLICANT["birth_date"]),
    ):
        resp = await search(kind, q, birth)
        assert resp.status == 303, (kind, await resp.text())
        assert resp.headers["Location"] == f"/console/cases/{case_id}"
    for kind, q, birth in (
        ("id_number", APPLICANT["id_number"][:14], ""),  # part of the number: nothing
        ("id_number", APPLICANT["id_number"][-4:], ""),
        ("name_birth", APPLICANT["name"], ""),  # a name alone: nothing
        ("name_birth", APPLICANT["name"], "1960-01-01"),
        ("application_id", "QY20000101XXXXXX", ""),
        ("application_no", "NO-SUCH-NUMBER", ""),
    ):
        resp = await search(kind, q, birth)
        assert resp.status == 200 and "没有找到" in await resp.text(), (kind, q)
    # Searches are logged, never with what was searched for.
    searches = [e for e in await audit_entries(console) if e.action == "search"]
    assert len(searches) == 10
    assert not any(APPLICANT["id_number"] in (e.detail + e.target) or APPLICANT["name"] in e.detail for e in searches)


async def test_search_by_the_intakes_number(console, case_id):
    await console.server.app[SERVICES].registry.set_application_no(case_id, "SL-2026-000123")
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    resp = await console.post(
        "/console/search",
        data={"csrf": await page_csrf(console), "kind": "application_no", "q": "SL-2026-000123"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == f"/console/cases/{case_id}"


async def test_the_case_page_is_masked_until_shown_in_full_and_that_is_logged(console, case_id):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    page = await console.get(f"/console/cases/{case_id}")
    html = await page.text()
    assert page.status == 200 and case_id in html
    for secret in (APPLICANT["id_number"], APPLICANT["phone"], APPLICANT["address"], APPLICANT["name"]):
        assert secret not in html, secret
    assert "341723********0017" in html and "138****5678" in html and "张*" in html
    assert "残疾人证办理" in html and "县残联" in html
    assert re.search(r"已提交|已送达受理平台", html)
    assert "显示完整" in html and "打印" in html
    resp = await console.post(f"/console/cases/{case_id}/unmask", data={"csrf": csrf_of(html)})
    full = await resp.text()
    for secret in (APPLICANT["id_number"], APPLICANT["phone"], APPLICANT["address"], APPLICANT["name"]):
        assert secret in full, secret
    assert "已记入审计日志" in full
    entries = await audit_entries(console)
    unmask = [e for e in entries if e.action == "unmask"]
    assert len(unmask) == 1
    e = unmask[0]
    assert (e.user, e.role, e.target, e.address) == ("clerk", "clerk", case_id, "127.0.0.1")
    clock = console.server.app[SERVICES].clock
    assert e.at.startswith(clock.today().isoformat())
    assert [x.action for x in entries if x.target == case_id][::-1] == ["view_case", "unmask"]
    # Nothing in the log is personal.
    raw = await console.server.app[SERVICES].redis.client.xrange(keys.AUDIT_STREAM)
    assert APPLICANT["id_number"].encode() not in repr(raw).encode()


async def test_the_admin_reads_the_audit_log_and_cannot_change_it(console, case_id):
    await add_staff(console, "clerk", "admin")
    await log_in(console, "clerk")
    await console.post(f"/console/cases/{case_id}/unmask", data={"csrf": await page_csrf(console)})
    await log_in(console, "admin")
    page = await console.get("/console/audit")
    html = await page.text()
    assert page.status == 200 and "显示完整个人信息" in html and case_id in html and "127.0.0.1" in html
    assert '<form method="post" action="/console/audit' not in html
    assert (await console.post("/console/audit", data={"csrf": csrf_of(html)})).status == 405
    assert (await console.get("/console/audit?before=1-0%20OR")).status == 404


async def test_the_dashboard_counts_todays_submissions_and_links_each_list(console, case_id):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    html = await (await console.get("/console/")).text()
    today = re.search(r'id="tile-today"><strong>(\d+)</strong>', html)
    assert today and today.group(1) == "1"
    for state in ("queued", "retrying", "failed"):
        assert f'href="/console/deliveries?state={state}"' in html
    listing = await (await console.get("/console/today")).text()
    assert f'href="/console/cases/{case_id}"' in listing and "残疾人证" in listing
    everything = await (await console.get("/console/deliveries")).text()
    assert case_id in everything
    assert (await console.get("/console/deliveries?state=nonsense")).status == 404


async def test_the_printed_form_is_the_annex_prefilled_and_printing_is_logged(console, case_id):
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    csrf = await page_csrf(console)
    resp = await console.post(f"/console/cases/{case_id}/print", data={"csrf": csrf})
    assert resp.status == 200 and resp.content_type == "application/pdf"
    text = PdfReader(io.BytesIO(await resp.read())).pages[0].extract_text()
    document = await console.server.app[SERVICES].outbox.get(case_id)
    for expected in (
        "扶残助困一件事申请表",
        "受理单位",
        case_id,
        APPLICANT["name"],
        APPLICANT["id_number"],
        APPLICANT["phone"],
        APPLICANT["address"],
        "残疾人证办理",
        "困难残疾人生活补贴",
        "申请人（签字）",
        document["declaration"]["text"][:20],
    ):
        assert expected in text.replace("\n", ""), expected
    compact = text.replace(" ", "")
    assert "√残疾人证办理" in compact.replace("\n", "") and "√困难残疾人生活补贴" not in compact.replace("\n", "")
    session = document["appointment"]["session_date"]
    if session:
        y, m, d = (int(part) for part in session.split("-"))
        assert f"{y}年{m}月{d}日" in compact
    assert [e.target for e in await audit_entries(console) if e.action == "print_form"] == [case_id]
    # A viewer may not print.
    await add_staff(console, "admin")
    await log_in(console, "admin")
    assert (await console.post(f"/console/cases/{case_id}/print", data={"csrf": await page_csrf(console)})).status == 403


async def test_every_role_can_be_made_and_none_exists_by_default(console):
    accounts = Accounts(console.server.app[SERVICES].redis.client)
    assert await accounts.list() == []
    await add_staff(console, *ROLES)
    assert [a.role.code for a in await accounts.list()] == sorted(ROLES)


async def test_the_first_admin_is_made_by_the_cli_and_its_errors_are_one_line(console, redis_url, tmp_path, monkeypatch, capsys):
    import asyncio
    import sys

    from bot.cli import main
    from tests.conftest import TEST_DATA_KEY

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BOT_DATA_KEY", TEST_DATA_KEY)
    monkeypatch.setenv("BOT_VAR_DIR", str(tmp_path / "var"))

    async def bot(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    # No account, no default password: nobody gets in.
    await log_in(console, "admin", "admin", expect=401)
    assert await bot("users", "add", "root", "--role", "admin", "--name", "王管理", stdin="short\n") == (
        2,
        "",
        "bot: the password must have at least 12 characters\n",
    )
    assert await bot("users", "add", "root", "--role", "admin", "--name", "王管理", stdin=PASSWORD + "\n") == (
        0,
        "added root (admin)\n",
        "",
    )
    code, _, err = await bot("users", "add", "root", "--role", "clerk", stdin=PASSWORD + "\n")
    assert code == 2 and err.count("\n") == 1 and "exists" in err
    code, _, err = await bot("users", "add", "Bad Name", "--role", "clerk", stdin=PASSWORD + "\n")
    assert code == 2 and err.count("\n") == 1 and err.startswith("bot: a user name")
    code, _, err = await bot("users", "reset", "nobody", stdin=PASSWORD + "\n")
    assert (code, err) == (2, "bot: no user 'nobody'\n")
    await log_in(console, "root")
    assert "王管理（管理员）" in await (await console.get("/console/")).text()

    assert (await bot("users", "disable", "root"))[:2] == (0, "disabled root\n")
    await log_in(console, "root", expect=401)
    assert (await bot("users", "enable", "root"))[0] == 0
    assert (await bot("users", "reset", "root", stdin="another-long-passphrase\n"))[0] == 0
    await log_in(console, "root", expect=401)
    await log_in(console, "root", "another-long-passphrase")
    assert (await bot("users", "list"))[1] == "root\tadmin\t王管理\tactive\n"
    # The hash is argon2's; the password is nowhere in Redis.
    redis = console.server.app[SERVICES].redis.client
    stored = await redis.hget(keys.user("root"), "hash")
    assert stored.startswith(b"$argon2id$")
    for key in await redis.keys("console:*"):
        if await redis.type(key) == b"hash":
            assert b"another-long-passphrase" not in repr(await redis.hgetall(key)).encode()


async def test_a_failed_delivery_shows_on_the_dashboard_and_a_clerk_sends_it_again(settings, clock, protocol):
    import asyncio
    import time

    from bot.console.cases import ledger
    from tests.fake_intake import FakeIntake

    intake = FakeIntake("console-intake-secret")
    await intake.start()
    intake.always = "400"
    client = await start_client(settings.with_(console=True, intake_url=intake.url, intake_secret=intake.secret), clock)
    try:
        case_id = await submit_application(client, protocol)
        deliveries = ledger(client.server.app[SERVICES])
        deadline = time.monotonic() + 10
        while ((await deliveries.status(case_id)) or {}).get("state") != "failed":
            assert time.monotonic() < deadline, await deliveries.status(case_id)
            await asyncio.sleep(0.05)
        await add_staff(client, "clerk", "civil_affairs")
        await log_in(client, "clerk")
        html = await (await client.get("/console/")).text()
        assert re.search(r'id="tile-failed" class="bad"><strong>1</strong>', html), html
        listing = await (await client.get("/console/deliveries?state=failed")).text()
        assert f'href="/console/cases/{case_id}"' in listing and "HTTP 400 invalid_document" in listing
        page = await (await client.get(f"/console/cases/{case_id}")).text()
        assert "送达失败" in page and 'id="retry"' in page
        assert (await client.post(f"/console/cases/{case_id}/retry", data={})).status == 403  # no CSRF token

        intake.always = None  # the county fixed what the intake refused
        resp = await client.post(f"/console/cases/{case_id}/retry", data={"csrf": csrf_of(page)})
        assert resp.status == 200 and "已重新排队" in await resp.text()
        while ((await deliveries.status(case_id)) or {}).get("state") != "delivered":
            assert time.monotonic() < deadline + 10, await deliveries.status(case_id)
            await asyncio.sleep(0.05)
        assert intake.accepted[case_id] == 1
        # Only a failed one can be put back; and a viewer may not.
        resp = await client.post(f"/console/cases/{case_id}/retry", data={"csrf": csrf_of(page)})
        assert "只有送达失败的申请" in await resp.text()
        assert [e.target for e in await audit_entries(client) if e.action == "retry_delivery"] == [case_id]
        await log_in(client, "civil_affairs")
        assert (await client.post(f"/console/cases/{case_id}/retry", data={"csrf": await page_csrf(client)})).status == 403
    finally:
        await client.close()
        await intake.stop()


async def test_the_audit_log_keeps_the_packs_retention_and_drops_only_older_entries(console):
    s = console.server.app[SERVICES]
    days = s.pack.raw["retention"]["audit_days"]
    assert days >= 183 and "网络安全法" in s.pack.raw["retention"]["audit_basis"]  # six months at least
    redis = s.redis.client
    seconds, _ = await redis.time()
    # Entries written long ago (their stream ids are their Redis time): one past the retention, one within.
    past = f"{(seconds - days * 86400 - 3600) * 1000}-0"
    within = f"{(seconds - days * 86400 + 3600) * 1000}-0"
    for entry_id in (past, within):
        await redis.xadd(keys.AUDIT_STREAM, {"at": "", "user": "old", "action": "login"}, id=entry_id)
    log = AuditLog(redis, s.clock, retention_s=days * 86400)
    await log.record(user="clerk", role="clerk", action="login", address="127.0.0.1")
    kept = [e.id for e in await log.latest()]
    assert past not in kept and within in kept and len(kept) == 2


async def test_the_sessions_page_counts_bookings_and_the_roster_is_a_logged_post(console, case_id):
    from openpyxl import load_workbook

    session_day = (await console.server.app[SERVICES].outbox.get(case_id))["appointment"]["session_date"]
    await add_staff(console, "clerk", "admin", "civil_affairs")
    await log_in(console, "clerk")
    html = await (await console.get("/console/")).text()
    # The next session (the citizen may have been offered a later one: booking closes before a session).
    assert 'id="tile-session"' in html and 'href="/console/sessions"' in html
    page = await (await console.get("/console/sessions")).text()
    assert re.search(rf"<td>{session_day}[^<]*</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>1/\d+</td>", page), page
    assert APPLICANT["name"] not in page and APPLICANT["phone"] not in page
    csrf = csrf_of(page)
    assert (await console.post(f"/console/sessions/{session_day}/roster", data={})).status == 403
    resp = await console.post(f"/console/sessions/{session_day}/roster", data={"csrf": csrf})
    roster = await resp.text()
    assert resp.status == 200 and case_id in roster and APPLICANT["name"] in roster and APPLICANT["phone"] in roster
    resp = await console.post(f"/console/sessions/{session_day}/roster.xlsx", data={"csrf": csrf})
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(await resp.read())).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:2] == ["序号", "姓名"] and rows[1][:2] == ["1", APPLICANT["name"]] and case_id in rows[1]
    assert (await console.post("/console/sessions/2026-13-40/roster", data={"csrf": csrf})).status == 404
    logged = [(e.action, e.target) for e in await audit_entries(console) if e.action.startswith("roster")]
    assert logged == [("roster_xlsx", session_day), ("roster", session_day)]
    # The admin sees the counts, not the names; a viewer neither.
    await log_in(console, "admin")
    assert (await console.get("/console/sessions")).status == 200
    resp = await console.post(f"/console/sessions/{session_day}/roster", data={"csrf": await page_csrf(console)})
    assert resp.status == 403 and APPLICANT["name"] not in await resp.text()
    await log_in(console, "civil_affairs")
    assert (await console.get("/console/sessions")).status == 403


async def assessment_reminders(s, app_id: str) -> set[str]:
    """The session days this application's assessment reminders are scheduled for."""
    return {rid.split(":")[2] for rid, _ in await s.reminders.scheduled() if rid.startswith(f"assess:{app_id}:")}


async def test_a_session_is_moved_from_the_console_by_the_cli_operation_and_a_bad_move_is_one_line(console, case_id):
    from datetime import date, timedelta

    s = console.server.app[SERVICES]
    old = (await s.outbox.get(case_id))["appointment"]["session_date"]
    new = s.calendar.add_workdays(date.fromisoformat(old), 3).isoformat()
    assert await assessment_reminders(s, case_id) == {old}
    await add_staff(console, "clerk", "disability_officer", "admin")
    # The window clerk sees the sessions, but may not move one.
    await log_in(console, "clerk")
    page = await (await console.get("/console/sessions")).text()
    assert f'id="move-{old}"' not in page
    resp = await console.post(f"/console/sessions/{old}/move", data={"csrf": csrf_of(page), "new_day": new})
    assert resp.status == 403 and await s.book.holders(old) == [case_id]

    await log_in(console, "disability_officer")
    csrf = await page_csrf(console, "/console/sessions")
    assert (await console.post(f"/console/sessions/{old}/move", data={"new_day": new})).status == 403  # no token
    yesterday = (s.clock.today() - timedelta(days=1)).isoformat()
    weekend = date.fromisoformat(old) + timedelta(days=(5 - date.fromisoformat(old).weekday()) % 7 or 7)
    for bad, why in ((yesterday, "in the past"), (weekend.isoformat(), "not a working day"), ("2027-02-30", "real date")):
        resp = await console.post(f"/console/sessions/{old}/move", data={"csrf": csrf, "new_day": bad})
        html = await resp.text()
        refused = re.search(r'id="refused">([^<]*)<', html).group(1)
        assert resp.status == 409 and refused.startswith("改期未执行：") and why in refused and "\n" not in refused, refused
    assert await s.book.holders(old) == [case_id] and await s.book.moves() == {}

    resp = await console.post(f"/console/sessions/{old}/move", data={"csrf": csrf, "new_day": new})
    html = await resp.text()
    assert resp.status == 200 and f"moved 1 bookings from {old} to {new}" in html
    assert await s.book.holders(new) == [case_id] and await s.book.holders(old) == []
    assert (await s.registry.meta(case_id))["appointment"]["session_date"] == new
    assert await assessment_reminders(s, case_id) == {new}  # the old day's gone, the new day's scheduled
    assert re.search(rf"<td>{new}（原定[^<]*已改期）</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>1/\d+</td>", html), html
    # The roster of the day it was moved to.
    assert case_id in await (await console.post(f"/console/sessions/{new}/roster", data={"csrf": csrf})).text()
    logged = [(e.action, e.target) for e in await audit_entries(console) if e.action.startswith("move_session")]
    assert logged[0] == ("move_session", old) and [a for a, _ in logged[1:]] == ["move_session_refused"] * 3


async def test_a_mental_session_is_announced_from_the_console_to_the_waiting_list(console):
    s = console.server.app[SERVICES]
    await s.book.join_waitlist("mental", "QY20990101WAIT01")
    await add_staff(console, "admin", "clerk")
    await log_in(console, "clerk")
    assert (await console.post("/console/sessions/announce", data={"csrf": await page_csrf(console), "day": "x"})).status == 403
    await log_in(console, "admin")
    csrf = await page_csrf(console, "/console/sessions")
    resp = await console.post("/console/sessions/announce", data={"csrf": csrf, "day": "2027-13-01"})
    assert resp.status == 409 and "通知未发出：" in await resp.text() and await s.book.waitlist("mental") == ["QY20990101WAIT01"]
    day = s.calendar.add_workdays(s.clock.today(), 10).isoformat()
    resp = await console.post("/console/sessions/announce", data={"csrf": csrf, "day": day, "place": "县医院"})
    assert resp.status == 200 and "announced" in await resp.text() and "to 1 applicants" in await resp.text()
    assert await s.book.waitlist("mental") == [] and await s.book.holders(f"mental-{day}") == ["QY20990101WAIT01"]
    assert [(e.action, e.target) for e in await audit_entries(console) if e.action.startswith("announce")] == [
        ("announce_mental", day),
        ("announce_refused", "2027-13-01"),
    ]


async def test_hulunbuirs_approval_form_is_printed_prefilled_with_the_guardian_and_the_reasons(settings, clock, protocol):
    from tests.console_support import submit_transcript, transcript

    script = transcript()
    clock.set(script["now"])
    client = await start_client(settings.with_(console=True, region="hulunbuir"), clock)
    try:
        case_id = await submit_transcript(client, protocol, script)
        await add_staff(client, "clerk")
        await log_in(client, "clerk")
        resp = await client.post(f"/console/cases/{case_id}/print", data={"csrf": await page_csrf(client)})
        assert resp.status == 200 and resp.content_type == "application/pdf"
        text = PdfReader(io.BytesIO(await resp.read())).pages[0].extract_text().replace(" ", "").replace("\n", "")
        document = await client.server.app[SERVICES].outbox.get(case_id)
        a, agent = document["applicant"], document["agent"]
        for expected in (
            "残疾人两项补贴申请审批表",
            f"申请地：{document['routing']['application_place']}",
            "申请时间：2026年11月23日",
            case_id,
            a["name"],
            a["id_number"],
            a["phone"],
            a["household_address"],
            document["disability"]["certificate_no"],
            "■一级残疾",
            "□二级残疾",
            "■视力残疾",
            "□精神残疾",
            "■困难残疾人生活补贴",
            "■重度残疾人护理补贴",
            "监护人信息",
            agent["name"],
            "子女",
            agent["id_number"],
            agent["residence"],
            "困难残疾人生活补贴申请理由：双眼失明，生活不能自理，家庭困难",
            "申请人（代理人）签字（捺印）",
            "旗县区残联认定审核意见",
            "内民政发〔2022〕110号附件4",
        ):
            assert expected in text, expected
        statuses = set(document["hardship"]["statuses"])
        assert ("■城镇" in text) == ("dibao_urban" in statuses) and ("■农村" in text) == ("dibao_rural" in statuses)
    finally:
        await client.close()


async def test_a_failed_login_names_only_accounts_that_exist(console):
    await add_staff(console, "clerk")
    await log_in(console, "clerk", "wrong-password-here", expect=401)
    await log_in(console, "my-secret-passphrase", "", expect=401)  # the password typed as the name
    failed = [e.target for e in await audit_entries(console) if e.action == "login_failed"]
    assert failed == ["（不存在的用户名）", "clerk"]


async def test_a_push_wechat_refused_shows_on_the_dashboard_and_its_case(console, case_id):
    import asyncio
    import time

    s = console.server.app[SERVICES]
    # A notice to an openid WeChat does not accept (40003): the serving process's push loop gives up on it.
    await s.push.enqueue("", "您的申请有新进展", key=f"{case_id}:status_notice:")
    deadline = time.monotonic() + 10
    while (await s.push.depth())["failed"] != 1:
        assert time.monotonic() < deadline, await s.push.depth()
        await asyncio.sleep(0.05)
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    html = await (await console.get("/console/")).text()
    assert re.search(r'id="tile-pushes" class="bad"><strong>1</strong>', html) and 'href="/console/pushes"' in html
    listing = await (await console.get("/console/pushes")).text()
    assert f'href="/console/cases/{case_id}"' in listing and "40003" in listing and "status_notice" in listing
    page = await (await console.get(f"/console/cases/{case_id}")).text()
    assert "发送失败的微信通知" in page and "40003" in page
    # 重新发送: queued again (WeChat refuses it again here, so it comes back to the failed list).
    push_id = (await s.push.failed())[0]["id"]
    assert (await console.post(f"/console/cases/{case_id}/pushes/{push_id}/resend", data={})).status == 403
    resp = await console.post(f"/console/cases/{case_id}/pushes/{push_id}/resend", data={"csrf": csrf_of(page)})
    assert resp.status == 200 and "已重新排队发送" in await resp.text()
    resp = await console.post(f"/console/cases/{case_id}/pushes/0123456789ab/resend", data={"csrf": csrf_of(page)})
    assert "不是此申请发送失败的通知" in await resp.text()
    assert [(e.action, e.detail) for e in await audit_entries(console) if e.action == "resend_push"] == [("resend_push", push_id)]
    deadline = time.monotonic() + 10
    while [p["attempts"] for p in await s.push.failed()] != [1]:
        assert time.monotonic() < deadline, await s.push.failed()
        await asyncio.sleep(0.05)


async def test_a_service_past_its_expected_date_is_overdue_on_the_dashboard_and_its_case(console, case_id):
    from datetime import date, timedelta

    s = console.server.app[SERVICES]
    await add_staff(console, "clerk")
    await log_in(console, "clerk")
    html = await (await console.get("/console/")).text()
    assert re.search(r'id="tile-overdue" ><strong>0</strong>', html), html
    expected = (await s.registry.status(case_id))["disability_certificate"]["expected"]
    # The day after the expected date, still not finished.
    s.clock.set(f"{date.fromisoformat(expected) + timedelta(days=1)}T10:00:00")
    html = await (await console.get("/console/")).text()
    assert re.search(r'id="tile-overdue" class="bad"><strong>1</strong>', html), html
    listing = await (await console.get("/console/overdue")).text()
    assert f'href="/console/cases/{case_id}"' in listing and "残疾人证" in listing
    page = await (await console.get(f"/console/cases/{case_id}")).text()
    assert "已逾期" in page and "在微信关注此申请的用户：1 个" in page


async def test_a_call_to_the_applicant_is_recorded_sealed_on_the_case_and_in_the_audit_log(console, case_id):
    await add_staff(console, "clerk", "admin")
    await log_in(console, "clerk")
    csrf = await page_csrf(console)
    note = "约周三上午来窗口补交户口簿"
    assert (await console.post(f"/console/cases/{case_id}/calls", data={"outcome": "reached", "note": note})).status == 403
    resp = await console.post(f"/console/cases/{case_id}/calls", data={"csrf": csrf, "outcome": "reached", "note": note})
    html = await resp.text()
    assert resp.status == 200 and "联系记录已保存" in html
    assert re.search(r"<td>测试clerk</td><td>已接通</td><td>约周三上午来窗口补交户口簿</td>", html), html
    resp = await console.post(f"/console/cases/{case_id}/calls", data={"csrf": csrf, "outcome": "nonsense"})
    assert "请选择联系结果" in await resp.text()
    redis = console.server.app[SERVICES].redis.client
    stored = await redis.lrange(keys.calls(case_id), 0, -1)
    assert len(stored) == 1 and note.encode() not in stored[0]  # sealed
    days = console.server.app[SERVICES].pack.application_days
    assert 0 < await redis.ttl(keys.calls(case_id)) <= days * 86400
    logged = [e for e in await audit_entries(console) if e.action == "record_call"]
    assert [(e.user, e.target, e.detail) for e in logged] == [("clerk", case_id, "已接通")]
    assert note not in repr(await redis.xrange(keys.AUDIT_STREAM))
    await log_in(console, "admin")  # the admin runs the system, not cases
    resp = await console.post(f"/console/cases/{case_id}/calls", data={"csrf": await page_csrf(console), "outcome": "reached"})
    assert resp.status == 403


async def test_the_audit_log_pages_back_a_hundred_entries_at_a_time(console):
    s = console.server.app[SERVICES]
    log = AuditLog(s.redis.client, s.clock)
    for n in range(130):
        await log.record(user="clerk", role="clerk", action="view_case", address="127.0.0.1", target=f"QY2026120{n:07d}")
    await add_staff(console, "admin")
    await log_in(console, "admin")
    assert (await console.get("/console/login", allow_redirects=False)).headers["Location"] == "/console/"
    first = await (await console.get("/console/audit")).text()
    assert first.count("<tr><td>") == 100 and "QY20261200000129" in first and "QY20261200000029" not in first
    older = re.search(r'href="/console/audit\?before=([0-9-]+)"', first)
    assert older
    second = await (await console.get(f"/console/audit?before={older.group(1)}")).text()
    assert "QY20261200000029" in second and "QY20261200000000" in second and "QY20261200000129" not in second


async def test_a_walk_in_application_entered_at_the_window_reaches_the_intake_and_is_followed_in_wechat(console, protocol):
    import asyncio
    import time

    from bot.console.cases import ledger
    from tests.conftest import WeChatUser
    from tests.console_support import APPLY_FOR_CERTIFICATE

    await add_staff(console, "clerk", "disability_officer", "civil_affairs")
    await log_in(console, "civil_affairs")
    assert (await console.post("/console/intake", data={"csrf": await page_csrf(console)})).status == 403
    await log_in(console, "clerk")
    csrf = await page_csrf(console)
    assert (await console.post("/console/intake", data={})).status == 403  # no CSRF token
    html = await (await console.post("/console/intake", data={"csrf": csrf})).text()
    assert "请问是谁申请" in html  # the chat's own first question
    intake_id = re.search(r'action="/console/intake/([A-Za-z0-9_-]+)"', html).group(1)
    for answer in APPLY_FOR_CERTIFICATE[1:]:  # "你好" was the start
        resp = await console.post(f"/console/intake/{intake_id}", data={"csrf": csrf, "answer": answer})
        assert resp.status == 200
        html = await resp.text()
    assert "申请已提交" in html, html
    case_id = re.search(r'id="submitted">([A-Z0-9]+)<', html).group(1)
    # The same document, the same delivery as from WeChat.
    s = console.server.app[SERVICES]
    document = await s.outbox.get(case_id)
    assert document["applicant"]["id_number"] == APPLICANT["id_number"] and document["services"] == ["disability_certificate"]
    assert document["channel"] == "window"  # what it came through, not WeChat
    assert "渠道 窗口受理" in await (await console.get(f"/console/cases/{case_id}")).text()
    deadline = time.monotonic() + 10
    while ((await ledger(s).status(case_id)) or {}).get("state") != "delivered":
        assert time.monotonic() < deadline, await ledger(s).status(case_id)
        await asyncio.sleep(0.05)
    # Another clerk cannot drive this intake.
    await log_in(console, "disability_officer")
    other = await console.post(f"/console/intake/{intake_id}", data={"csrf": await page_csrf(console), "answer": "1"})
    assert other.status == 404
    await log_in(console, "clerk")
    receipt = await (await console.post(f"/console/intake/{intake_id}/receipt", data={"csrf": await page_csrf(console)})).text()
    assert case_id in receipt
    code = re.search(r"绑定码：(\d{6})", receipt).group(1)
    meta = await s.registry.meta(case_id)
    assert not any(v.startswith("oWin") for v in meta["viewers"])  # notices go to who binds, not to the window
    again = await (await console.post(f"/console/intake/{intake_id}/receipt", data={"csrf": await page_csrf(console)})).text()
    assert case_id in again and "绑定码不再显示" in again
    # The citizen binds in WeChat with the receipt's code and follows the application there.
    citizen = WeChatUser(console, "oCitizenAfterWindow0001", protocol)
    assert "绑定成功" in await citizen.say(f"绑定 {code}")
    assert case_id in await citizen.say("进度")
    actions = [(e.action, e.user) for e in await audit_entries(console) if e.action.startswith("window")]
    assert actions == [("window_receipt", "clerk")] * 2 + [("window_submitted", "clerk"), ("window_intake", "clerk")]
    assert (await s.registry.meta(case_id))["viewers"] == ["oCitizenAfterWindow0001"]


def test_the_staff_address_behind_a_proxy_is_the_nearest_forwarded_hop_that_is_no_proxy():
    from bot.console.networks import client_address, parse_networks

    proxies = parse_networks("127.0.0.1/32,10.0.0.0/30")
    assert client_address("10.12.3.4", "1.2.3.4", proxies) == "10.12.3.4"  # not from a proxy: its header is ignored
    assert client_address("127.0.0.1", None, proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", "10.12.3.4", proxies) == "10.12.3.4"
    assert client_address("127.0.0.1", "10.12.3.4, 10.0.0.2", proxies) == "10.12.3.4"  # two proxies
    assert client_address("127.0.0.1", "10.12.9.9, 8.8.8.8", proxies) == "8.8.8.8"  # a forged first hop is not believed
    assert client_address("127.0.0.1", "unknown", proxies) == "unknown"


async def test_behind_a_configured_proxy_the_console_answers_and_logs_the_forwarded_address(settings, clock):
    intranet = settings.with_(console=True, console_networks="10.12.0.0/16")
    direct = await start_client(intranet, clock)
    try:  # without BOT_CONSOLE_PROXIES anyone's X-Forwarded-For is ignored
        assert (await direct.get("/console/login", headers={"X-Forwarded-For": "10.12.3.4"})).status == 404
    finally:
        await direct.close()
    client = await start_client(intranet.with_(console_proxies="127.0.0.1/32"), clock)
    try:
        assert (await client.get("/console/login")).status == 404  # the proxy itself is not the intranet
        assert (await client.get("/console/login", headers={"X-Forwarded-For": "8.8.8.8"})).status == 404
        assert (await client.get("/console/login", headers={"X-Forwarded-For": "10.12.0.1, 8.8.8.8"})).status == 404
        await add_staff(client, "clerk")
        hop = {"X-Forwarded-For": "10.12.3.4"}
        page = await client.get("/console/login", headers=hop)
        assert page.status == 200
        resp = await client.post(
            "/console/login",
            data={"csrf": csrf_of(await page.text()), "username": "clerk", "password": PASSWORD},
            headers=hop,
            allow_redirects=False,
        )
        assert resp.status == 302
        assert not resp.cookies["console_session"]["secure"]  # plain HTTP all the way
        [entry] = [e for e in await audit_entries(client) if e.action == "login"]
        assert entry.address == "10.12.3.4"
        # The proxy terminated TLS: the cookies are Secure.
        tls = {**hop, "X-Forwarded-Proto": "https"}
        client.session.cookie_jar.clear()
        page = await client.get("/console/login", headers=tls)
        assert page.cookies["console_login"]["secure"]
        # The browser sends a Secure cookie over HTTPS to the proxy, which passes it on over HTTP.
        cookie = {"Cookie": f"console_login={page.cookies['console_login'].value}"}
        resp = await client.post(
            "/console/login",
            data={"csrf": csrf_of(await page.text()), "username": "clerk", "password": PASSWORD},
            headers={**tls, **cookie},
            allow_redirects=False,
        )
        assert resp.status == 302 and resp.cookies["console_session"]["secure"]
    finally:
        await client.close()


def test_malformed_proxy_networks_are_refused(settings):
    from bot.settings import ConfigError

    with pytest.raises(ConfigError, match="BOT_CONSOLE_PROXIES"):
        settings.with_(console=True, console_proxies="proxy.local").validate()


async def _nothing_to_push(s) -> bool:
    return await s.push.pending() == 0


async def test_the_case_page_shows_history_bindings_tickets_and_photos_and_the_clerk_revokes_and_closes(
    console, settings, protocol
):
    from datetime import timedelta

    from tests.conftest import WeChatUser
    from tests.test_after_submission import MOTHER_CHILD, apply, post_event, until

    s = console.server.app[SERVICES]
    mother = WeChatUser(console, "oCaseMother01", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    code = (await mother.say("绑定码")).split("绑定码：")[1][:6]
    aunt = WeChatUser(console, "oCaseAunt0001", protocol)
    assert "绑定成功" in await aunt.say(f"绑定 {code}")
    now = s.clock.now().isoformat(timespec="seconds")
    for n, status in enumerate(("accepted", "materials_missing"), 1):
        event = {"event_id": f"ev-case-{n}", "application_id": ref, "service": "nursing_subsidy", "status": status}
        assert (await post_event(console, settings, {**event, "note": "缺户口簿首页" if n == 2 else "", "at": now})).status == 200
    await mother.image("media-case-a")
    ask = await mother.image("media-case-b")
    number = next(line.split(" ", 1)[0] for line in ask.splitlines() if "护理补贴：" in line)
    await mother.say(number)
    ticket = (await mother.say("催办")).split("工单 ")[1][:6]

    assert await until(lambda: _nothing_to_push(s))  # the serving process's push loop sends the notices

    await add_staff(console, "clerk", "admin")
    await log_in(console, "clerk")
    dashboard = await (await console.get("/console/")).text()
    assert re.search(r'id="tile-tickets" class="bad"><strong>1</strong>', dashboard) and 'href="/console/tickets"' in dashboard
    listing = await (await console.get("/console/tickets")).text()
    assert ticket in listing and f'href="/console/cases/{ref}"' in listing and "13912345678" not in listing
    page = await (await console.get(f"/console/cases/{ref}")).text()
    history = page.split('id="history"')[1].split("</table>")[0]
    # Every status the nursing subsidy was given, in order (the registry's status keeps only the last).
    labels = [s.pack.status["labels"][k] for k in ("submitted", "accepted", "materials_missing")]
    assert all(label in history for label in labels) and "缺户口簿首页" in history
    assert history.index(labels[1]) < history.index(labels[2])
    bindings = page.split('id="bindings"')[1].split("</table>")[0]
    assert "oCaseM…" in bindings and "oCaseA…" in bindings and "oCaseMother01" not in page and "oCaseAunt0001" not in page
    photos = page.split('id="photos"')[1].split("</table>")[0]
    assert 'id="photo-media-case-a"' in photos and 'id="photo-media-case-b"' in photos
    assert ticket in page.split('id="tickets"')[1] and "待回电" in page
    # What the push queue sent to each follower: the 补齐材料 notice to the mother and to the aunt.
    pushes = page.split('id="pushes"')[1].split("</table>")[0]
    for who in ("oCaseM…", "oCaseA…"):
        assert re.search(rf"<td>补齐材料</td><td>{who}</td><td>已发送</td>", pushes), (who, pushes)
    # The history is kept like the application's other keys.
    stored = b"".join(await s.redis.client.lrange(f"app:{{{ref}}}:history", 0, -1))
    assert "缺户口簿首页".encode() not in stored  # the note sealed

    csrf = csrf_of(page)
    revoke = re.search(rf'action="(/console/cases/{ref}/bindings/[0-9a-f]+/revoke)"', page).group(1)
    assert len(re.findall(r"/bindings/[0-9a-f]+/revoke", page)) == 1  # only the family member, not the applicant
    assert (await console.post(revoke, data={})).status == 403
    done = await (await console.post(revoke, data={"csrf": csrf})).text()
    assert "已解除该家属的绑定" in done and (await s.registry.meta(ref))["viewers"] == ["oCaseMother01"]
    assert ref not in await aunt.say("进度")
    done = await (await console.post(f"/console/cases/{ref}/tickets/{ticket}/close", data={"csrf": csrf})).text()
    assert f"工单 {ticket} 已关闭" in done and "已关闭（clerk" in done
    again = await (await console.post(f"/console/cases/{ref}/tickets/{ticket}/close", data={"csrf": csrf})).text()
    assert "不是此申请的未结工单" in again
    assert re.search(r'id="tile-tickets" ><strong>0</strong>', await (await console.get("/console/")).text())
    assert ticket not in await mother.say("催办")  # asked again after the call back: a new ticket
    logged = [(e.action, e.target) for e in await audit_entries(console) if e.action in ("revoke_binding", "close_ticket")]
    assert logged == [("close_ticket", ref), ("revoke_binding", ref)]
    # A photo is fetched from WeChat's temporary media when viewed (a logged POST), and only this case's.
    from tests.conftest import photo_jpeg

    resp = await console.post(f"/console/cases/{ref}/photos/media-case-a", data={"csrf": csrf})
    assert resp.status == 200 and resp.content_type == "image/jpeg" and await resp.read() == photo_jpeg()
    assert (await console.post(f"/console/cases/{ref}/photos/media-case-a", data={})).status == 403
    assert (await console.post(f"/console/cases/{ref}/photos/media-other", data={"csrf": csrf})).status == 404
    logged = [(e.action, e.detail) for e in await audit_entries(console) if e.action == "view_photo"]
    assert logged == [("view_photo", "media-case-a")]
    # WeChat keeps temporary media 3 days: then the page says so (its clock is the bot's in development).
    s.clock.set((s.clock.now() + timedelta(days=4)).isoformat())
    resp = await console.post(f"/console/cases/{ref}/photos/media-case-b", data={"csrf": csrf})
    assert resp.status == 410 and "临时素材只保存3天" in await resp.text()
    # The administrator sees it all, but may neither revoke nor close, nor open a photo.
    await log_in(console, "admin")
    page = await (await console.get(f"/console/cases/{ref}")).text()
    assert "/revoke" not in page and "/close" not in page and "/photos/" not in page and "media-case-a、media-case-b" in page
    assert (await console.post(f"/console/cases/{ref}/tickets/T00002/close", data={"csrf": csrf_of(page)})).status == 403
