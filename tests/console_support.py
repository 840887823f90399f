"""What the console's tests share: an application submitted through the real /wechat endpoint, staff
accounts made through the real account store, and logging in through the real login form."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient

from bot.app import SERVICES
from bot.console.accounts import Accounts
from bot.wechat_protocol import WeChatProtocol
from tests.conftest import WeChatUser

# A citizen applying for a disability certificate for himself (the simulator's browser test says the same).
APPLICANT = {
    "name": "张三",
    "id_number": "341723195503020017",
    "phone": "13812345678",
    "address": "青阳县蓉城镇五溪村12号",
    "birth_date": "1955-03-02",
}
APPLY_FOR_CERTIFICATE = [
    "你好",
    "1",
    "残疾证",
    APPLICANT["address"],  # the 户口本 address, in the screen: it says the 户口 is in 青阳县
    "2",
    "4",
    APPLICANT["name"],
    APPLICANT["id_number"],
    APPLICANT["phone"],
    "0",  # the checklist
    "1",  # the first session
    "1",  # the summary, and the declaration printed with it
    "1",  # the consent
]
PASSWORD = "correct-horse-battery-staple"
ROLES = ("clerk", "disability_officer", "civil_affairs", "medical_insurance", "human_resources", "admin")
_openids = itertools.count()


async def submit_application(client: TestClient, protocol: WeChatProtocol) -> str:
    """A citizen applies in WeChat; the application id the bot answers with."""
    user = WeChatUser(client, f"oConsole{next(_openids):04d}{os.getpid()}", protocol)
    reply = ""
    for text in APPLY_FOR_CERTIFICATE:
        reply = await user.say(text)
    assert "申请已提交" in reply, reply
    return reply.split("申请编号 ")[1].split("。")[0]


async def add_staff(client: TestClient, *roles: str) -> None:
    """One account per role, named after it (clerk, admin, ...), all with PASSWORD."""
    accounts = Accounts(client.server.app[SERVICES].redis.client)
    for role in roles:
        await accounts.add(role, role, PASSWORD, name=f"测试{role}")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def log_in(client: TestClient, username: str, password: str = PASSWORD, *, expect: int = 302):
    """Log in through the form (the login page first, for its CSRF token); the response."""
    client.session.cookie_jar.clear()
    page = await client.get("/console/login")
    assert page.status == 200
    resp = await client.post(
        "/console/login",
        data={"csrf": csrf_of(await page.text()), "username": username, "password": password},
        allow_redirects=False,
    )
    assert resp.status == expect, (resp.status, (await resp.text())[:300])
    return resp


async def page_csrf(client: TestClient, path: str = "/console/search") -> str:
    resp = await client.get(path)
    assert resp.status == 200, resp.status
    return csrf_of(await resp.text())


HULUNBUIR_TRANSCRIPT = Path(__file__).parent / "transcripts" / "09_hulunbuir_mail_and_reasons.yaml"


def transcript(path: Path = HULUNBUIR_TRANSCRIPT) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


async def submit_transcript(client: TestClient, protocol: WeChatProtocol, script: dict) -> str:
    """Replay a transcript's messages (tests/transcripts/, checked there) to its submission; the application id."""
    user = WeChatUser(client, f"oConsoleT{next(_openids):04d}{os.getpid()}", protocol)
    reply = ""
    for step in script["steps"]:
        if "say" in step:
            reply = await user.say(str(step["say"]))
        elif "voice" in step:
            reply = await user.voice(str(step["voice"]))
        elif "image" in step:
            reply = await user.image(str(step["image"]))
    found = re.search(r"申请编号 ([A-Z0-9]+)", reply)
    assert found, reply
    return found.group(1)
