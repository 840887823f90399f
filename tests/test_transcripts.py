"""Whole conversations, replayed through the real /wechat endpoint in safe mode.

Each file in tests/transcripts/ is one citizen's conversation: what they send (text, voice,
image, events), what each reply must (and must not) contain, and the application document the
intake outbox must hold at the end. See tests/transcripts/README.md for the format.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import SERVICES
from bot.wechat_channel import WECHAT_TEXT_LIMIT
from tests.conftest import start_client
from tests.intake_schema import assert_valid_application

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.yaml"))


def _lookup(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if isinstance(value, list):
            value = value[int(part)]
        else:
            value = value[part]
    return value


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript(path, settings, clock, protocol, redis_client):
    script = yaml.safe_load(path.read_text(encoding="utf-8"))
    clock.set(script["now"])
    client = await start_client(settings.with_(region=script.get("region", "qingyang")), clock)
    try:
        from tests.conftest import WeChatUser

        user = WeChatUser(client, f"o{path.stem}", protocol)
        messages = 0
        reference = None
        for n, step in enumerate(script["steps"], 1):
            if "advance" in step:
                clock.advance(**step["advance"])
            if "say" in step:
                reply = await user.say(str(step["say"]))
            elif "voice" in step:
                reply = await user.voice(str(step["voice"]))
            elif "image" in step:
                reply = await user.image(str(step["image"]))
            elif "event" in step:
                reply = await user.event(step["event"])
            else:
                continue
            messages += 1
            reference = re.search(r"申请编号 ([0-9A-Z]+)", reply) or reference
            where = f"{path.name} step {n} ({step})"
            assert len(reply.encode()) <= WECHAT_TEXT_LIMIT, where
            assert "Traceback" not in reply and "请稍后再发" not in reply, f"{where}: {reply}"
            for wanted in _as_list(step.get("expect")):
                assert wanted in reply, f"{where}: expected {wanted!r} in\n{reply}"
            for unwanted in _as_list(step.get("expect_not")):
                assert unwanted not in reply, f"{where}: did not expect {unwanted!r} in\n{reply}"
        if "max_messages" in script:
            assert messages <= script["max_messages"], f"{messages} messages"
        if "application" in script:
            assert reference, "no reply gave an application reference"
            document = await client.server.app[SERVICES].outbox.get(reference.group(1))
            assert document is not None, "the submitted application is not in the outbox"
            assert_valid_application(document)
            for key, wanted in script["application"].items():
                if key == "material_codes":
                    assert [m["code"] for m in document["materials"]] == wanted
                    continue
                assert _lookup(document, key) == wanted, f"application {key}: {_lookup(document, key)!r} != {wanted!r}"
            queued = await client.server.app[SERVICES].outbox.queued_ids()
            assert queued.count(document["id"]) == 1
        await _assert_nothing_personal_in_clear(redis_client, script)
    finally:
        await client.close()


async def _assert_nothing_personal_in_clear(redis_client, script) -> None:
    """No ID number, phone or name the citizen sent may be readable in Redis."""
    secrets = [s.encode() for s in script.get("personal", [])]
    if not secrets:
        return
    async for key in redis_client.scan_iter(count=500):
        kind = await redis_client.type(key)
        if kind == b"string":
            values = [await redis_client.get(key)]
        elif kind == b"hash":
            values = [k + v for k, v in (await redis_client.hgetall(key)).items()]
        elif kind == b"stream":
            values = [repr(e).encode() for e in await redis_client.xrange(key)]
        elif kind == b"zset":
            values = await redis_client.zrange(key, 0, -1)
        else:
            values = []
        for value in values:
            for secret in secrets:
                assert secret not in (value or b"") and secret not in key, f"{secret!r} in clear under {key!r}"
