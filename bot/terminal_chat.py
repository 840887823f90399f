"""`bot chat`: the dialog in a terminal, through the real /wechat endpoint (signed WeChat XML)."""

from __future__ import annotations

import asyncio
import itertools
import sys

import aiohttp
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.clock import protocol_time
from bot.settings import Settings
from bot.wechat_protocol import WeChatProtocol, message_xml

HELP = "Type a message and press Enter. '/voice 文字' sends a voice message, '/image' a photo, '/quit' leaves."


async def chat(settings: Settings, openid: str = "terminal-user") -> int:
    settings = settings.with_(simulator=False)
    protocol = WeChatProtocol(settings.wechat_token, settings.wechat_appid, settings.wechat_encoding_aes_key)
    server = TestServer(create_app(settings), host="127.0.0.1", port=0)
    await server.start_server()
    print(HELP)
    ids = itertools.count(int(protocol_time() * 1000))
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line or line.strip() == "/quit":
                    return 0
                line = line.rstrip("\n")
                kwargs: dict = {"msg_type": "text", "content": line}
                if line.startswith("/voice "):
                    kwargs = {"msg_type": "voice", "recognition": line[7:], "media_id": "terminal-voice"}
                elif line.strip() == "/image":
                    kwargs = {
                        "msg_type": "image",
                        "media_id": f"terminal-image-{next(ids)}",
                        "pic_url": "http://127.0.0.1/photo.jpg",
                    }
                xml = message_xml(from_user=openid, msg_id=next(ids), create_time=int(protocol_time()), **kwargs)
                query, body = protocol.build_request(xml, encrypted=settings.safe_mode)
                async with http.post(server.make_url("/wechat"), params=query, data=body) as resp:
                    raw = await resp.read()
                reply = protocol.decode_reply(raw, encrypted=settings.safe_mode)
                print("\n" + (reply.get("Content") or "(no reply)") + "\n")
    finally:
        await server.close()
