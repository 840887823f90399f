"""Bad input, systematically: POST /intake/events (the intake platform's status events), with hypothesis.

A machine sends these, so a machine reads the answers: never a 500, always a JSON error with a code
(400 bad JSON or event, 401 signature, 404 unknown application, 409 duplicate, 413 too large). An
event applies once, whatever is replayed; a good event still applies after any amount of garbage.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.app import SERVICES, SETTINGS, intake_secret
from bot.intake_events import MAX_EVENT_BYTES, STATUSES
from integrations.applications import may_follow
from integrations.intake import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import WeChatUser
from tests.fuzz_support import count, fuzz, nasty_text, traceback_free
from tests.test_after_submission import MOTHER_CHILD, apply, until

SERVICE = "nursing_subsidy"  # MOTHER_CHILD applies for the certificate and the nursing subsidy
ANSWERS = {200, 400, 401, 404, 409, 413}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Any text JSON can carry: lone surrogates ("\ud800"), dates that are not, very long ones.
json_text = st.one_of(
    nasty_text,
    st.text(st.characters(categories=["Cs", "Lo", "Nd", "Cc"]), min_size=1, max_size=20),
    st.sampled_from(["2026-13-45", "yesterday", "2026-11-24T25:00", "", "QY", "1e309", "9" * 5000]),
)


@pytest.fixture
async def application(bot, protocol, redis_client):
    ref = await apply(WeChatUser(bot, "oFuzzIntake", protocol), MOTHER_CHILD)
    registry = bot.server.app[SERVICES].registry

    async def delivered():  # our own "delivered" marks are written by then, not during a case
        return all(s["status"] == "delivered" for s in (await registry.status(ref)).values())

    assert await until(delivered)
    return bot, ref


def headers(secret: str, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body)}


async def post(client, body: bytes, hdrs: dict) -> tuple[int, object]:
    resp = await client.post("/intake/events", data=body, headers=hdrs)
    raw = await resp.read()
    assert resp.status in ANSWERS, (resp.status, raw[:300])
    assert resp.content_type == "application/json" and traceback_free(raw.decode()), raw[:300]
    answer = json.loads(raw)
    if resp.status == 409:
        # Seen before, or contradicting the service's status (after 未通过, a regression): nothing applied.
        assert answer == {"applied": False, "duplicate": True} or answer.get("error") == "conflict", answer
    elif resp.status != 200:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    return resp.status, answer


async def effects(client, ref: str, redis_client) -> tuple:
    """What an applied event leaves behind: the service's status, the event ids, the pushes queued."""
    registry = client.server.app[SERVICES].registry
    pushes = len([k async for k in redis_client.scan_iter(match="push:{queue}:msg:*", count=1000)])
    return await registry.status(ref), await redis_client.scard(f"app:{{{ref}}}:events"), pushes


async def a_good_event_still_applies(client, ref: str, secret: str) -> None:
    """An event that may follow the service's status (where earlier cases left it) still applies."""
    current = (await client.server.app[SERVICES].registry.status(ref))[SERVICE]["status"]
    status = "forwarded" if may_follow(current, "forwarded") else current
    event = {"event_id": f"ev-good-{time.monotonic_ns()}", "application_id": ref, "service": SERVICE, "status": status}
    body = json.dumps(event).encode()
    assert (await post(client, body, headers(secret, body)))[0] == 200
    assert (await client.server.app[SERVICES].registry.status(ref))[SERVICE]["status"] == status


@st.composite
def events(draw, ref: str) -> bytes:
    """A good event, or one with a field dropped, retyped or replaced by odd text; or no event at all."""
    event = {
        "event_id": f"ev-{draw(st.integers(0, 10**9))}",
        "application_id": ref,
        "service": draw(st.sampled_from([SERVICE, "disability_certificate"])),
        # "accepted" starts the service's clock: it reads "at".
        "status": draw(st.sampled_from(["accepted", "accepted", *sorted(STATUSES)])),
        "note": draw(st.sampled_from(["", "请补充材料", "x" * 300])),
        "at": draw(st.sampled_from(["2026-11-23T09:00:00+08:00", "2026-11-23"])),
    }
    shape = draw(st.sampled_from(["good", "dropped", "retyped", "odd_text", "any_json", "bytes", "huge", "deep"]))
    field = draw(st.sampled_from([*event, "application_no"]))
    if shape == "dropped":
        event.pop(field, None)
    elif shape in ("retyped", "odd_text"):
        event[field] = draw(json_values if shape == "retyped" else json_text)
    elif shape == "any_json":
        return json.dumps(draw(json_values)).encode()
    elif shape == "bytes":
        return draw(st.binary(max_size=300))
    elif shape == "huge":
        return json.dumps({**event, "note": "长" * draw(st.integers(MAX_EVENT_BYTES // 3, 400_000))}).encode()
    elif shape == "deep":
        depth = draw(st.integers(900, MAX_EVENT_BYTES // 2 - 10))
        return (b"[" * depth + b"]" * depth) if draw(st.booleans()) else (b'{"a":' * depth + b"1" + b"}" * depth)
    return json.dumps(event, ensure_ascii=draw(st.booleans())).encode(errors="surrogatepass")


@fuzz(2)
@given(data=st.data())
async def test_any_signed_body_gets_a_json_answer_and_a_replay_has_no_second_effect(application, redis_client, data):
    count()
    client, ref = application
    secret = intake_secret(client.server.app[SETTINGS])
    body = data.draw(events(ref))
    hdrs = headers(secret, body)
    status, _ = await post(client, body, hdrs)
    if status == 200:
        event = json.loads(body)
        assert (await client.server.app[SERVICES].registry.status(ref))[event["service"]]["status"] == event["status"]
    before = await effects(client, ref, redis_client)
    replay, _ = await post(client, body, hdrs)
    assert replay == (409 if status in (200, 409) else status)
    assert await effects(client, ref, redis_client) == before, "a replayed event changed something"
    await a_good_event_still_applies(client, ref, secret)


FAULTS = ["no_signature", "no_timestamp", "other_secret", "stale", "huge_timestamp", "not_digits", "flip", "garbage"]
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("é中٣\u00a0"), min_size=1, max_size=40
)


@fuzz(1)
@given(fault=st.sampled_from(FAULTS), data=st.data())
async def test_a_wrong_signature_or_timestamp_is_a_401_and_changes_nothing(application, redis_client, fault, data):
    count()
    client, ref = application
    secret = intake_secret(client.server.app[SETTINGS])
    event = {"event_id": f"ev-sig-{time.monotonic_ns()}", "application_id": ref, "service": SERVICE, "status": "approved"}
    body = json.dumps(event).encode()
    good = headers(secret, body)
    hdrs = dict(good)
    if fault in ("no_signature", "no_timestamp"):
        del hdrs[SIGNATURE_HEADER if fault == "no_signature" else TIMESTAMP_HEADER]
    elif fault == "other_secret":
        hdrs = headers(data.draw(header_text.filter(lambda s: s != secret)), body)
    elif fault == "stale":
        hdrs = headers(
            secret, body, str(int(time.time()) + data.draw(st.sampled_from([-1, 1])) * data.draw(st.integers(301, 10**12)))
        )
    elif fault == "huge_timestamp":  # signed right, but no clock says so: 10^12 s is in the year 33658
        hdrs = headers(secret, body, "9" * data.draw(st.sampled_from([13, 40, 4300, 5000])))
    elif fault == "not_digits":
        hdrs = headers(secret, body, data.draw(header_text.filter(lambda t: not (t.isascii() and t.isdigit()))))
    elif fault == "flip":
        sig, at = good[SIGNATURE_HEADER], data.draw(st.integers(0, 63))
        hdrs[SIGNATURE_HEADER] = sig[:at] + f"{(int(sig[at], 16) + data.draw(st.integers(1, 15))) % 16:x}" + sig[at + 1 :]
    else:
        hdrs[SIGNATURE_HEADER] = data.draw(header_text)
    before = await effects(client, ref, redis_client)
    status, answer = await post(client, body, hdrs)
    assert status == 401, (fault, hdrs, answer)
    assert await effects(client, ref, redis_client) == before
    assert (await post(client, body, good))[0] == 200  # the same event, signed right, applies (once)


# Found by the properties above; kept as plain cases so that they are tried on every run.
KNOWN_BAD = {
    "arrays nested 1000 deep": b"[" * 1000 + b"]" * 1000,
    "objects nested 2000 deep": b'{"a":' * 2000 + b"1" + b"}" * 2000,
    "at that is no time": {"at": "·叉·六"},
    "at in the year 9999": {"at": "9999-12-31T23:59:59+08:00"},
    "lone surrogate in application_id": {"application_id": "\ud800"},
    "lone surrogate in application_no": {"application_id": "", "application_no": "SB-\udfff"},
    "lone surrogate in event_id": {"event_id": "ev-\ud83d"},
    "lone surrogate in note": {"note": "请\udc00补充"},
}


async def test_known_bad_events_get_a_400_and_change_nothing(application, redis_client):
    client, ref = application
    secret = intake_secret(client.server.app[SETTINGS])
    event = {"event_id": "ev-known", "application_id": ref, "service": SERVICE, "status": "accepted", "at": "2026-11-23"}
    wrong = []
    for case, change in KNOWN_BAD.items():
        count()
        body = change if isinstance(change, bytes) else json.dumps({**event, **change}).encode()
        before = await effects(client, ref, redis_client)
        status, answer = await post(client, body, headers(secret, body))
        if status != 400 or await effects(client, ref, redis_client) != before:
            wrong.append(f"{case}: {status} {answer}")
    assert not wrong, "\n".join(wrong)
