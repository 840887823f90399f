"""`bot serve` runs the server; `bot chat` lets a person try the dialog in a terminal."""
from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import sys
import time

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
    args = parser.parse_args(argv)

    configure_logging()
    settings = Settings.from_env()
    if args.command == "serve":
        settings = settings.with_(host=args.host or settings.host, port=args.port or settings.port)
        return serve(settings, workers=args.workers)
    if args.command == "chat":
        from bot.terminal_chat import chat

        return asyncio.run(chat(settings))
    return 2


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
    del embedded
    return 0


def _run_worker(settings: Settings, started: float, reuse_port: bool) -> None:
    from aiohttp import web

    from bot.app import create_app

    if reuse_port:
        configure_logging()
    app = create_app(settings)

    async def announce(_app: web.Application) -> None:
        log.info("worker %d serving after %.0f ms", os.getpid(), (time.monotonic() - started) * 1000)

    app.on_startup.append(announce)
    web.run_app(app, host=settings.host, port=settings.port, reuse_port=reuse_port or None, print=None, access_log=None)


if __name__ == "__main__":
    sys.exit(main())
