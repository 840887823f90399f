"""Operator-only HTTP endpoints: `Authorization: Bearer <BOT_ADMIN_TOKEN>`, compared in constant time.

Used by /metrics and by the intake sandbox's unsigned endpoints (its listings and /emit). The token
policy comes from Settings.operator_token: None leaves the endpoint open (development), "" closes it
as if it did not exist (real WeChat credentials and no BOT_ADMIN_TOKEN), anything else is required.
"""

from __future__ import annotations

import hmac

from aiohttp import web


def operator_refusal(request: web.Request, token: str | None) -> web.Response | None:
    """None lets the request through; otherwise the answer to send instead (404 or 401)."""
    if token is None:
        return None
    if not token:
        return web.Response(status=404, text="404: Not Found")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Header values may carry undecodable bytes (surrogate-escaped); compare bytes, never str.
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, token.encode()):
        return None
    return web.json_response(
        {"error": "unauthorized", "detail": "send Authorization: Bearer <BOT_ADMIN_TOKEN>"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="operator"'},
    )
