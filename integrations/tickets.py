"""Handoffs to county staff (人工, 催办, 改日期): a ticket with who asked, about which application, what,
and the number to call back, kept sealed; operators read them with `bot tickets list`, the console
lists the open ones and closes one once the citizen was called back.

One ticket per application and request a day: asking again the same day answers with the same ticket.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from integrations.outbox import RedisOutbox
from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer

ITEMS = "ticket:{desk}:items"
SEQUENCE = "ticket:{desk}:seq"
REPEAT_WINDOW_S = 24 * 3600


def _open_key(app_id: str, asked: str) -> str:
    return f"ticket:{{desk}}:open:{app_id}:{asked}"


class Tickets:
    def __init__(self, client: RedisClient, sealer: Sealer, outbox: RedisOutbox):
        self.redis = client
        self.sealer = sealer
        self.outbox = outbox

    async def open(self, openid: str, app_id: str, asked: str, now: datetime) -> str:
        """The ticket's number (T + digits); the same one when asked again within a day."""
        existing = await self.redis.get(_open_key(app_id, asked))
        if existing is not None:
            return _text(existing)
        ticket = f"T{await self.redis.incr(SEQUENCE):05d}"
        if not await self.redis.set(_open_key(app_id, asked), ticket, ex=REPEAT_WINDOW_S, nx=True):
            return _text(await self.redis.get(_open_key(app_id, asked)) or ticket)
        document = await self.outbox.get(app_id) or {}
        applicant, agent = document.get("applicant") or {}, document.get("agent") or {}
        entry = {
            "ticket": ticket,
            "at": now.isoformat(timespec="seconds"),
            "application_id": app_id,
            "asked": asked,
            "applicant": applicant.get("name", ""),
            "agent": agent.get("name", ""),
            "callback": agent.get("phone") or applicant.get("phone", ""),
            "openid": openid,
            "state": "open",
        }
        await self.redis.hset(ITEMS, ticket, self._seal(ticket, entry))
        return ticket

    def _seal(self, ticket: str, entry: dict[str, Any]) -> bytes:
        return self.sealer.seal(json.dumps(entry, ensure_ascii=False).encode(), f"{ITEMS}:{ticket}")

    async def close(self, ticket: str, *, by: str, at: datetime) -> dict[str, Any] | None:
        """Called back: the ticket is closed (kept, for the record), and asking again opens a new one.
        None when there is no such open ticket."""
        blob = await self.redis.hget(ITEMS, ticket)
        if blob is None:
            return None
        entry = json.loads(self.sealer.open(_bytes(blob), f"{ITEMS}:{ticket}"))
        if entry["state"] != "open":
            return None
        entry.update(state="closed", closed_by=by, closed_at=at.isoformat(timespec="seconds"))
        await self.redis.hset(ITEMS, ticket, self._seal(ticket, entry))
        open_key = _open_key(entry["application_id"], entry["asked"])
        if _text(await self.redis.get(open_key) or b"") == ticket:
            await self.redis.delete(open_key)
        return entry

    async def list(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(ITEMS)
        entries = [json.loads(self.sealer.open(_bytes(blob), f"{ITEMS}:{_text(k)}")) for k, blob in raw.items()]
        return sorted(entries, key=lambda e: e["ticket"])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
