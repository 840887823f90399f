"""Delivery of the outbox to the intake: exactly once in effect, through failures, crashes and restarts.

The intake is a real HTTP server on loopback (tests/fake_intake.py); Redis is the suite's real one.
The worker's clock is a fake one that the tests move to each retry's due time, so backoffs of
seconds or hours cost nothing; HTTP timeouts, locks and claims run on real (short) time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from integrations import outbox as outbox_module
from integrations.delivery import EVENTS_STREAM, GAVE_UP, GROUP, DeliveryWorker, running
from integrations.intake import (
    DELIVERED,
    REJECTED,
    RETRY,
    HttpIntake,
    encode_body,
    sign,
    signed_headers,
    verify,
    verify_request,
)
from integrations.intake_sandbox import create_intake_sandbox
from integrations.outbox import STREAM, RedisOutbox
from integrations.sealing import Sealer
from tests.fake_intake import FakeIntake
from tests.processes import BotServe, wait_until

SECRET = "intake-test-secret"
# Long enough that a loaded CI machine never turns a 500 or a 409 into a timeout; the tests that
# want a timeout make the fake intake wait three times as long.
CLIENT_TIMEOUT_S = 1.5
# An attempt stops at 80 % of the lock (DeliveryWorker), which must leave the client its whole timeout.
LOCK_TTL_MS = int(CLIENT_TIMEOUT_S * 2000)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Calls:
    """What the worker told the bot: (application id, number) delivered, (id, detail) rejected."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str | None]] = []
        self.rejected: list[tuple[str, str]] = []

    async def on_delivered(self, application_id: str, number: str | None) -> None:
        self.delivered.append((application_id, number))

    async def on_rejected(self, application_id: str, detail: str) -> None:
        self.rejected.append((application_id, detail))


def make_document(n: int) -> dict:
    return {
        "id": f"QY20261123T{n:05d}",
        "region": "qingyang",
        "created_at": "2026-11-23T09:00:00+08:00",
        "submitted_at": "2026-11-23T09:30:00+08:00",
        "channel": "wechat",
        "openid": f"oDelivery{n:04d}",
        "services": ["disability_certificate", "nursing_subsidy"],
        "applicant": {
            "name": f"王小宝{n}",
            "gender": "male",
            "id_number": f"3417232014060{n:05d}",
            "birth_date": "2014-06-01",
            "phone": f"139{n:08d}",
            "household_address": "青阳县蓉城镇五溪村12号",
        },
        "agent": {"name": "李秀英", "id_number": "341723198001010023", "phone": "13912345678", "relation": "parent"},
        "disability": {"certificate_no": None, "category": 5, "level": None},
        "hardship": {
            "status": "none",
            "local_hukou": True,
            "pension_enrolled": None,
            "medical_insured": None,
            "subsidy_reason": None,
        },
        "eligibility": {"nursing_subsidy": {"result": "pending", "rules": []}},
        "materials": [{"service": ["disability_certificate"], "code": "id_card", "name": "居民身份证", "status": "bring"}],
        "appointment": {
            "session_date": "2027-01-11",
            "period": "上午",
            "place": "青阳县医院门诊大厅一楼",
            "kind": "monthly_session",
        },
        "consent": {"declaration": True, "sensitive": True, "by": "guardian", "at": "2026-11-23T09:30:00+08:00"},
    }


@pytest.fixture
def sealer() -> Sealer:
    return Sealer([("test", os.urandom(32))])


@pytest.fixture
def outbox(redis_client, sealer) -> RedisOutbox:
    return RedisOutbox(redis_client, sealer)


@pytest.fixture
async def fake():
    intake = FakeIntake(SECRET, slow_s=CLIENT_TIMEOUT_S * 3)
    await intake.start()
    yield intake
    await intake.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def calls() -> Calls:
    return Calls()


def make_worker(redis, outbox, base_url, http, clock, calls, *, consumer="w1", **kw) -> DeliveryWorker:
    intake = HttpIntake(
        http, base_url=base_url, secret=kw.pop("secret", SECRET), timeout_s=kw.pop("timeout_s", CLIENT_TIMEOUT_S), clock=time.time
    )
    options = dict(backoff_base_s=1.0, backoff_cap_s=8.0, claim_idle_ms=1000, lock_ttl_ms=LOCK_TTL_MS, block_ms=50)
    options.update(kw)
    return DeliveryWorker(
        redis,
        outbox,
        intake,
        consumer=consumer,
        clock=clock,
        on_delivered=calls.on_delivered,
        on_rejected=calls.on_rejected,
        **options,
    )


async def submit(outbox: RedisOutbox, count: int, start: int = 0) -> list[dict]:
    documents = [make_document(n) for n in range(start, start + count)]
    for document in documents:
        assert await outbox.submit(document)
    return documents


async def drain(clock: Clock, ids: list[str], *workers: DeliveryWorker, passes: int = 200) -> None:
    """Run passes, moving the clock to the next due retry, until every application is final."""
    for _ in range(passes):
        await asyncio.gather(*(w.run_once() for w in workers))
        states = [(await workers[0].status(i) or {}).get("state") for i in ids]
        if all(s in ("delivered", "failed") for s in states):
            return
        due = await workers[0].next_due()
        if due is not None and due > clock():
            clock.now = due + 0.001
    raise AssertionError(f"not finished: {states}")


async def pending(redis) -> int:
    return (await redis.xpending(STREAM, GROUP))["pending"]


# -- the signature ----------------------------------------------------------------------------------
def test_sign_and_verify():
    body = encode_body({"id": "QY1", "name": "王小宝"})
    assert body == '{"id":"QY1","name":"王小宝"}'.encode()
    now = 1_800_000_000
    signature = sign(SECRET, str(now), body)
    assert len(signature) == 64 and verify(SECRET, str(now), body, signature, now=now + 299)
    assert verify(SECRET, str(now), body, signature.upper(), now=now)
    assert not verify(SECRET, str(now), body, signature, now=now + 301)  # stale
    assert not verify(SECRET, str(now), body, signature, now=now - 301)  # from the future
    assert not verify("other", str(now), body, signature, now=now)
    assert not verify(SECRET, str(now), body + b" ", signature, now=now)
    assert not verify(SECRET, str(now + 1), body, signature, now=now)
    assert not verify(SECRET, "soon", body, signature, now=now)
    assert not verify(SECRET, None, body, signature, now=now) and not verify(SECRET, str(now), body, None, now=now)
    assert not verify("", str(now), body, sign("", str(now), body), now=now)  # no secret configured: refuse all
    headers = signed_headers(SECRET, body, "QY1", now)
    assert headers["Idempotency-Key"] == "QY1" and verify_request(SECRET, headers, body, now=now)


# -- the adapter ------------------------------------------------------------------------------------
async def test_http_intake_maps_every_answer(fake, http):
    intake = HttpIntake(http, base_url=fake.url + "/", secret=SECRET, timeout_s=CLIENT_TIMEOUT_S, clock=time.time)
    docs = [make_document(n) for n in range(6)]
    for doc, behaviour in zip(docs, ["ok", "409", "500", "timeout", "400", "lost_reply"], strict=True):
        fake.then(doc["id"], behaviour)
    outcomes = [await intake.deliver(doc) for doc in docs]
    assert [o.kind for o in outcomes] == [DELIVERED, DELIVERED, RETRY, RETRY, REJECTED, RETRY]
    assert [o.status_code for o in outcomes] == [201, 409, 500, None, 400, None]
    assert outcomes[0].application_no == fake.numbers[docs[0]["id"]]
    assert outcomes[1].application_no == f"EXISTING-{docs[1]['id']}"
    assert outcomes[3].detail == "timeout" and outcomes[4].detail == "HTTP 400 invalid_document"
    again = await intake.deliver(docs[5])  # the reply was lost, the application was not
    assert again.kind == DELIVERED and again.status_code == 409 and again.application_no == fake.numbers[docs[5]["id"]]
    for seen in fake.requests:
        assert seen.signature_ok and seen.key == seen.body_id
        assert json.loads(seen.body) == next(d for d in docs if d["id"] == seen.body_id)
        assert "王小宝".encode() in seen.body and b": " not in seen.body  # UTF-8, compact
    event = {"event_id": "EV-1", "application_id": docs[0]["id"], "status": "withdrawn", "service": "nursing_subsidy"}
    sent = await intake.send_event(event)
    assert sent.kind == DELIVERED and fake.requests[-1].key == "EV-1" and fake.requests[-1].signature_ok
    await fake.stop()
    down = await intake.deliver(docs[0])
    assert down.kind == RETRY and down.detail.startswith("connection error")


# -- the worker -------------------------------------------------------------------------------------
async def test_every_application_is_delivered_exactly_once(redis_client, outbox, fake, http, clock, calls):
    documents = await submit(outbox, 20)  # queued before any worker started: the group starts at 0
    scripts = [["500"], ["timeout"], ["lost_reply"], ["500", "500", "500"], [], ["409"]]
    for n, doc in enumerate(documents):
        fake.then(doc["id"], *scripts[n % len(scripts)])
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls)
    ids = [d["id"] for d in documents]
    await drain(clock, ids, worker)

    for n, application_id in enumerate(ids):
        status = await worker.status(application_id)
        assert status["state"] == "delivered" and status["application_no"] == fake.numbers[application_id]
        assert status["attempts"] == len(scripts[n % len(scripts)]) + (0 if n % 6 == 5 else 1)
        assert fake.accepted[application_id] == (0 if n % 6 == 5 else 1)  # "409": it was already there
        assert {r.key for r in fake.for_id(application_id)} == {application_id}
    assert all(r.signature_ok for r in fake.requests)
    assert sorted(calls.delivered) == sorted((i, fake.numbers[i]) for i in ids)  # each told once
    assert calls.rejected == [] and await pending(redis_client) == 0
    assert await worker.run_once() == 0  # nothing left, nothing re-sent
    assert len(await worker.list("delivered")) == 20


async def test_409_counts_as_delivered(redis_client, outbox, fake, http, clock, calls):
    [doc] = await submit(outbox, 1)
    fake.then(doc["id"], "409")
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls)
    assert await worker.run_once() == 1
    status = await worker.status(doc["id"])
    assert status["state"] == "delivered" and status["application_no"] == f"EXISTING-{doc['id']}"
    assert calls.delivered == [(doc["id"], f"EXISTING-{doc['id']}")] and await pending(redis_client) == 0


async def test_a_refused_application_fails_and_an_operator_can_put_it_back(redis_client, outbox, fake, http, clock, calls):
    [doc, other] = await submit(outbox, 2)
    fake.then(doc["id"], "400")
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls)
    assert await worker.run_once() == 2
    status = await worker.status(doc["id"])
    assert status["state"] == "failed" and status["last_error"] == "HTTP 400 invalid_document"
    assert status["next_attempt_at"] is None
    assert calls.rejected == [(doc["id"], "HTTP 400 invalid_document")]
    assert [row["application_id"] for row in await worker.list("failed")] == [doc["id"]]
    assert [row["application_id"] for row in await worker.list("delivered")] == [other["id"]]
    assert await pending(redis_client) == 0  # a refusal is final: acknowledged
    assert await worker.run_once() == 0

    assert not await worker.retry(other["id"])  # only a failed one can be put back
    assert await worker.retry(doc["id"])
    status = await worker.status(doc["id"])
    assert status["state"] == "queued" and status["attempts"] == 0 and status["next_attempt_at"] == clock()
    assert await worker.run_once() == 1  # the county fixed it: accepted this time
    status = await worker.status(doc["id"])
    assert status["state"] == "delivered" and status["attempts"] == 1 and fake.accepted[doc["id"]] == 1
    assert calls.delivered[-1] == (doc["id"], fake.numbers[doc["id"]])


async def test_retries_back_off_and_stop_after_the_window(redis_client, outbox, fake, http, clock, calls):
    [doc] = await submit(outbox, 1)
    fake.always = "500"
    worker = make_worker(
        redis_client, outbox, fake.url, http, clock, calls, retry_window_s=60, backoff_base_s=1.0, backoff_cap_s=8.0
    )
    started = clock()
    attempts_at, delays = [], []
    while (status := await worker.status(doc["id"]))["state"] != "failed":
        if status["state"] == "retrying":
            clock.now = status["next_attempt_at"]
        attempts_at.append(clock())
        assert await worker.run_once() == 1
        status = await worker.status(doc["id"])
        assert await pending(redis_client) == (0 if status["state"] == "failed" else 1)  # pending while retrying
        if status["state"] == "retrying":
            delays.append(status["next_attempt_at"] - clock())
            assert status["last_error"] == "HTTP 500 internal"
    for k, delay in enumerate(delays[:-1]):
        ceiling = min(8.0, 2.0**k)
        assert ceiling / 2 <= delay <= ceiling + 1e-6, (k, delay)
    assert attempts_at[-1] == pytest.approx(started + 60)  # the last one exactly at the window's end
    assert all(t <= started + 60 + 1e-6 for t in attempts_at)
    assert status["attempts"] == len(attempts_at) == len(fake.requests) and status["last_error"].startswith(GAVE_UP)
    assert calls.rejected == [(doc["id"], GAVE_UP)] and calls.delivered == []
    clock.advance(3600)
    assert await worker.run_once() == 0 and len(fake.requests) == status["attempts"]


async def test_an_entry_that_is_not_due_is_left_alone(redis_client, outbox, fake, http, clock, calls):
    [doc] = await submit(outbox, 1)
    fake.then(doc["id"], "500")
    first = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="first")
    assert await first.run_once() == 1
    assert await first.run_once() == 0
    # Another worker claims every idle entry at once, this one included, and still waits for it.
    other = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="other", claim_idle_ms=0)
    assert await other.run_once() == 0
    owners = await redis_client.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
    assert [o["consumer"] for o in owners] == [b"other"] and len(fake.requests) == 1
    clock.now = (await other.status(doc["id"]))["next_attempt_at"]
    assert await other.run_once() == 1
    assert (await first.status(doc["id"]))["state"] == "delivered" and await pending(redis_client) == 0


async def test_the_intake_down_for_a_while(redis_client, outbox, fake, http, clock, calls):
    await fake.stop()
    documents = await submit(outbox, 3)
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls)
    assert await worker.run_once() == 3
    for doc in documents:
        status = await worker.status(doc["id"])
        assert status["state"] == "retrying" and status["last_error"].startswith("connection error")
    clock.advance(10)
    assert await worker.run_once() == 3  # still down
    await fake.start()  # back, on the same port
    await drain(clock, [d["id"] for d in documents], worker)
    assert all(fake.accepted[d["id"]] == 1 for d in documents) and len(calls.delivered) == 3


async def test_two_workers_never_post_one_application_at_once(redis_url, redis_client, outbox, fake, http, clock, calls):
    fake.delay_s = 0.03
    documents = await submit(outbox, 24)
    for n, doc in enumerate(documents):
        fake.then(doc["id"], *(["500"] * (n % 3)))
    second_client = aioredis.from_url(redis_url)
    try:
        # claim_idle_ms=0: each steals every pending entry of the other on every pass; only the
        # per-application lock and state keep them apart.
        one = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="one", claim_idle_ms=0)
        two = make_worker(
            second_client,
            RedisOutbox(second_client, outbox.sealer),
            fake.url,
            http,
            clock,
            calls,
            consumer="two",
            claim_idle_ms=0,
        )

        async def work(worker: DeliveryWorker) -> None:
            while len(calls.delivered) < len(documents):
                await worker.run_once()

        async def time_flies() -> None:
            # Faster than the attempts: every retry falls due at once, and an attempt in flight is
            # "due again" before it ends, so only the lock (real time) keeps the other worker out.
            while len(calls.delivered) < len(documents):
                clock.advance(5)
                await asyncio.sleep(0.005)

        await asyncio.wait_for(asyncio.gather(work(one), work(two), time_flies()), timeout=20)
    finally:
        await second_client.aclose()
    assert fake.overlaps == []
    for n, doc in enumerate(documents):
        assert len(fake.for_id(doc["id"])) == n % 3 + 1  # no POST beyond the scripted failures
        assert fake.accepted[doc["id"]] == 1
    assert sorted(i for i, _ in calls.delivered) == sorted(d["id"] for d in documents)
    assert await pending(redis_client) == 0


async def test_a_crashed_workers_entry_is_reclaimed(redis_client, outbox, fake, http, clock, calls):
    [doc] = await submit(outbox, 1)
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    read = await redis_client.xreadgroup(GROUP, "crashed", {STREAM: ">"}, count=10)  # and never acknowledged
    assert len(read[0][1]) == 1
    survivor = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="survivor", claim_idle_ms=200)
    assert await survivor.run_once() == 0  # the entry is not idle long enough to be the dead one's
    await asyncio.sleep(0.25)
    assert await survivor.run_once() == 1
    assert (await survivor.status(doc["id"]))["state"] == "delivered"
    assert fake.accepted[doc["id"]] == 1 and await pending(redis_client) == 0


async def test_entries_read_but_never_seen_are_taken_back_at_once(redis_client, outbox, fake, http, clock, calls):
    """A read whose reply was lost (Redis restarting), or a restart under the same name (a container: same
    hostname, pid 1), leaves entries pending for this very consumer: it looks at them first, not after claim_idle_ms."""
    [first, second] = await submit(outbox, 2)
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await redis_client.xreadgroup(GROUP, "box-1", {STREAM: ">"}, count=1)  # the previous life of "box-1"
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="box-1", claim_idle_ms=60000)
    assert await worker.run_once() == 2
    [third] = await submit(outbox, 1, start=2)
    await redis_client.xreadgroup(GROUP, "box-1", {STREAM: ">"}, count=1)  # a reply lost on the way...
    real_claim = worker._claim_stale

    async def redis_restarting():
        raise ConnectionError("Connection closed by server.")

    worker._claim_stale = redis_restarting
    with pytest.raises(ConnectionError):  # ...in a pass that failed (run_forever logs it and goes on)
        await worker.run_once()
    worker._claim_stale = real_claim
    assert await worker.run_once() == 1
    assert [fake.accepted[d["id"]] for d in (first, second, third)] == [1, 1, 1] and await pending(redis_client) == 0


async def test_an_attempt_cut_short_by_a_crash_is_resumed_after_its_lock(redis_client, outbox, fake, http, clock, calls):
    [doc] = await submit(outbox, 1)
    fake.slow_s = 10
    fake.then(doc["id"], "timeout")
    crashing = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="crashing", timeout_s=10, lock_ttl_ms=600)
    task = asyncio.create_task(crashing.run_once())
    while not fake.in_flight[doc["id"]]:
        await asyncio.sleep(0.01)
    task.cancel()  # the process dies mid-POST: lock held, entry pending, state says one attempt
    await asyncio.gather(task, return_exceptions=True)
    survivor = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="survivor", claim_idle_ms=0)
    assert await survivor.run_once() == 0  # not before the dead attempt's lock runs out
    await asyncio.sleep(0.65)
    clock.advance(0.65)
    assert await survivor.run_once() == 1
    status = await survivor.status(doc["id"])
    assert status["state"] == "delivered" and status["attempts"] == 2
    assert [r.key for r in fake.for_id(doc["id"])] == [doc["id"], doc["id"]] and fake.accepted[doc["id"]] == 1


async def test_status_lists_and_redis_hold_no_personal_data(redis_client, outbox, fake, http, clock, calls):
    documents = await submit(outbox, 3)
    fake.then(documents[1]["id"], "400")
    fake.then(documents[2]["id"], "500")
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls)
    assert (await worker.list())[0]["state"] == "queued"  # seen by no worker yet: still listed
    assert (await worker.status(documents[0]["id"]))["state"] == "queued"
    assert await worker.status("QY-NOT-THERE") is None
    await worker.run_once()
    assert {r["state"] for r in await worker.list()} == {"delivered", "failed", "retrying"}
    shown = json.dumps([await worker.list(), *[await worker.status(d["id"]) for d in documents]], ensure_ascii=False)
    personal = [v for d in documents for v in (d["applicant"]["name"], d["applicant"]["id_number"], d["applicant"]["phone"])]
    personal += ["李秀英", "341723198001010023", "13912345678", "五溪村"]
    assert not [p for p in personal if p in shown]
    await assert_nothing_in_clear(redis_client, personal)
    with pytest.raises(ValueError):
        await worker.list("lost")


async def test_run_forever_delivers_in_the_background(redis_client, outbox, fake, http, calls):
    worker = make_worker(redis_client, outbox, fake.url, http, time.time, calls, block_ms=800)
    async with running(worker) as [task]:
        await asyncio.sleep(0.05)
        [doc] = await submit(outbox, 1)  # a citizen submits while the worker waits on the stream
        for _ in range(100):
            if calls.delivered:
                break
            await asyncio.sleep(0.02)
        assert calls.delivered == [(doc["id"], fake.numbers[doc["id"]])]
        await asyncio.sleep(0.05)
        stopping = time.monotonic()
    assert task.done() and time.monotonic() - stopping < 0.05  # idle: stopped at once, not after block_ms


async def test_run_forever_rides_out_redis_going_away(redis_url, redis_client, outbox, fake, http, calls, caplog):
    proxy = RedisProxy(redis_url)
    await proxy.start()
    client = aioredis.from_url(proxy.url, socket_timeout=1, socket_connect_timeout=1)
    worker = make_worker(client, RedisOutbox(client, outbox.sealer), fake.url, http, time.time, calls, block_ms=100)
    caplog.set_level(logging.WARNING, logger="integrations.delivery")
    try:
        async with running(worker) as [task]:
            [first] = await submit(outbox, 1)
            await wait_until(lambda: len(calls.delivered) == 1, 5, interval=0.02)
            await proxy.cut()  # Redis gone, for the worker
            [second] = await submit(outbox, 1, start=1)
            await asyncio.sleep(0.7)
            assert not task.done() and "Redis unreachable" in caplog.text
            await proxy.start()  # back, with its data (append-only file)
            await wait_until(lambda: len(calls.delivered) == 2, 8, interval=0.02)
    finally:
        await client.aclose()
        await proxy.cut()
    # One line when Redis went away and one when it came back, however many passes failed between.
    assert caplog.text.count("Redis unreachable") == 1 and caplog.text.count("Redis reachable again") == 1, caplog.text
    assert [i for i, _ in calls.delivered] == [first["id"], second["id"]]
    assert fake.accepted[first["id"]] == fake.accepted[second["id"]] == 1


async def test_the_bots_events_are_delivered_the_same_way(redis_client, outbox, fake, http, clock, calls):
    assert EVENTS_STREAM == outbox_module.EVENTS_STREAM
    [doc] = await submit(outbox, 1)
    withdrawal = {
        "event_id": f"{doc['id']}:withdraw:nursing_subsidy",
        "application_id": doc["id"],
        "application_no": None,
        "service": "nursing_subsidy",
        "status": "withdrawn",
        "note": "申请人撤销",
        "at": "2026-11-24T10:00:00+08:00",
    }
    refused = {**withdrawal, "event_id": f"{doc['id']}:withdraw:disability_certificate", "service": "disability_certificate"}
    assert await outbox.submit_event(withdrawal) and await outbox.submit_event(refused)
    assert not await outbox.submit_event(withdrawal)
    fake.then(withdrawal["event_id"], "500")
    fake.then(refused["event_id"], "400")
    events = make_worker(redis_client, outbox, fake.url, http, clock, calls, consumer="events", kind="event")
    await drain(clock, [withdrawal["event_id"], refused["event_id"]], events)
    assert (await events.status(withdrawal["event_id"]))["state"] == "delivered"
    assert (await events.status(refused["event_id"]))["state"] == "failed"
    assert calls.delivered == [(withdrawal["event_id"], None)] and calls.rejected == [(refused["event_id"], "HTTP 400 refused")]
    assert fake.events_accepted[withdrawal["event_id"]] == 1
    sent = [r for r in fake.requests if r.path == "/events"]
    assert len(sent) == 3 and all(r.signature_ok and r.key == r.body_id for r in sent)
    assert fake.for_id(doc["id"]) == [] and (await events.status(doc["id"])) is None  # applications: the other worker
    assert sorted(r["application_id"] for r in await events.list()) == sorted([refused["event_id"], withdrawal["event_id"]])
    assert (await redis_client.xpending(EVENTS_STREAM, GROUP))["pending"] == 0


# -- the sandbox ------------------------------------------------------------------------------------
async def test_the_sandbox_intake_round_trip(redis_client, sealer, outbox, http, clock, calls):
    received = []

    async def bot_events(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_request(SECRET, request.headers, body, now=time.time()):
            return web.json_response({"error": "bad_signature"}, status=401)
        received.append((request.headers["Idempotency-Key"], json.loads(body)))
        return web.json_response({"ok": True})

    bot = web.Application()
    bot.router.add_post("/intake/events", bot_events)
    bot_server = TestServer(bot, host="127.0.0.1")
    await bot_server.start_server()
    parent = web.Application()
    parent.add_subapp(
        "/sandbox/intake",
        create_intake_sandbox(
            lambda: redis_client,
            lambda: sealer,
            secret=SECRET,
            bot_events_url=str(bot_server.make_url("/intake/events")),
            clock=time.time,
        ),
    )
    server = TestServer(parent, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("/sandbox/intake"))
    try:
        [doc] = await submit(outbox, 1)
        worker = make_worker(redis_client, outbox, base, http, clock, calls)
        assert await worker.run_once() == 1
        number = (await worker.status(doc["id"]))["application_no"]
        assert number.startswith("SB-") and calls.delivered == [(doc["id"], number)]
        intake = HttpIntake(http, base_url=base, secret=SECRET, clock=time.time)
        again = await intake.deliver(doc)
        assert (again.kind, again.status_code, again.application_no) == (DELIVERED, 409, number)
        forged = await HttpIntake(http, base_url=base, secret="wrong", clock=time.time).deliver(doc)
        assert (forged.kind, forged.detail) == (REJECTED, "HTTP 401 bad_signature")
        body = encode_body(make_document(7))
        async with http.post(base + "/applications", data=body, headers=signed_headers(SECRET, body, "OTHER", time.time())) as r:
            assert r.status == 400 and (await r.json())["error"] == "idempotency_key_mismatch"
        stored = await redis_client.get(f"sandbox:{{intake}}:doc:{doc['id']}")
        assert json.loads(sealer.open(stored, f"sandbox:{{intake}}:doc:{doc['id']}")) == doc

        async with http.get(base + "/applications") as r:
            listing = await r.json()
        assert listing["sandbox"] is True
        rows = [(a["id"], a["application_no"], a["services"]) for a in listing["applications"]]
        assert rows == [(doc["id"], number, doc["services"])]
        shown = json.dumps(listing, ensure_ascii=False)
        assert doc["applicant"]["id_number"] not in shown and "王小宝" not in shown
        async with http.get(base + "/") as r:
            assert (await r.json())["sandbox"] is True

        async with http.post(
            base + "/emit",
            json={"application_no": number, "service": "nursing_subsidy", "status": "approved", "note": "审核通过"},
        ) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        assert answer["sandbox"] is True and answer["bot_status"] == 200
        [(key, event)] = received
        assert set(event) == {"event_id", "application_id", "application_no", "service", "status", "note", "at"}
        assert key == event["event_id"] and event == answer["event"]
        assert (event["application_id"], event["application_no"], event["service"], event["status"], event["note"]) == (
            doc["id"],
            number,
            "nursing_subsidy",
            "approved",
            "审核通过",
        )
        async with http.post(base + "/emit", json={"application_id": doc["id"], "service": None, "status": "mailed"}) as r:
            assert r.status == 400  # two services: which one?
        async with http.post(
            base + "/emit", json={"application_id": doc["id"], "service": "disability_certificate", "status": "mailed"}
        ) as r:
            assert r.status == 200 and received[-1][1]["status"] == "mailed"
        for wrong, status, error in [
            ({"application_no": "SB-NOPE", "status": "approved"}, 404, "unknown_application"),
            ({"application_no": number, "status": "granted"}, 400, "bad_status"),
            ({"application_no": number, "service": "pension_subsidy", "status": "approved"}, 400, "service_not_in_application"),
        ]:
            async with http.post(base + "/emit", json=wrong) as r:
                assert (r.status, (await r.json())["error"]) == (status, error)

        withdrawal = {
            "event_id": f"{doc['id']}:withdraw:nursing_subsidy",
            "application_id": doc["id"],
            "application_no": number,
            "service": "nursing_subsidy",
            "status": "withdrawn",
            "note": "",
            "at": "2026-11-24T10:00:00+08:00",
        }
        first, repeat = await intake.send_event(withdrawal), await intake.send_event(withdrawal)
        assert (first.kind, first.status_code, repeat.kind, repeat.status_code) == (DELIVERED, 200, DELIVERED, 409)
        async with http.get(base + "/events") as r:
            assert [e["event_id"] for e in (await r.json())["events"]] == [withdrawal["event_id"]]
        await assert_nothing_in_clear(redis_client, [doc["applicant"]["id_number"], doc["applicant"]["phone"], "王小宝"])
    finally:
        await server.close()
        await bot_server.close()


async def test_the_sandbox_without_a_bot_to_tell(redis_client, sealer, http):
    app = create_intake_sandbox(redis_client, sealer, secret=SECRET, bot_events_url=None, http=http, clock=time.time)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        intake = HttpIntake(http, base_url=str(server.make_url("")), secret=SECRET, clock=time.time)
        doc = {**make_document(1), "services": ["living_subsidy"]}
        delivered = await intake.deliver(doc)
        assert delivered.kind == DELIVERED and delivered.status_code == 201
        async with http.post(server.make_url("/emit"), json={"application_id": doc["id"], "status": "accepted"}) as r:
            answer = await r.json()
        assert r.status == 503 and answer["error"] == "no_bot_events_url"
        assert (answer["event"]["status"], answer["event"]["service"]) == ("accepted", "living_subsidy")  # the only one
    finally:
        await server.close()


# -- the real `bot serve` process --------------------------------------------------------------------
def bot_serve(tmp_path: Path, redis_url: str, intake_url: str, data_key: str) -> BotServe:
    """`python -m bot serve` delivering to the fake intake through the given Redis (tests/processes.py)."""
    return BotServe(
        tmp_path / "var", env=dict(REDIS_URL=redis_url, INTAKE_URL=intake_url, INTAKE_SECRET=SECRET, BOT_DATA_KEY=data_key)
    )


@pytest.fixture
def data_key() -> tuple[str, Sealer]:
    key = os.urandom(32)
    return f"test:{base64.b64encode(key).decode()}", Sealer([("test", key)])


async def test_bot_serve_killed_mid_delivery_delivers_once_after_restart(tmp_path, redis_url, redis_client, fake, data_key):
    setting, sealer = data_key
    outbox = RedisOutbox(redis_client, sealer)
    bot = bot_serve(tmp_path, redis_url, fake.url, setting)
    state = lambda i: redis_client.hget(f"outbox:{{applications}}:state:{i}", "state")  # noqa: E731
    await bot.start()
    try:
        [first, caught] = [make_document(1), make_document(2)]
        assert await outbox.submit(first)
        await wait_until(lambda: _is(state(first["id"]), b"delivered"), 10)
        fake.slow_s = 60
        fake.then(caught["id"], "lost_reply")  # the intake stores it and then never answers
        assert await outbox.submit(caught)
        await wait_until(lambda: _true(fake.in_flight[caught["id"]] == 1), 10)
        bot.kill(signal.SIGKILL)  # mid-POST: its lock held, its entry pending, the intake has the application
        await bot.start()
        # The dead attempt's lock outlives the HTTP timeout (10 s + 5 s) by design; then it is due again.
        await wait_until(lambda: _is(state(caught["id"]), b"delivered"), 40)
    finally:
        bot.stop()
    assert fake.accepted[first["id"]] == fake.accepted[caught["id"]] == 1
    sent = fake.for_id(caught["id"])
    assert [(r.key, r.signature_ok) for r in sent] == [(caught["id"], True)] * 2 and sent[-1].status == 409
    number = await redis_client.hget(f"outbox:{{applications}}:state:{caught['id']}", "application_no")
    assert number.decode() == fake.numbers[caught["id"]]
    assert await pending(redis_client) == 0


async def test_bot_serve_rides_out_a_redis_restart(tmp_path, redis_url, redis_client, fake, data_key):
    setting, sealer = data_key
    outbox = RedisOutbox(redis_client, sealer)
    proxy = RedisProxy(redis_url)
    await proxy.start()
    bot = bot_serve(tmp_path, proxy.url, fake.url, setting)
    state = lambda i: redis_client.hget(f"outbox:{{applications}}:state:{i}", "state")  # noqa: E731
    await bot.start()
    try:
        [before, during] = [make_document(1), make_document(2)]
        assert await outbox.submit(before)
        await wait_until(lambda: _is(state(before["id"]), b"delivered"), 10)
        await proxy.cut()  # Redis goes away for the bot...
        assert await outbox.submit(during)  # ...while a citizen's application is queued (written before the outage)
        await asyncio.sleep(2)
        assert bot.proc.poll() is None and fake.for_id(during["id"]) == []
        await proxy.start()  # ...and comes back with its data
        await wait_until(lambda: _is(state(during["id"]), b"delivered"), 20)
        # (The first command on each connection pooled before the outage may still fail once.)
        await wait_until(bot.healthy, 5)
    finally:
        bot.stop()
        await proxy.cut()
    assert fake.accepted[before["id"]] == fake.accepted[during["id"]] == 1


async def _is(awaitable, wanted) -> bool:
    return await awaitable == wanted


async def _true(value: bool) -> bool:
    return value


# -- helpers ----------------------------------------------------------------------------------------
async def assert_nothing_in_clear(redis, secrets: list[str]) -> None:
    wanted = [s.encode() for s in secrets]
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        if kind == b"string":
            values = [await redis.get(key)]
        elif kind == b"hash":
            values = [k + v for k, v in (await redis.hgetall(key)).items()]
        elif kind == b"stream":
            values = [repr(e).encode() for e in await redis.xrange(key)]
        elif kind == b"zset":
            values = await redis.zrange(key, 0, -1)
        else:
            values = []
        for value in values:
            for secret in wanted:
                assert secret not in (value or b"") and secret not in key, f"{secret!r} in clear under {key!r}"


class RedisProxy:
    """A TCP hop in front of the suite's Redis that can be cut and restored, like a Redis restart."""

    def __init__(self, target_url: str):
        self.target = urlparse(target_url)
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        db = self.target.path.lstrip("/") if self.target.scheme.startswith("redis") else ""
        auth = self.target.netloc.rpartition("@")[0]
        return f"redis://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{db or 0}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            if self.target.scheme == "unix":
                up_reader, up_writer = await asyncio.open_unix_connection(self.target.path)
            else:
                up_reader, up_writer = await asyncio.open_connection(self.target.hostname, self.target.port or 6379)
            self.writers |= {writer, up_writer}
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self.tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self.writers.discard(writer)


async def test_an_operator_retry_sends_a_retrying_application_now(redis_client, outbox, fake, http, clock, calls):
    """`bot outbox retry` on an application still being retried: tried at once, not at its backoff (issue 11)."""
    [doc] = await submit(outbox, 1)
    fake.always = "500"
    worker = make_worker(redis_client, outbox, fake.url, http, clock, calls, backoff_base_s=600.0, backoff_cap_s=600.0)
    assert await worker.run_once() == 1
    status = await worker.status(doc["id"])
    assert status["state"] == "retrying" and status["next_attempt_at"] > clock() + 60
    assert await worker.run_once() == 0  # not due yet
    assert await worker.retry(doc["id"])
    fake.always = None
    assert (await worker.status(doc["id"]))["next_attempt_at"] == clock()
    assert await worker.run_once() == 1
    assert (await worker.status(doc["id"]))["state"] == "delivered"
