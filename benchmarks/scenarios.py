"""bench.py's two conversation phases: Redis memory per conversation and per application, and
reply times while the intake is down and WeChat's API is slow.

Both drive the real, signed, safe-mode /wechat endpoint of a fresh `bot serve` with simulated
citizens who follow real conversations (the paths of tests/transcripts/01 and 03), checking every
reply against what the transcript expects, so a figure is never taken from a dialog that went
astray. Both always use an embedded Redis of their own (never --redis-url): nothing else is in it
to disturb the memory figures, and the applications they submit never reach a shared outbox.

memory    one bot; INTAKE_URL is a loopback intake in the bench process that accepts everything
          (the built-in sandbox would keep its own copy of each application in the bot's Redis).
          After a warm-up at full concurrency (every script loaded, the streams exist, and the
          bot's Redis connection pool has grown: each connection holds ~17 KiB in Redis) the
          baseline is taken. N citizens stop an application after the address (the most an
          unfinished conversation holds); then N others complete one that needs no assessment
          booking (transcript 03: has a certificate, medical assistance only) with their own valid
          ID number and phone, and the bench waits until the outbox says each was delivered. Each
          figure is the delta / N of INFO used_memory less the client and AOF buffers (connections,
          not data; the raw delta is in the JSON), measured right away and again after deleting the
          phase's reply-cache keys (they expire after REPLY_TTL_S: what stays long-term), with a
          breakdown by key family (MEMORY USAGE of every key, before and after).
degraded  real WeChat credentials, INTAKE_URL at a loopback intake that answers 503 (or accepts and
          never answers), WECHAT_API_BASE at a loopback copy of WeChat's API that answers after a
          delay. M citizens complete applications (deliveries are attempted and retried); the
          bench sends each application an "accepted" status event, so a push goes through the slow
          API; then they ask "进度" until the window ends. Reported: the share of replies within
          WeChat's 5 s, p50/p99/max, errors, busy replies.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import bench  # first: it puts the project on sys.path
from aiohttp import web
from bench import AES_KEY, APPID, HOST, TOKEN, WeChatProtocol
from yarl import URL

from integrations.conversations import REPLY_TTL_S
from integrations.intake import encode_body, signed_headers
from integrations.wechat_sandbox import ENDPOINTS, SANDBOX, create_wechat_sandbox

KIB = 1024
GOALS = {"conversation_bytes_max": 4 * KIB, "application_bytes_max": 8 * KIB}
DEADLINE_MS = bench.TARGETS["reply_ms_max"]  # WeChat gives up after 5 s
APPSECRET = "bench-appsecret"
INTAKE_SECRET = "bench-intake-secret"
CHINA = timezone(timedelta(hours=8))
MEMORY_CONCURRENCY = 32  # citizens talking at once in the memory phase (does not change the figures)
BUSY_RETRIES = 3  # a citizen told "busy" (or cut off) sends the same text again, like WeChat does
DELIVERY_WAIT_S = 120.0
REPLY_KEYS = ("u:{%s*}:replies",)  # % the phase's openid prefix


# -- citizens -----------------------------------------------------------------------------------------
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def id_check_digit(first17: str) -> str:
    """GB 11643-1999: ISO 7064 MOD 11-2 over the first 17 digits."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def citizen_id(n: int) -> str:
    """A unique, checksum-valid 18-digit ID number of an adult born in 青阳县 (341723)."""
    born = date(1950, 1, 1) + timedelta(days=n % 14000)  # 1950-1988: adults, no guardian questions
    first17 = f"341723{born:%Y%m%d}{n // 14000 % 1000:03d}"
    return first17 + id_check_digit(first17)


def citizen_phone(n: int) -> str:
    return f"139{n % 10**8:08d}"


NAMES = ["赵大山", "王小明", "李秀英", "张建国", "刘桂兰", "陈志强", "杨淑珍", "黄国庆"]
ADDRESSES = ["青阳县蓉城镇五溪村12号", "青阳县木镇木镇村3组", "青阳县新河镇新河村8号"]

Step = tuple[str, "str | None"]  # what the citizen says, and a text the reply must contain


def in_progress_script(n: int) -> list[Step]:
    """Self, no certificate yet, 肢体, 农村低保, all five services, up to the material checklist."""
    return [
        ("你好", "请问是谁申请"),
        ("1", "要办哪些事"),
        ("6", "户籍地址"),
        (ADDRESSES[n % len(ADDRESSES)], "已经有残疾人证了吗"),
        ("2", "哪类残疾"),
        ("4", "哪种情况"),
        ("2", "城乡居民养老保险"),
        ("1", "请发您的姓名"),
        (NAMES[n % len(NAMES)], "身份证号"),
        (citizen_id(n), "联系电话"),
        (citizen_phone(n), "请准备这些材料"),
    ]


def application_script(n: int) -> list[Step]:
    """Transcript 03 (level 3, has a certificate, not 低保): medical assistance only, no booking."""
    return [
        ("你好", "请问是谁申请"),
        ("本人", "要办哪些事"),
        ("我想申请护理补贴和看病报销", "护理补贴、医疗救助"),
        (ADDRESSES[n % len(ADDRESSES)], "已经有残疾人证了吗"),  # the 户籍地址, asked where the 户口 decides
        ("有", "残疾人证号"),
        (citizen_id(n) + "23", "哪种情况"),  # the 证号: the ID number, 听力 (2), 三级 (3)
        ("7", "回复 1 不办这几项"),
        ("1", "请发您的姓名"),
        (NAMES[n % len(NAMES)], "联系电话"),
        (citizen_phone(n), "医保报销后的结算单"),
        ("继续", "本人自愿申请"),  # the summary, with the declaration printed in it
        ("好的", "同意吗"),
        ("同意", "申请已提交"),
    ]


_APPLICATION_ID = re.compile(r"申请编号\s*([A-Za-z0-9]+)")


class OffScript(Exception):
    """A reply did not say what the transcript expects: the dialog went astray."""


@dataclass
class Said:
    text: str
    ms: float
    kind: str  # "ok", "busy", or the kind of failure (bench.read_reply's words)
    content: str = ""


@dataclass
class Citizen:
    http: aiohttp.ClientSession
    protocol: WeChatProtocol
    base: URL
    openid: str
    busy: str
    log: list[Said] = field(default_factory=list)

    async def say(self, text: str) -> Said:
        url, body = bench.build(self.protocol, self.base, self.openid, text)
        t0 = time.perf_counter()
        try:
            async with self.http.post(url, data=body, headers={"Content-Type": "text/xml"}) as resp:
                status, data = resp.status, await resp.read()
        except Exception as exc:
            status, data = 0, f"{type(exc).__name__}: {exc}"[:200]
        ms = (time.perf_counter() - t0) * 1000
        problem, content = bench.read_reply(status, data, self.protocol)
        kind = problem or ("busy" if content.strip() == self.busy else "ok")
        said = Said(text, ms, kind, content)
        self.log.append(said)
        return said

    async def follow(self, script: list[Step], *, think_s: float = 0.0) -> str:
        """Say each step (again after a busy reply or a failure); the last reply. OffScript if one is wrong."""
        content = ""
        for text, expect in script:
            if think_s:
                await asyncio.sleep(think_s * random.uniform(0.5, 1.5))
            for _ in range(BUSY_RETRIES + 1):
                said = await self.say(text)
                if said.kind == "ok":
                    break
                await asyncio.sleep(0.5)
            content = said.content
            if said.kind != "ok" or (expect and expect not in content):
                raise OffScript(f"{text!r} -> {said.kind}: {content[:80]!r} (expected {expect!r})")
        return content


def new_http(users: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=users * 2, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=bench.REQUEST_TIMEOUT_S))


async def follow_all(citizens: list[Citizen], scripts: list[list[Step]], concurrency: int) -> list[str]:
    """Run every citizen's script, `concurrency` at a time; the problems (one line per citizen gone astray)."""
    slots = asyncio.Semaphore(concurrency)
    problems: list[str] = []

    async def one(citizen: Citizen, script: list[Step]) -> None:
        async with slots:
            try:
                await citizen.follow(script)
            except OffScript as exc:
                problems.append(f"{citizen.openid}: {exc}")

    await asyncio.gather(*(one(c, s) for c, s in zip(citizens, scripts, strict=True)))
    return problems


def reply_stats(log: list[Said]) -> dict:
    """Replies within WeChat's 5 s (a busy reply is an answer, counted apart), latencies, errors by kind."""
    lat = sorted(s.ms for s in log)
    answered = [s for s in log if s.kind in ("ok", "busy")]
    errors = collections.Counter(s.kind for s in log if s.kind not in ("ok", "busy"))
    examples = {}
    for s in log:
        if s.kind not in ("ok", "busy"):
            examples.setdefault(s.kind, s.content[:200])
    in_time = sum(1 for s in answered if s.ms < DEADLINE_MS)
    return {
        "replies": len(log),
        "answered_in_5s": in_time,
        "share_in_5s": in_time / len(log) if log else float("nan"),
        "p50_ms": bench.percentile(lat, 50),
        "p99_ms": bench.percentile(lat, 99),
        "max_ms": lat[-1] if lat else float("nan"),
        "busy": sum(1 for s in log if s.kind == "busy"),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_examples": examples,
    }


# -- Redis --------------------------------------------------------------------------------------------
_FIXED_TAG = re.compile(r"\{[a-z_]+\}")
_TAG = re.compile(r"\{[^}]*\}")


def key_family(key: str) -> str:
    """'app:{8812}:meta' -> 'app:{…}:meta': per-user/per-id parts folded away."""
    key = _TAG.sub(lambda m: m.group(0) if _FIXED_TAG.fullmatch(m.group(0)) else "{…}", key)
    out = []
    for part in key.split(":"):
        if not part.startswith("{") and (len(part) > 24 or not part.isascii() or any(c.isdigit() or c.isupper() for c in part)):
            out.append("*")
            break
        out.append(part)
    return ":".join(out)


@dataclass
class Family:
    keys: int = 0
    bytes: int = 0
    ttls: list[int] = field(default_factory=list)  # seconds; -1 = never expires


@dataclass
class Snapshot:
    used_memory: int
    buffers: int  # of client connections (query and output buffers) and the AOF: not data
    clients: int
    families: dict[str, Family]

    @property
    def data(self) -> int:
        return self.used_memory - self.buffers


async def snapshot(redis) -> Snapshot:
    """INFO memory first (the scan below allocates a little), then every key's MEMORY USAGE by family."""
    await asyncio.sleep(1.0)  # let the bot's background loops go quiet
    memory = await redis.info("memory")
    clients = (await redis.info("clients"))["connected_clients"]
    buffers = int(memory["mem_clients_normal"]) + int(memory.get("mem_aof_buffer", 0))
    families: dict[str, Family] = collections.defaultdict(Family)
    keys = [k async for k in redis.scan_iter(count=1000)]
    for i in range(0, len(keys), 500):
        batch = keys[i : i + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for k in batch:
                pipe.memory_usage(k, samples=0)
                pipe.ttl(k)
            answers = await pipe.execute()
        for k, size, ttl in zip(batch, answers[0::2], answers[1::2], strict=True):
            if size is None:  # expired in between
                continue
            f = families[key_family(k.decode())]
            f.keys += 1
            f.bytes += int(size)
            f.ttls.append(int(ttl))
    return Snapshot(int(memory["used_memory"]), buffers, int(clients), dict(families))


async def delete_matching(redis, pattern: str) -> int:
    deleted = 0
    batch = [k async for k in redis.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(batch), 500):
        deleted += await redis.delete(*batch[i : i + 500])
    return deleted


async def delete_reply_cache(redis, prefix: str) -> int:
    return sum([await delete_matching(redis, pattern % prefix) for pattern in REPLY_KEYS])


async def hash_states(redis, pattern: str) -> tuple[collections.Counter, int]:
    """('state' field -> how many keys, total 'attempts') over the hashes matching pattern."""
    keys = [k async for k in redis.scan_iter(match=pattern, count=1000)]
    states: collections.Counter[str] = collections.Counter()
    attempts = 0
    if keys:
        async with redis.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hmget(k, "state", "attempts")
            for state, tries in await pipe.execute():
                states[(state or b"?").decode()] += 1
                attempts += int(tries or 0)
    return states, attempts


OUTBOX_STATES = "outbox:{applications}:state:*"
PUSH_MESSAGES = "push:{queue}:msg:*"


async def wait_delivered(redis, expected: int) -> collections.Counter:
    """Poll the outbox's delivery states (what `bot outbox list` shows) until `expected` are delivered."""
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while True:
        states, _ = await hash_states(redis, OUTBOX_STATES)
        if states["delivered"] >= expected or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


def family_delta(before: Snapshot, after: Snapshot, n: int) -> list[dict]:
    """Per citizen: keys and MEMORY USAGE bytes each family grew by, biggest first; with a typical TTL."""
    rows = []
    for name, f in after.families.items():
        b = before.families.get(name, Family())
        if f.bytes == b.bytes and f.keys == b.keys:
            continue
        rows.append(
            {
                "family": name,
                "keys": (f.keys - b.keys) / n,
                "bytes": (f.bytes - b.bytes) / n,
                "ttl_s": int(statistics.median(f.ttls)) if f.ttls else None,
            }
        )
    return sorted(rows, key=lambda r: -r["bytes"])


def per_citizen(base: Snapshot, right_away: Snapshot, long_term: Snapshot, n: int, goal: int) -> dict:
    """The figures of one step: used_memory less buffers, per citizen; the same from MEMORY USAGE of the
    keys alone (without Redis's key tables, which grow in steps: the steadier figure between runs)."""
    return {
        "citizens": n,
        "bytes_right_away": round((right_away.data - base.data) / n),
        "bytes_long_term": round((long_term.data - base.data) / n),
        "goal_bytes": goal,
        "key_bytes_right_away": round(sum(f["bytes"] for f in family_delta(base, right_away, n))),
        "key_bytes_long_term": round(sum(f["bytes"] for f in family_delta(base, long_term, n))),
        "used_memory_delta_right_away": round((right_away.used_memory - base.used_memory) / n),
        "used_memory_delta_long_term": round((long_term.used_memory - base.used_memory) / n),
        "redis_clients": [base.clients, right_away.clients],
    }


# -- the memory phase ---------------------------------------------------------------------------------
async def memory_phase(sup: bench.Supervisor, args, tmp: Path, busy: str, run_prefix: str) -> dict:
    async with LoopbackServer(intake_server("accept")) as intake:
        target = bench.bot_target(
            "memory", args, tmp, 1, redis_url="", extra_env={"INTAKE_URL": intake.url, "INTAKE_SECRET": INTAKE_SECRET}
        )
        print(
            f"\n[memory] starting: {target.description}, a loopback intake that accepts; {args.memory_users} citizens per step",
            flush=True,
        )
        target.spawned = sup.spawn(target.name, target.argv, target.env, target.log_path, target.var_dir)
        try:
            result = await measure_memory(target, args.memory_users, busy, f"{run_prefix}m")
        finally:
            await target.close_redis()
            sup.stop(target.spawned)
        result["intake_requests"] = dict(intake.app[SEEN])
        return result


async def measure_memory(target: bench.Target, n: int, busy: str, prefix: str) -> dict:
    protocol = WeChatProtocol(TOKEN, APPID, AES_KEY)
    await bench.first_answer(target, protocol, prefix + "probe", busy)
    redis = target.redis_client(timeout_s=10)
    if redis is None:
        raise RuntimeError("cannot find the bot's embedded Redis")
    server, memory = await redis.info("server"), await redis.info("memory")
    async with new_http(MEMORY_CONCURRENCY) as http:

        def crowd(kind: str, count: int) -> list[Citizen]:
            return [Citizen(http, protocol, target.base, f"{prefix}{kind}{i:04d}", busy) for i in range(count)]

        # Warm-up at full concurrency: every script loaded, the streams and groups made, the pool grown.
        warm = crowd("w", 2 * MEMORY_CONCURRENCY)
        scripts = [in_progress_script(i) if i % 2 else application_script(i) for i in range(len(warm))]
        problems = await follow_all(warm, scripts, MEMORY_CONCURRENCY)
        await wait_delivered(redis, MEMORY_CONCURRENCY)
        base = await snapshot(redis)
        print(f"[memory] baseline used_memory {base.used_memory / KIB:.0f} KiB; {n} conversations up to the address", flush=True)

        talking = crowd("c", n)
        first = len(warm)  # citizen numbers (ID numbers, phones) are unique in the run
        problems += await follow_all(talking, [in_progress_script(first + i) for i in range(n)], MEMORY_CONCURRENCY)
        conv = await snapshot(redis)
        conv_replies = await delete_reply_cache(redis, f"{prefix}c")
        conv_kept = await snapshot(redis)
        print(f"[memory] {n} applications to delivery (transcript 03's path)", flush=True)

        applying = crowd("a", n)
        first += n
        problems += await follow_all(applying, [application_script(first + i) for i in range(n)], MEMORY_CONCURRENCY)
        states = await wait_delivered(redis, n + MEMORY_CONCURRENCY)
        if states["delivered"] < n + MEMORY_CONCURRENCY:
            problems.append(
                f"only {states['delivered']} of {n + MEMORY_CONCURRENCY} applications delivered "
                f"after {DELIVERY_WAIT_S:g} s: {dict(states)}"
            )
        apps = await snapshot(redis)
        app_replies = await delete_reply_cache(redis, f"{prefix}a")
        apps_kept = await snapshot(redis)
    return {
        "redis": f"embedded Redis {server['redis_version']} ({memory.get('mem_allocator', '?')} malloc)",
        "reply_ttl_s": REPLY_TTL_S,
        "baseline_used_memory": base.used_memory,
        "conversation": {
            **per_citizen(base, conv, conv_kept, n, GOALS["conversation_bytes_max"]),
            "path": "transcript 01 up to the material checklist (11 messages)",
            "reply_keys_deleted": conv_replies,
            "families": family_delta(base, conv, n),
        },
        "application": {
            **per_citizen(conv_kept, apps, apps_kept, n, GOALS["application_bytes_max"]),
            "path": "transcript 03, whole application, no booking (13 messages), delivered",
            "delivery_states": dict(states),
            "reply_keys_deleted": app_replies,
            "families": family_delta(conv_kept, apps, n),
        },
        "problems": problems,
        "messages": reply_stats([s for c in warm + talking + applying for s in c.log]),
    }


# -- the degraded phase -------------------------------------------------------------------------------
SEEN = web.AppKey("seen", collections.Counter)


def intake_server(mode: str) -> web.Application:
    """The intake platform on loopback, keeping nothing: "accept" gives each application a 受理编号 (201,
    then 409 for the same Idempotency-Key); down, it answers "503" to everything or accepts the
    connection and never answers ("hang")."""
    app = web.Application()
    app[SEEN] = collections.Counter()
    numbers: dict[str, str] = {}
    sequence = itertools.count(1)

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        request.app[SEEN][request.path] += 1
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "503":
            return web.json_response({"error": "unavailable"}, status=503)
        key = request.headers.get("Idempotency-Key", "")
        status = 409 if key in numbers else 201
        numbers.setdefault(key, f"BENCH{next(sequence):06d}")
        return web.json_response({"application_no": numbers[key]}, status=status)

    app.router.add_post("/applications", handle)
    app.router.add_post("/events", handle)
    return app


def slow_wechat(delay_s: float) -> web.Application:
    """WeChat's API (the sandbox the tests use) answering the token and send calls after delay_s."""
    app = create_wechat_sandbox(appid=APPID, secret=APPSECRET, allow_faults=True, clock=time.time)
    for endpoint in ENDPOINTS:
        app[SANDBOX].delay_s[endpoint] = delay_s
    return app


class LoopbackServer:
    """An aiohttp app served on loopback from the bench's own event loop."""

    def __init__(self, app: web.Application):
        # A request cut short when the bot is stopped is expected here, not worth a traceback.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        self.app = app
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self.port = bench.free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def __aenter__(self) -> LoopbackServer:
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


@dataclass
class EventPoster:
    """Sends the bot the intake's "accepted" status event for an application, signed with INTAKE_SECRET."""

    http: aiohttp.ClientSession
    url: str
    statuses: collections.Counter = field(default_factory=collections.Counter)
    ms: list[float] = field(default_factory=list)

    async def accepted(self, application_id: str) -> None:
        event = {
            "event_id": f"bench-{application_id}-accepted",
            "application_id": application_id,
            "service": "medical_assistance",
            "status": "accepted",
            "note": "",
            "at": datetime.now(CHINA).isoformat(timespec="seconds"),
        }
        body = encode_body(event)
        t0 = time.perf_counter()
        try:
            async with self.http.post(
                self.url, data=body, headers=signed_headers(INTAKE_SECRET, body, event["event_id"], time.time())
            ) as resp:
                await resp.read()
                self.statuses[str(resp.status)] += 1
        except Exception as exc:
            self.statuses[type(exc).__name__] += 1
        self.ms.append((time.perf_counter() - t0) * 1000)


async def degraded_citizen(
    citizen: Citizen, n: int, end_at: float, think_s: float, events: EventPoster, problems: list[str]
) -> None:
    """Apply, have the application accepted (a push through the slow API), then ask "进度" until end_at."""
    await asyncio.sleep(random.uniform(0, 2 * think_s))
    try:
        last = await citizen.follow(application_script(n), think_s=think_s)
        if m := _APPLICATION_ID.search(last):
            await events.accepted(m.group(1))
        else:
            problems.append(f"{citizen.openid}: no application id in {last[:80]!r}")
    except OffScript as exc:
        problems.append(f"{citizen.openid}: {exc}")
    while time.perf_counter() < end_at:
        await asyncio.sleep(think_s * random.uniform(0.5, 1.5))
        await citizen.say("进度")


async def degraded_phase(sup: bench.Supervisor, args, tmp: Path, busy: str, run_prefix: str, mode: str) -> dict:
    name = f"degraded-{mode}"
    intake_words = "503 to every request" if mode == "503" else "accepts and never answers"
    async with LoopbackServer(intake_server(mode)) as intake, LoopbackServer(slow_wechat(args.wechat_delay)) as wechat:
        target = bench.bot_target(
            name,
            args,
            tmp,
            1,
            redis_url="",
            extra_env={
                "WECHAT_APPSECRET": APPSECRET,
                "WECHAT_API_BASE": wechat.url,
                "INTAKE_URL": intake.url,
                "INTAKE_SECRET": INTAKE_SECRET,
            },
        )
        print(
            f"\n[{name}] starting: {target.description}; intake {intake_words}, WeChat API answers after "
            f"{args.wechat_delay:g} s; {args.degraded_users} citizens for {args.degraded_seconds:g} s",
            flush=True,
        )
        target.spawned = sup.spawn(target.name, target.argv, target.env, target.log_path, target.var_dir)
        try:
            result = await run_degraded(target, args, busy, f"{run_prefix}d{mode[0]}")
        finally:
            await target.close_redis()
            sup.stop(target.spawned)
        sandbox = wechat.app[SANDBOX]
        return {
            "target": name,
            "description": f"{target.description}; intake {intake_words}; WeChat API delay {args.wechat_delay:g} s",
            **result,
            "intake_requests": dict(intake.app[SEEN]),
            "wechat_api_calls": {"token": sandbox.token_fetches, **sandbox.sent},
            # Shutting down with deliveries and pushes in flight: SIGTERM, then SIGKILL after bench.STOP_GRACE_S.
            "stop_s": round(target.spawned.stop_s or 0, 2),
            "stop_needed_sigkill": target.spawned.killed,
            "log_tail": [line for line in target.spawned.log_tail(2000) if re.search(r"WARNING|ERROR|Traceback", line)][-10:],
        }


async def run_degraded(target: bench.Target, args, busy: str, prefix: str) -> dict:
    protocol = WeChatProtocol(TOKEN, APPID, AES_KEY)
    await bench.first_answer(target, protocol, prefix + "probe", busy)
    async with new_http(args.degraded_users) as http:
        events = EventPoster(http, f"http://{HOST}:{target.port}/intake/events")
        citizens = [Citizen(http, protocol, target.base, f"{prefix}{i:04d}", busy) for i in range(args.degraded_users)]
        problems: list[str] = []
        end_at = time.perf_counter() + args.degraded_seconds
        await asyncio.gather(
            *(degraded_citizen(c, 100_000 + i, end_at, args.degraded_think, events, problems) for i, c in enumerate(citizens))
        )
    redis = target.redis_client(timeout_s=10)
    outbox, tries = await hash_states(redis, OUTBOX_STATES) if redis else ({}, 0)
    pushes, push_tries = await hash_states(redis, PUSH_MESSAGES) if redis else ({}, 0)
    log = [s for c in citizens for s in c.log]
    return {
        **reply_stats(log),
        "status_questions": sum(1 for s in log if s.text == "进度"),
        "off_script": problems,
        "applications_submitted": sum(events.statuses.values()),
        "delivery_states": dict(outbox),
        "delivery_attempts": tries,
        "status_events": dict(events.statuses),
        "status_event_max_ms": max(events.ms, default=float("nan")),
        "push_states": dict(pushes),
        "push_attempts": push_tries,
    }


# -- report -------------------------------------------------------------------------------------------
def kib(x: float | None) -> str:
    return "-" if x is None else f"{x / KIB:.2f} KiB"


def ttl_words(ttl: int | None) -> str:
    if ttl is None or ttl < 0:
        return "no expiry"
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60)):
        if ttl >= seconds:
            return f"{ttl / seconds:.0f} {unit}"
    return f"{ttl} s"


def print_memory(m: dict) -> None:
    print(
        f"\nRedis memory: {m['redis']}, INFO used_memory delta per citizen "
        f"(reply cache: each message's reply kept {m['reply_ttl_s']} s)"
    )
    head = f"{'what':<44} {'citizens':>8} {'right away':>12} {'long-term':>12} {'goal':>10}"
    print(head)
    print("-" * len(head))
    for label, key in (
        ("in-progress conversation (up to the address)", "conversation"),
        ("stored application (delivered, all-in)", "application"),
    ):
        r = m[key]
        print(
            f"{label:<44} {r['citizens']:>8} {kib(r['bytes_right_away']):>12} {kib(r['bytes_long_term']):>12} "
            f"{'< ' + kib(r['goal_bytes']):>10}"
        )
        print(
            f"{'  of which the keys (MEMORY USAGE)':<44} {'':>8} {kib(r['key_bytes_right_away']):>12} "
            f"{kib(r['key_bytes_long_term']):>12}"
        )
    print(
        "(used_memory less client/AOF buffers; right away = just after the last reply; long-term = after the reply-cache"
        " keys are gone, as after REPLY_TTL_S; the rest over the keys is Redis's key and expiry tables)"
    )
    for label, key in (("in-progress conversation", "conversation"), ("stored application", "application")):
        print(f"  {label}, by key family (MEMORY USAGE per citizen):")
        for f in m[key]["families"]:
            print(f"    {f['family']:<44} {f['keys']:>6.2f} keys {kib(f['bytes']):>12}   {ttl_words(f['ttl_s'])}")
    if m["problems"]:
        print(f"  WARNING: {len(m['problems'])} problems (figures not valid), e.g. {m['problems'][0]}")
    msgs = m["messages"]
    print(
        f"  {msgs['replies']} messages: p50 {msgs['p50_ms']:.0f} ms, max {msgs['max_ms']:.0f} ms, "
        f"{msgs['busy']} busy, {msgs['errors']} errors {msgs['error_kinds'] or ''}"
    )


def print_degraded(rows: list[dict]) -> None:
    print("\nDegraded: intake down, WeChat's API slow (real credentials); every reply a citizen got")
    head = (
        f"{'target':<14} {'replies':>7} {'in 5 s':>8} {'p50':>7} {'p99':>7} {'max':>7} {'errors':>6} {'busy':>5}"
        f"  {'apps':>4} {'deliveries':>10} {'pushes':>14}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if "replies" not in r:
            print(f"{r['target']:<14} FAILED: {r.get('failure')}")
            continue
        pushes = ", ".join(f"{v} {k}" for k, v in sorted(r["push_states"].items())) or "none"
        print(
            f"{r['target']:<14} {r['replies']:>7} {100 * r['share_in_5s']:>7.1f}% {bench.fmt(r['p50_ms']):>7} "
            f"{bench.fmt(r['p99_ms']):>7} {bench.fmt(r['max_ms']):>7} {r['errors']:>6} {r['busy']:>5}  "
            f"{r['applications_submitted']:>4} {r['delivery_attempts']:>4} tries {pushes:>14}"
        )
    print(
        "(latencies in ms at the citizen's side; in 5 s = share answered within WeChat's 5 s, a busy reply counts;"
        " deliveries = POSTs to the intake attempted by the bot; pushes = status messages by state)"
    )
    for r in rows:
        if "replies" not in r:
            continue
        extra = [
            f"{r['status_questions']} were 进度",
            f"intake got {r['intake_requests'] or 'nothing'}",
            f"WeChat API calls {r['wechat_api_calls']}",
            f"status events {r['status_events']}",
            f"bot stopped {r['stop_s']:g} s after SIGTERM" + (" (needed SIGKILL)" if r["stop_needed_sigkill"] else ""),
        ]
        if r["error_kinds"]:
            extra.append(f"errors: {r['error_kinds']}")
        if r["off_script"]:
            extra.append(f"{len(r['off_script'])} off script, e.g. {r['off_script'][0]}")
        print(f"  {r['target']}: " + "; ".join(extra))


def verdicts(report: dict) -> dict:
    out = {}
    m = report.get("memory")
    if m and "conversation" in m:
        for label, key in (("in-progress conversation", "conversation"), ("stored application", "application")):
            r = m[key]
            for when in ("right_away", "long_term"):
                value = r[f"bytes_{when}"]
                ok = value < r["goal_bytes"] and not m["problems"]
                out[f"memory: {label} < {r['goal_bytes'] // KIB} KiB ({when.replace('_', ' ')})"] = (
                    f"{kib(value)}  {'PASS' if ok else 'FAIL'}"
                )
    for r in report.get("degraded", []):
        if "replies" not in r:
            out[f"{r['target']}: ran"] = "FAIL"
            continue
        all_in_time = r["answered_in_5s"] == r["replies"]
        out[f"{r['target']}: every reply < {DEADLINE_MS:g} ms"] = (
            f"{100 * r['share_in_5s']:.1f}% (max {r['max_ms']:.0f} ms)  {'PASS' if all_in_time else 'FAIL'}"
        )
        out[f"{r['target']}: no errors, no busy replies"] = (
            f"{r['errors']} errors, {r['busy']} busy  {'PASS' if not r['errors'] and not r['busy'] else 'FAIL'}"
        )
    return out
