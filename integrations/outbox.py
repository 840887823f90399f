"""The intake outbox: submitted applications, kept sealed in Redis until delivered.

Submitting is idempotent by application id: the document is written with SET NX and queued on
the stream only when it is new, in one script, so a retried turn never queues it twice.
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
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[2])
  return 1
end
return 0
"""


def document_key(application_id: str) -> str:
    return f"outbox:{{applications}}:doc:{application_id}"


class RedisOutbox:
    def __init__(self, client: RedisClient, sealer: Sealer):
        self.redis = client
        self.sealer = sealer
        self._submit = client.register_script(_SUBMIT)

    async def submit(self, document: dict[str, Any]) -> bool:
        """Queue the application; False when it was already queued (a retry)."""
        key = document_key(document["id"])
        sealed = self.sealer.seal(json.dumps(document, ensure_ascii=False).encode(), key)
        return await self._submit(keys=[key, STREAM], args=[sealed, document["id"]]) == 1

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
