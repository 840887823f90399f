"""The /simulator page in a real headless Chromium, talking to the real bot through /wechat.

Needs /usr/bin/chromium and /usr/bin/chromedriver (scripts/install-browser.sh). Without them
the test is skipped locally, but fails when CI is set: CI must really run it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 15

pytestmark = pytest.mark.browser


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} missing (run scripts/install-browser.sh as root)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser test cannot run: {reason}")
    pytest.skip(reason)


def _driver(profile_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile_dir}",
        "--window-size=430,900",
        "--lang=zh-CN",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The explicit driver path means Selenium Manager never tries to download anything.
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


class Page:
    """The simulator as a person uses it."""

    def __init__(self, driver, base_url: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.base, self.By = driver, base_url, By
        self.wait = WebDriverWait(driver, WAIT_S)

    def open(self) -> None:
        self.d.get(self.base + "/simulator")
        self.wait.until(lambda d: d.find_element(self.By.TAG_NAME, "body").get_attribute("data-ready"))
        assert self.d.find_element(self.By.TAG_NAME, "body").get_attribute("data-ready") == "1", self.notices()

    def bot_texts(self) -> list[str]:
        return [e.text for e in self.d.find_elements(self.By.CSS_SELECTOR, ".bubble.bot")]

    def notices(self) -> list[str]:
        return [e.text for e in self.d.find_elements(self.By.CSS_SELECTOR, ".system")]

    def _reply_after(self, action) -> str:
        """Do `action`, wait for the one new bot bubble and the page to be idle, return its text."""
        before = len(self.bot_texts())
        action()

        def settled(d):
            body = d.find_element(self.By.TAG_NAME, "body")
            errors = d.find_elements(self.By.CSS_SELECTOR, ".system.error")
            if errors:
                raise AssertionError(f"simulator shows an error: {errors[-1].text}")
            return body.get_attribute("data-pending") == "0" and len(self.bot_texts()) > before

        self.wait.until(settled, message=f"no bot reply; notices: {self.notices()}")
        texts = self.bot_texts()
        assert len(texts) == before + 1, texts[before:]
        return texts[-1]

    def type(self, text: str) -> None:
        box = self.d.find_element(self.By.ID, "input")
        box.clear()
        box.send_keys(text)

    def say(self, text: str) -> str:
        self.type(text)
        return self._reply_after(lambda: self.d.find_element(self.By.ID, "send").click())

    def voice(self, text: str) -> str:
        self.type(text)
        return self._reply_after(lambda: self.d.find_element(self.By.ID, "voice").click())

    def voice_unrecognized(self) -> str:
        def act():
            self.d.find_element(self.By.ID, "voice-failed").click()
            self.d.find_element(self.By.ID, "voice").click()

        return self._reply_after(act)

    def image(self) -> str:
        return self._reply_after(lambda: self.d.find_element(self.By.ID, "image").click())

    def menu(self, label: str) -> str:
        button = self.d.find_element(self.By.XPATH, f"//nav[@id='menu']/button[normalize-space()='{label}']")
        return self._reply_after(button.click)

    def browser_errors(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


def _diagnose(driver, page: Page, shots: Path, name: str) -> None:
    """A screenshot (outside the repo) and what the page showed, printed next to the failure."""
    shot = shots / f"{name}-{int(time.time())}.png"
    try:
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        print("notices:", page.notices())
        print("bot bubbles:", page.bot_texts())
        print("browser log:", driver.get_log("browser"))
    except Exception as e:  # the browser may be gone; keep the original failure
        print(f"could not save diagnostics: {e!r}")


def _in_browser(base_url: str, shots: Path, name: str, scenario) -> None:
    """Run `scenario(driver, page)` in a fresh headless Chromium; on failure keep a screenshot."""
    profile = tempfile.mkdtemp(prefix="sim-chromium-")
    driver = _driver(profile)
    try:
        page = Page(driver, base_url)
        try:
            scenario(driver, page)
        except BaseException:
            _diagnose(driver, page, shots, name)
            raise
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _scenario(driver, page: Page) -> None:
    page.open()
    menu_labels = [b.text for b in driver.find_elements(page.By.CSS_SELECTOR, "#menu button")]
    assert menu_labels == ["我要申请", "查进度", "办事帮助", "找工作人员"], menu_labels
    openid = driver.find_element(page.By.ID, "openid").text
    assert openid.startswith("oSim") and len(openid) == 28, openid

    # The page's pure-JS SHA-1 (used off a secure context) agrees with hashlib.
    for sample in ("", "abc", "devtoken1700000000123", "你好]]>" * 30):
        js = driver.execute_script("return window.wechatSimulator.sha1Fallback(arguments[0])", sample)
        assert js == hashlib.sha1(sample.encode()).hexdigest(), sample

    reply = page.say("你好")
    assert "请问是谁申请" in reply, reply
    # Multi-line replies keep their line breaks on screen.
    assert "\n" in reply, reply

    assert "返回" in page.menu("办事帮助")

    reply = page.voice("1")
    assert "要办哪些事" in reply, reply
    # The voice bubble shows what recognition heard.
    assert "1" in driver.find_elements(page.By.CSS_SELECTOR, ".bubble.user.voice")[-1].text

    reply = page.voice_unrecognized()
    assert "没听清" in reply, reply

    reply = page.image()
    assert reply.strip(), "empty bot bubble after an image"

    # Reload: same user, the conversation is still on screen.
    count = len(page.bot_texts())
    page.open()
    assert driver.find_element(page.By.ID, "openid").text == openid
    assert len(page.bot_texts()) == count

    # A new user starts with an empty chat and a new openid; 关注 greets them.
    driver.find_element(page.By.ID, "new-user").click()
    assert driver.find_element(page.By.ID, "openid").text != openid
    assert page.bot_texts() == []
    reply = page._reply_after(lambda: driver.find_element(page.By.ID, "subscribe").click())
    assert "欢迎关注" in reply and "请问是谁申请" in reply, reply

    assert page.browser_errors() == []


async def test_simulator_talks_to_the_real_bot(live_bot, tmp_path_factory):
    _require_browser()
    shots = tmp_path_factory.mktemp("simulator-screenshots")  # outside the repo
    # Selenium blocks; the bot serves from this test's event loop, so drive it from a thread.
    await asyncio.to_thread(_in_browser, live_bot, shots, "simulator-failure", _scenario)


APPLY_FOR_CERTIFICATE = [
    "你好",
    "1",
    "残疾证",
    "青阳县蓉城镇五溪村12号",  # the 户籍地址, asked where the 户口 decides (it says: here)
    "2",
    "4",
    "张三",
    "341723195503020017",
    "13812345678",
    "0",
    "1",  # the first session
    "1",  # the summary, and the declaration printed with it
    "1",  # the consent
]


def _status_update_scenario(driver, page: Page) -> None:
    """A newcomer applies in the simulator, the intake sandbox says 已受理, and the push shows up."""
    import json
    import urllib.request

    page.open()
    driver.find_element(page.By.ID, "new-user").click()
    reply = ""
    for text in APPLY_FOR_CERTIFICATE:
        reply = page.say(text)
    assert "申请已提交" in reply, reply
    reference = reply.split("申请编号 ")[1].split("。")[0]

    def emit() -> int:
        body = json.dumps({"application_id": reference, "status": "accepted", "note": "窗口已收件"}).encode()
        request = urllib.request.Request(
            page.base + "/sandbox/intake/emit", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    # Delivery to the sandbox runs in the background; the event can be emitted once it arrived.
    deadline = time.monotonic() + WAIT_S
    while emit() != 200:
        assert time.monotonic() < deadline, "the application never reached the intake sandbox"
        time.sleep(0.2)
    page.wait.until(
        lambda d: any("残疾人证：已受理" in t for t in page.bot_texts()),
        message=f"no pushed status update; bubbles: {page.bot_texts()[-3:]}",
    )
    pushed = driver.find_elements(page.By.CSS_SELECTOR, ".bubble.bot.pushed")
    assert pushed and "通知" in pushed[-1].text and reference in pushed[-1].text


async def test_a_newcomer_sees_a_status_update_arrive_in_the_simulator(live_bot, tmp_path_factory):
    _require_browser()
    shots = tmp_path_factory.mktemp("simulator-screenshots")
    await asyncio.to_thread(_in_browser, live_bot, shots, "simulator-status-failure", _status_update_scenario)


def _template_scenario(clock):
    """Three days after the citizen last wrote, the result comes as a template: the page shows it as WeChat
    does, a card with the title and one row per keyword (the status among them), no first line, no remark."""
    import json
    import urllib.request

    def scenario(driver, page: Page) -> None:
        page.open()
        driver.find_element(page.By.ID, "new-user").click()
        reply = ""
        for text in APPLY_FOR_CERTIFICATE:
            reply = page.say(text)
        reference = reply.split("申请编号 ")[1].split("。")[0]
        clock.advance(days=3)

        def emit() -> int:
            body = json.dumps({"application_id": reference, "status": "accepted"}).encode()
            request = urllib.request.Request(
                page.base + "/sandbox/intake/emit", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return resp.status
            except urllib.error.HTTPError as e:
                return e.code

        deadline = time.monotonic() + WAIT_S
        while emit() != 200:
            assert time.monotonic() < deadline, "the application never reached the intake sandbox"
            time.sleep(0.2)
        page.wait.until(
            lambda d: d.find_elements(page.By.CSS_SELECTOR, ".bubble.bot.notice"),
            message=f"no template card; bubbles: {page.bot_texts()[-3:]}",
        )
        card = driver.find_elements(page.By.CSS_SELECTOR, ".bubble.bot.notice")[-1]
        assert card.find_element(page.By.CSS_SELECTOR, ".notice-title").text == "业务受理通知"
        rows = [
            [r.find_element(page.By.CSS_SELECTOR, c).text for c in (".notice-label", ".notice-value")]
            for r in card.find_elements(page.By.CSS_SELECTOR, ".notice-row")
        ]
        assert ["申请编号", reference] in rows and ["办理状态", "已受理"] in rows, rows
        assert page.browser_errors() == []

    return scenario


async def test_a_template_notice_shows_as_wechat_renders_it(live_bot, clock, tmp_path_factory):
    _require_browser()
    shots = tmp_path_factory.mktemp("simulator-screenshots")
    await asyncio.to_thread(_in_browser, live_bot, shots, "simulator-template-failure", _template_scenario(clock))
