"""The floor for the benchmark: a bare aiohttp app whose POST /wechat does (almost) nothing.

The handler reads the body and answers a fixed reply. No signature check, no decryption, no Redis,
no dialog: what is left is aiohttp's own cost of one request/response on loopback, measured with
the same load generator as the bot.

The fixed reply is a safe-mode (encrypted) reply built ONCE at start-up with the same credentials
as the bot, so the load generator checks it exactly as it checks the bot's replies (same client
work per request on both sides); the server does no crypto per request.

    python benchmarks/bare_server.py --port 8081   # credentials from WECHAT_* env, else samples
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.wechat_protocol import Incoming, WeChatProtocol

SAMPLE_TOKEN = "spamtest"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
SAMPLE_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def fixed_reply() -> bytes:
    protocol = WeChatProtocol(
        os.environ.get("WECHAT_TOKEN") or SAMPLE_TOKEN,
        os.environ.get("WECHAT_APPID", SAMPLE_APPID),
        os.environ.get("WECHAT_ENCODING_AES_KEY", SAMPLE_AES_KEY),
    )
    incoming = Incoming(to_user="gh_bench", from_user="bench-user", create_time=0, msg_type="text")
    return protocol.render_text(incoming, "收到", encrypted=True).encode()


def make_app() -> web.Application:
    reply = fixed_reply()

    async def wechat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/xml")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/wechat", wechat)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the benchmark server only listens on loopback")
    # The same event loop as `bot serve` (uvloop when installed), so the ratio compares handlers, not loops.
    from bot.cli import _new_loop

    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None, loop=_new_loop())


if __name__ == "__main__":
    main()
