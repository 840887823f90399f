"""A local WeChat simulator at /simulator: a phone-sized chat page that plays WeChat's server.

The page (bot/static/simulator.html, .js, .css; plain files, nothing fetched from outside)
builds the same XML WeChat pushes, signs it with the token (plain mode: sha1 of the sorted
token, timestamp and nonce) and POSTs it to /wechat, so every message goes through the real
endpoint: signature and freshness checks, XML parsing, de-duplication, the dialog, Redis.

SECURITY: /simulator/config hands the WeChat token to the browser. That is intended and safe
only because the app factory mounts the simulator solely when it is enabled, which by default
means development (see Settings.simulator_enabled; on a real account it is a WARNING at start, and
it is refused with a token that is not a development one). Never
enable it on a server that WeChat talks to: anyone who can open the page could sign messages.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["setup_simulator", "STATIC_DIR", "TO_USER"]

STATIC_DIR = Path(__file__).parent / "static"
# The official account's id as the simulator names it in ToUserName.
TO_USER = "gh_sim"

# The page loads only its own files and talks only to this server (also proves "works offline").
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_NO_CACHE = {"Cache-Control": "no-store"}


def setup_simulator(
    app: web.Application, *, token: str, menu: list[dict[str, str]], region_name: str, inbox: str | None = None
) -> None:
    """Add GET /simulator (the page), /simulator/config (JSON) and /simulator/static/{name}."""
    config = {
        # Exposing the token is intended: see the module docstring.
        "token": token,
        "menu": [{"key": str(item["key"]), "label": str(item.get("label") or item["key"])} for item in menu],
        "region": region_name,
        "to_user": TO_USER,
        # Where pushed messages of the WeChat API sandbox can be read (None: no sandbox).
        "inbox": inbox,
        # Where the page tells that sandbox what the citizen did, as WeChat knows it (the 48-hour window).
        "sandbox_message": inbox.replace("/inbox/", "/sandbox/message") if inbox else None,
    }

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC_DIR / "simulator.html",
            headers={
                **_NO_CACHE,
                "Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": _CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def config_json(request: web.Request) -> web.Response:
        return web.json_response(config, headers=_NO_CACHE)

    app.router.add_get("/simulator", page, name="simulator")
    app.router.add_get("/simulator/", page)
    app.router.add_get("/simulator/config", config_json, name="simulator_config")
    # add_static refuses paths that leave STATIC_DIR and serves only regular files.
    app.router.add_static("/simulator/static", STATIC_DIR, name="simulator_static", append_version=False)
