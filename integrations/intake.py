"""The intake adapter: how an application (and later a citizen's event) reaches the county's platform.

A county whose platform speaks another protocol writes one class with the two methods of
IntakeAdapter; the delivery worker (integrations/delivery.py) needs nothing else. HttpIntake is the
reference adapter for the protocol in docs/intake-openapi.yaml.

Both directions are signed the same way: X-Bot-Timestamp (unix seconds) and
X-Bot-Signature = hex(HMAC-SHA256(secret, timestamp + "." + body)), so the receiver checks the exact
bytes it got and a captured request cannot be replayed after max_skew_s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

DELIVERED, RETRY, REJECTED = "delivered", "retry", "rejected"

TIMESTAMP_HEADER = "X-Bot-Timestamp"
SIGNATURE_HEADER = "X-Bot-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Which bot process sent a request (host-pid): lets the intake (and our fault tests) tell a retry by the
# same process from one by the process that took over after the first died.
INSTANCE_HEADER = "X-Bot-Instance"

# What the intake may tell the bot about one service of an application (POST /intake/events).
EVENT_STATUSES = (
    "accepted",
    "forwarded",
    "publicity_started",
    "publicity_ended",
    "approved",
    "rejected",
    "materials_missing",
    "ready_for_pickup",
    "mailed",
    "first_payment",
    "handed_over",
    "withdrawn",
)

# Timeouts and throttling are about the moment, not the request: try again later.
_TRANSIENT_4XX = {408, 429}
# An error code from the intake's body goes into our (unsealed) delivery state only when it looks
# like a code: letters first, and no long digit run that could be an ID or phone number.
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_DIGIT_RUN = re.compile(r"\d{6}")


@dataclass(frozen=True)
class DeliveryOutcome:
    kind: str  # DELIVERED | RETRY | REJECTED
    application_no: str | None = None  # 受理编号
    status_code: int | None = None
    detail: str = ""  # short, no personal data: it is stored and shown to operators


class IntakeAdapter(Protocol):
    async def deliver(self, document: dict) -> DeliveryOutcome: ...

    async def send_event(self, event: dict) -> DeliveryOutcome: ...


def encode_body(payload: Any) -> bytes:
    """The exact bytes that are signed and sent: compact UTF-8 JSON."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


BAD_SIGNATURE, STALE_TIMESTAMP = "bad_signature", "stale_timestamp"


def check(
    secret: str, timestamp: str | None, body: bytes, signature: str | None, *, now: float, max_skew_s: float = 300
) -> str | None:
    """None when the signature is ours and the timestamp within max_skew_s of now (either way), else
    BAD_SIGNATURE or STALE_TIMESTAMP. The signature is checked first (constant time), so only a holder
    of the secret learns that its clock is off."""
    if not secret or not timestamp or not signature:
        return BAD_SIGNATURE
    # Header values are str and may hold anything; compare_digest refuses non-ASCII str.
    if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
        return BAD_SIGNATURE
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower()):
        return BAD_SIGNATURE
    # Twelve digits reach the year 33658; a longer number would not even fit a float.
    if len(timestamp) > 12 or abs(now - int(timestamp)) > max_skew_s:
        return STALE_TIMESTAMP
    return None


def verify(
    secret: str, timestamp: str | None, body: bytes, signature: str | None, *, now: float, max_skew_s: float = 300
) -> bool:
    """True when the signature is ours and the timestamp is within max_skew_s of now (either way)."""
    return check(secret, timestamp, body, signature, now=now, max_skew_s=max_skew_s) is None


def check_request(secret: str, headers: Mapping[str, str], body: bytes, *, now: float, max_skew_s: float = 300) -> str | None:
    """check() on the signature headers of an incoming request."""
    return check(secret, headers.get(TIMESTAMP_HEADER), body, headers.get(SIGNATURE_HEADER), now=now, max_skew_s=max_skew_s)


def verify_request(secret: str, headers: Mapping[str, str], body: bytes, *, now: float, max_skew_s: float = 300) -> bool:
    """verify() on the signature headers of an incoming request."""
    return check_request(secret, headers, body, now=now, max_skew_s=max_skew_s) is None


def signed_headers(secret: str, body: bytes, idempotency_key: str, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: idempotency_key,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


class HttpIntake:
    """The reference adapter: signed JSON over HTTPS, idempotent by the application (or event) id."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        base_url: str,
        secret: str,
        timeout_s: float = 10.0,
        clock: Callable[[], float],
        instance: str = "",
    ):
        self.instance = instance
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.timeout_s = timeout_s
        self.clock = clock

    async def deliver(self, document: dict) -> DeliveryOutcome:
        return await self._post("/applications", document, document["id"])

    async def send_event(self, event: dict) -> DeliveryOutcome:
        return await self._post("/events", event, event["event_id"])

    async def _post(self, path: str, payload: dict, key: str) -> DeliveryOutcome:
        body = encode_body(payload)
        headers = signed_headers(self.secret, body, key, self.clock())
        if self.instance:
            headers[INSTANCE_HEADER] = self.instance
        try:
            async with self.http.post(
                self.base_url + path,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                raw = await resp.read()
                return classify(resp.status, raw)
        except TimeoutError:
            return DeliveryOutcome(RETRY, detail="timeout")
        except aiohttp.ClientError as exc:
            return DeliveryOutcome(RETRY, detail=f"connection error: {type(exc).__name__}")


def classify(status: int, raw: bytes) -> DeliveryOutcome:
    """The protocol's answer table: 2xx and 409 delivered, 5xx (and 408/429) retry, any other rejected."""
    body = _json_object(raw)
    number = body.get("application_no")
    number = number if isinstance(number, str) and number else None
    if 200 <= status < 300:
        return DeliveryOutcome(DELIVERED, number, status, f"HTTP {status}")
    if status == 409:
        return DeliveryOutcome(DELIVERED, number, status, "HTTP 409 already received")
    detail = f"HTTP {status}"
    code = body.get("error")
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code) and not _DIGIT_RUN.search(code):
        detail += f" {code}"
    if status >= 500 or status in _TRANSIENT_4XX:
        return DeliveryOutcome(RETRY, None, status, detail)
    return DeliveryOutcome(REJECTED, None, status, detail)


def _json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
