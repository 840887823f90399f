"""Foundations, against real processes: one clock, configuration refused before anything starts,
data keys that cannot silently lose citizens' data, and `bot serve --workers 2` that stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.clock import Clock
from bot.wechat_protocol import WeChatProtocol, message_xml
from integrations.data_key_check import canary_key
from integrations.sealing import Sealer, parse_data_keys
from tests.processes import ROOT, BotServe, embedded_servers

KEY_A = "ka:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
KEY_B = "kb:" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="
REAL = {
    "WECHAT_APPID": "wx0123456789abcdef",
    "WECHAT_APPSECRET": "s3cret",
    "WECHAT_TOKEN": "realtoken",
    "INTAKE_URL": "http://127.0.0.1:9/intake",
    "INTAKE_SECRET": "x",
}


def bot(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m bot …` with only `env` of our variables (the test's own WECHAT_/BOT_/REDIS_ are dropped)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "BOT_", "INTAKE_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def refused(out: subprocess.CompletedProcess, variable: str) -> str:
    """Exit 2, one line on stderr naming the variable, no traceback, nothing said about serving."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bot: ") and variable in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "http://" not in out.stdout, (out.stdout, out.stderr)
    return lines[0]


# -- 1. one clock ---------------------------------------------------------------------------------------
def test_no_part_of_the_bot_reads_the_time_except_through_the_clock():
    """The clock (bot/clock.py) and the replay windows of signed messages (its protocol_time) only."""
    reads = re.compile(r"\btime\.time(_ns)?\(|datetime\.now\(|datetime\.utcnow\(|date\.today\(|datetime\.today\(")
    found = []
    for folder in ("bot", "dialogs", "integrations", "content"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "bot" / "clock.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if reads.search(line.split("#")[0]):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []


def test_a_shifted_clock_is_the_same_in_every_process_started_that_day():
    a, b = Clock.shifted_to("2031-02-28"), Clock.shifted_to("2031-02-28")
    assert a.today().isoformat() == "2031-02-28" and a.offset_s == b.offset_s and a.offset_s % 86400 == 0
    frozen = Clock.at("2027-06-15T09:00:00", frozen=True)
    frozen.advance(days=1, hours=1)
    assert frozen.now().isoformat() == "2027-06-16T10:00:00+08:00" and frozen.time() == frozen.time()


async def test_a_push_queued_for_an_old_now_is_not_given_up_at_once(redis_client):
    """`bot reminders send-due --now` in the past queues messages due long ago; the 72 hours are counted
    from the first attempt by the sender's clock, so WeChat being busy once is a retry, not a failure."""
    from integrations.push import PushQueue
    from integrations.wechat_api import SendResult

    class BusyWeChat:
        async def send(self, openid, text, *, idempotency_key, **channel):
            return SendResult("retry", 45009, "busy")

    sealer = Sealer(parse_data_keys(KEY_A))
    cron = PushQueue(redis_client, sealer, None, clock=Clock.at("2026-01-05T09:00:00").time)
    assert await cron.enqueue("oOld", "评定提醒", key="assess:X:3d:oOld")
    sender = PushQueue(redis_client, sealer, BusyWeChat(), clock=Clock().time)
    assert await sender.send_due() == {"sent": 0, "retry": 1, "failed": 0, "duplicate": 0, "expired": 0}
    assert await sender.failed() == []


# -- 2. configuration refused before anything starts -----------------------------------------------------
@pytest.mark.parametrize(
    "env, variable",
    [
        ({**REAL, "INTAKE_URL": "", "BOT_DATA_KEY": KEY_A}, "INTAKE_URL"),
        ({"BOT_DATA_KEY": "k1:not-base64!"}, "BOT_DATA_KEY"),
        ({"BOT_DATA_KEY": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="}, "BOT_DATA_KEY"),  # no key id
        ({"REDIS_URL": "127.0.0.1:6379", "BOT_DATA_KEY": KEY_A}, "REDIS_URL"),
        ({"BOT_PORT": "eighty"}, "BOT_PORT"),
        ({"BOT_TODAY": "2027-13-40"}, "BOT_TODAY"),
        ({"BOT_LOG_FORMAT": "xml"}, "BOT_LOG_FORMAT"),
    ],
    ids=["no-intake", "bad-key", "key-without-id", "bad-redis-url", "bad-port", "bad-today", "bad-log-format"],
)
def test_a_bad_configuration_is_one_line_and_exit_2_before_anything_starts(tmp_path, env, variable):
    var = tmp_path / "var"
    refused(bot(["serve"], {"BOT_VAR_DIR": str(var), **env}), variable)
    assert embedded_servers(var) == [] if var.exists() else True  # no embedded Redis left running


def test_an_operator_command_with_a_bad_configuration_says_so_in_one_line(tmp_path):
    refused(bot(["sessions", "list"], {"BOT_VAR_DIR": str(tmp_path / "var"), "BOT_DATA_KEY": "bad"}), "BOT_DATA_KEY")
    refused(bot(["reminders", "send-due", "--now", "yesterday"], {"BOT_VAR_DIR": str(tmp_path / "var")}), "--now")


def test_an_operator_command_that_cannot_reach_redis_says_so_and_fails(tmp_path):
    out = bot(["outbox", "list"], {"REDIS_URL": "redis://127.0.0.1:1/0", "BOT_DATA_KEY": KEY_A})
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Redis" in out.stderr and "Traceback" not in out.stderr


# -- 3. data keys ------------------------------------------------------------------------------------------
def test_a_shared_redis_without_bot_data_key_is_refused(tmp_path, redis_url):
    """Two processes on one Redis would each make their own var/data.key and restart each other's citizens."""
    for n in (1, 2):
        refused(bot(["serve"], {"REDIS_URL": redis_url, "BOT_VAR_DIR": str(tmp_path / f"var{n}")}), "BOT_DATA_KEY")
    refused(bot(["serve"], {**REAL, "BOT_VAR_DIR": str(tmp_path / "var3")}), "BOT_DATA_KEY")
    assert not (tmp_path / "var1" / "data.key").exists()


def test_a_second_bot_on_a_taken_port_is_refused_in_one_line_and_leaves_the_first_alone(tmp_path):
    """An operator starting `bot serve` twice: the second says so in one line, before it touches var/."""
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        out = bot(["serve"], {"BOT_PORT": str(port), "BOT_VAR_DIR": str(tmp_path / "var")})
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "BOT_PORT" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "var").exists()


def test_keygen_prints_a_key_the_bot_accepts():
    out = bot(["keygen", "--kid", "k2027"], {})
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert parse_data_keys(key)[0][0] == "k2027" and "BOT_DATA_KEY" in out.stderr and "rotate" in out.stderr


async def test_a_changed_key_is_detected_at_start_and_named(tmp_path, redis_url, redis_client):
    first = BotServe(tmp_path / "var", env={"REDIS_URL": redis_url, "BOT_DATA_KEY": KEY_A})
    await first.start()
    first.stop()
    assert await redis_client.exists(canary_key("ka"))
    line = refused(
        bot(["serve"], {"REDIS_URL": redis_url, "BOT_DATA_KEY": KEY_B, "BOT_VAR_DIR": str(tmp_path / "v")}), "BOT_DATA_KEY"
    )
    assert "'ka'" in line  # the key id the data was sealed with
    # Rotation (the new key first, the old one kept) starts, and leaves the new key's canary too.
    rotated = BotServe(tmp_path / "var", env={"REDIS_URL": redis_url, "BOT_DATA_KEY": f"{KEY_B},{KEY_A}"})
    await rotated.start()
    rotated.stop()
    assert await redis_client.exists(canary_key("kb"))


async def test_a_deleted_local_key_file_is_refused_instead_of_losing_everyone(tmp_path):
    var = tmp_path / "var"
    first = BotServe(var)  # embedded Redis, development key generated into var/data.key
    await first.start()
    first.stop()
    (var / "data.key").unlink()
    line = refused(bot(["serve"], {"BOT_VAR_DIR": str(var)}), "data.key")
    assert "put the file back" in line and not (var / "data.key").exists()
    assert embedded_servers(var) == []


async def test_erasure_with_one_unreadable_record_deletes_the_rest(bot_client, make_user, redis_client):
    from bot.app import SERVICES

    services = bot_client.server.app[SERVICES]
    user = make_user("oEraseUnreadable")
    for text in ["你好", "1", "残疾证", "4"]:  # an unfinished application: a gentle reminder is scheduled
        await user.say(text)
    # Someone else's reminder sealed with a key we no longer have.
    await services.reminders.schedule("unfinished:QYOTHER", time.time() + 3600, {"openid": "oOther", "kind": "unfinished"})
    other = Sealer(parse_data_keys(KEY_B))
    await redis_client.set(
        "remind:{schedule}:payload:unfinished:QYOTHER",
        other.seal(b'{"openid": "oOther"}', "remind:{schedule}:payload:unfinished:QYOTHER"),
    )
    assert "回复1确认" in await user.say("删除我的信息")
    reply = await user.say("1")
    assert "已删除" in reply, reply
    assert await services.store.load("oEraseUnreadable") is None
    remaining = [r for r, _ in await services.reminders.scheduled()]
    assert not any(r.startswith("unfinished:") and r != "unfinished:QYOTHER" for r in remaining)


# -- 4. processes -------------------------------------------------------------------------------------------
async def test_sigterm_stops_two_workers_and_the_embedded_redis_within_5_s(tmp_path):
    var = tmp_path / "var"
    serve = BotServe(var, args=("--workers", "2"))
    await serve.start()
    protocol = WeChatProtocol("devtoken")
    import aiohttp

    async with aiohttp.ClientSession() as http:
        query, body = protocol.build_request(message_xml(from_user="oTerm", content="你好", msg_id=1), encrypted=False)
        async with http.post(serve.url + "/wechat", params=query, data=body) as r:
            assert "请问是谁申请" in protocol.decode_reply(await r.read(), encrypted=False)["Content"]
    workers = _children(serve.proc.pid)
    assert len(workers) >= 2 and embedded_servers(var)
    started = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(serve.proc.wait, 10)
    while (embedded_servers(var) or any(_alive(p) for p in workers)) and time.monotonic() - started < 10:
        await asyncio.sleep(0.05)
    took = time.monotonic() - started
    assert serve.proc.returncode == 0 and not any(_alive(p) for p in workers) and embedded_servers(var) == []
    assert took < 5, f"stopped after {took:.1f} s"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"redis-server" not in (entry / "cmdline").read_bytes():
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_the_canary_is_written_once_per_key(redis_client):
    from integrations.data_key_check import check_data_key

    sealer = Sealer(parse_data_keys(KEY_A))
    await check_data_key(redis_client, sealer, where="BOT_DATA_KEY")
    blob = await redis_client.get(canary_key("ka"))
    await check_data_key(redis_client, sealer, where="BOT_DATA_KEY")
    assert await redis_client.get(canary_key("ka")) == blob


async def test_the_canaries_are_found_by_their_index_not_by_scanning_every_key(redis_client):
    """With a million conversations stored, a SCAN for the canaries made `bot serve` answer after 28 s
    (benchmarks/bench.py --growth): start-up reads the index of key ids. Canaries left before the index
    are indexed once; a retired key's canary deleted by hand leaves the index too."""
    from integrations.data_key_check import KIDS, check_data_key, sealed_with

    old = Sealer(parse_data_keys(KEY_A))
    await redis_client.set(canary_key("ka"), old.seal(b"fucan-yijianshi data key canary", canary_key("ka")))
    assert not await redis_client.exists(KIDS)  # as an earlier version left it
    assert set(await sealed_with(redis_client)) == {"ka"}
    assert await redis_client.smembers(KIDS) == {b"ka"}
    await redis_client.set("u:{oSomeone}:conversation", b"x")  # no scan: a key the index does not name is not read
    both = Sealer(parse_data_keys(KEY_B + "," + KEY_A))
    await check_data_key(redis_client, both, where="BOT_DATA_KEY")
    assert await redis_client.smembers(KIDS) == {b"ka", b"kb"}
    await redis_client.delete(canary_key("ka"))
    assert set(await sealed_with(redis_client)) == {"kb"} and await redis_client.smembers(KIDS) == {b"kb"}


async def test_metrics_of_two_workers_are_one_view(tmp_path):
    """A scrape reaches either worker; each one answers with the sum of both, and the shared state."""
    import aiohttp

    serve = BotServe(tmp_path / "var", args=("--workers", "2"))
    await serve.start()
    protocol = WeChatProtocol("devtoken")
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(12):
                query, body = protocol.build_request(
                    message_xml(from_user=f"oMetrics{n}", content="你好", msg_id=n + 1), encrypted=False
                )
                async with http.post(serve.url + "/wechat", params=query, data=body) as r:
                    assert r.status == 200
            scrapes = []
            for _ in range(8):
                async with http.get(serve.url + "/metrics") as r:
                    scrapes.append(await r.text())
    finally:
        serve.stop()
    for text in scrapes:
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        assert float(samples['bot_messages_total{type="text"}']) == 12, text
        assert float(samples["bot_redis_up"]) == 1
        assert float(samples['bot_outbox_items{kind="application",state="failed"}']) == 0
        assert 'bot_push_messages{state="queued"}' in samples and 'bot_reminders{state="overdue"}' in samples


# -- 5. the custom menu --------------------------------------------------------------------------------
async def test_bot_menu_push_creates_the_menu_through_wechats_api(tmp_path, redis_url, redis_client):
    from aiohttp.test_utils import TestServer

    from integrations.wechat_sandbox import SANDBOX, create_wechat_sandbox

    server = TestServer(create_wechat_sandbox(appid="wxmenu", secret="menusecret", clock=time.time), host="127.0.0.1")
    await server.start_server()
    try:
        env = {
            **REAL,
            "WECHAT_APPID": "wxmenu",
            "WECHAT_APPSECRET": "menusecret",
            "REDIS_URL": redis_url,
            "BOT_DATA_KEY": KEY_A,
            "WECHAT_API_BASE": str(server.make_url("")).rstrip("/"),
            "BOT_VAR_DIR": str(tmp_path / "var"),
        }
        out = await asyncio.to_thread(bot, ["menu", "push"], env)
        assert out.returncode == 0, out.stderr
        menu = server.app[SANDBOX].menu
        assert [b["name"] for b in menu["button"]] == ["我要申请", "查进度", "帮助"]
        assert [s["key"] for s in menu["button"][2]["sub_button"]] == ["MENU_HELP", "MENU_HUMAN"]
        # A menu WeChat would refuse is refused by the sandbox too, with WeChat's errcode.
        async with __import__("aiohttp").ClientSession() as http:
            token = (await redis_client.get("wechat:{api}:wxmenu:access_token")).decode()
            four = {"button": [{"type": "click", "name": f"按钮{n}", "key": f"K{n}"} for n in range(4)]}
            async with http.post(server.make_url("/cgi-bin/menu/create"), params={"access_token": token}, json=four) as r:
                assert (await r.json())["errcode"] == 40016
            long_name = {"button": [{"type": "click", "name": "六个汉字长度", "key": "K"}]}  # 18 bytes
            async with http.post(server.make_url("/cgi-bin/menu/create"), params={"access_token": token}, json=long_name) as r:
                assert (await r.json())["errcode"] == 40018
    finally:
        await server.close()


def test_the_menu_in_content_keeps_wechats_limits():
    from dialogs.pack import load_pack
    from integrations.wechat_menu import MenuError, menu_payload

    for region in ("qingyang", "hulunbuir"):
        payload = menu_payload(load_pack(region).menu)
        assert len(payload["button"]) <= 3
    with pytest.raises(MenuError) as e:
        menu_payload([{"key": f"K{n}", "label": "查", "says": "x"} for n in range(4)])
    assert e.value.errcode == 40016
    with pytest.raises(MenuError, match="would be cut"):  # WeChat takes 5 characters but shows 4 and "..."
        menu_payload([{"key": "K", "label": "我要申请的", "says": "x"}])


def test_logs_as_json_lines_with_the_time_zone(tmp_path):
    import json

    out = bot(["sessions", "list"], {"BOT_VAR_DIR": str(tmp_path / "var"), "BOT_LOG_FORMAT": "json"})
    assert out.returncode == 0, out.stderr
    entries = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    warning = next(e for e in entries if "generated a data key" in e["message"])
    assert warning["level"] == "WARNING" and re.search(r"T\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$", warning["time"])
    quiet = bot(["sessions", "list"], {"BOT_VAR_DIR": str(tmp_path / "var2"), "BOT_LOG_LEVEL": "ERROR"})
    assert quiet.returncode == 0 and quiet.stderr == ""


async def test_an_aborted_upload_is_one_line_in_the_log(tmp_path):
    import socket

    serve = BotServe(tmp_path / "var")
    await serve.start()
    try:
        with socket.create_connection(("127.0.0.1", serve.port)) as s:
            s.sendall(
                b"POST /wechat?signature=x&timestamp=1&nonce=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                b"Content-Type: text/xml\r\n\r\n<xml>partial"
            )
            await asyncio.sleep(0.3)
        for _ in range(50):
            if "request aborted by the client" in serve.log_tail(20000):
                break
            await asyncio.sleep(0.1)
    finally:
        serve.stop()
    log = serve.log_tail(20000)
    assert log.count("request aborted by the client (ConnectionResetError)") == 1, log
    assert "Traceback" not in log


def test_calendar_check_names_the_years_without_a_published_schedule(tmp_path):
    env = {"BOT_VAR_DIR": str(tmp_path / "var")}
    late = bot(["calendar", "check"], {**env, "BOT_TODAY": "2040-11-01"})  # into 2041: no schedule for either
    assert late.returncode == 1 and "2040年的节假日安排还没有" in late.stdout and "2041年" in late.stdout, (
        late.stdout,
        late.stderr,
    )
    early = bot(["calendar", "check"], {**env, "BOT_TODAY": "2026-03-01"})
    assert early.returncode == 0 and "都已公布" in early.stdout, (early.stdout, early.stderr)
