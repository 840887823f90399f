"""Security checks: constant-time comparisons, the replay window, operator and sandbox endpoints closed
on a real account, and family binding that cannot be guessed.

Everything runs through the real app on loopback with a real Redis. hmac.compare_digest is wrapped
(it still decides) only to see which values reach it. Related tests elsewhere: WeChat's retries of a
MsgId, re-signed as WeChat does (test_wechat_endpoint.py::test_retries_of_one_msgid_get_the_same_reply_and_advance_once),
and an intake event posted twice (test_after_submission.py::test_a_status_event_reaches_applicant_and_bound_guardian_once).
"""

from __future__ import annotations

import ast
import asyncio
import hmac
import logging
import re
import sys
import time
from pathlib import Path

import pytest

from bot.app import SANDBOX_INTAKE_SECRET, SERVICES, intake_secret
from bot.settings import Settings
from bot.wechat_protocol import message_xml
from integrations.conversations import REPLY_TTL_S
from integrations.intake import encode_body, sign, signed_headers
from tests.conftest import SAMPLE_APPID, TEST_DATA_KEY, WeChatUser, _ids, start_client
from tests.test_after_submission import CHILD_ID, MOTHER_CHILD, apply

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "op-" + "k" * 40
SKEW = Settings().max_clock_skew_s


@pytest.fixture
def digest_calls(monkeypatch) -> list[tuple]:
    """Every (a, b) given to hmac.compare_digest, which still does the comparing."""
    calls, real = [], hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls


def real_account(settings: Settings, **changes) -> Settings:
    """WECHAT_APPID + WECHAT_APPSECRET set, a real intake configured: a production deployment."""
    production = settings.with_(
        wechat_appsecret="real-app-secret",
        intake_url="http://127.0.0.1:9/intake",
        intake_secret="real-intake-secret",
        simulator=None,
    )
    return production.with_(**changes)


# -- 1. comparisons of secret-derived values are constant-time ------------------------------------------
SECRET_NAME = re.compile(
    r"(?:^|_)(signature|sig|digest|hexdigest|mac|hmac|secret|appsecret|token|password|pepper|"
    r"bind_?code|bindcode)(?:$|_)",
    re.I,
)
# Plain `code` names service, material and error codes in this project (public identifiers), so bind
# codes are matched by their own names. Comparisons with a literal, and of bool()/len() (presence,
# length), compare no secret.
ALLOWED = {
    (
        "bot/settings.py",
        "self.wechat_token == DEFAULT_DEV_TOKEN",
    ): "configuration against the public development token at start-up; no request data",
    (
        "bot/settings.py",
        "self.wechat_token not in DEVELOPMENT_TOKENS",
    ): "configuration against the public development and sample tokens at start-up; no request data",
    ("integrations/wechat_api.py", "errcode in TOKEN_INVALID"): "WeChat's public error codes (40001, 42001, 40014), not a token",
}


def _identifiers(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant) and isinstance(sub.slice.value, str):
            names.add(sub.slice.value)
        elif isinstance(sub, ast.keyword) and sub.arg:
            names.add(sub.arg)
    return names


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_literal(e) for e in node.elts)
    return isinstance(node, ast.Constant)


def _reveals_nothing(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("bool", "len")


def non_constant_time_comparisons() -> list[tuple[str, str]]:
    found = []
    for folder in ("bot", "dialogs", "integrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Compare):
                    continue
                if not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                    continue
                operands = [node.left, *node.comparators]
                if any(_is_literal(o) for o in operands) or all(_reveals_nothing(o) for o in operands):
                    continue
                if any(SECRET_NAME.search(name) for o in operands for name in _identifiers(o)):
                    found.append((str(path.relative_to(ROOT)), ast.unparse(node)))
    return found


def test_no_secret_is_compared_with_eq_or_in():
    found = non_constant_time_comparisons()
    assert [f for f in found if f not in ALLOWED] == [], "use hmac.compare_digest for these"
    assert set(ALLOWED) <= set(found), "an allowed comparison is gone: drop it from ALLOWED"


def test_the_scan_catches_the_usual_mistakes(tmp_path, monkeypatch):
    """The scan is only worth something if it flags what it is meant to flag."""
    bad = tmp_path / "bot"
    bad.mkdir()
    (bad / "leaky.py").write_text(
        "def f(request, secret, meta, h):\n"
        "    a = request.query['signature'] == expected\n"
        "    b = h.hexdigest() != given\n"
        "    c = meta['applicant_id_digest'] == digest\n"
        "    d = token in tokens\n"
        "    e = errcode == 40001\n"  # a literal: not a secret comparison
        "    g = service.code in wanted\n"  # a service code: public
        "    i = bool(a.secret) != bool(b.secret)\n"  # presence only
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    flagged = [expr for _, expr in non_constant_time_comparisons()]
    assert flagged == [
        "request.query['signature'] == expected",
        "h.hexdigest() != given",
        "meta['applicant_id_digest'] == digest",
        "token in tokens",
    ]


async def test_every_verify_path_compares_with_compare_digest(bot, settings, protocol, digest_calls):
    """Each check sees the value we derive from the secret and the one the caller sent, and decides."""
    now = str(int(time.time()))
    # WeChat's URL verification (GET): a wrong signature is compared with the right one and refused.
    wrong = "f" * 40
    resp = await bot.get("/wechat", params={"signature": wrong, "timestamp": now, "nonce": "7", "echostr": "e"})
    assert resp.status == 403 and (protocol.sign(now, "7"), wrong) in digest_calls

    # Plain mode: the query signature.
    user = WeChatUser(bot, "oDigestPlain", protocol, encrypted=False)
    query, body = protocol.build_request(user.xml(msg_type="text", content="你好", msg_id=1), encrypted=False, nonce="8")
    assert (await bot.post("/wechat", params=query, data=body)).status == 200
    assert (protocol.sign(query["timestamp"], "8"), query["signature"]) in digest_calls

    # Safe mode: msg_signature over the ciphertext, then the appid inside the decrypted payload.
    user = WeChatUser(bot, "oDigestSafe", protocol, encrypted=True)
    query, body = protocol.build_request(user.xml(msg_type="text", content="你好", msg_id=2), encrypted=True, nonce="9")
    assert (await bot.post("/wechat", params=query, data=body)).status == 200
    assert any(a == b == query["msg_signature"] for a, b in digest_calls)
    assert (SAMPLE_APPID.encode(), SAMPLE_APPID.encode()) in digest_calls

    # The intake's status events: HMAC-SHA256 of timestamp.body.
    event_body = encode_body(
        {"event_id": "ev-digest", "application_id": "QY-none", "service": "nursing_subsidy", "status": "accepted"}
    )
    headers = signed_headers(intake_secret(settings), event_body, "ev-digest", time.time())
    headers["X-Bot-Signature"] = "0" * 64
    assert (await bot.post("/intake/events", data=event_body, headers=headers)).status == 401
    expected = sign(intake_secret(settings), headers["X-Bot-Timestamp"], event_body)
    assert (expected, "0" * 64) in digest_calls

    # The intake sandbox checks the bot's signature the same way.
    doc = encode_body({"id": "QYDIGEST01", "services": ["nursing_subsidy"]})
    headers = signed_headers(intake_secret(settings), doc, "QYDIGEST01", time.time())
    assert (await bot.post("/sandbox/intake/applications", data=doc, headers=headers)).status == 201
    assert (headers["X-Bot-Signature"], headers["X-Bot-Signature"]) in digest_calls

    # The WeChat API sandbox: the AppSecret, then the access token's MAC.
    resp = await bot.get(
        "/sandbox/wechat/cgi-bin/token", params={"grant_type": "client_credential", "appid": "sandbox-appid", "secret": "guess"}
    )
    assert (await resp.json())["errcode"] == 40125 and (b"guess", b"sandbox-secret") in digest_calls
    resp = await bot.post("/sandbox/wechat/cgi-bin/message/custom/send", params={"access_token": "x_1_forged"}, json={})
    assert (await resp.json())["errcode"] == 40001 and any(a == "forged" for a, _ in digest_calls)

    # Binding by application number + ID number: the keyed digests of the ID numbers.
    ref = await apply(WeChatUser(bot, "oDigestMother", protocol), MOTHER_CHILD)
    meta = await bot.server.app[SERVICES].registry.meta(ref)
    digest_calls.clear()
    assert "不对或已过期" in await WeChatUser(bot, "oDigestAunt", protocol).say(f"绑定 {ref} 341723198001010023")
    guessed = await bot.server.app[SERVICES].registry.id_digest("341723198001010023")
    assert (meta["applicant_id_digest"], guessed) in digest_calls


async def test_the_admin_token_is_compared_with_compare_digest(settings, clock, digest_calls):
    client = await start_client(real_account(settings, admin_token=ADMIN_TOKEN), clock)
    try:
        resp = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert resp.status == 401 and (b"not-the-token", ADMIN_TOKEN.encode()) in digest_calls
    finally:
        await client.close()


async def test_a_non_ascii_signature_is_refused_not_a_500(bot, settings):
    """compare_digest raises TypeError on non-ASCII str: such headers used to reach it as a 500."""
    body = encode_body({"event_id": "ev-x", "application_id": "QY-none", "service": "nursing_subsidy", "status": "accepted"})
    for headers in (
        {"X-Bot-Timestamp": str(int(time.time())), "X-Bot-Signature": "签名" * 32},
        {"X-Bot-Timestamp": "١٧٠٠٠٠٠٠٠٠", "X-Bot-Signature": "0" * 64},
    ):
        resp = await bot.post("/intake/events", data=body, headers=headers)
        assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
        resp = await bot.post("/sandbox/intake/applications", data=body, headers={**headers, "Idempotency-Key": "ev-x"})
        assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"


# -- 2. the replay window --------------------------------------------------------------------------------
# Two seconds past the edge: int() drops up to a second, and the requests take a moment.
@pytest.mark.parametrize("offset", [-(SKEW + 2), SKEW + 2])
async def test_a_timestamp_outside_the_window_is_refused_on_every_path(bot, settings, protocol, offset):
    ts = int(time.time()) + offset
    # GET verification
    params = {"signature": protocol.sign(str(ts), "1"), "timestamp": str(ts), "nonce": "1", "echostr": "e"}
    resp = await bot.get("/wechat", params=params)
    assert (resp.status, await resp.text()) == (403, "stale timestamp")
    # POST, plain and safe mode: correctly signed, only the time is wrong
    for encrypted in (False, True):
        xml = WeChatUser(bot, "oLate", protocol).xml(msg_type="text", content="你好", msg_id=3)
        query, body = protocol.build_request(xml, encrypted=encrypted, timestamp=ts)
        resp = await bot.post("/wechat", params=query, data=body)
        assert (resp.status, await resp.text()) == (403, "stale timestamp"), encrypted
    # The intake's status events: a machine reads the code
    body = encode_body({"event_id": "ev-old", "application_id": "QY-none", "service": "nursing_subsidy", "status": "accepted"})
    resp = await bot.post("/intake/events", data=body, headers=signed_headers(intake_secret(settings), body, "ev-old", ts))
    answer = await resp.json()
    assert resp.status == 401 and answer["error"] == "stale_timestamp" and str(SKEW) in answer["detail"]


@pytest.mark.parametrize("offset", [-(SKEW - 10), SKEW - 10])
async def test_a_timestamp_inside_the_window_is_accepted(bot, protocol, offset):
    ts = int(time.time()) + offset
    params = {"signature": protocol.sign(str(ts), "1"), "timestamp": str(ts), "nonce": "1", "echostr": "e"}
    assert (await bot.get("/wechat", params=params)).status == 200
    for encrypted in (False, True):
        user = WeChatUser(bot, f"oSkew{encrypted}{offset}", protocol, encrypted=encrypted)
        query, body = protocol.build_request(
            user.xml(msg_type="text", content="你好", msg_id=4), encrypted=encrypted, timestamp=ts
        )
        resp = await bot.post("/wechat", params=query, data=body)
        assert "请问是谁申请" in protocol.decode_reply(await resp.read(), encrypted=encrypted)["Content"]


@pytest.mark.parametrize("encrypted", [True, False], ids=["safe", "plain"])
async def test_an_identical_request_replayed_gets_the_cached_reply_and_one_turn(bot, protocol, redis_client, encrypted):
    """The very same bytes (query and body) sent again, as a captured request would be."""
    user = WeChatUser(bot, f"oReplay{encrypted}", protocol, encrypted=encrypted)
    await user.say("你好")
    xml = user.xml(msg_type="text", content="替家人申请", msg_id=7_000_000 + encrypted)
    query, body = protocol.build_request(xml, encrypted=encrypted)
    replies = []
    for _ in range(3):
        resp = await bot.post("/wechat", params=query, data=body)
        assert resp.status == 200
        replies.append(protocol.decode_reply(await resp.read(), encrypted=encrypted)["Content"])
    assert "您是申请人的什么人" in replies[0] and replies == [replies[0]] * 3
    assert "bot_dedup_hits_total 2.0" in await (await bot.get("/metrics")).text()
    assert "姓名" in await user.say("母亲")  # one step: "母亲" is read as the relation
    # The cached reply lives longer than any timestamp WeChat's window still accepts (±SKEW around it).
    ttl = await redis_client.ttl(f"u:{{{user.openid}}}:replies")
    assert ttl > 2 * SKEW and REPLY_TTL_S >= 2 * SKEW + 60


async def test_a_replayed_intake_event_is_applied_once(bot, settings, protocol):
    services = bot.server.app[SERVICES]
    ref = await apply(WeChatUser(bot, "oReplayEvent", protocol), MOTHER_CHILD)
    body = encode_body(
        {
            "event_id": "ev-replay",
            "application_id": ref,
            "service": "nursing_subsidy",
            "status": "accepted",
            "at": "2026-11-23T09:00:00+08:00",
        }
    )
    headers = signed_headers(intake_secret(settings), body, "ev-replay", time.time())
    answers = [await bot.post("/intake/events", data=body, headers=headers) for _ in range(3)]
    assert [a.status for a in answers] == [200, 409, 409]
    assert (await services.registry.status(ref))["nursing_subsidy"]["status"] == "accepted"


# -- 3. operator and sandbox endpoints on a real account --------------------------------------------
CLOSED_ON_A_REAL_ACCOUNT = [
    ("GET", "/sandbox/wechat/inbox/oUser"),
    ("GET", "/sandbox/wechat/cgi-bin/token"),
    ("GET", "/sandbox/intake/"),
    ("GET", "/sandbox/intake/applications"),
    ("GET", "/sandbox/intake/events"),
    ("POST", "/sandbox/intake/emit"),
    ("POST", "/sandbox/intake/applications"),
    ("GET", "/simulator"),
    ("GET", "/simulator/config"),
    ("GET", "/simulator/static/simulator.js"),
    ("GET", "/metrics"),
]


async def test_with_real_credentials_sandboxes_simulator_and_metrics_do_not_exist(settings, clock, protocol):
    client = await start_client(real_account(settings), clock)
    try:
        for method, path in CLOSED_ON_A_REAL_ACCOUNT:
            resp = await client.request(method, path, headers={"Authorization": "Bearer anything"})
            assert resp.status == 404, (method, path, resp.status)
        health = await client.get("/healthz")
        assert health.status == 200 and await health.json() == {"ok": True, "region": "qingyang"}
        ts = str(int(time.time()))
        params = {"signature": protocol.sign(ts, "5"), "timestamp": ts, "nonce": "5", "echostr": "still-here"}
        assert await (await client.get("/wechat", params=params)).text() == "still-here"
    finally:
        await client.close()


async def test_metrics_needs_the_admin_bearer_token(settings, clock):
    client = await start_client(real_account(settings, admin_token=ADMIN_TOKEN), clock)
    try:
        for headers in (
            {},
            {"Authorization": "Bearer " + ADMIN_TOKEN[:-1]},
            {"Authorization": "Basic " + ADMIN_TOKEN},
            {"Authorization": ADMIN_TOKEN},
            {"Authorization": "Bearer " + ADMIN_TOKEN + "x"},
        ):
            resp = await client.get("/metrics", headers=headers)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer"), headers
            assert "bot_" not in await resp.text()
        resp = await client.get("/metrics", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        assert resp.status == 200 and "bot_turn_seconds" in await resp.text()
        # Still no sandboxes or simulator: the token opens operator endpoints, it does not mount anything.
        assert (await client.get("/simulator", headers={"Authorization": "Bearer " + ADMIN_TOKEN})).status == 404
    finally:
        await client.close()


async def test_sandbox_and_simulator_only_when_asked_for_and_the_sandbox_buttons_need_the_token(settings, clock):
    trial = real_account(settings, intake_url="", intake_secret="", intake_sandbox=True, simulator=True, admin_token=ADMIN_TOKEN)
    client = await start_client(trial, clock)
    try:
        assert (await client.get("/simulator")).status == 200
        assert (await client.get("/sandbox/wechat/inbox/oUser")).status == 404  # never with real credentials
        for method, path in (
            ("GET", "/sandbox/intake/"),
            ("GET", "/sandbox/intake/applications"),
            ("POST", "/sandbox/intake/emit"),
        ):
            assert (await client.request(method, path)).status == 401, path
        listing = await client.get("/sandbox/intake/applications", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        assert listing.status == 200 and (await listing.json())["applications"] == []
        # The bot's own deliveries are signed, not token-bearing: they still get in.
        doc = encode_body({"id": "QYTRIAL001", "services": ["nursing_subsidy"]})
        resp = await client.post(
            "/sandbox/intake/applications", data=doc, headers=signed_headers(intake_secret(trial), doc, "QYTRIAL001", time.time())
        )
        assert resp.status == 201
        # The sandbox's secret is public in development; on a real account it is not that one, and the
        # sandbox still signs with the bot's (the event gets past the signature: 404, unknown to the bot).
        event = encode_body(
            {"event_id": "ev-trial", "application_id": "QYTRIAL001", "service": "nursing_subsidy", "status": "approved"}
        )
        resp = await client.post(
            "/intake/events", data=event, headers=signed_headers(SANDBOX_INTAKE_SECRET, event, "ev-trial", time.time())
        )
        assert resp.status == 401 and intake_secret(trial) != SANDBOX_INTAKE_SECRET
        resp = await client.post(
            "/sandbox/intake/emit",
            json={"application_id": "QYTRIAL001", "status": "approved"},
            headers={"Authorization": "Bearer " + ADMIN_TOKEN},
        )
        assert (await resp.json())["bot_status"] == 404
    finally:
        await client.close()
    # Without BOT_ADMIN_TOKEN the sandbox's buttons are closed on a real account.
    client = await start_client(trial.with_(admin_token=""), clock)
    try:
        assert (
            await client.post("/sandbox/intake/emit", json={"application_id": "QYTRIAL001", "status": "approved"})
        ).status == 404
        assert (await client.get("/sandbox/intake/applications")).status == 404
    finally:
        await client.close()


def test_settings_for_a_real_account():
    env = {
        "WECHAT_APPID": "wx1",
        "WECHAT_APPSECRET": "s",
        "WECHAT_TOKEN": "t0ken",
        "INTAKE_URL": "https://intake",
        "INTAKE_SECRET": "x",
        "BOT_ADMIN_TOKEN": ADMIN_TOKEN,
        "BOT_DATA_KEY": TEST_DATA_KEY,
    }
    real = Settings.from_env(env)
    real.validate()
    assert real.operator_token == ADMIN_TOKEN and not real.simulator_enabled
    assert Settings.from_env({**env, "BOT_ADMIN_TOKEN": ""}).operator_token == ""  # closed
    assert Settings.from_env({}).operator_token is None and Settings.from_env({}).simulator_enabled  # development
    # A token that is not the public development one is not handed to browsers by default.
    assert not Settings.from_env(
        {"WECHAT_TOKEN": "t0ken", "WECHAT_APPID": "wx1", "WECHAT_ENCODING_AES_KEY": "k" * 43}
    ).simulator_enabled
    # A trial of the intake sandbox on an account without AppSecret: its status events are not signed with the
    # public sandbox secret (anyone could tell a real citizen their application was refused).
    trial = Settings.from_env(
        {"WECHAT_TOKEN": "t0ken", "WECHAT_APPID": "wx1", "WECHAT_ENCODING_AES_KEY": "k" * 43, "BOT_INTAKE_SANDBOX": "1"}
    )
    assert trial.intake_sandbox_enabled and intake_secret(trial) != SANDBOX_INTAKE_SECRET
    with pytest.raises(ValueError, match="BOT_ADMIN_TOKEN must be at least"):
        Settings.from_env({**env, "BOT_ADMIN_TOKEN": "short"}).validate()
    with pytest.raises(ValueError, match="development WECHAT_TOKEN"):
        Settings.from_env({**env, "WECHAT_TOKEN": ""}).validate()


# -- 4. family binding cannot be guessed ----------------------------------------------------------------
async def _code(mother: WeChatUser) -> str:
    return (await mother.say("绑定码")).split("绑定码：")[1][:6]


def _wrong(code: str, n: int) -> str:
    guess = f"{n:06d}"
    return guess if guess != code else f"{n + 500000:06d}"


async def test_after_five_wrong_attempts_even_the_right_code_waits_an_hour(bot, clock, protocol):
    mother = WeChatUser(bot, "oBindMother", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    code = await _code(mother)
    guesser = WeChatUser(bot, "oBindGuesser", protocol)
    for n in range(5):
        assert "不对或已过期" in await guesser.say(f"绑定 {_wrong(code, n)}")
    limited = await guesser.say(f"绑定 {code}")
    assert "次数太多" in limited and "11:00以后再试" in limited and ref not in limited
    # Leaving and coming back does not reset the count.
    await guesser.event("unsubscribe")
    await guesser.event("subscribe")
    clock.advance(minutes=59)
    assert "次数太多" in await guesser.say(f"绑定 {code}")
    # Another WeChat user is not affected by the guesser's count.
    aunt = WeChatUser(bot, "oBindAunt", protocol)
    assert "不对或已过期" in await aunt.say(f"绑定 {_wrong(code, 9)}")
    assert "绑定成功" in await aunt.say(f"绑定 {ref} {CHILD_ID}")
    # The hour is over: the right code (never used by the refused attempts) works.
    clock.advance(minutes=1)
    assert "绑定成功" in await guesser.say(f"绑定 {code}")
    assert ref in await guesser.say("进度")


async def test_only_wrong_attempts_count(bot, protocol):
    mother = WeChatUser(bot, "oCountMother", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    uncle = WeChatUser(bot, "oCountUncle", protocol)
    for n in range(4):
        assert "不对或已过期" in await uncle.say(f"绑定 {ref} 34172320140601{n:03d}X")  # wrong ID numbers
    assert "绑定成功" in await uncle.say(f"绑定 {ref} {CHILD_ID}")
    assert "不对或已过期" in await uncle.say("绑定 999999")  # the 5th wrong one
    assert "次数太多" in await uncle.say("绑定 999998")


async def test_guesses_sent_at_once_get_exactly_five_tries(bot, protocol):
    guesser = WeChatUser(bot, "oBurst", protocol)
    replies = await asyncio.gather(*(guesser.say(f"绑定 {n:06d}") for n in range(12)))
    assert sum("不对或已过期" in r for r in replies) == 5
    assert sum("次数太多" in r for r in replies) == 7


async def test_bind_codes_are_six_random_digits_used_once(bot, protocol, redis_client):
    """10**6 codes (19.9 bits); with 5 wrong tries an hour per user, one user needs on average
    10**6 / (2 * live codes) tries: for 10 live codes, 50 000 tries = about 14 months of guessing."""
    mother = WeChatUser(bot, "oCodeMother", protocol)
    await apply(mother, MOTHER_CHILD)
    codes = {await _code(mother) for _ in range(5)}
    assert len(codes) == 5 and all(re.fullmatch(r"\d{6}", c) for c in codes)
    registry = bot.server.app[SERVICES].registry
    last = await _code(mother)
    assert 0 < await redis_client.ttl(await registry.bind_code_key(last)) <= 24 * 3600
    # One live code per application: each new one cancels the one before (issue 11).
    assert [await redis_client.ttl(await registry.bind_code_key(c)) for c in codes - {last}] == [-2] * len(codes - {last})
    # Kept as keyed digests: whoever reads Redis cannot use a live code.
    keys = [k.decode() async for k in redis_client.scan_iter(match="bindcode:*")]
    assert len(keys) == 1 and not any(c in k for c in codes for k in keys)


# -- hardening round two (issue 13): a DTD anywhere, against the real endpoint ----------------------------
async def test_a_dtd_hidden_behind_a_comment_is_refused_and_resets_nothing(bot, protocol):
    """`<!--<xml--><!DOCTYPE …>` with a valid signature: expat would expand `&e;` (1,000 characters, 200
    times; a 1.5 KB body once took 61 s) and `&e;` alone would say 重新开始. Refused before expat sees it."""
    citizen = WeChatUser(bot, "oDtdTarget", protocol)
    await citizen.say("你好")
    assert "要办哪些事" in await citizen.say("1")
    for expands_to, times in (("重新开始", 1), ("重新开始" * 250, 200)):
        evil = (
            f'<!--<xml--><!DOCTYPE xml [<!ENTITY e "{expands_to}">]><xml><ToUserName>gh</ToUserName>'
            f"<FromUserName>oDtdTarget</FromUserName><CreateTime>{int(time.time())}</CreateTime>"
            f"<MsgType>text</MsgType><MsgId>{time.time_ns()}</MsgId><Content>{'&e;' * times}</Content></xml>"
        )
        for encrypted in (True, False):
            query, body = protocol.build_request(evil, encrypted=encrypted)
            resp = await bot.post("/wechat", params=query, data=body)
            assert resp.status == 400, await resp.text()
    assert "户籍地址" in await citizen.say("1 3")  # the conversation was where it was


async def test_one_captured_query_string_signs_one_message_only(bot, protocol):
    """Plain mode signs the query, not the body: a (timestamp, nonce, signature) seen once was accepted for
    50 other openids and bodies. Now it is good for the message it first came with (and WeChat's retries
    of it), and nothing else."""
    victim = WeChatUser(bot, "oCapturedVictim", protocol, encrypted=False)
    xml = victim.xml(msg_type="text", content="你好", msg_id=next(_ids))
    query, body = protocol.build_request(xml, encrypted=False, nonce="424242")
    first = await bot.post("/wechat", params=query, data=body)
    assert first.status == 200
    again = await bot.post("/wechat", params=query, data=body)  # WeChat's retry: the same reply
    # (the same text; the reply's CreateTime is the second it is rendered in)
    reply = protocol.decode_reply(await first.read(), encrypted=False)["Content"]
    assert again.status == 200 and protocol.decode_reply(await again.read(), encrypted=False)["Content"] == reply
    for n in range(3):
        forged = WeChatUser(bot, f"oForged{n}", protocol, encrypted=False).xml(
            msg_type="text", content="重新开始", msg_id=next(_ids)
        )
        resp = await bot.post("/wechat", params=query, data=forged.encode())
        assert resp.status == 403
    other = victim.xml(msg_type="text", content="重新开始", msg_id=next(_ids))
    assert (await bot.post("/wechat", params=query, data=other.encode())).status == 403


async def test_in_safe_mode_a_captured_query_signs_its_own_encrypted_body_only(bot, protocol, redis_client):
    """Safe mode's msg_signature covers the encrypted body, so a captured query carries no other message
    (another body, another openid, the plaintext): refused by the signature itself. That is why a safe-mode
    turn claims no triple in Redis (one round trip less a message); WeChat's retry still gets its reply."""
    victim = WeChatUser(bot, "oSafeVictim", protocol)
    xml = victim.xml(msg_type="text", content="你好", msg_id=next(_ids))
    query, body = protocol.build_request(xml, encrypted=True, nonce="434343")
    first = await bot.post("/wechat", params=query, data=body)
    assert first.status == 200
    reply = protocol.decode_reply(await first.read(), encrypted=True)["Content"]
    again = await bot.post("/wechat", params=query, data=body)
    assert again.status == 200 and protocol.decode_reply(await again.read(), encrypted=True)["Content"] == reply
    forged_xml = WeChatUser(bot, "oSafeForged", protocol).xml(msg_type="text", content="重新开始", msg_id=next(_ids))
    _, forged_body = protocol.build_request(forged_xml, encrypted=True)
    assert (await bot.post("/wechat", params=query, data=forged_body)).status == 403
    plain = {k: v for k, v in query.items() if k not in ("encrypt_type", "msg_signature")}
    assert (await bot.post("/wechat", params=plain, data=forged_xml.encode())).status == 403
    assert [k async for k in redis_client.scan_iter(match="replay:*")] == []


async def test_forged_message_types_do_not_grow_the_metrics(bot, protocol):
    """MsgType is the sender's word: 300 made-up types once made 300 label values of bot_messages_total,
    in /metrics and in every process's memory for good. Types WeChat does not send are counted as other."""
    user = WeChatUser(bot, "oTypeForger", protocol)
    for n in range(300):
        reply = await user.post_xml(user.xml(msg_type=f"kind{n:03d}", msg_id=next(_ids)))
        assert reply  # a kind word, not an error
    await user.say("你好")
    lines = [line for line in (await (await bot.get("/metrics")).text()).splitlines() if line.startswith("bot_messages_total")]
    assert sorted(lines) == ['bot_messages_total{type="other"} 300.0', 'bot_messages_total{type="text"} 1.0']


async def test_a_message_replayed_inside_the_window_is_never_a_second_turn(bot, protocol):
    """Only the last 16 ids used to be kept: a byte-identical encrypted 重新开始 replayed after 17 more
    messages (inside 300 s) ran again and wiped the form. Ids are now kept for the whole window."""
    user = WeChatUser(bot, "oReplayLate", protocol)
    await user.say("你好")
    query, body = protocol.build_request(user.xml(msg_type="text", content="重新开始", msg_id=next(_ids)), encrypted=True)
    assert (await bot.post("/wechat", params=query, data=body)).status == 200
    await user.say("2")  # 替家人申请
    for _ in range(17):
        await user.say("为什么")  # a question: the step stays where it is
    store = bot.server.app[SERVICES].store
    before = await store.load("oReplayLate")
    replayed = await bot.post("/wechat", params=query, data=body)
    assert replayed.status == 200
    assert "请问是谁申请" not in protocol.decode_reply(await replayed.read(), encrypted=True).get("Content", "")
    after = await store.load("oReplayLate")
    assert after["state"] == before["state"] and after["data"] == before["data"]


async def test_a_stranger_cannot_grow_a_session_without_bound(bot, protocol, redis_client):
    """300 forged photos once made a 17 MiB session and 430 ms turns: photos sent before the checklist are
    kept as media ids only, at most 20 of them, and the sender must be an openid."""
    user = WeChatUser(bot, "oPhotoFlood", protocol)
    await user.say("你好")
    long_url = "http://127.0.0.1/" + "p" * 8000
    for n in range(40):
        xml = user.xml(msg_type="image", media_id=f"m{n:03d}" + "x" * 300, pic_url=long_url, msg_id=next(_ids))
        reply = await user.post_xml(xml)
    assert "新的先不保存" in reply and "请问是谁申请" in reply
    session = await bot.server.app[SERVICES].store.load("oPhotoFlood")
    kept = session["data"]["unassigned_photos"]
    assert len(kept) == 20 and all(set(p) == {"media_id"} and len(p["media_id"]) <= 128 for p in kept)
    assert len(await redis_client.get("u:{oPhotoFlood}:conversation")) < 8 * 1024
    for sender in ("o" * 65, "oUser:{other}", "o user", "oUser*"):
        xml = WeChatUser(bot, sender, protocol).xml(msg_type="text", content="你好", msg_id=next(_ids))
        query, body = protocol.build_request(xml, encrypted=True)
        assert (await bot.post("/wechat", params=query, data=body)).status == 400


async def test_a_first_message_costs_a_day_of_storage_until_something_is_answered(bot, protocol, redis_client):
    """Every new openid's greeting used to be kept for the pack's 30 days, answered or not."""
    day = 86400
    full = bot.server.app[SERVICES].pack.conversation_days * 86400
    ttl = lambda openid: redis_client.ttl(f"u:{{{openid}}}:conversation")  # noqa: E731
    stranger = WeChatUser(bot, "oStrangerOnce", protocol)
    for said in ("你好", "低保怎么办", "？？"):  # a greeting, a question, nonsense: nothing answered
        await stranger.say(said)
        assert 0 < await ttl("oStrangerOnce") <= day < full
    await stranger.event("subscribe")
    assert 0 < await ttl("oStrangerOnce") <= day
    await stranger.say("2")  # the first answer (someone applies for a family member): kept the full time
    assert await ttl("oStrangerOnce") > full - 60
    photos = WeChatUser(bot, "oPhotoFirst", protocol)
    await photos.say("你好")
    await photos.post_xml(photos.xml(msg_type="image", media_id="m-early", pic_url="http://x/" + "p" * 8000, msg_id=next(_ids)))
    session = await bot.server.app[SERVICES].store.load("oPhotoFirst")
    assert session["data"]["unassigned_photos"] == [{"media_id": "m-early"}]  # kept (PicUrl not at all): theirs
    assert await ttl("oPhotoFirst") > full - 60


async def test_a_body_dribbled_byte_by_byte_is_dropped(settings, clock, protocol):
    client = await start_client(settings.with_(body_read_timeout_s=1.0), clock)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        writer.write(b"POST /wechat?signature=x&timestamp=1&nonce=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n")
        answer = b""
        for _ in range(40):  # a byte every 0.1 s: 400 bytes would take 40 s
            writer.write(b"<")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(200), 0.1)
            except TimeoutError:
                continue
            if answer:
                break
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        await client.close()


async def test_headers_dribbled_byte_by_byte_are_cut_off_by_the_real_server(tmp_path, redis_url):
    """`bot serve` kept a connection whose headers arrived a byte at a time for aiohttp's 75 s keep-alive."""
    from tests.processes import BotServe

    limit_s = 10  # Settings.idle_timeout_s
    serve = BotServe(tmp_path / "var", env={"REDIS_URL": redis_url, "BOT_DATA_KEY": TEST_DATA_KEY})
    await serve.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
        writer.write(b"POST /wechat?signature=x&timestamp=1&nonce=1 HTTP/1.1\r\nHost: x\r\n")
        started, closed_after = time.monotonic(), None
        while time.monotonic() - started < limit_s + 5:
            writer.write(b"X-Slow: a\r\n")  # a header line every 0.25 s: never a whole request
            try:
                await writer.drain()
                if await asyncio.wait_for(reader.read(100), 0.25) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
        writer.close()
        assert closed_after is not None and closed_after <= limit_s + 1, closed_after
        assert await serve.healthy()
    finally:
        serve.stop()


async def test_a_clock_far_from_wechats_is_said_loudly_and_shown_in_metrics(bot, protocol, caplog):
    caplog.set_level(logging.ERROR, logger="bot.app")
    user = WeChatUser(bot, "oSkewed", protocol)
    xml = message_xml(from_user="oSkewed", msg_type="text", content="你好", msg_id=next(_ids), create_time=int(time.time()))
    query, body = protocol.build_request(xml, encrypted=True, timestamp=int(time.time()) - 400)
    assert (await bot.post("/wechat", params=query, data=body)).status == 403
    assert "WeChat's clock is -400 s from ours" in caplog.text or "WeChat's clock is -401 s from ours" in caplog.text
    metrics = await (await bot.get("/metrics")).text()
    skew = next(float(line.split()[1]) for line in metrics.splitlines() if line.startswith("bot_clock_skew_seconds "))
    assert -402 <= skew <= -399
    assert "请问是谁申请" in await user.say("你好")  # a message with a good timestamp still goes through


async def test_who_applied_for_what_is_not_readable_in_redis(bot, settings, protocol, redis_client):
    """`viewer:{openid}:apps` linked an openid to its applications (and so to the disability services in
    their status) and the intake's notes were kept in clear; the index is now keyed by a keyed digest and
    the notes are sealed."""
    mother = WeChatUser(bot, "oLinkage", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    note = "王小宝需补交病历，联系13912345678"
    event = {
        "event_id": "ev-note",
        "application_id": ref,
        "service": "nursing_subsidy",
        "status": "materials_missing",
        "note": note,
    }
    body = encode_body(event)
    resp = await bot.post(
        "/intake/events", data=body, headers=signed_headers(intake_secret(settings), body, "ev-note", time.time())
    )
    assert resp.status == 200
    assert "需补交病历" in await mother.say("进度")  # the citizen still reads it
    naming = [k.decode() async for k in redis_client.scan_iter(match="*oLinkage*")]
    assert not [k for k in naming if k.startswith("viewer:")], naming
    for key in [k async for k in redis_client.scan_iter(match=f"app:{{{ref}}}:*")]:
        kind = await redis_client.type(key)
        raw = (
            b"".join(await redis_client.hvals(key))
            if kind == b"hash"
            else b"".join(await redis_client.smembers(key))
            if kind == b"set"
            else b"".join(await redis_client.lrange(key, 0, -1))
            if kind == b"list"  # the status history
            else await redis_client.get(key) or b""
        )
        assert note.encode() not in raw and "需补交病历".encode() not in raw, key


async def test_no_key_name_or_clear_value_links_an_openid_to_an_application_or_service(
    bot, settings, clock, protocol, redis_client
):
    """The push queue's keys (`<event id>:<openid>`, `assess:<id>:3d:<openid>`, `<id>:delivery_failed:<openid>`)
    and the pending rating (`rating:{openid}:pending` = {app_id, service}) said in clear who was told what
    about which application: now keyed digests and a sealed value."""
    from bot.app import send_due_reminders
    from tests.privacy_checks import linkage_in_redis

    mother = WeChatUser(bot, "oLinked", protocol)
    ref = await apply(mother, MOTHER_CHILD)
    father = WeChatUser(bot, "oLinkedFather", protocol)
    assert "绑定成功" in await father.say(f"绑定 {await _code(mother)}")  # he follows it: told too
    services = bot.server.app[SERVICES]
    for n, status in enumerate(("accepted", "materials_missing", "approved")):
        event = {"event_id": f"{ref}-{n}", "application_id": ref, "service": "nursing_subsidy", "status": status, "note": ""}
        body = encode_body(event)
        headers = signed_headers(intake_secret(settings), body, event["event_id"], time.time())
        assert (await bot.post("/intake/events", data=body, headers=headers)).status == 200
    assert await services.feedback.pending("oLinked") is not None  # asked to rate the finished service
    clock.advance(30 * 86400)  # every reminder (the assessment's) is due
    assert await send_due_reminders(services) >= 1
    await services.notifier.on_rejected(ref, "422: refused by the intake")  # a delivery refused: its own push
    assert await services.push.pending() >= 5
    about = [ref, "nursing_subsidy", "disability_certificate", "assess:", "rate:", "delivery_failed"]
    for openid in ("oLinked", "oLinkedFather"):
        assert await linkage_in_redis(redis_client, openid, about) == []


# -- issue 13, item 4: exposure by configuration (real `bot serve` processes) ------------------------------
REAL_AES_KEY = "Rk9vQmFyQmF6UXV4Q29yZ2VHcmF1bHRHYXJwbHlXYWxk"[:43]
NO_SECRET = {  # AppID and AES key, no AppSecret, a real intake: replies work, pushes cannot
    "WECHAT_APPID": "wx5f1e0c2b9a7d3e41",
    "WECHAT_TOKEN": "county-token-4f9a",
    "WECHAT_ENCODING_AES_KEY": REAL_AES_KEY,
    "INTAKE_URL": "http://127.0.0.1:9/intake",
    "INTAKE_SECRET": "county-intake-secret",
    "BOT_DATA_KEY": TEST_DATA_KEY,
}
EXPOSED = ["/metrics", "/sandbox/wechat/inbox/oSomeone", "/sandbox/wechat/cgi-bin/token", "/sandbox/intake/", "/simulator"]


async def _statuses(base: str, paths: list[str]) -> dict[str, int]:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        out = {}
        for path in paths:
            async with http.get(base + path) as r:
                out[path] = r.status
        return out


def _warnings(serve) -> list[str]:
    return [line for line in serve.log_tail(20000).splitlines() if " WARNING " in line]


async def test_a_real_appid_and_aes_key_without_appsecret_close_metrics_and_every_sandbox(tmp_path, redis_url):
    """Without an AppSecret the bot used to think itself in development: /metrics was open and the WeChat
    sandbox served every citizen's status pushes at /sandbox/wechat/inbox/<openid>."""
    from tests.processes import BotServe

    serve = BotServe(tmp_path / "var", env={**NO_SECRET, "REDIS_URL": redis_url, "BOT_SIMULATOR": ""})
    await serve.start()
    try:
        assert await _statuses(serve.url, EXPOSED) == dict.fromkeys(EXPOSED, 404)
    finally:
        serve.stop()
    assert any("no WECHAT_APPSECRET" in line for line in _warnings(serve)), serve.log_tail()


async def test_each_opening_on_a_real_account_is_asked_for_by_name_and_said_at_warning(tmp_path, redis_url):
    from tests.processes import BotServe

    trial = {
        **NO_SECRET,
        "WECHAT_TOKEN": "devtoken",
        "REDIS_URL": redis_url,
        "BOT_SIMULATOR": "1",
        "BOT_WECHAT_SANDBOX": "1",
        "BOT_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    serve = BotServe(tmp_path / "var", env=trial)
    await serve.start()
    try:
        statuses = await _statuses(serve.url, EXPOSED)
        assert statuses == {**dict.fromkeys(EXPOSED, 200), "/metrics": 401, "/sandbox/intake/": 404}, statuses
    finally:
        serve.stop()
    warned = "\n".join(_warnings(serve))
    assert "BOT_SIMULATOR=1 on a real account (WECHAT_APPID, WECHAT_ENCODING_AES_KEY, INTAKE_URL)" in warned, warned
    assert "BOT_WECHAT_SANDBOX=1 on a real account" in warned and "/sandbox/wechat/inbox/" in warned


def test_the_simulator_never_hands_out_a_token_that_is_not_a_development_one(tmp_path, redis_url):
    """BOT_SIMULATOR=1 with real credentials gave the real WECHAT_TOKEN to any browser at /simulator/config."""
    from tests.test_foundations import bot, refused

    real = {
        "WECHAT_APPID": "wx5f1e0c2b9a7d3e41",
        "WECHAT_APPSECRET": "county-app-secret",
        "WECHAT_TOKEN": "county-token-4f9a",
        "WECHAT_ENCODING_AES_KEY": REAL_AES_KEY,
        "INTAKE_URL": "http://127.0.0.1:9/intake",
        "INTAKE_SECRET": "county-intake-secret",
        "BOT_DATA_KEY": TEST_DATA_KEY,
        "REDIS_URL": redis_url,
        "BOT_VAR_DIR": str(tmp_path / "var"),
    }
    for env in (real, {k: v for k, v in real.items() if not k.startswith("WECHAT_APP")}):
        line = refused(bot(["serve"], {**env, "BOT_SIMULATOR": "1"}), "BOT_SIMULATOR")
        assert "county-token" not in line


async def test_plain_mode_on_a_real_account_is_a_warning_at_every_start(tmp_path, redis_url):
    from tests.processes import BotServe

    plain = {k: v for k, v in NO_SECRET.items() if k != "WECHAT_ENCODING_AES_KEY"}
    serve = BotServe(tmp_path / "var", env={**plain, "WECHAT_APPSECRET": "county-app-secret", "REDIS_URL": redis_url})
    await serve.start()
    serve.stop()
    plain_mode = [line for line in _warnings(serve) if "plain mode on a real account" in line]
    assert len(plain_mode) == 1 and "WECHAT_ENCODING_AES_KEY" in plain_mode[0], serve.log_tail()
