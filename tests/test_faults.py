"""Faults, against real processes on loopback: Redis restarted mid-dialog, `bot serve` killed with
SIGKILL at random points, two bot processes behind one Redis.

Every test starts real `python -m bot serve` processes (tests/processes.py), talks to them with signed,
encrypted (safe-mode) WeChat XML over HTTP, and delivers to the fake intake server (tests/fake_intake.py)
on loopback. Each prints one figures line (visible with -s).

    # the CI sizes (40 conversations, 3 kills; 30-60 s for the file)
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python -m pytest tests/test_faults.py -q -s
    # the full run: 200 conversations, 10 kills (also: FAULT_CONVERSATIONS=200 FAULT_KILLS=10 on the test above)
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python -m pytest tests/test_faults.py -q -s -m slow
    # replay a run's kill points: the seed is printed on the figures line
    FAULT_SEED=12345 REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python -m pytest tests/test_faults.py -q -s -k kill

Knobs: FAULT_CONVERSATIONS, FAULT_KILLS, FAULT_CONCURRENCY (default 24), FAULT_SEED, FAULT_TWO_CONVERSATIONS
(default 20, the two-process test). The Redis-restart
test uses a redis-server of its own (append-only) on a free port; the others use the suite's Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import aiohttp
import pytest
import redis.asyncio as aioredis
from stdnum.cn import ric

from bot.wechat_protocol import WeChatProtocol, message_xml
from dialogs.pack import load_pack
from integrations.delivery import GROUP
from integrations.outbox import STREAM
from tests.conftest import suite_day
from tests.fake_intake import FakeIntake
from tests.processes import BotServe, RedisServer, until_done, wait_until

TOKEN = "faulttoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wxfault0000000001"
INTAKE_SECRET = "fault-intake-secret"
DATA_KEY = "fault:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes, base64
WECHAT_DEADLINE_S = 5.0
_PACK = load_pack("qingyang")
BUSY = _PACK.text("busy")  # 系统有点忙，请稍后再发一次。您已填的信息都在。
BOOKING_FULL = _PACK.questions["booking"]["full"].split("\n")[0]  # 这个日期已经约满了，请选别的日期：
# A delivery cut short by a kill is taken up again when its lock expires (15 s) or, for an entry the
# dead process had read but not started, when XAUTOCLAIM finds it idle for 30 s (bot/app.py's worker).
DELIVERY_TAIL_S = 75


# -- scripted conversations --------------------------------------------------------------------------
@dataclass
class Say:
    text: str
    expect: tuple[str, ...]
    voice: bool = False  # sent as a voice message (WeChat's recognition of it, with its punctuation)
    again_if: str | None = None  # a reply that asks the same question again: answer it the same way


@dataclass
class Script:
    openid: str
    kind: str
    steps: list[Say]
    services: list[str]
    applicant: dict[str, str]
    agent_name: str | None = None


SURNAMES = "王李张刘陈杨黄赵周吴徐孙马胡朱郭何罗高林"
GIVEN = ["秀英", "小明", "建国", "桂兰", "志强", "海燕", "玉珍", "德胜", "春梅", "大山", "文华", "丽娟", "子轩", "欣怡", "宏伟"]
TOWNS = ["蓉城镇", "木镇", "庙前镇", "陵阳镇", "新河镇", "丁桥镇", "朱备镇", "杜村乡", "酉华镇"]
VILLAGES = ["五溪", "和平", "柯村", "东山", "南阳", "新桥"]
KINDS = ["self_certificate", "self_all_five", "guardian_for_child", "self_medical", "self_mental"]


def id_number(born: date, rng: random.Random) -> str:
    body = f"341723{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "?")  # stdnum reads the first 17 of 18


def masked(number: str) -> str:
    return number[:4] + "*" * 10 + number[-4:]


def born_years_ago(rng: random.Random, low: int, high: int) -> date:
    """Between `low` and `high` years old on the day the suite runs as (the bot's processes act on that day)."""
    return date(suite_day().year - rng.randint(low, high), rng.randint(1, 12), rng.randint(1, 28))


def make_script(n: int, rng: random.Random, tag: str, kind: str | None = None) -> Script:
    """One complete application conversation (青阳县), answers drawn from rng; the expectations do not
    depend on today's date or on how full the assessment sessions are."""
    kind = kind or KINDS[n % len(KINDS)]
    name = rng.choice(SURNAMES) + rng.choice(GIVEN)
    adult = born_years_ago(rng, 25, 70)
    applicant_id = id_number(adult if kind != "guardian_for_child" else born_years_ago(rng, 4, 12), rng)
    phone = f"139{rng.randrange(10**8):08d}"
    address = f"青阳县{rng.choice(TOWNS)}{rng.choice(VILLAGES)}村{rng.randint(1, 99)}号"
    voice = lambda: rng.random() < 0.25  # noqa: E731
    steps = [Say("你好", ("请问是谁申请",), voice())]
    agent_name = None
    if kind == "guardian_for_child":
        agent_name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        steps += [
            Say("2", ("代办人）的姓名",)),  # 替孩子申请: who and the relation in one answer
            Say(agent_name, ("身份证号",)),
            Say(id_number(adult, rng), ("手机号",)),
            Say(phone, ("要办哪些事",)),  # the applicant's phone may be given as 同上 (the same)
            # the 户口本 address in the screen: it says the 户口 is in 青阳县
            Say("1 3", ("您选了：残疾人证、护理补贴", "户籍地址")),
            Say(address, ("已经有残疾人证了吗",), voice()),
            Say("2", ("哪类残疾",)),
            # 残疾证 and 护理补贴 read no hardship: 困难情况 is not asked
            Say(rng.choice("12345"), ("请发申请人的姓名",)),
        ]
        services = ["disability_certificate", "nursing_subsidy"]
    else:
        steps.append(Say("1", ("要办哪些事",)))
        if kind in ("self_certificate", "self_mental"):
            category = "6" if kind == "self_mental" else rng.choice("123457")
            steps += [
                Say("1", ("您选了：残疾人证", "户籍地址")),
                Say(address, ("已经有残疾人证了吗",), voice()),
                Say("2", ("哪类残疾",)),
                Say(category, ("请发您的姓名",)),
            ]
            services = ["disability_certificate"]
        elif kind == "self_all_five":
            steps += [
                Say("6", ("您选了：残疾人证、生活补贴、护理补贴、医疗救助、养老保险补助", "户籍地址")),
                Say(address, ("已经有残疾人证了吗",), voice()),
                Say("2", ("哪类残疾",)),
                Say(rng.choice("1234"), ("哪种情况",)),
                Say(rng.choice("12"), ("城乡居民养老保险",)),
                Say("1", ("请发您的姓名",)),
            ]
            services = ["disability_certificate", "living_subsidy", "nursing_subsidy", "medical_assistance", "pension_subsidy"]
        else:
            steps += [Say("4", ("您选了：医疗救助", "哪种情况")), Say(rng.choice("1234678"), ("请发您的姓名",))]
            services = ["medical_assistance"]
    steps.append(Say(name, ("身份证号",), voice()))
    if kind == "guardian_for_child":
        # a parent applying for a child is the 法定监护人 (民法典 第二十七条): not asked, and a child's
        # 联系电话 is the parent's (form.child_phone_is_guardians): not asked either
        steps.append(Say(applicant_id, ("请准备这些材料",)))
    elif kind == "self_medical":
        steps += [Say(applicant_id, ("联系电话",)), Say(phone, ("户籍地址",)), Say(address, ("请准备这些材料",), voice())]
    else:
        steps += [Say(applicant_id, ("联系电话",)), Say(phone, ("请准备这些材料",))]
    summary = ("请核对", name, masked(applicant_id), phone, address) + ((f"代办人：{agent_name}",) if agent_name else ())
    if kind in ("self_certificate", "self_all_five", "guardian_for_child"):
        # Another citizen may take the last place between the offer and the answer: choose again.
        steps += [Say("0", ("请选日期",)), Say(rng.choice("123"), ("已为您预约",) + summary, again_if=BOOKING_FULL)]
    else:
        steps.append(Say("0", summary + (("已登记",) if kind == "self_mental" else ())))
    # the declaration is printed with the summary and confirmed with it
    steps += [Say("1", ("同意吗",)), Say("1", ("申请已提交", "申请编号"))]
    for step in steps:
        if step.voice:
            step.text += "。"
    return Script(
        f"oFault{tag}{n:04d}",
        kind,
        steps,
        services,
        {"name": name, "id_number": applicant_id, "phone": phone, "household_address": address},
        agent_name,
    )


REFERENCE = re.compile(r"申请编号 ([0-9A-Z]+)")


# -- WeChat's side -----------------------------------------------------------------------------------
_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


@dataclass
class Figures:
    posted: int = 0  # requests sent
    replies: int = 0
    lost: int = 0  # messages whose reply was lost (the process died): resent with the same MsgId
    attempts_failed: int = 0  # connection attempts that failed while no process listened
    busy: int = 0  # "please try later" replies: the citizen sends the answer again, a new MsgId
    chose_again: int = 0  # "that date is full" (a race with another citizen): chosen again
    twins: int = 0  # messages sent to two processes at once (same MsgId)
    in_flight: int = 0  # requests on the wire right now
    latencies: list[float] = field(default_factory=list)
    busy_at: list[float] = field(default_factory=list)

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=0.0)


class WeChat:
    """Plays WeChat's server: signs and encrypts each message (safe mode), POSTs it to a bot's /wechat,
    decodes the encrypted reply. A request that dies with the process is sent again with the same
    MsgId until a process answers (WeChat retries; here for up to `retry_for_s`)."""

    def __init__(self, http: aiohttp.ClientSession, figures: Figures, *, retry_for_s: float = 0.0):
        self.http = http
        self.protocol = WeChatProtocol(TOKEN, APPID, AES_KEY)
        self.figures = figures
        self.retry_for_s = retry_for_s

    def xml(self, openid: str, say: Say, msg_id: int | None = None) -> str:
        msg_id = msg_id or next(_msg_ids)
        if say.voice:
            return message_xml(
                from_user=openid,
                msg_type="voice",
                recognition=say.text,
                media_id=f"v{msg_id}",
                msg_id=msg_id,
                create_time=int(time.time()),
            )
        return message_xml(from_user=openid, content=say.text, msg_id=msg_id, create_time=int(time.time()))

    async def post(self, url: str, xml: str) -> str:
        """One delivery attempt; the reply's text. Raises aiohttp.ClientError when the process is gone."""
        query, body = self.protocol.build_request(xml, encrypted=True)
        started = time.monotonic()
        self.figures.posted += 1
        self.figures.in_flight += 1
        try:
            async with self.http.post(
                url + "/wechat", params=query, data=body, timeout=aiohttp.ClientTimeout(total=WECHAT_DEADLINE_S + 5)
            ) as resp:
                raw = await resp.read()
                assert resp.status == 200, (resp.status, raw[:200])
        finally:
            self.figures.in_flight -= 1
        elapsed = time.monotonic() - started
        self.figures.latencies.append(elapsed)
        self.figures.replies += 1
        return self.protocol.decode_reply(raw, encrypted=True).get("Content", "")

    async def deliver(self, url_for, xml: str) -> str:
        """Like WeChat: resend the same message (same MsgId) while no process answers."""
        deadline = time.monotonic() + self.retry_for_s
        attempt = 0
        while True:
            try:
                return await self.post(url_for(attempt), xml)
            except (aiohttp.ClientError, ConnectionError) as exc:
                self.figures.lost += attempt == 0
                self.figures.attempts_failed += 1
                if time.monotonic() >= deadline:
                    raise AssertionError(f"no reply within {self.retry_for_s} s: {exc!r}") from exc
                attempt += 1
                await asyncio.sleep(0.05)

    async def converse(
        self, script: Script, url_for, *, busy_ok: bool, transcript: list[str] | None = None, twin_for=None
    ) -> str:
        """Play a script to the end; url_for(i) is where the i-th message (or attempt) goes. Returns the
        application reference. A "busy" reply is tolerated only when busy_ok: the citizen sends the same
        answer again, as a new message. twin_for(i), when given and not None, is where a copy of the i-th
        message goes at the same moment (WeChat's retry reaching another process): same reply required."""
        reference = None
        sent = 0
        for n, say in enumerate(script.steps):
            while True:
                i = sent
                xml = self.xml(script.openid, say)
                twin = twin_for(i) if twin_for else None
                if twin is None:
                    reply = await self.deliver(lambda attempt, i=i: url_for(i + attempt), xml)
                else:
                    reply, copy = await asyncio.gather(self.post(url_for(i), xml), self.post(twin, xml))
                    assert reply == copy, f"{script.openid} step {n}: the retry got another reply:\n{reply}\n----\n{copy}"
                    self.figures.twins += 1
                sent += 1
                if say.again_if and say.again_if in reply:
                    self.figures.chose_again += 1
                    continue
                if reply != BUSY:
                    break
                self.figures.busy += 1
                self.figures.busy_at.append(time.monotonic())
                assert busy_ok, f"{script.openid} step {n} ({say.text}): busy"
            where = f"{script.openid} ({script.kind}) step {n} {say.text!r}"
            for wanted in say.expect:
                assert wanted in reply, f"{where}: expected {wanted!r} in\n{reply}"
            assert "请稍后再发" not in reply, f"{where}: {reply}"
            if transcript is not None:
                transcript.append(reply)
            reference = (m := REFERENCE.search(reply)) and m.group(1) or reference
        assert reference, f"{script.openid}: no application reference"
        return reference


def normalized(reply: str) -> str:
    """What must be identical between runs: the random reference and the places left (other
    conversations book concurrently) are not."""
    return re.sub(r"剩\d+个名额", "剩N个名额", REFERENCE.sub("申请编号 REF", reply))


def bot_env(redis_url: str, intake: FakeIntake) -> dict[str, str]:
    return dict(
        WECHAT_TOKEN=TOKEN,
        WECHAT_APPID=APPID,
        WECHAT_ENCODING_AES_KEY=AES_KEY,
        REDIS_URL=redis_url,
        INTAKE_URL=intake.url,
        INTAKE_SECRET=INTAKE_SECRET,
        BOT_DATA_KEY=DATA_KEY,
        BOT_ADMIN_TOKEN="fault-operator-" + "t" * 24,  # a real account: /metrics needs it
    )


@pytest.fixture
async def intake():
    fake = FakeIntake(INTAKE_SECRET)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def check_delivered_documents(intake: FakeIntake, scripts: dict[str, Script]) -> None:
    """Each application reached the intake once with a valid signature, under its own key, and
    says what the citizen answered."""
    assert set(intake.accepted) == set(scripts), (
        f"lost: {sorted(set(scripts) - set(intake.accepted))}, unexpected: {sorted(set(intake.accepted) - set(scripts))}"
    )
    assert all(count == 1 for count in intake.accepted.values()), intake.accepted
    for seen in intake.requests:
        assert seen.path == "/applications" and seen.signature_ok and seen.key == seen.body_id, seen
    for reference, script in scripts.items():
        body = json.loads(intake.for_id(reference)[0].body)
        assert body["openid"] == script.openid and body["services"] == script.services, reference
        assert {k: body["applicant"][k] for k in script.applicant} == script.applicant, reference
        assert (body["agent"] or {}).get("name") == script.agent_name


async def all_delivered(redis, references) -> bool:
    async with redis.pipeline(transaction=False) as pipe:
        for reference in references:
            pipe.hget(f"outbox:{{applications}}:state:{reference}", "state")
        states = await pipe.execute()
    return all(s == b"delivered" for s in states) and (await redis.xpending(STREAM, GROUP))["pending"] == 0


# -- 1. Redis stopped and restarted during a conversation --------------------------------------------
async def bot_connections(redis: RedisServer) -> int:
    """How many connections the bot holds to this Redis (all but ours)."""
    client = aioredis.from_url(redis.url)
    try:
        return len(await client.client_list()) - 1
    finally:
        await client.aclose()


def phone_step(script: Script) -> int:
    """Where a citizen is when Redis stops: the applicant's ID number accepted, the next question asked
    (the phone, or for a young child, whose phone is the parent's, the checklist)."""
    return next(i for i, x in enumerate(script.steps) if x.text == script.applicant["id_number"]) + 1


async def play(wechat: WeChat, url: str, script: Script, steps: list[Say]) -> None:
    for say in steps:
        reply = await wechat.deliver(lambda _i: url, wechat.xml(script.openid, say))
        assert all(w in reply for w in say.expect), f"{script.openid} {say.text!r}:\n{reply}"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["redis-shutdown", "redis-kill-9"])
async def test_redis_restart_mid_dialog(tmp_path, intake, http, how):
    """Citizens mid-dialog (concurrently, so the bot's pool holds several connections); Redis stops
    (a shutdown, or SIGKILL: append-only, fsync always); their next messages get the kind "busy" reply
    inside WeChat's 5 s; Redis comes back on the same port and file; each citizen's answer is accepted
    at the step where they were, the summary shows every earlier answer, the application is delivered.
    Once Redis is back nobody is told "busy" again (redis-py 8.1.0 did that once per pooled connection:
    see NO_MAINT_NOTIFICATIONS in integrations/redis_connection.py)."""
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    bot = BotServe(tmp_path / "var", env=bot_env(redis.url, intake))
    figures = Figures()
    wechat = WeChat(http, figures)
    rng = random.Random(7)
    scripts = [make_script(n, rng, f"R{how}x", KINDS[n % len(KINDS)]) for n in range(10)]
    outage: list[float] = []

    async def while_redis_is_down(s: Script) -> None:
        for _ in range(2):  # the answer, and the citizen trying again
            t0 = time.monotonic()
            reply = await wechat.post(bot.url, wechat.xml(s.openid, s.steps[phone_step(s)]))
            outage.append(time.monotonic() - t0)
            assert reply == BUSY, reply

    async def after_the_restart(s: Script) -> tuple[str, Script]:
        say = s.steps[phone_step(s)]
        reply = await wechat.post(bot.url, wechat.xml(s.openid, say))
        assert reply != BUSY, f"{s.openid}: told busy although Redis is back"
        assert all(w in reply for w in say.expect), f"{s.openid}: not accepted at the step where they were:\n{reply}"
        transcript: list[str] = []
        rest = Script(s.openid, s.kind, s.steps[phone_step(s) + 1 :], s.services, s.applicant, s.agent_name)
        reference = await wechat.converse(rest, lambda _i: bot.url, busy_ok=True, transcript=transcript)
        summary = next(r for r in transcript if "请核对" in r)
        for answer in (
            s.applicant["name"],
            masked(s.applicant["id_number"]),
            s.applicant["phone"],
            s.applicant["household_address"],
            *([s.agent_name] if s.agent_name else []),
        ):
            assert answer in summary, f"{answer!r} missing from the summary:\n{summary}"
        return reference, s

    started = time.monotonic()
    try:
        await bot.start()
        await until_done([play(wechat, bot.url, s, s.steps[: phone_step(s)]) for s in scripts])
        pooled = await bot_connections(redis)  # (all of them went stale: none may cost a "busy")
        redis.stop(how)
        await until_done([while_redis_is_down(s) for s in scripts])
        assert not await bot.healthy()
        await redis.start()  # same port, same append-only file
        await wait_until(bot.healthy, 10, what="the bot to see Redis again")
        references = dict(await until_done([after_the_restart(s) for s in scripts]))
        await wait_until(lambda: set(intake.accepted) >= set(references), 30, what="deliveries")
        check_delivered_documents(intake, references)
        assert len(intake.requests) == len(scripts)
    finally:
        bot.stop()
        redis.stop()
    assert figures.busy == 0, f"{figures.busy} busy replies after Redis was back"
    assert max(outage) < WECHAT_DEADLINE_S and figures.slowest < WECHAT_DEADLINE_S
    print(
        f"\nFAULTS redis-restart ({signal.Signals(how).name} to Redis): citizens={len(scripts)} "
        f"busy_during_outage={len(outage)} slowest_busy_reply={max(outage) * 1000:.0f}ms "
        f"busy_after_redis_was_back=0 (bot connections pooled before: {pooled}) "
        f"replies={figures.replies} slowest_reply={figures.slowest * 1000:.0f}ms delivered={len(intake.accepted)} "
        f"wall={time.monotonic() - started:.1f}s"
    )


# -- 2. `bot serve` killed with SIGKILL at random points, then restarted -----------------------------
def _size(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


async def run_kills(tmp_path, redis_url, redis_client, intake, http, *, conversations: int, kills: int) -> None:
    seed = _size("FAULT_SEED", random.SystemRandom().randrange(10**6))
    concurrency = _size("FAULT_CONCURRENCY", 24)
    print(f"\nFAULTS kill: seed={seed} (FAULT_SEED={seed} replays the scripts and kill points)")
    rng = random.Random(seed)
    scripts = [make_script(n, rng, f"K{seed}x", None) for n in range(conversations)]
    rng.shuffle(scripts)
    total = sum(len(s.steps) for s in scripts)
    # Kill points: after the n-th message is posted, plus a few ms (inside a turn, or a delivery).
    points = sorted(rng.sample(range(conversations, int(total * 0.95)), kills))
    figures = Figures()
    wechat = WeChat(http, figures, retry_for_s=30)
    intake.delay_s = 0.02  # every POST takes a moment: some kills land while one is on the wire
    bot = BotServe(tmp_path / "var", env=bot_env(redis_url, intake))
    kills_at: list[tuple[float, float]] = []  # (killed, healthy again), monotonic
    killed_pids: set[int] = set()
    caught = Counter()  # what was on the wire at the kills
    references: dict[str, Script] = {}
    slots = asyncio.Semaphore(concurrency)
    url = lambda _i: bot.url  # noqa: E731

    async def citizen(script: Script) -> None:
        async with slots:
            reference = await wechat.converse(script, url, busy_ok=True)
            assert reference not in references, f"{reference} given to two conversations"
            references[reference] = script

    async def killer() -> None:
        for point in points:
            await wait_until(lambda point=point: figures.posted >= point, 120, interval=0.005, what=f"message {point}")
            await asyncio.sleep(rng.uniform(0, 0.03))
            caught["messages"] += figures.in_flight
            caught["deliveries"] += sum(intake.in_flight.values())
            killed_pids.add(bot.proc.pid)
            bot.kill(signal.SIGKILL)
            killed = time.monotonic()
            await bot.start()
            kills_at.append((killed, time.monotonic()))

    started = time.monotonic()
    try:
        await bot.start()
        await until_done([killer(), *(citizen(s) for s in scripts)])
        talked = time.monotonic() - started
        await wait_until(
            lambda: all_delivered(redis_client, references),
            DELIVERY_TAIL_S,
            interval=0.2,
            what="every application delivered and acknowledged",
        )
    except BaseException:
        print(f"FAULTS kill: failed with seed={seed}; bot running={bot.running}; its log:\n{bot.log_tail(6000)}")
        raise
    finally:
        bot.stop()
    wall = time.monotonic() - started
    assert len(references) == conversations and len(kills_at) == kills
    check_delivered_documents(intake, references)
    # The intake saw a second POST of an application only from another process, after the one that
    # sent the first was killed before it had the answer; it accepted one of them (201) and answered
    # any later one 409, the same application (check_delivered_documents: accepted once each). Each
    # POST names its sender (X-Bot-Instance: host-pid), so this is exact: the intake's own clock
    # would not do, as a dead process's last request can still be read after the kill, under load.
    reposted = 0
    for reference in references:
        sends = intake.for_id(reference)
        for before, after in zip(sends, sends[1:], strict=False):
            senders = (before.instance, after.instance)
            assert before.instance != after.instance and _pid(before.instance) in killed_pids, (
                f"{reference}: POST again by {senders[1]} after {senders[0]} (killed: {sorted(killed_pids)})"
            )
            reposted += 1
        statuses = Counter(r.status for r in sends)  # None: the POST was cut off with the process
        assert statuses[201] == 1 and set(statuses) <= {201, 409, None}, statuses
        number = await redis_client.hget(f"outbox:{{applications}}:state:{reference}", "application_no")
        assert number.decode() == intake.numbers[reference]  # the bot kept the intake's own number
    # "Busy" only after a kill: a turn waits at most 3.5 s for the dead process's lock (3 s) or for a
    # dead turn's place in the citizen's queue to go stale (5 s).
    for at in figures.busy_at:
        assert any(killed <= at <= max(healthy, killed + 5) + 4 for killed, healthy in kills_at), "busy without a kill"
    assert figures.slowest < WECHAT_DEADLINE_S, figures.slowest
    restarts = [healthy - killed for killed, healthy in kills_at]
    print(
        f"FAULTS kill: conversations={conversations} messages={total} kills={kills} seed={seed} concurrency={concurrency} "
        f"replies={figures.replies} replies_lost_and_resent={figures.lost} (open at the kills: requests={caught['messages']} "
        f"intake_posts={caught['deliveries']}; refused connections while down: {figures.attempts_failed}) busy_resent={figures.busy} "
        f"chose_date_again={figures.chose_again} slowest_reply={figures.slowest * 1000:.0f}ms "
        f"restart={min(restarts, default=0):.1f}-{max(restarts, default=0):.1f}s applications={len(references)} "
        f"delivered={len(intake.accepted)} posts={len(intake.requests)} reposts_answered_409={reposted} "
        f"duplicates={sum(c - 1 for c in intake.accepted.values())} lost={len(set(references) - set(intake.accepted))} "
        f"conversations_done={talked:.1f}s wall={wall:.1f}s"
    )


def _pid(instance: str | None) -> int:
    return int((instance or "-0").rsplit("-", 1)[1])


async def test_sigkill_at_random_points(tmp_path, redis_url, redis_client, intake, http):
    """FAULT_CONVERSATIONS conversations (default 40), FAULT_KILLS kills (default 3)."""
    await run_kills(
        tmp_path,
        redis_url,
        redis_client,
        intake,
        http,
        conversations=_size("FAULT_CONVERSATIONS", 40),
        kills=_size("FAULT_KILLS", 3),
    )


@pytest.mark.slow
async def test_sigkill_at_random_points_200(tmp_path, redis_url, redis_client, intake, http):
    await run_kills(tmp_path, redis_url, redis_client, intake, http, conversations=200, kills=10)


# -- 3. two bot processes behind one Redis ------------------------------------------------------------
async def test_two_processes_behind_one_redis(tmp_path, redis_url, redis_client, intake, http):
    """The same scripts against one process, then with each citizen's messages alternating between two
    processes (message i to process i % 2), some also sent to the other process at the same moment
    (WeChat's retry): the same replies, one dialog step per message, one application each."""
    conversations = _size("FAULT_TWO_CONVERSATIONS", 20)
    rng = random.Random(20261123)
    figures = Figures()
    wechat = WeChat(http, figures)
    env = bot_env(redis_url, intake)
    a, b = BotServe(tmp_path / "var", env=env), BotServe(tmp_path / "var", env=env)
    started = time.monotonic()

    async def run(tag: str, url_for, twin_for=None) -> tuple[dict[str, Script], dict[int, list[str]]]:
        scripts = [make_script(n, random.Random(n), tag) for n in range(conversations)]
        transcripts: dict[int, list[str]] = {n: [] for n in range(conversations)}
        references: dict[str, Script] = {}

        async def citizen(n: int, script: Script) -> None:
            twin = (lambda i: twin_for(n, i)) if twin_for else None
            reference = await wechat.converse(script, url_for, busy_ok=False, transcript=transcripts[n], twin_for=twin)
            references[reference] = script

        await until_done([citizen(n, s) for n, s in enumerate(scripts)])
        await wait_until(lambda: set(intake.accepted) >= set(references), 30, what="deliveries")
        return references, transcripts

    duplicated: set[tuple[int, int]] = set()

    def twin_for(n: int, i: int) -> str | None:
        if rng.random() < 0.25:
            duplicated.add((n, i))
            return (b, a)[i % 2].url
        return None

    try:
        await asyncio.gather(a.start(), b.start())
        one, one_transcripts = await run("One", lambda i: a.url)
        two, two_transcripts = await run("Two", lambda i: (a, b)[i % 2].url, twin_for)
        await wait_until(lambda: all_delivered(redis_client, [*one, *two]), 30, what="acknowledged")
        dedup = await a.metric("bot_dedup_hits_total") + await b.metric("bot_dedup_hits_total")
        errors = await a.metric("bot_errors_total") + await b.metric("bot_errors_total")
        handled = [await a.metric("bot_messages_total"), await b.metric("bot_messages_total")]
    finally:
        a.stop()
        b.stop()
    for n in range(conversations):
        assert [normalized(r) for r in two_transcripts[n]] == [normalized(r) for r in one_transcripts[n]], f"conversation {n}"
    check_delivered_documents(intake, {**one, **two})
    assert all(len(intake.for_id(reference)) == 1 for reference in {*one, *two})  # one POST each, two workers
    assert figures.twins == len(duplicated) > 0
    assert dedup == len(duplicated), (dedup, len(duplicated))  # each copy answered from the reply cache
    assert errors == 0 and figures.busy == 0 and figures.slowest < WECHAT_DEADLINE_S
    print(
        f"\nFAULTS two-processes: conversations={conversations}x2 messages={sum(map(len, one_transcripts.values()))}x2 "
        f"sent_to_both_at_once={figures.twins} dedup_hits={dedup:.0f} handled_by_process={handled[0]:.0f}/{handled[1]:.0f} "
        f"transcripts_identical={conversations} applications={len(one)}+{len(two)} posts={len(intake.requests)} "
        f"slowest_reply={figures.slowest * 1000:.0f}ms wall={time.monotonic() - started:.1f}s"
    )
