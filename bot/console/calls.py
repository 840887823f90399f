"""The staff's record of calls to an applicant: who called, when, the outcome and a note.

A note may name the person or their condition, so each entry is sealed (integrations/sealing.py)
under its key. The record is kept the pack's retention.application_days after the latest call, the
period a finished application is kept for questions about it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.clock import Clock
from bot.console import keys
from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer, SealError

OUTCOMES = {"reached": "已接通", "no_answer": "无人接听", "wrong_number": "号码有误", "call_back": "约定回电"}
MAX_NOTE_CHARS = 500


@dataclass(frozen=True)
class Call:
    at: str
    user: str
    outcome: str
    note: str

    @property
    def outcome_label(self) -> str:
        return OUTCOMES.get(self.outcome, self.outcome)


class CallLog:
    def __init__(self, client: RedisClient, sealer: Sealer, clock: Clock, *, retention_s: int):
        self.redis = client
        self.sealer = sealer
        self.clock = clock
        self.retention_s = retention_s

    async def record(self, application_id: str, *, user: str, outcome: str, note: str) -> Call:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        call = Call(self.clock.now().isoformat(timespec="seconds"), user, outcome, note.strip()[:MAX_NOTE_CHARS])
        key = keys.calls(application_id)
        sealed = self.sealer.seal(json.dumps(call.__dict__, ensure_ascii=False).encode(), key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, sealed)
            pipe.expire(key, self.retention_s)
            await pipe.execute()
        return call

    async def of(self, application_id: str) -> list[Call]:
        """Newest first; an entry sealed with a key we no longer have is left out."""
        key = keys.calls(application_id)
        found = []
        for blob in reversed(await self.redis.lrange(key, 0, -1)):
            try:
                found.append(Call(**json.loads(self.sealer.open(blob, key))))
            except SealError:
                continue
        return found
