"""The staff console in a real headless Chromium against the real app and Redis: log in, the
dashboard, search by ID number, the masked case page and 显示完整, roles, the login limit.

The browser harness is the simulator's (tests/test_simulator_browser.py): skipped without Chromium
locally, a failure in CI. Screenshots of the dashboard and a case page go to docs/console/.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from bot.console.accounts import FAILURES_PER_ACCOUNT
from tests.conftest import start_client
from tests.console_support import APPLICANT, APPLY_FOR_CERTIFICATE, PASSWORD, ROLES, add_staff, submit_application
from tests.test_simulator_browser import WAIT_S, _driver, _require_browser

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parent.parent / "docs" / "console"


class Console:
    """The console as a clerk uses it: plain forms, no script."""

    def __init__(self, driver, base_url: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.base, self.By = driver, base_url, By
        self.wait = WebDriverWait(driver, WAIT_S)

    def find(self, css: str):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.find("body").text

    def log_in(self, username: str, password: str = PASSWORD) -> None:
        self.d.get(self.base + "/console/")
        assert self.d.current_url.endswith("/console/login"), self.d.current_url
        self.find("#username").send_keys(username)
        self.find("#password").send_keys(password)
        self.submit("#login")

    def submit(self, css: str) -> None:
        old = self.find("html")
        self.find(css).click()
        self.wait.until(lambda d: old != d.find_element(self.By.CSS_SELECTOR, "html"))
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def log_out(self) -> None:
        self.submit("header form button")
        assert self.d.current_url.endswith("/console/login")

    def nav(self) -> list[str]:
        return [a.text for a in self.d.find_elements(self.By.CSS_SELECTOR, "header nav a")]


def _scenario(driver, page: Console, case_id: str) -> None:
    from selenium.webdriver.support.ui import Select

    driver.set_window_size(1280, 900)
    page.log_in("clerk")
    assert "今日概况" in page.text(), page.text()
    assert page.nav() == ["首页", "查询案件", "窗口受理", "评定场次"]
    assert page.find("#tile-today strong").text == "1"
    driver.save_screenshot(str(DOCS / "dashboard.png"))

    page.find("#tile-today").click()
    assert case_id in page.text()

    driver.get(page.base + "/console/search")
    Select(page.find("#kind")).select_by_visible_text("身份证号")
    page.find("#q").send_keys(APPLICANT["id_number"])
    page.submit("#search")
    assert driver.current_url.endswith(f"/console/cases/{case_id}"), driver.current_url
    shown = page.text()
    assert page.find("#case-id").text == case_id
    assert APPLICANT["id_number"] not in shown and APPLICANT["phone"] not in shown and "341723********0017" in shown
    assert "残疾人证办理" in page.find("#services").text
    driver.set_window_size(1280, 1500)  # the whole case page
    driver.save_screenshot(str(DOCS / "case.png"))
    driver.set_window_size(1280, 900)

    page.submit("#unmask")
    full = page.text()
    assert APPLICANT["id_number"] in full and APPLICANT["phone"] in full and "已记入审计日志" in full

    # 打印: the PDF opens in the browser's own viewer (its text is checked in tests/test_console.py).
    driver.set_window_size(1000, 1100)  # the viewer fits the page to the window it opens in
    page.find("#print").click()
    page.wait.until(lambda d: d.current_url.endswith(f"/cases/{case_id}/print"))
    page.wait.until(lambda d: d.execute_script("return document.contentType") == "application/pdf")
    time.sleep(2)  # the viewer draws the page after the document loaded; it has no signal to wait for
    driver.save_screenshot(str(DOCS / "application-form.png"))
    driver.set_window_size(1280, 900)

    # 一窗: a walk-in citizen's answers typed by the clerk, through the chat's own questions.
    driver.get(page.base + "/console/intake")
    page.submit("#start-intake")
    assert "请问是谁申请" in page.find("#reply").text
    for answer in APPLY_FOR_CERTIFICATE[1:]:
        page.find("#answer").send_keys(answer)
        page.submit("#send")
    assert "申请已提交" in page.find("#reply").text, page.find("#reply").text
    walk_in = page.find("#submitted").text
    assert walk_in != case_id
    page.submit("#receipt")
    assert walk_in in page.find("#receipt").text and "绑定码：" in page.find("#receipt").text
    driver.save_screenshot(str(DOCS / "window-receipt.png"))
    driver.get(page.base + "/console/")
    page.log_out()

    # Each role sees its own menu, and this certificate-only case only where it may.
    for role, nav, sees_case, buttons in (
        ("disability_officer", ["首页", "查询案件", "窗口受理", "评定场次"], True, ["unmask", "print", "record-call"]),
        ("civil_affairs", ["查询案件"], False, []),
        ("medical_insurance", ["查询案件"], False, []),
        ("human_resources", ["查询案件"], False, []),
        ("admin", ["首页", "查询案件", "评定场次", "审计日志"], True, []),
    ):
        page.log_in(role)
        assert page.nav() == nav, (role, page.nav())
        driver.get(page.base + f"/console/cases/{case_id}")
        if sees_case:
            shown = [b.get_attribute("id") for b in driver.find_elements(page.By.CSS_SELECTOR, "main form button")]
            assert shown == buttons and APPLICANT["id_number"] not in page.text(), (role, shown)
        else:
            assert "不能查看" in page.find("#message").text, role
        if "首页" not in nav:
            driver.get(page.base + "/console/")
            assert "没有这项权限" in page.find("#message").text
        page.log_out()

    # The admin reads who showed the case in full, from where.
    page.log_in("admin")
    assert page.nav() == ["首页", "查询案件", "评定场次", "审计日志"]
    driver.get(page.base + "/console/audit")
    rows = [r.text for r in driver.find_elements(page.By.CSS_SELECTOR, "#audit tr")]
    assert any("clerk" in r and "显示完整个人信息" in r and case_id in r and "127.0.0.1" in r for r in rows), rows
    page.log_out()

    # Wrong passwords: refused, then the account is locked even for the right one.
    for _ in range(FAILURES_PER_ACCOUNT):
        page.log_in("clerk", "a wrong password")
        assert "用户名或密码不对" in page.find("#message").text
    page.log_in("clerk")
    assert "错误次数过多" in page.find("#message").text
    # Nothing the page needs was blocked (the Content-Security-Policy allows no inline script or style);
    # the 401/403/404 answers above are the only failed loads.
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert [m for m in severe if "Failed to load resource" not in m] == [], severe


def _in_browser(base_url: str, case_id: str, shots: Path, scenario=None) -> None:
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    driver = _driver(profile)
    try:
        try:
            (scenario or _scenario)(driver, Console(driver, base_url), case_id)
        except BaseException:
            driver.save_screenshot(str(shots / "console-failure.png"))
            print(f"screenshot: {shots / 'console-failure.png'}\npage: {driver.current_url}")
            raise
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def test_each_role_logs_in_a_clerk_finds_a_case_shows_it_in_full_and_prints_it(settings, clock, protocol, tmp_path_factory):
    _require_browser()
    client = await start_client(settings.with_(console=True), clock)
    try:
        case_id = await submit_application(client, protocol)
        await add_staff(client, *ROLES)
        DOCS.mkdir(parents=True, exist_ok=True)
        base = str(client.make_url("")).rstrip("/")
        shots = tmp_path_factory.mktemp("console-screenshots")
        await asyncio.to_thread(_in_browser, base, case_id, shots)
    finally:
        await client.close()


def _approval_form_scenario(driver, page: Console, case_id: str) -> None:
    driver.set_window_size(1000, 1300)  # the viewer fits the page to the window it opens in
    page.log_in("clerk")
    driver.get(page.base + f"/console/cases/{case_id}")
    assert page.find("#case-id").text == case_id
    page.find("#print").click()
    page.wait.until(lambda d: d.current_url.endswith(f"/cases/{case_id}/print"))
    page.wait.until(lambda d: d.execute_script("return document.contentType") == "application/pdf")
    time.sleep(2)  # the viewer draws the page after the document loaded; it has no signal to wait for
    driver.save_screenshot(str(DOCS / "approval-form.png"))


async def test_hulunbuirs_approval_form_prints_in_the_browser(settings, clock, protocol, tmp_path_factory):
    from tests.console_support import submit_transcript, transcript

    _require_browser()
    script = transcript()
    clock.set(script["now"])
    client = await start_client(settings.with_(console=True, region="hulunbuir"), clock)
    try:
        case_id = await submit_transcript(client, protocol, script)
        await add_staff(client, "clerk")
        base = str(client.make_url("")).rstrip("/")
        shots = tmp_path_factory.mktemp("console-screenshots")
        await asyncio.to_thread(_in_browser, base, case_id, shots, _approval_form_scenario)
    finally:
        await client.close()


def _move_scenario(old: str, new: str, bad: str):
    def scenario(driver, page: Console, case_id: str) -> None:
        driver.set_window_size(1280, 900)
        page.log_in("disability_officer")
        driver.get(page.base + "/console/sessions")
        # A weekend: refused before anything moves, in one line.
        page.find(f"#new-day-{old}").send_keys(bad)
        page.submit(f"#move-{old}")
        refused = page.find("#refused").text
        assert refused.startswith("改期未执行：") and "not a working day" in refused and "\n" not in refused, refused
        assert old in page.find("#sessions").text
        page.find(f"#new-day-{old}").send_keys(new)
        page.submit(f"#move-{old}")
        assert f"moved 1 bookings from {old} to {new}" in page.find("#notice").text, page.text()
        row = next(r.text for r in driver.find_elements(page.By.CSS_SELECTOR, "#sessions tr") if r.text.startswith(new))
        assert "已改期" in row and "1/" in row, row
        driver.save_screenshot(str(DOCS / "sessions-moved.png"))
        driver.get(page.base + f"/console/cases/{case_id}")
        assert new in page.text()
        page.log_out()

    return scenario


async def test_an_officer_moves_a_session_and_the_citizens_reminder_follows(settings, clock, protocol, tmp_path_factory):
    from datetime import date, timedelta

    from bot.app import SERVICES

    _require_browser()
    client = await start_client(settings.with_(console=True), clock)
    try:
        case_id = await submit_application(client, protocol)
        await add_staff(client, "disability_officer")
        s = client.server.app[SERVICES]
        old = (await s.outbox.get(case_id))["appointment"]["session_date"]
        new = s.calendar.add_workdays(date.fromisoformat(old), 3).isoformat()
        weekend = date.fromisoformat(old) + timedelta(days=(5 - date.fromisoformat(old).weekday()) % 7 or 7)

        def reminder_days() -> set[str]:
            return {rid.split(":")[2] for rid in reminder_ids}

        reminder_ids = [rid for rid, _ in await s.reminders.scheduled() if rid.startswith(f"assess:{case_id}:")]
        assert reminder_ids and reminder_days() == {old}
        base = str(client.make_url("")).rstrip("/")
        shots = tmp_path_factory.mktemp("console-screenshots")
        await asyncio.to_thread(_in_browser, base, case_id, shots, _move_scenario(old, new, weekend.isoformat()))
        # The old day's reminders are gone, the new day's scheduled, for the same rules.
        scheduled = [rid for rid, _ in await s.reminders.scheduled() if rid.startswith(f"assess:{case_id}:")]
        assert sorted(r.replace(new, old) for r in scheduled) == sorted(reminder_ids), scheduled
        assert all(f":{new}:" in r for r in scheduled) and (await s.registry.meta(case_id))["appointment"]["session_date"] == new
    finally:
        await client.close()
