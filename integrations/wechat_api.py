"""A small asyncio client for the WeChat API endpoints the bot uses to push messages.

Decision: we do not wrap wechatpy's synchronous WeChatClient in a thread pool. Its token URL is
hard-coded to api.weixin.qq.com (it ignores API_BASE_URL, so WECHAT_API_BASE and a loopback test
server would not work), every call would block a thread and each worker would multiply threads,
and its token cache is per process. Five endpoints (token, customer-service message, template
message, subscription notice, temporary media) are less code as a small aiohttp client, and it is tested against a real
loopback server (integrations/wechat_sandbox.py).

Which channel: the customer-service message while the citizen's 48-hour window is open (the push queue
knows when they last wrote), else the notice form of the message (integrations/wechat_notice.py): the
template of its kind, or the subscription notice (subscribe/bizsend) where only that is configured.

The access token is shared by all workers through Redis: one worker fetches it under a lock while
the others wait for it to appear, because every fetch invalidates the previous token after a few
minutes and the daily fetch quota is small. `send()` is idempotent by key (at most once).
Never logged: the token, the secret, full openids, message texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import aiohttp

from integrations.redis_connection import RedisClient
from integrations.wechat_notice import GENERIC, Notices, shared_notices_content

log = logging.getLogger(__name__)

CHINA = timezone(timedelta(hours=8))
MAX_TEXT_BYTES = 2048  # a customer-service text message's limit, in UTF-8 bytes
TOKEN_MARGIN_S = 300  # refresh well before WeChat's expiry
SENT_TTL_S = 7 * 86400

TOKEN_INVALID = frozenset({40001, 42001, 40014})  # invalid credential, expired, invalid token
OUT_OF_WINDOW = 45015  # the citizen has not written to us in 48 hours
TOO_MANY_CUSTOM = 45047  # too many customer-service messages since the citizen last wrote
DAILY_QUOTA = 45009
BUSY = -1
UNSUBSCRIBED = 43004
SUBSCRIPTION_REFUSED = 43101  # the citizen refused (or cancelled) this subscription notice
GIVE_UP = frozenset({UNSUBSCRIBED, 40003, SUBSCRIPTION_REFUSED})  # unsubscribed, invalid openid, refused
TRANSIENT = frozenset({BUSY, 45011})  # busy, per-minute frequency limit


def sent_key(idempotency_key: str) -> str:
    """Where send() remembers a message it sent (or tried to), for SENT_TTL_S: at most once."""
    return f"wechat:{{sent}}:{idempotency_key}"


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Claim an idempotency key: new -> 'sending'; a send that stopped half way ('partial:n', n
# parts delivered) is resumed after its n parts; anything else is returned as it is.
IN_PROGRESS_RETRY_S = 60.0  # asked again this long after finding another attempt mid-send

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'sending', 'EX', ARGV[1])
  return {1, '0'}
end
local n = string.match(v, '^partial:(%d+)$')
if n then
  redis.call('SET', KEYS[1], 'sending', 'EX', ARGV[1])
  return {1, n}
end
return {0, v}
"""


@dataclass(frozen=True)
class SendResult:
    status: str  # 'sent' | 'retry' (try again later) | 'failed' (give up, record) | 'duplicate' (already sent earlier)
    errcode: int = 0
    detail: str = ""
    retry_after_s: float = 0.0
    channel: str = ""  # 'custom' | 'template' | 'subscribe': how it was (or was last tried to be) sent


class MediaUnavailable(Exception):
    """A photo WeChat will not give: gone (temporary media are kept 3 days: 40007), or WeChat unreachable."""

    def __init__(self, errcode: int, detail: str):
        super().__init__(f"errcode {errcode}: {detail}")
        self.errcode = errcode
        self.detail = detail


INVALID_MEDIA = 40007
MAX_MEDIA_BYTES = 10 * 1024 * 1024  # WeChat's own limit on an image is 10 MB


class TokenUnavailable(Exception):
    """No access token could be had (WeChat refused, unreachable, or another worker is too slow)."""

    def __init__(self, errcode: int, detail: str):
        super().__init__(f"errcode {errcode}: {detail}")
        self.errcode = errcode
        self.detail = detail


@dataclass
class _Progress:
    delivered: int  # text parts delivered so far (a resumed send starts after them)
    posted: bool = False  # a request went out: from here on, the message may have been delivered


class _MaybeSent(Exception):
    """A send whose answer was lost: sending again could deliver it twice."""


class _Transient(Exception):
    """The request may not have reached WeChat, or its answer did not reach us."""


def mask_openid(openid: str) -> str:
    return openid[:6] + "…"


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Cut text into parts of at most `limit` UTF-8 bytes, at line breaks where possible."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for piece in _pieces(text, limit):
        n = len(piece.encode())
        if current and size + n > limit + 1:  # +1: the break ending a part is dropped
            parts.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        parts.append("".join(current))
    # WeChat refuses an empty message, and a part that is only blank lines says nothing.
    return [p[:-1] for p in parts if p.strip()]


def _pieces(text: str, limit: int):
    """Each line with its break (the last one too: split_text drops it); overlong lines cut."""
    for line in text.split("\n"):
        line += "\n"
        while len(line.encode()) > limit + 1:
            head = line.encode()[:limit].decode(errors="ignore")  # never cut inside a character
            yield head + "\n"
            line = line[len(head) :]
        yield line


def seconds_to_china_midnight(now: float) -> float:
    return 86400 - (now + 8 * 3600) % 86400


class WeChatApi:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        redis: RedisClient,
        *,
        base_url: str,
        appid: str,
        secret: str,
        template_id: str = "",
        notices: Notices | None = None,
        # Pushes are sent in the background, never inside a reply, so a slow WeChat is waited for:
        # a shorter limit turned slow token fetches into repeated ones (each counts against the
        # daily quota and may invalidate the last) and slow sends into "unknown" ones.
        timeout_s: float = 10.0,
        clock: Callable[[], float],
    ):
        self.http = http
        self.redis = redis
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self._secret = secret
        self.notices = notices or Notices(shared_notices_content())
        if template_id:
            self.notices.template_ids.setdefault(GENERIC, template_id)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        # Waiters give the fetching worker its whole request timeout, and a little more.
        self._wait_s = timeout_s + 1.0
        self._lock_ms = int((timeout_s + 2.0) * 1000)
        self._token_key = f"wechat:{{api}}:{appid}:access_token"
        self._lock_key = f"wechat:{{api}}:{appid}:token_lock"
        self._last_token = ""
        self._release = redis.register_script(_RELEASE)
        self._claim = redis.register_script(_CLAIM)

    # -- access token ------------------------------------------------------------------------------
    async def access_token(self, *, refresh: bool = False, stale: str | None = None) -> str:
        """The shared token; refresh=True replaces `stale` (default: the last one we used) once."""
        if refresh:
            # Compare-and-delete: another worker may already have replaced the bad token.
            await self._release(keys=[self._token_key], args=[stale or self._last_token])
        deadline = time.monotonic() + self._wait_s
        pause = 0.005
        while True:
            cached = await self.redis.get(self._token_key)
            if cached:
                self._last_token = cached.decode()
                return self._last_token
            owner = os.urandom(8).hex()
            if await self.redis.set(self._lock_key, owner, nx=True, px=self._lock_ms):
                try:
                    cached = await self.redis.get(self._token_key)  # written just before we locked?
                    if cached:
                        self._last_token = cached.decode()
                    else:
                        self._last_token = await self._fetch_token()
                    return self._last_token
                finally:
                    await self._release(keys=[self._lock_key], args=[owner])
            if time.monotonic() >= deadline:
                raise TokenUnavailable(BUSY, "another worker is still fetching the token")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _fetch_token(self) -> str:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
        try:
            body = await self._request("GET", "/cgi-bin/token", params=params)
        except _Transient as e:
            raise TokenUnavailable(BUSY, str(e)) from None
        token = body.get("access_token")
        if not token:
            errcode = int(body.get("errcode", BUSY))
            log.warning("access token refused: errcode %s", errcode)
            raise TokenUnavailable(errcode, str(body.get("errmsg", "")))
        ttl = max(int(body.get("expires_in", 7200)) - TOKEN_MARGIN_S, 60)
        await self.redis.set(self._token_key, token, ex=ttl)
        log.info("fetched a new access token (cached %d s)", ttl)
        return token

    # -- sending -------------------------------------------------------------------------------------
    async def send(
        self,
        openid: str,
        text: str,
        *,
        idempotency_key: str,
        notice: dict[str, Any] | None = None,
        window_open: bool = True,
    ) -> SendResult:
        """Send at most once per key; the bot calls this one. `window_open`: as far as we know the citizen
        wrote within 48 hours; when not, a message that has a notice form goes as that notice at once."""
        key = sent_key(idempotency_key)
        claimed, value = await self._claim(keys=[key], args=[SENT_TTL_S])
        if claimed != 1:
            if value == b"sending":
                # Another attempt is sending it now (or died mid-send). Not done: that attempt may still
                # end in a retry, which frees the key. Asked again later, never sent twice; a sender that
                # died leaves it to be given up on after 72 h, and listed for operators.
                return SendResult("retry", detail="another attempt is sending it", retry_after_s=IN_PROGRESS_RETRY_S)
            return SendResult("duplicate", detail=f"already {value.decode()}")
        progress = _Progress(int(value))
        try:
            result = await self._deliver(openid, text, progress, notice, window_open)
        except BaseException:
            # Cancelled or Redis failed. If nothing went out, free the key for a later attempt;
            # else keep 'sending' (at most once).
            if not progress.posted:
                await _quietly(self.redis.delete(key))
            raise
        delivered = progress.delivered
        if result.status == "sent":
            await self.redis.set(key, "sent", ex=SENT_TTL_S)
        elif result.status == "failed":
            await self.redis.set(key, "failed", ex=SENT_TTL_S)
        elif delivered:
            await self.redis.set(key, f"partial:{delivered}", ex=SENT_TTL_S)
        else:
            await self.redis.delete(key)
        return result

    async def send_text(self, openid: str, text: str, *, notice: dict[str, Any] | None = None) -> SendResult:
        """A customer-service message (within 48 hours of the citizen's last message), else its notice."""
        return await self._deliver(openid, text, _Progress(0), notice, True)

    async def send_notice(self, openid: str, notice: dict[str, Any]) -> SendResult:
        """The notice form alone: the kind's template, else its subscription notice."""
        return await self._post_notice(openid, notice, _Progress(0))

    async def _post_notice(self, openid: str, notice: dict[str, Any] | None, progress: _Progress) -> SendResult:
        kind = (notice or {}).get("kind", "")
        if notice and (payload := self.notices.template_payload(openid, notice)):
            result = await self._post("/cgi-bin/message/template/send", payload, openid, progress)
            return _on(result, "template")
        if notice and (payload := self.notices.subscribe_payload(openid, notice)):
            result = await self._post("/cgi-bin/message/subscribe/bizsend", payload, openid, progress)
            return _on(result, "subscribe")
        what = f"no template for {kind}" if kind else "no notice form for this message"
        return SendResult("failed", OUT_OF_WINDOW, f"outside the 48-hour window; {what} configured", channel="template")

    async def _deliver(
        self, openid: str, text: str, progress: _Progress, notice: dict[str, Any] | None, window_open: bool
    ) -> SendResult:
        """Send the parts not yet delivered, counting them in `progress`."""
        if not text.strip():
            return SendResult("failed", detail="empty text")
        if notice and not window_open and progress.delivered == 0:
            return await self._post_notice(openid, notice, progress)
        parts = split_text(text)
        while progress.delivered < len(parts):
            i = progress.delivered
            payload = {"touser": openid, "msgtype": "text", "text": {"content": parts[i]}}
            result = await self._post("/cgi-bin/message/custom/send", payload, openid, progress)
            if result.status == "sent":
                progress.delivered += 1
                continue
            if result.errcode in (OUT_OF_WINDOW, TOO_MANY_CUSTOM) and notice:
                fallback = await self._post_notice(openid, notice, progress)
                if fallback.status == "sent":
                    progress.delivered = len(parts)
                    return fallback
                unconfigured = fallback.status == "failed" and fallback.errcode == OUT_OF_WINDOW
                if not unconfigured or result.errcode == OUT_OF_WINDOW:
                    return fallback
            if result.errcode == OUT_OF_WINDOW:
                return SendResult("failed", OUT_OF_WINDOW, "outside the 48-hour window; no template configured", channel="custom")
            if result.errcode == TOO_MANY_CUSTOM:
                # No notice form: the cap lifts when the citizen next writes to us, so try again later.
                return SendResult("retry", TOO_MANY_CUSTOM, result.detail, 3600.0, channel="custom")
            return _on(result, "custom")
        return SendResult("sent", channel="custom")

    async def create_menu(self, payload: dict[str, Any]) -> tuple[int, str]:
        """createCustomMenu: (errcode, errmsg); 0 is done. Raises TokenUnavailable without a token."""
        token = await self.access_token()
        try:
            body = await self._request("POST", "/cgi-bin/menu/create", params={"access_token": token}, payload=payload)
            errcode = int(body.get("errcode", 0))
            if errcode in TOKEN_INVALID:
                token = await self.access_token(refresh=True, stale=token)
                body = await self._request("POST", "/cgi-bin/menu/create", params={"access_token": token}, payload=payload)
        except (_Transient, _MaybeSent) as e:
            return BUSY, str(e)
        return int(body.get("errcode", 0)), str(body.get("errmsg", ""))

    async def get_media(self, media_id: str) -> tuple[str, bytes]:
        """A temporary media file (a photo a citizen sent): (content type, bytes). Raises MediaUnavailable."""
        for attempt in (0, 1):
            try:
                token = await self.access_token(refresh=attempt == 1)
            except TokenUnavailable as e:
                raise MediaUnavailable(e.errcode, "no access token: " + e.detail) from None
            params = {"access_token": token, "media_id": media_id}
            try:
                async with self.http.get(self.base_url + "/cgi-bin/media/get", params=params, timeout=self.timeout) as resp:
                    if resp.status != 200:
                        raise MediaUnavailable(BUSY, f"HTTP {resp.status}")
                    kind = resp.content_type
                    raw = await resp.content.read(MAX_MEDIA_BYTES + 1)
            except (TimeoutError, aiohttp.ClientError) as e:
                raise MediaUnavailable(BUSY, type(e).__name__) from None  # the text may hold the token
            if len(raw) > MAX_MEDIA_BYTES:
                raise MediaUnavailable(BUSY, "larger than WeChat's 10 MB")
            if kind not in ("application/json", "text/plain"):
                return kind, raw
            try:
                body = json.loads(raw)
            except ValueError:
                return kind, raw
            errcode = int(body.get("errcode", BUSY)) if isinstance(body, dict) else BUSY
            if errcode in TOKEN_INVALID and attempt == 0:
                continue
            raise MediaUnavailable(errcode, str(body.get("errmsg", "")) if isinstance(body, dict) else "")
        raise MediaUnavailable(BUSY, "access token refused twice")

    async def _post(self, path: str, payload: dict[str, Any], openid: str, progress: _Progress) -> SendResult:
        """POST with the shared token; on an invalid token, refresh it once and try once more."""
        try:
            token = await self.access_token()
            progress.posted = True
            body = await self._request("POST", path, params={"access_token": token}, payload=payload)
            errcode = int(body.get("errcode", 0))
            if errcode in TOKEN_INVALID:
                log.info("access token rejected (errcode %s): refreshing", errcode)
                token = await self.access_token(refresh=True, stale=token)
                body = await self._request("POST", path, params={"access_token": token}, payload=payload)
                errcode = int(body.get("errcode", 0))
        except TokenUnavailable as e:
            return SendResult("retry", e.errcode, "no access token: " + e.detail)
        except _Transient as e:
            log.info("%s to %s: %s (will retry)", path, mask_openid(openid), e)
            return SendResult("retry", BUSY, str(e))
        except _MaybeSent as e:
            # At most once: a citizen told twice is worse than one told by "进度" instead.
            log.warning("%s to %s: %s after sending; not sent again", path, mask_openid(openid), e)
            return SendResult("failed", BUSY, f"{e}: may have been delivered, not sent again")
        result = self._classify(errcode, str(body.get("errmsg", "")))
        if result.status != "sent":
            log.info("%s to %s: errcode %s -> %s", path, mask_openid(openid), errcode, result.status)
        return result

    def _classify(self, errcode: int, errmsg: str) -> SendResult:
        if errcode == 0:
            return SendResult("sent")
        if errcode == DAILY_QUOTA:
            return SendResult("retry", errcode, errmsg, seconds_to_china_midnight(self.clock()))
        if errcode in TRANSIENT or errcode in TOKEN_INVALID:
            return SendResult("retry", errcode, errmsg)
        if errcode in GIVE_UP:
            return SendResult("failed", errcode, errmsg)
        # Unknown (a bad template id, an unauthorised API...): retrying will not help either.
        # 45015 and 45047 from the customer-service API get the notice fallback in _deliver.
        log.warning("unexpected errcode %s from WeChat: %s", errcode, errmsg)
        return SendResult("failed", errcode, errmsg)

    async def _request(
        self, method: str, path: str, *, params: dict[str, str], payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = {} if payload is None else {"Content-Type": "application/json; charset=utf-8"}
        try:
            async with self.http.request(
                method, self.base_url + path, params=params, data=data, headers=headers, timeout=self.timeout
            ) as resp:
                # WeChat answers 200 for every business error; anything else is the network or a proxy.
                if resp.status != 200:
                    raise _Transient(f"HTTP {resp.status}")
                raw = await resp.read()
        except aiohttp.ClientConnectorError as e:
            # Never reached WeChat: safe to try again. (Only the type is kept: the text holds the token.)
            raise _Transient(type(e).__name__) from None
        except (TimeoutError, aiohttp.ClientError) as e:
            if payload is None:
                raise _Transient(type(e).__name__) from None
            # The message went out and no answer came back: WeChat may have delivered it.
            raise _MaybeSent(type(e).__name__) from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Transient("not JSON") from None
        if not isinstance(body, dict):
            raise _Transient("not a JSON object")
        return body


def _on(result: SendResult, channel: str) -> SendResult:
    return SendResult(result.status, result.errcode, result.detail, result.retry_after_s, channel)


async def _quietly(awaitable) -> None:
    # Cleanup after a failure must not mask that failure.
    with contextlib.suppress(Exception):
        await awaitable
