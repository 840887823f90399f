"""POST /intake/events: status events from the intake system, signed like our deliveries.

A bad signature or a timestamp more than 5 minutes off is refused (401); an event delivered twice
is applied once (the second answer is 409); an event that contradicts the service's status (a
regression, after a withdrawal, a service not applied for, 公示 for an exempt application) is a 409
`conflict`, kept for operators and not told to the citizen; errors are plain JSON for a machine,
never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from integrations.applications import ApplicationRegistry, BadEvent, StatusConflict
from integrations.intake import EVENT_STATUSES, STALE_TIMESTAMP, check_request

log = logging.getLogger(__name__)

STATUSES = set(EVENT_STATUSES)
MAX_EVENT_BYTES = 16 * 1024
MAX_SKEW_S = 300  # a captured event cannot be replayed later than this
# A note is shown to the citizen in a status line and a push: longer ones are cut (WeChat's limits).
MAX_NOTE_CHARS = 200


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def events_handler(
    secret: Callable[[], str],
    registry: Callable[[], ApplicationRegistry],
    services: Callable[[], set[str]],
    apply: Callable[[str, dict[str, Any]], Awaitable[bool]],
    *,
    clock: Callable[[], float],
):
    async def handle(request: web.Request) -> web.Response:
        body = await request.content.read(MAX_EVENT_BYTES + 1)
        if len(body) > MAX_EVENT_BYTES:
            return _error(413, "too_large", f"an event is at most {MAX_EVENT_BYTES} bytes")
        problem = check_request(secret(), request.headers, body, now=clock(), max_skew_s=MAX_SKEW_S)
        if problem == STALE_TIMESTAMP:
            return _error(401, problem, f"X-Bot-Timestamp is more than {MAX_SKEW_S} s from the bot's clock (replay window)")
        if problem:
            return _error(401, problem, "X-Bot-Signature/X-Bot-Timestamp missing or wrong")
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested ~1000 deep
            return _error(400, "bad_json", "the body is not JSON")
        problem = _check(event, services())
        if problem:
            return _error(400, "bad_event", problem)
        app_id = event.get("application_id")
        if not app_id and event.get("application_no"):
            app_id = await registry().find_by_number(str(event["application_no"]))
        if not app_id or await registry().meta(app_id) is None:
            return _error(404, "unknown_application", "no application with that id or number")
        event = {**event, "application_id": app_id}
        if len(event.get("note", "")) > MAX_NOTE_CHARS:
            event["note"] = event["note"][: MAX_NOTE_CHARS - 1] + "…"
        try:
            applied = await apply(app_id, event)
        except BadEvent as e:
            return _error(400, "bad_event", str(e))
        except StatusConflict as conflict:
            return _error(409, "conflict", f"{conflict.reason}: the event contradicts the service's status; kept for operators")
        if not applied:
            return web.json_response({"applied": False, "duplicate": True}, status=409)
        log.info("intake event %s applied: %s %s", event["event_id"], event["service"], event["status"])
        return web.json_response({"applied": True})

    return handle


def _check(event: Any, services: set[str]) -> str | None:
    if not isinstance(event, dict):
        return "the event must be a JSON object"
    for field in ("event_id", "service", "status"):
        if not isinstance(event.get(field), str) or not event[field] or len(event[field]) > 200:
            return f"{field} is required (a string)"
    if not (isinstance(event.get("application_id"), str) or isinstance(event.get("application_no"), str)):
        return "application_id or application_no is required"
    if event["service"] not in services:
        return f"unknown service {event['service']!r}"
    if event["status"] not in STATUSES:
        return f"unknown status {event['status']!r}"
    if "note" in event and not isinstance(event["note"], str):
        return "note must be a string"
    if "at" in event and not (isinstance(event["at"], str) and _is_time(event["at"])):
        return "at must be an ISO 8601 date-time (years 2000 to 2099)"
    # JSON can escape lone surrogates ("\ud800"), which no key, log or message can hold.
    if any(isinstance(value, str) and not _is_unicode(value) for value in event.values()):
        return "strings must be Unicode text (no lone surrogates)"
    return None


def _is_time(text: str) -> bool:
    """An ISO 8601 date or date-time that a service's expected date can be counted from ("" = now)."""
    if not text:
        return True
    try:
        return 2000 <= datetime.fromisoformat(text).year <= 2099
    except ValueError:
        return False


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
