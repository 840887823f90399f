"""A real HTTP intake on loopback that fails in scripted ways and records every request it gets.

Behaviours, played per application id in the order scripted, then "ok":
- "ok"          201 {"application_no"} the first time an id is accepted, 409 with the same number after
- "500"         a server error
- "timeout"     no answer for longer than the client waits (nothing stored)
- "lost_reply"  stores the application, then no answer: the retry must get 409, not a second copy
- "409"         the intake already has it (received through another channel)
- "400"         the document is refused
"Down for a while" is stop() then start(): the same port, nobody listening in between.
POST /events (the bot's events, scripted by event_id) knows "500" and "400"; else 200, then 409.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestServer

from integrations.intake import IDEMPOTENCY_HEADER, INSTANCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class Seen:
    path: str
    key: str | None
    body_id: str | None
    signature_ok: bool
    behaviour: str
    started: float
    ended: float | None = None
    status: int | None = None
    body: bytes = b""
    instance: str | None = None  # the bot process that sent it (X-Bot-Instance: host-pid)


class FakeIntake:
    def __init__(self, secret: str, *, slow_s: float = 1.0, delay_s: float = 0.0):
        self.secret = secret
        self.slow_s = slow_s  # how long "timeout" and "lost_reply" keep the client waiting
        self.delay_s = delay_s  # every request takes this long (widens any overlap)
        self.script: dict[str, list[str]] = defaultdict(list)
        self.always: str | None = None  # one behaviour for every request, when set
        self.requests: list[Seen] = []
        self.accepted: Counter[str] = Counter()  # 201s given per id: exactly-once means 1 each
        self.events_accepted: Counter[str] = Counter()
        self.numbers: dict[str, str] = {}
        self.in_flight: Counter[str] = Counter()
        self.overlaps: list[str] = []
        self.port: int | None = None
        self._server: TestServer | None = None
        self._seq = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def then(self, application_id: str, *behaviours: str) -> None:
        self.script[application_id].extend(behaviours)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/applications", self._applications)
        app.router.add_post("/events", self._events)
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()
        self.port = self._server.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    def for_id(self, application_id: str) -> list[Seen]:
        return [r for r in self.requests if r.body_id == application_id and r.path == "/applications"]

    # -- handlers -----------------------------------------------------------------------------------
    async def _applications(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            document = json.loads(body)
        except ValueError:
            document = {}
        application_id = document.get("id")
        seen = self._record(request, body, application_id)
        self.in_flight[application_id] += 1
        if self.in_flight[application_id] > 1:
            self.overlaps.append(application_id)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            response = await self._play(seen, application_id)
        finally:
            self.in_flight[application_id] -= 1
            seen.ended = time.monotonic()
        seen.status = response.status
        return response

    async def _play(self, seen: Seen, application_id: str) -> web.Response:
        if not seen.signature_ok:
            return web.json_response({"error": "bad_signature"}, status=401)
        behaviour = seen.behaviour
        if behaviour == "500":
            return web.json_response({"error": "internal"}, status=500)
        if behaviour == "400":
            return web.json_response({"error": "invalid_document"}, status=400)
        if behaviour == "timeout":
            await asyncio.sleep(self.slow_s)
            return web.json_response({"error": "too_late"}, status=500)
        if behaviour == "409":
            self.numbers.setdefault(application_id, f"EXISTING-{application_id}")
            return web.json_response({"application_no": self.numbers[application_id]}, status=409)
        if application_id in self.numbers:
            return web.json_response({"application_no": self.numbers[application_id]}, status=409)
        self.numbers[application_id] = f"SL{next(self._seq):06d}"
        self.accepted[application_id] += 1
        if behaviour == "lost_reply":
            await asyncio.sleep(self.slow_s)
        return web.json_response({"application_no": self.numbers[application_id]}, status=201)

    async def _events(self, request: web.Request) -> web.Response:
        """The bot's events (a withdrawal): scripted like applications, by event_id; 200, then 409."""
        body = await request.read()
        event = json.loads(body or b"{}")
        event_id = event.get("event_id")
        seen = self._record(request, body, event_id, path="/events")
        if not seen.signature_ok:
            response = web.json_response({"error": "bad_signature"}, status=401)
        elif seen.behaviour in ("500", "400"):
            response = web.json_response({"error": "refused"}, status=int(seen.behaviour))
        else:
            self.events_accepted[event_id] += 1
            response = web.json_response({"ok": True}, status=200 if self.events_accepted[event_id] == 1 else 409)
        seen.ended, seen.status = time.monotonic(), response.status
        return response

    def _record(self, request: web.Request, body: bytes, body_id: str | None, path: str = "/applications") -> Seen:
        script = self.script.get(body_id) if body_id else None
        behaviour = self.always or (script.pop(0) if script else "ok")
        seen = Seen(
            path=path,
            key=request.headers.get(IDEMPOTENCY_HEADER),
            body_id=body_id,
            signature_ok=verify(
                self.secret, request.headers.get(TIMESTAMP_HEADER), body, request.headers.get(SIGNATURE_HEADER), now=time.time()
            ),
            behaviour=behaviour,
            started=time.monotonic(),
            body=body,
            instance=request.headers.get(INSTANCE_HEADER),
        )
        self.requests.append(seen)
        return seen
