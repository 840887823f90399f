"""Submitted applications after the conversation: who may see them, and each service's status.

Per application (all keys share the hash tag {app:<id>}):
- `meta`: sealed JSON without the application's personal data: services, region, appointment,
  publicity, the openids allowed to see it (applicant side and bound family members), the
  intake's 受理编号, and an HMAC of the applicant's ID number for binding by ID;
- `status`: service -> JSON {status, note, at, expected};
- `events`: ids of intake events already applied (an event delivered twice is applied once);
- `history`: append-only list of each status a service was given, in order (JSON, notes sealed as in
  `status`), for the county's console: `status` keeps only the latest.
Per viewer: `viewer:{<keyed digest of the openid>}:apps`, the applications that openid may see. Nothing tells a
stranger whether an application exists.

Retention: while any service is still open, nothing of an application expires (the intake's events,
reminders, the roster, withdrawal all need it). Once every service is finished (approved, rejected,
withdrawn, ...) and the application was delivered, all its records (these keys, the outbox document
and delivery state, the 受理编号 index, withdrawal events, the rating guard) expire after the pack's
retention.application_days; a viewer's index expires with the last application in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from integrations.delivery import KINDS
from integrations.feedback import asked_key
from integrations.outbox import document_key
from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer, SealError

log = logging.getLogger(__name__)

BIND_CODE_TTL_S = 24 * 3600
# Wrong binding attempts (a guessed code, or an ID number that is not the applicant's) per openid
# within BIND_WINDOW_S of the first one; then even the right code waits until the window ends.
BIND_ATTEMPTS_PER_HOUR = 5
BIND_WINDOW_S = 3600
# Wrong attempts of everyone together, and on one application (by its reference and an ID number):
# 2,000 openids once made 10,007 guesses in 35 s. The global budget makes a guess of a live code
# about one in 10**6 / (live codes * 100) an hour for all strangers together, not per stranger.
BIND_ATTEMPTS_GLOBAL_PER_HOUR = 100
BIND_ATTEMPTS_PER_APPLICATION_PER_HOUR = 5


# Statuses after which a service can no longer be withdrawn by the citizen.
PROCESSING_STARTED = {
    "forwarded",
    "publicity_started",
    "publicity_ended",
    "approved",
    "rejected",
    "ready_for_pickup",
    "mailed",
    "first_payment",
    "handed_over",
    "withdrawn",
}
FINISHED = {"approved", "rejected", "ready_for_pickup", "mailed", "first_payment", "handed_over", "withdrawn"}
# A certificate is finished when it is in the person's hands, not when it is approved (青阳: "发放残疾人证到各乡镇
# 残联，由乡镇残联安排发放到残疾人手中"; 内蒙古: "申请人自取或邮政快递送达"): approved, ready for pickup or mailed,
# it is still on its way, its rating is not asked yet and its records do not start to expire.
CERTIFICATE_FINISHED = {"handed_over", "rejected", "withdrawn"}
# How far a service has come. An intake event may keep a service where it is or move it on, never
# take it back: after 审核通过 no 已受理, after 未通过 or 已撤销 nothing (but the same again).
STAGE = {
    "submitted": 0,
    "delivery_failed": 0,
    "delivered": 1,
    "accepted": 2,
    "materials_missing": 2,
    "forwarded": 3,
    "publicity_started": 4,
    "publicity_ended": 5,
    "approved": 6,
    "ready_for_pickup": 7,
    "mailed": 8,
    "first_payment": 8,
    "handed_over": 9,
}
TERMINAL = {"rejected", "withdrawn"}


def may_follow(previous: str, new: str) -> bool:
    """Whether a service in `previous` may move to `new`."""
    if previous in TERMINAL:
        return new == previous
    if new == "withdrawn":
        return True
    if new in ("rejected", "materials_missing"):
        return STAGE.get(previous, 0) < STAGE["approved"]  # asked for or refused before the decision
    return STAGE.get(new, 0) >= STAGE.get(previous, 0)


def allowed_before(new: str) -> list[str]:
    return [p for p in [*STAGE, *TERMINAL] if may_follow(p, new)]


CONFLICTS = "intake:{conflicts}:list"
CONFLICT_COUNT = "intake:{conflicts}:count"
MAX_CONFLICTS_KEPT = 1000
PENDING_WITHDRAWAL_TTL_S = 15 * 60
MAX_HELD_PHOTOS = 9


def _app(app_id: str, part: str) -> str:
    return f"app:{{{app_id}}}:{part}"


class BadEvent(ValueError):
    """An intake event that cannot be true whatever the application (a time still to come)."""


class StatusConflict(Exception):
    """An event for a service that contradicts its status (a regression, after a withdrawal, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ApplicationView:
    id: str
    meta: dict[str, Any]
    status: dict[str, dict[str, Any]]


# Apply an event once (by id), keep the expected date when the event brings none, and optionally
# only while the service is still in a given status (ARGV[4]) or in one of a list (ARGV[5], JSON:
# -1 when it is in none of them, a conflict).
_APPLY = """
local old = redis.call('HGET', KEYS[2], ARGV[2])
local record = cjson.decode(ARGV[3])
if old then
  local previous = cjson.decode(old)
  if ARGV[4] ~= '' and previous['status'] ~= ARGV[4] then return 0 end
  if ARGV[5] ~= '' then
    local ok = false
    for _, s in ipairs(cjson.decode(ARGV[5])) do if s == previous['status'] then ok = true end end
    if not ok then
      if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
      return -1
    end
  end
  if record['expected'] == cjson.null or record['expected'] == nil then record['expected'] = previous['expected'] end
elseif ARGV[4] ~= '' then
  return 0
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(record))
record['service'] = ARGV[2]
record['event_id'] = ARGV[1]
redis.call('RPUSH', KEYS[3], cjson.encode(record))
return 1
"""


# A service's expected completion, once it can be counted (the announced 精神残疾 session).
_SET_EXPECTED = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local record = cjson.decode(old)
record['expected'] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
return 1
"""


def _bind_tries(openid: str) -> str:
    return f"bindtries:{{{openid}}}"


BIND_TRIES_GLOBAL = "bindtries:{global}"


def _pending_withdrawal(openid: str) -> str:
    # By the openid like the conversation's own keys (no keyed digest: this is read for any "1" of
    # any citizen, and must not need the pepper, which only submitted applications create).
    return f"withdraw:{{{openid}}}:pending"


def _held_photos(openid: str) -> str:
    """Photos sent for a missing material, waiting to be told which one."""
    return f"supply:{{{openid}}}:pending"


def _bind_tries_app(app_id: str) -> str:
    return f"bindtries:{{app-{app_id}}}"


# KEYS[1]: {start, count} of an openid's binding attempts; ARGV: now, window, limit. Returns 0 when the
# attempt may go ahead, else the seconds until the window ends. The window is the caller's clock
# (the dialog's); the key's TTL only cleans up.
_TAKE_ATTEMPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = tonumber(redis.call('HGET', KEYS[1], 'start'))
if start == nil or now - start >= window or now < start then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'start', ARGV[1], 'count', 0)
  redis.call('EXPIRE', KEYS[1], window)
  start = now
end
if redis.call('HINCRBY', KEYS[1], 'count', 1) <= limit then return 0 end
return math.max(1, math.ceil(start + window - now))
"""
_FORGIVE_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'count', -1) end
return 0
"""


class ApplicationRegistry:
    def __init__(
        self, client: RedisClient, sealer: Sealer, *, retention_s: int = 180 * 86400, certificate_services: tuple[str, ...] = ()
    ):
        self.certificate_services = certificate_services
        self.redis = client
        self.sealer = sealer
        self.retention_s = retention_s  # after the final result (pack: retention.application_days)
        self._apply = client.register_script(_APPLY)
        self._set_expected = client.register_script(_SET_EXPECTED)
        self._take_attempt = client.register_script(_TAKE_ATTEMPT)
        self._forgive_attempt = client.register_script(_FORGIVE_ATTEMPT)
        self._pepper: bytes | None = None

    async def id_digest(self, id_number: str) -> str:
        """A keyed digest of an ID number: lets a family member bind by ID without us keeping the ID."""
        return await self._keyed_digest(id_number.upper())

    async def _keyed_digest(self, text: str) -> str:
        if self._pepper is None:
            # Made once, kept sealed in Redis, so it survives data-key rotation and is shared by workers.
            key = "secret:{pepper}:id-digest"
            await self.redis.set(key, self.sealer.seal(os.urandom(32), key), nx=True)
            self._pepper = self.sealer.open(await self.redis.get(key), key)
        return hmac.new(self._pepper, text.encode(), hashlib.sha256).hexdigest()

    async def viewer_key(self, openid: str) -> str:
        """Which applications an openid may see: keyed by a digest, so a reader of Redis cannot tell
        which person applied for what (the application ids lead to the services)."""
        return f"viewer:{{{await self._keyed_digest('viewer:' + openid)}}}:apps"

    def _sealed_note(self, app_id: str, service: str, note: str) -> str:
        """An intake note may name the person or their condition: kept sealed inside the status record."""
        if not note:
            return ""
        return base64.b64encode(self.sealer.seal(note.encode(), _app(app_id, f"status:{service}"))).decode()

    def _open_note(self, app_id: str, service: str, record: dict[str, Any]) -> dict[str, Any]:
        sealed = record.pop("note_sealed", "")
        if sealed:
            try:
                record["note"] = self.sealer.open(base64.b64decode(sealed), _app(app_id, f"status:{service}")).decode()
            except SealError:
                record["note"] = ""
        record.setdefault("note", "")
        return record

    async def bind_code_key(self, code: str) -> str:
        # Keyed by a digest: whoever reads Redis cannot use the live codes.
        return f"bindcode:{{{await self._keyed_digest('bind-code:' + code)}}}"

    async def register(self, document: dict[str, Any], openid: str, *, expected: dict[str, str | None]) -> None:
        """Record a submitted application (idempotent: a retried turn registers it once)."""
        app_id = document["id"]
        meta = {
            "id": app_id,
            "region": document["region"],
            "services": document["services"],
            "submitted_at": document["submitted_at"],
            "appointment": document.get("appointment"),
            "publicity": document.get("publicity", {}),
            "viewers": [openid],
            "applicant_id_digest": await self.id_digest(document["applicant"]["id_number"]),
            "application_no": None,
        }
        # Each write on its own is idempotent, so a registration cut short by a crash is completed by
        # running it again (bot/effects.py, the delivery worker) without undoing what happened since.
        await self.redis.set(_app(app_id, "meta"), self._seal_meta(app_id, meta), nx=True)
        now = document["submitted_at"]
        for service in document["services"]:
            record = {"status": "submitted", "at": now, "expected": expected.get(service)}
            if await self.redis.hsetnx(_app(app_id, "status"), service, json.dumps(record, ensure_ascii=False)):
                entry = {**record, "service": service, "event_id": f"{app_id}:submitted:{service}"}
                await self.redis.rpush(_app(app_id, "history"), json.dumps(entry, ensure_ascii=False))
        await self.redis.sadd(await self.viewer_key(openid), app_id)
        await self._refresh_follower_index(openid)

    def _seal_meta(self, app_id: str, meta: dict[str, Any]) -> bytes:
        return self.sealer.seal(json.dumps(meta, ensure_ascii=False).encode(), _app(app_id, "meta"))

    async def meta(self, app_id: str) -> dict[str, Any] | None:
        blob = await self.redis.get(_app(app_id, "meta"))
        return None if blob is None else json.loads(self.sealer.open(blob, _app(app_id, "meta")))

    async def _readable_meta(self, app_id: str) -> dict[str, Any] | None | Literal[False]:
        """meta(), or False for one sealed with a key we do not have: logged and left as it is (never
        taken for an expired application), so a status list or an erasure goes on with the rest."""
        try:
            return await self.meta(app_id)
        except SealError:
            log.error("application record %s cannot be opened with our data keys (key mismatch): skipped", app_id)
            return False

    async def update_meta(self, app_id: str, **changes: Any) -> dict[str, Any] | None:
        meta = await self.meta(app_id)
        if meta is None:
            return None
        meta.update(changes)
        await self.redis.set(_app(app_id, "meta"), self._seal_meta(app_id, meta), keepttl=True)
        return meta

    async def status(self, app_id: str) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(_app(app_id, "status"))
        return {k.decode(): self._open_note(app_id, k.decode(), json.loads(v)) for k, v in raw.items()}

    async def visible_to(self, openid: str) -> list[ApplicationView]:
        ids = sorted(m.decode() for m in await self.redis.smembers(await self.viewer_key(openid)))
        views, gone = [], []
        for app_id in ids:
            meta = await self._readable_meta(app_id)
            if meta is False:
                continue
            if meta is None:
                gone.append(app_id)  # expired (retention)
            elif openid in meta["viewers"]:
                views.append(ApplicationView(app_id, meta, await self.status(app_id)))
        if gone:
            await self.redis.srem(await self.viewer_key(openid), *gone)
        return views

    async def find_by_number(self, application_no: str) -> str | None:
        found = await self.redis.get(f"appno:{{{application_no}}}")
        return found.decode() if found else None

    async def set_application_no(self, app_id: str, application_no: str) -> None:
        await self.redis.set(f"appno:{{{application_no}}}", app_id)
        await self.update_meta(app_id, application_no=application_no)

    # -- intake events -----------------------------------------------------------------------
    async def apply_event(
        self,
        app_id: str,
        event: dict[str, Any],
        *,
        expected: str | None = None,
        only_from: str | None = None,
        allowed_from: list[str] | None = None,
    ) -> bool:
        """Apply one status event, atomically; False when this event id was applied before, or when
        `only_from` is given and the service has moved on (our own "delivered" must never overwrite
        an intake event that arrived first). With `allowed_from`, a service in another status is a
        conflict: StatusConflict, nothing changed."""
        record = {
            "status": event["status"],
            "note_sealed": self._sealed_note(app_id, event["service"], event.get("note", "")),
            "at": event.get("at"),
            "expected": expected,
        }
        if event.get("by_citizen"):
            record["by_citizen"] = True  # a withdrawal from the chat: its status says whether the intake has it
        applied = await self._apply(
            keys=[_app(app_id, "events"), _app(app_id, "status"), _app(app_id, "history")],
            args=[
                event["event_id"],
                event["service"],
                json.dumps(record, ensure_ascii=False),
                only_from or "",
                json.dumps(allowed_from) if allowed_from is not None else "",
            ],
        )
        if applied == -1:
            raise StatusConflict("regression")
        return applied == 1

    async def history(self, app_id: str) -> list[dict[str, Any]]:
        """Every status each service was given, oldest first: {service, status, note, at, expected, event_id}."""
        entries = [json.loads(raw) for raw in await self.redis.lrange(_app(app_id, "history"), 0, -1)]
        return [self._open_note(app_id, e.get("service", ""), e) for e in entries]

    async def record_conflict(self, app_id: str, event: dict[str, Any], reason: str, at: float) -> None:
        """For operators: an intake event that contradicts what we know (no note: it may be personal)."""
        entry = {k: event.get(k) for k in ("event_id", "service", "status", "at")}
        entry.update(application_id=app_id, reason=reason, received_at=int(at))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(CONFLICTS, json.dumps(entry, ensure_ascii=False))
            pipe.ltrim(CONFLICTS, 0, MAX_CONFLICTS_KEPT - 1)
            pipe.incr(CONFLICT_COUNT)
            await pipe.execute()

    async def conflicts(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in await self.redis.lrange(CONFLICTS, 0, -1)]

    async def conflict_count(self) -> int:
        return int(await self.redis.get(CONFLICT_COUNT) or 0)

    # -- a withdrawal waiting for the citizen's "1" -------------------------------------------------
    async def _pending_withdrawal_key(self, openid: str) -> str:
        return _pending_withdrawal(openid)

    async def ask_withdrawal(self, openid: str, app_id: str, services: list[str]) -> None:
        key = await self._pending_withdrawal_key(openid)
        await self.redis.set(key, json.dumps({"app_id": app_id, "services": services}), ex=PENDING_WITHDRAWAL_TTL_S)

    async def take_pending_withdrawal(self, openid: str) -> dict[str, Any] | None:
        raw = await self.redis.getdel(await self._pending_withdrawal_key(openid))
        return None if raw is None else json.loads(raw)

    # -- photos sent to supply a missing material (补齐材料) ------------------------------------------
    async def hold_photo(self, openid: str, app_id: str, media_id: str) -> int:
        """A photo waiting to be told which material it is; returns how many wait."""
        key = _held_photos(openid)
        raw = await self.redis.get(key)
        held = json.loads(raw) if raw else {"app_id": app_id, "media_ids": []}
        if held["app_id"] != app_id:
            held = {"app_id": app_id, "media_ids": []}
        held["media_ids"] = [*held["media_ids"], media_id][-MAX_HELD_PHOTOS:]
        await self.redis.set(key, json.dumps(held), ex=PENDING_WITHDRAWAL_TTL_S)
        return len(held["media_ids"])

    async def held_photos(self, openid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(_held_photos(openid))
        return json.loads(raw) if raw else None

    async def take_held_photos(self, openid: str) -> dict[str, Any] | None:
        raw = await self.redis.getdel(_held_photos(openid))
        return json.loads(raw) if raw else None

    async def record_supplied(self, app_id: str, entry: dict[str, Any]) -> int:
        """Photos kept against a missing material; returns the entry's number (for its event id)."""
        return int(await self.redis.rpush(_app(app_id, "supplied"), json.dumps(entry, ensure_ascii=False)))

    async def supplied(self, app_id: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in await self.redis.lrange(_app(app_id, "supplied"), 0, -1)]

    async def forget_pending(self, openid: str) -> None:
        """On erasure: a withdrawal not yet confirmed, photos not yet labelled."""
        await self.redis.delete(_pending_withdrawal(openid), _held_photos(openid))

    async def has_pending_withdrawal(self, openid: str) -> bool:
        return bool(await self.redis.exists(await self._pending_withdrawal_key(openid)))

    async def set_expected(self, app_id: str, service: str, expected: str) -> bool:
        """The date a service's status and overdue mark follow from now on; False if it is not applied for."""
        return await self._set_expected(keys=[_app(app_id, "status")], args=[service, expected]) == 1

    # -- family members ---------------------------------------------------------------------------
    async def new_bind_code(self, app_id: str) -> str:
        """A new one-time code; the application's previous one stops working (one live code each)."""
        while True:  # never one code for two applications: a family would see a stranger's status
            code = f"{secrets.randbelow(10**6):06d}"
            key = await self.bind_code_key(code)
            if await self.redis.set(key, app_id, ex=BIND_CODE_TTL_S, nx=True):
                break
        previous = await self.redis.set(_app(app_id, "bindcode"), key, ex=BIND_CODE_TTL_S, get=True)
        if previous and previous.decode() != key:
            await self.redis.delete(previous.decode())
        return code

    async def bind_with_code(self, openid: str, code: str, at: str = "") -> str | None:
        """Use a one-time code; returns the application id or None (wrong, used or expired)."""
        app_id = await self.redis.getdel(await self.bind_code_key(code))
        if app_id is None:
            return None
        await self.redis.delete(_app(app_id.decode(), "bindcode"))
        await self._add_viewer(app_id.decode(), openid, at)
        return app_id.decode()

    async def bind_with_id(self, openid: str, reference: str, id_number: str, *, now: float = 0.0, at: str = "") -> str | None:
        """By our application reference (random) and the applicant's ID number; never by the intake's
        受理编号, which is sequential: a neighbour's is one more. Wrong tries per application are limited."""
        meta = await self.meta(reference) if reference.isalnum() else None
        if meta is None or await self._app_limited(reference, now):
            return None
        if not hmac.compare_digest(meta["applicant_id_digest"], await self.id_digest(id_number)):
            limit = BIND_ATTEMPTS_PER_APPLICATION_PER_HOUR
            await self._take_attempt(keys=[_bind_tries_app(reference)], args=[now, BIND_WINDOW_S, limit])
            return None
        await self._add_viewer(reference, openid, at)
        return reference

    async def _app_limited(self, app_id: str, now: float) -> bool:
        raw = await self.redis.hgetall(_bind_tries_app(app_id))
        start, count = float(raw.get(b"start", 0)), int(raw.get(b"count", 0))
        return count >= BIND_ATTEMPTS_PER_APPLICATION_PER_HOUR and 0 <= now - start < BIND_WINDOW_S

    async def _add_viewer(self, app_id: str, openid: str, at: str = "") -> None:
        meta = await self.meta(app_id)
        if meta is None:
            return
        if openid not in meta["viewers"]:
            bound = {**meta.get("bound_at", {}), openid: at}
            await self.update_meta(app_id, viewers=[*meta["viewers"], openid], bound_at=bound)
        await self.redis.sadd(await self.viewer_key(openid), app_id)
        await self._refresh_follower_index(openid)

    async def unbind_family(self, openid: str) -> int:
        """The applicant side ends every family member's view of its applications; returns how many."""
        removed = 0
        for app_id in sorted(m.decode() for m in await self.redis.smembers(await self.viewer_key(openid))):
            meta = await self._readable_meta(app_id)
            if not meta or meta["viewers"][0] != openid or len(meta["viewers"]) == 1:
                continue
            for follower in meta["viewers"][1:]:
                await self.redis.srem(await self.viewer_key(follower), app_id)
                removed += 1
            await self.update_meta(app_id, viewers=[openid], bound_at={})
        return removed

    async def revoke_viewer(self, app_id: str, openid: str) -> bool:
        """A county clerk ends one family member's view of this application (never the applicant side's,
        the first viewer). False when that openid is not a follower of it."""
        meta = await self.meta(app_id)
        if meta is None or openid not in meta["viewers"][1:]:
            return False
        bound_at = {k: v for k, v in meta.get("bound_at", {}).items() if k != openid}
        await self.update_meta(app_id, viewers=[v for v in meta["viewers"] if v != openid], bound_at=bound_at)
        await self.redis.srem(await self.viewer_key(openid), app_id)
        return True

    async def take_bind_attempt(self, openid: str, now: float) -> int:
        """Count one binding attempt of this openid, and of everyone: 0 when it may go ahead, else the
        seconds until the window ends. Atomic, so attempts sent at once cannot slip past the limit."""
        wait = await self._take_attempt(keys=[_bind_tries(openid)], args=[now, BIND_WINDOW_S, BIND_ATTEMPTS_PER_HOUR])
        if wait:
            return int(wait)
        wait = await self._take_attempt(keys=[BIND_TRIES_GLOBAL], args=[now, BIND_WINDOW_S, BIND_ATTEMPTS_GLOBAL_PER_HOUR])
        if wait:
            await self._forgive_attempt(keys=[_bind_tries(openid)])  # refused before it was tried
        return int(wait)

    async def forgive_bind_attempt(self, openid: str) -> None:
        """A successful attempt was not a guess: only wrong ones count."""
        await self._forgive_attempt(keys=[_bind_tries(openid)])
        await self._forgive_attempt(keys=[BIND_TRIES_GLOBAL])

    async def unbind_follower(self, openid: str) -> tuple[int, int]:
        """This openid stops following the applications it bound to as a family member; the ones it
        applied for (the first viewer: applicant or guardian) stay. Returns (kept, unbound)."""
        kept, unbound, gone = 0, 0, []
        for app_id in sorted(m.decode() for m in await self.redis.smembers(await self.viewer_key(openid))):
            meta = await self._readable_meta(app_id)
            if meta is False:
                continue
            if meta is None or openid not in meta["viewers"]:
                gone.append(app_id)
            elif meta["viewers"][0] == openid:
                kept += 1
            else:
                bound_at = {k: v for k, v in meta.get("bound_at", {}).items() if k != openid}
                await self.update_meta(app_id, viewers=[v for v in meta["viewers"] if v != openid], bound_at=bound_at)
                gone.append(app_id)
                unbound += 1
        if gone:
            await self.redis.srem(await self.viewer_key(openid), *gone)
        return kept, unbound

    # -- retention ----------------------------------------------------------------------------------
    async def is_finished_all(self, app_id: str) -> bool:
        status = await self.status(app_id)
        return bool(status) and all(self.is_finished(svc, s["status"]) for svc, s in status.items())

    def is_finished(self, service: str, status: str) -> bool:
        """Whether a service in this status is done with (the certificate: once it is handed over)."""
        return status in (CERTIFICATE_FINISHED if service in self.certificate_services else FINISHED)

    async def expire_if_finished(self, app_id: str) -> bool:
        """Once every service is finished, let the application's records expire after the retention
        period (counted again from a later event). True when they were set to expire."""
        status = await self.status(app_id)
        meta = await self.meta(app_id)
        if meta is None or not status or not all(self.is_finished(svc, s["status"]) for svc, s in status.items()):
            return False
        keys = [_app(app_id, part) for part in ("meta", "status", "events", "supplied", "history")]
        keys += [asked_key(app_id, service) for service in meta["services"]]
        for service in meta["services"]:  # a citizen's withdrawal, queued for the intake
            event_id = f"{app_id}:withdraw:{service}"
            keys += [KINDS["event"].item(event_id), KINDS["event"].state(event_id)]
        if meta.get("application_no"):
            keys.append(f"appno:{{{meta['application_no']}}}")
        # The document and its delivery state only once the delivery is over (all withdrawn before
        # delivery: on_delivered calls this again).
        delivery = KINDS["application"]
        if await self.redis.hget(delivery.state(app_id), "state") in (b"delivered", b"failed"):
            keys += [document_key(app_id), delivery.state(app_id)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.expire(key, self.retention_s)
            await pipe.execute()
        for openid in meta["viewers"]:
            await self._refresh_follower_index(openid)
        return True

    async def _refresh_follower_index(self, openid: str) -> None:
        """A viewer's index lives as long as the longest-kept application in it (for ever while one is open)."""
        key = await self.viewer_key(openid)
        ids = [m.decode() for m in await self.redis.smembers(key)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for app_id in ids:
                pipe.pttl(_app(app_id, "meta"))
            ttls = await pipe.execute()
        gone = [app_id for app_id, ttl in zip(ids, ttls, strict=True) if ttl == -2]
        if gone:
            await self.redis.srem(key, *gone)
        live = [ttl for ttl in ttls if ttl != -2]
        if -1 in live:
            await self.redis.persist(key)
        elif live:
            await self.redis.pexpire(key, max(live))
