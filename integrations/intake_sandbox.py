"""A built-in intake for newcomers: the protocol of docs/intake-openapi.yaml, kept in the bot's Redis.

Mounted by the bot at /sandbox/intake when no INTAKE_URL is configured, so a fresh checkout delivers
its applications somewhere real and a newcomer can watch the whole round trip in the simulator:
the bot POSTs an application here (signed, idempotent by Idempotency-Key), and POST /emit sends a
status event back to the bot's /intake/events, signed the same way. Every answer says
{"sandbox": true}. Documents are sealed like the bot's own data; listings carry no personal data.

/emit takes no signature (it is the newcomer's button), which is why the sandbox must never be
mounted when a real intake is configured. Its unsigned endpoints (/emit and the listings) follow the
operator token policy (integrations/operator_auth.py): open in development, a bearer token
(BOT_ADMIN_TOKEN) when one is set, closed (404) on a real WeChat account without one, so a trial
with BOT_INTAKE_SANDBOX=1 cannot be used by strangers to push "approved" to real citizens.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias, TypeVar

import aiohttp
from aiohttp import web

from integrations.intake import EVENT_STATUSES, IDEMPOTENCY_HEADER, STALE_TIMESTAMP, check_request, encode_body, signed_headers
from integrations.operator_auth import operator_refusal
from integrations.redis_connection import RedisClient
from integrations.sealing import Sealer

CHINA = timezone(timedelta(hours=8))
INDEX = "sandbox:{intake}:index"
NUMBERS = "sandbox:{intake}:numbers"
SEQUENCE = "sandbox:{intake}:seq"
EVENTS = "sandbox:{intake}:events"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

# First time: a new 受理编号 and the sealed document; again: the number given the first time.
_RECEIVE = """
local number = redis.call('HGET', KEYS[1], 'application_no')
if number then return {0, number} end
number = ARGV[6] .. string.format('%05d', redis.call('INCR', KEYS[5]))
redis.call('HSET', KEYS[1], 'application_no', number, 'services', ARGV[3], 'received_at', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('HSET', KEYS[4], number, ARGV[1])
return {1, number}
"""

_EVENT_IN = """
if redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

T = TypeVar("T")
Lazy: TypeAlias = T | Callable[[], T]

REDIS_KEY = web.AppKey("sandbox_redis", object)
SEALER_KEY = web.AppKey("sandbox_sealer", object)
HTTP_KEY = web.AppKey("sandbox_http", aiohttp.ClientSession)
CONFIG_KEY = web.AppKey("sandbox_config", dict)


def _app_key(application_id: str) -> str:
    return f"sandbox:{{intake}}:app:{application_id}"


def _doc_key(application_id: str) -> str:
    return f"sandbox:{{intake}}:doc:{application_id}"


def _event_key(event_id: str) -> str:
    return f"sandbox:{{intake}}:event:{event_id}"


def create_intake_sandbox(
    redis: Lazy[RedisClient],
    sealer: Lazy[Sealer],
    *,
    secret: str,
    bot_events_url: str | None,
    http: aiohttp.ClientSession | None = None,
    clock: Callable[[], float],
    max_skew_s: float = 300,
    operator_token: str | None = None,
) -> web.Application:
    """The sandbox as an aiohttp sub-application.

    redis and sealer may be zero-argument callables, resolved at the first request: the bot mounts
    sub-applications in create_app, before its Redis client is opened at start-up. operator_token
    guards the unsigned endpoints (see the module docstring; None leaves them open).
    """
    app = web.Application()
    app[REDIS_KEY] = redis
    app[SEALER_KEY] = sealer
    app[CONFIG_KEY] = {"secret": secret, "bot_events_url": bot_events_url, "clock": clock, "max_skew_s": max_skew_s}
    if http is not None:
        app[HTTP_KEY] = http
    else:
        app.cleanup_ctx.append(_own_http_session)
    operator_only = _operator_only(operator_token)
    app.router.add_get("/", operator_only(about))
    app.router.add_post("/applications", receive_application)
    app.router.add_get("/applications", operator_only(list_applications))
    app.router.add_post("/events", receive_event)
    app.router.add_get("/events", operator_only(list_events))
    app.router.add_post("/emit", operator_only(emit))
    return app


def _operator_only(token: str | None):
    def guard(handler):
        async def guarded(request: web.Request) -> web.StreamResponse:
            return operator_refusal(request, token) or await handler(request)

        return guarded

    return guard


async def _own_http_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as http:
        app[HTTP_KEY] = http
        yield


def _reply(status: int = 200, **fields: Any) -> web.Response:
    return web.json_response({"sandbox": True, **fields}, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _refuse(status: int, error: str, **fields: Any) -> web.Response:
    return _reply(status, error=error, **fields)


def _resolved(request: web.Request) -> tuple[RedisClient, Sealer, dict]:
    app = request.app
    redis, sealer = app[REDIS_KEY], app[SEALER_KEY]
    redis = redis() if callable(redis) else redis
    sealer = sealer() if callable(sealer) else sealer
    return redis, sealer, app[CONFIG_KEY]


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), CHINA).isoformat(timespec="seconds")


async def _signed_json(request: web.Request, config: dict) -> tuple[dict | None, web.Response | None]:
    """The request's JSON object, or the refusal to send: bad signature, no key, not JSON."""
    body = await request.read()
    problem = check_request(config["secret"], request.headers, body, now=config["clock"](), max_skew_s=config["max_skew_s"])
    if problem == STALE_TIMESTAMP:
        return None, _refuse(
            401, problem, detail=f"X-Bot-Timestamp is more than {config['max_skew_s']:.0f} s from the sandbox's clock"
        )
    if problem:
        return None, _refuse(401, problem, detail="X-Bot-Signature/X-Bot-Timestamp missing or wrong")
    if not request.headers.get(IDEMPOTENCY_HEADER):
        return None, _refuse(400, "missing_idempotency_key")
    try:
        payload = json.loads(body)
    except ValueError:
        return None, _refuse(400, "bad_json")
    if not isinstance(payload, dict):
        return None, _refuse(400, "bad_json", detail="the body must be a JSON object")
    return payload, None


# -- handlers -----------------------------------------------------------------------------------
async def about(request: web.Request) -> web.Response:
    return _reply(
        name="intake sandbox",
        note="a stand-in for the county's intake platform; set INTAKE_URL to deliver to a real one",
        endpoints=["POST applications", "GET applications", "POST events", "GET events", "POST emit"],
        statuses=list(EVENT_STATUSES),
    )


async def receive_application(request: web.Request) -> web.Response:
    redis, sealer, config = _resolved(request)
    document, refusal = await _signed_json(request, config)
    if refusal:
        return refusal
    key = request.headers[IDEMPOTENCY_HEADER]
    application_id = document.get("id")
    if not isinstance(application_id, str) or not _ID.fullmatch(application_id):
        return _refuse(400, "bad_document", detail="id must be 1-64 letters, digits, - or _")
    if key != application_id:
        return _refuse(400, "idempotency_key_mismatch", detail="Idempotency-Key must be the application id")
    services = document.get("services")
    if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
        return _refuse(400, "bad_document", detail="services must be a non-empty list of service codes")
    now = config["clock"]()
    sealed = sealer.seal(encode_body(document), _doc_key(application_id))
    prefix = f"SB-{datetime.fromtimestamp(now, CHINA):%Y%m%d}-"
    new, number = await redis.register_script(_RECEIVE)(
        keys=[_app_key(application_id), _doc_key(application_id), INDEX, NUMBERS, SEQUENCE],
        args=[application_id, sealed, json.dumps(services), _now_iso(config["clock"]), now, prefix],
    )
    number = number.decode() if isinstance(number, bytes) else number
    if new == 1:
        return _reply(201, id=application_id, application_no=number)
    return _reply(409, id=application_id, application_no=number, detail="already received")


async def list_applications(request: web.Request) -> web.Response:
    redis, _, _ = _resolved(request)
    ids = [i.decode() for i in await redis.zrevrange(INDEX, 0, 499)]
    async with redis.pipeline(transaction=False) as pipe:
        for application_id in ids:
            pipe.hgetall(_app_key(application_id))
        rows = await pipe.execute()
    applications = []
    for application_id, row in zip(ids, rows, strict=True):
        h = {k.decode(): v.decode() for k, v in row.items()}
        applications.append(
            {
                "id": application_id,
                "application_no": h.get("application_no"),
                "services": json.loads(h.get("services") or "[]"),
                "received_at": h.get("received_at"),
            }
        )
    return _reply(applications=applications)


async def receive_event(request: web.Request) -> web.Response:
    """Events from the bot, such as a citizen withdrawing (撤销) a service."""
    redis, sealer, config = _resolved(request)
    event, refusal = await _signed_json(request, config)
    if refusal:
        return refusal
    event_id = request.headers[IDEMPOTENCY_HEADER]
    if event.get("event_id") != event_id or not _EVENT_ID.fullmatch(event_id):
        return _refuse(400, "idempotency_key_mismatch", detail="Idempotency-Key must be the event_id")
    summary = {k: event.get(k) for k in ("event_id", "application_id", "service", "status", "at")}
    stored = await redis.register_script(_EVENT_IN)(
        keys=[_event_key(event_id), EVENTS],
        args=[event_id, sealer.seal(encode_body(event), _event_key(event_id)), json.dumps(summary, ensure_ascii=False)],
    )
    if stored == 1:
        return _reply(200, received=True, event_id=event_id)
    return _reply(409, received=True, event_id=event_id, detail="already received")


async def list_events(request: web.Request) -> web.Response:
    redis, _, _ = _resolved(request)
    events = [json.loads(v) for v in (await redis.hgetall(EVENTS)).values()]
    return _reply(events=sorted(events, key=lambda e: e.get("at") or ""))


async def emit(request: web.Request) -> web.Response:
    """Send the bot a status event for one service of a received application, as the intake would."""
    redis, _, config = _resolved(request)
    try:
        wanted = await request.json()
    except ValueError:
        return _refuse(400, "bad_json")
    if not isinstance(wanted, dict):
        return _refuse(400, "bad_json")
    status = wanted.get("status")
    if status not in EVENT_STATUSES:
        return _refuse(400, "bad_status", allowed=list(EVENT_STATUSES))
    application_id = wanted.get("application_id")
    if not application_id and wanted.get("application_no"):
        found = await redis.hget(NUMBERS, str(wanted["application_no"]))
        application_id = found.decode() if found else None
    record = await redis.hgetall(_app_key(str(application_id))) if application_id else {}
    if not record:
        return _refuse(404, "unknown_application", detail="POST the application first (the bot does it on submit)")
    h = {k.decode(): v.decode() for k, v in record.items()}
    services = json.loads(h["services"])
    # Every status is about one service; with only one, the newcomer need not name it.
    service = wanted.get("service") or (services[0] if len(services) == 1 else None)
    if service not in services:
        return _refuse(400, "service_not_in_application", services=services)
    event = {
        "event_id": f"SBE-{uuid.uuid4().hex[:20]}",
        "application_id": application_id,
        "application_no": h["application_no"],
        "service": service,
        "status": status,
        "note": str(wanted.get("note") or ""),
        "at": _now_iso(config["clock"]),
    }
    url = config["bot_events_url"]
    if not url:
        return _refuse(503, "no_bot_events_url", detail="the sandbox does not know where the bot listens", event=event)
    body = encode_body(event)
    headers = signed_headers(config["secret"], body, event["event_id"], config["clock"]())
    try:
        async with request.app[HTTP_KEY].post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            await resp.read()
            bot_status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _refuse(502, "bot_unreachable", detail=type(exc).__name__, event=event)
    if bot_status >= 300:
        return _refuse(502, "bot_refused", bot_status=bot_status, event=event)
    return _reply(200, event=event, bot_status=bot_status)
