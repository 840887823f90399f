"""The intake outbox: submitted applications, kept sealed in Redis until delivered.

Submitting is idempotent by application id: the document is written with SET NX and queued on
the stream only when it is new, in one script, so a retried turn never queues it twice. The same
script keeps the application's registration (who may follow it, the expected dates) beside it:
the registry is completed from that record right after (bot/effects.py), and again by the delivery
worker before it sends anything, so the intake never holds an application the bot does not know,
whatever moment a crash comes at.
Delivery to the intake system (a consumer group on the stream) reads from here.
"""

from __future__ import annotations

import json
from typing import Any

from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer

STREAM = "outbox:{applications}:stream"
EVENTS_STREAM = "outbox:{applications}:events"

_SUBMIT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  if KEYS[3] then redis.call('SET', KEYS[3], ARGV[3]) end
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[2])
  return 1
end
return 0
"""


def document_key(application_id: str) -> str:
    return f"outbox:{{applications}}:doc:{application_id}"


def registration_key(application_id: str) -> str:
    """What the registry still has to record of a submitted application (deleted once it has)."""
    return f"outbox:{{applications}}:registration:{application_id}"


class RedisOutbox:
    def __init__(self, client: RedisClient, sealer: Sealer):
        self.redis = client
        self.sealer = sealer
        self._submit = client.register_script(_SUBMIT)

    async def submit(self, document: dict[str, Any], registration: dict[str, Any] | None = None) -> bool:
        """Queue the application, with its registration if given; False when it was already queued (a retry)."""
        app_id = document["id"]
        key = document_key(app_id)
        sealed = self.sealer.seal(json.dumps(document, ensure_ascii=False).encode(), key)
        keys, args = [key, STREAM], [sealed, app_id]
        if registration is not None:
            reg_key = registration_key(app_id)
            keys.append(reg_key)
            args.append(self.sealer.seal(json.dumps(registration, ensure_ascii=False).encode(), reg_key))
        return await self._submit(keys=keys, args=args) == 1

    async def registration(self, application_id: str) -> dict[str, Any] | None:
        """The registration still to be recorded, or None once it is (or for an application without one)."""
        key = registration_key(application_id)
        blob = await self.redis.get(key)
        return None if blob is None else json.loads(self.sealer.open(blob, key))

    async def registration_done(self, application_id: str) -> None:
        await self.redis.delete(registration_key(application_id))

    async def submit_event(self, event: dict[str, Any]) -> bool:
        """Queue an event for the intake (e.g. a withdrawal); idempotent by event id."""
        key = f"outbox:{{applications}}:event:{event['event_id']}"
        sealed = self.sealer.seal(json.dumps(event, ensure_ascii=False).encode(), key)
        return await self._submit(keys=[key, EVENTS_STREAM], args=[sealed, event["event_id"]]) == 1

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        key = f"outbox:{{applications}}:event:{event_id}"
        blob = await self.redis.get(key)
        return None if blob is None else json.loads(self.sealer.open(blob, key))

    async def get(self, application_id: str) -> dict[str, Any] | None:
        key = document_key(application_id)
        blob = await self.redis.get(key)
        return None if blob is None else json.loads(self.sealer.open(blob, key))

    async def queued_ids(self) -> list[str]:
        entries = await self.redis.xrange(STREAM)
        # redis-py types an entry's fields as Optional (nil for XREADGROUP of a deleted entry); XRANGE has none.
        return [fields[b"id"].decode() for _, fields in entries if fields is not None]
