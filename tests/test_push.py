"""The push queue: durable, sealed, each message sent once by one worker, retried with backoff."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from integrations.push import CLAIM_S, GIVE_UP_S, PushQueue, backoff_s, failed_id, message_key, push_forever
from integrations.sealing import Sealer
from integrations.wechat_api import WeChatApi
from integrations.wechat_sandbox import SANDBOX

OPENID = "oQx7Zp0SecretOpenidOfTheCitizen"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sandbox(wechat_sandbox):
    """The citizens of these tests wrote to the account just now (WeChat's 48-hour window is open)."""
    state = wechat_sandbox.app[SANDBOX]
    for openid in (OPENID, "oAnotherCitizenOpenid42", *(f"oUser{i:03d}" for i in range(40))):
        state.saw(openid)
    return wechat_sandbox


@pytest.fixture
def sealer() -> Sealer:
    return Sealer([("k1", os.urandom(32))])


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_queue(http, redis, sandbox, sealer, clock, **kw) -> PushQueue:
    api = WeChatApi(
        http,
        redis,
        base_url=str(sandbox.make_url("")).rstrip("/"),
        appid="sandbox-appid",
        secret="sandbox-secret",
        clock=clock,
        **kw,
    )
    return PushQueue(redis, sealer, api, clock=clock)


@pytest.fixture
def queue(http, redis_client, sandbox, sealer, clock) -> PushQueue:
    return make_queue(http, redis_client, sandbox, sealer, clock)


async def inject(http, sandbox, endpoint: str, **fault) -> None:
    url = str(sandbox.make_url("/sandbox/fail"))
    async with http.post(url, json={"endpoint": endpoint, **fault}) as resp:
        assert resp.status == 200


def inbox(sandbox, openid: str = OPENID) -> list[str]:
    return [m["text"] for m in sandbox.app[SANDBOX].messages(openid)]


def counts(**nonzero) -> dict[str, int]:
    return {"sent": 0, "retry": 0, "failed": 0, "duplicate": 0, "expired": 0, **nonzero}


async def test_enqueued_twice_under_one_key_is_sent_once(queue, sandbox):
    assert await queue.enqueue(OPENID, "您的申请已受理", key="QY1:accepted") is True
    assert await queue.enqueue(OPENID, "您的申请已受理", key="QY1:accepted") is False
    assert await queue.send_due(now=T0) == counts(sent=1)
    assert await queue.enqueue(OPENID, "您的申请已受理", key="QY1:accepted") is False  # sent already
    assert await queue.send_due(now=T0 + 3600) == counts()
    assert inbox(sandbox) == ["您的申请已受理"]
    assert await queue.pending() == 0


async def test_a_message_waits_for_not_before(queue, sandbox):
    await queue.enqueue(OPENID, "明天上午参加残疾评定", key="remind", not_before=T0 + 100)
    assert await queue.send_due(now=T0 + 99) == counts()
    assert await queue.send_due(now=T0 + 100) == counts(sent=1)
    assert inbox(sandbox) == ["明天上午参加残疾评定"]


async def test_a_failing_send_is_retried_after_the_backoff_and_sent_once(queue, sandbox, http):
    await queue.enqueue(OPENID, "护理补贴已批准", key="k")
    await inject(http, sandbox, "custom", errcodes=[-1])
    assert await queue.send_due(now=T0) == counts(retry=1)
    assert await queue.send_due(now=T0 + 14) == counts()  # 30 s with jitter: at least 15 s
    assert await queue.send_due(now=T0 + 31) == counts(sent=1)
    assert await queue.send_due(now=T0 + 4000) == counts()
    assert inbox(sandbox) == ["护理补贴已批准"]


def test_backoff_doubles_from_30_s_to_an_hour_with_jitter():
    for attempt, full in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (30, 3600)]:
        delays = [backoff_s(attempt) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1


async def test_two_workers_send_each_message_once(redis_client, redis_url, sandbox, sealer, clock):
    other_redis = aioredis.from_url(redis_url)
    async with aiohttp.ClientSession() as s1, aiohttp.ClientSession() as s2:
        queues = [make_queue(s1, redis_client, sandbox, sealer, clock), make_queue(s2, other_redis, sandbox, sealer, clock)]
        for i in range(40):
            await queues[i % 2].enqueue(f"oUser{i:03d}", f"第{i}号通知", key=f"n{i}")
        results = await asyncio.gather(queues[0].send_due(now=T0), queues[1].send_due(now=T0))
    await other_redis.aclose()
    assert results[0]["sent"] + results[1]["sent"] == 40
    assert results[0]["duplicate"] + results[1]["duplicate"] == 0
    assert all(inbox(sandbox, f"oUser{i:03d}") == [f"第{i}号通知"] for i in range(40))
    assert sandbox.app[SANDBOX].token_fetches == 1


async def test_a_claim_whose_worker_died_is_sent_after_the_deadline(queue, sandbox):
    await queue.enqueue(OPENID, "请补充材料", key="k")
    _, claimed = await queue._claim_due(now=T0, limit=10)  # a worker claims it, then dies
    assert claimed == [await queue.stored_key(OPENID, "k")]
    assert await queue.send_due(now=T0 + CLAIM_S - 1) == counts()
    assert inbox(sandbox) == []
    assert await queue.send_due(now=T0 + CLAIM_S + 1) == counts(sent=1)
    assert inbox(sandbox) == ["请补充材料"]


async def test_a_late_worker_cannot_reschedule_a_message_taken_over(queue, sandbox, http):
    await queue.enqueue(OPENID, "通知", key="k")
    old_deadline, _ = await queue._claim_due(now=T0, limit=10)
    # The claim lapses and another round sends it; the first worker's late retry changes nothing.
    assert await queue.send_due(now=T0 + CLAIM_S + 1) == counts(sent=1)
    stored = await queue.stored_key(OPENID, "k")
    assert (
        await queue._retry(
            keys=["push:{queue}:inflight", "push:{queue}:due", message_key(stored)],
            args=[stored, old_deadline, T0 + 70, -1, "late"],
        )
        == 0
    )
    assert await queue.pending() == 0
    assert inbox(sandbox) == ["通知"]


async def test_a_message_found_mid_send_by_another_worker_is_not_lost_when_that_send_fails(
    redis_client, redis_url, sandbox, sealer, clock, http
):
    """Worker A's send is slow (its claim lapses) and ends in WeChat's "system busy"; worker B took the lapsed
    claim meanwhile and found A mid-send. B once called that done, and A's fenced retry changed nothing: the
    message was lost, never sent. Now B asks again later, and the citizen gets it once."""
    other_redis = aioredis.from_url(redis_url)
    async with aiohttp.ClientSession() as other_http:
        a = make_queue(http, redis_client, sandbox, sealer, clock)
        b = make_queue(other_http, other_redis, sandbox, sealer, clock)
        await a.api.access_token()
        await a.enqueue(OPENID, "护理补贴：审核通过", key="ev-approved")
        await inject(http, sandbox, "custom", errcodes=[-1], delay_s=0.5)
        slow = asyncio.create_task(a.send_due(now=T0))
        await asyncio.sleep(0.2)  # A's request is out, waiting for WeChat
        assert await b.send_due(now=T0 + CLAIM_S + 1) == counts(retry=1)
        assert await slow == counts(retry=1)
        await inject(http, sandbox, "custom", delay_s=0)
        assert inbox(sandbox) == []
        assert await b.send_due(now=T0 + CLAIM_S + 3600) == counts(sent=1)
        assert await a.send_due(now=T0 + 7 * 3600) == counts() and await a.pending() == 0
    await other_redis.aclose()
    assert inbox(sandbox) == ["护理补贴：审核通过"]


async def test_unsubscribed_is_failed_and_listed_for_operators(queue, sandbox, http):
    await queue.enqueue(OPENID, "通知", key="QY9:approved")
    await inject(http, sandbox, "custom", errcodes=[43004])
    assert await queue.send_due(now=T0) == counts(failed=1)
    stored = await queue.stored_key(OPENID, "QY9:approved")
    assert await queue.failed() == [
        {
            "id": failed_id(stored),
            "key": "QY9:approved",
            "openid": "oQx7Zp…",
            "kind": "text",
            "errcode": 43004,
            "detail": "require subscribe",
            "attempts": 1,
            "failed_at": T0,
        }
    ]
    assert await queue.send_due(now=T0 + 3600) == counts()
    assert await queue.enqueue(OPENID, "通知", key="QY9:approved") is False


async def test_one_services_messages_never_arrive_out_of_order(queue, sandbox, http):
    """已受理 failing and waiting for its retry when 审核通过 comes: the older one is dropped, so the citizen
    never reads 已受理 after 审核通过; another service's message and a message of no group are untouched."""
    await inject(http, sandbox, "custom", errcodes=[-1])
    await queue.enqueue(OPENID, "护理补贴：已受理", key="ev1", group="QY9:nursing_subsidy")
    assert await queue.send_due(now=T0) == counts(retry=1)
    await queue.enqueue(OPENID, "残疾人证：已受理", key="ev2", group="QY9:disability_certificate")
    await queue.enqueue(OPENID, "提醒", key="r1")
    await queue.enqueue(OPENID, "护理补贴：审核通过", key="ev3", group="QY9:nursing_subsidy")
    assert await queue.send_due(now=T0 + 3600) == counts(sent=3)
    assert sorted(inbox(sandbox)) == sorted(["残疾人证：已受理", "提醒", "护理补贴：审核通过"])
    assert await queue.send_due(now=T0 + 7200) == counts() and await queue.pending() == 0
    # A group's message already sent is not touched by the next one.
    await queue.enqueue(OPENID, "残疾人证：审核通过", key="ev4", group="QY9:disability_certificate")
    assert await queue.send_due(now=T0 + 7300) == counts(sent=1)
    assert inbox(sandbox)[-1] == "残疾人证：审核通过"


async def _commands(redis) -> int:
    return sum(v["calls"] for k, v in (await redis.info("commandstats")).items() if k.startswith("cmdstat_"))


async def test_erasing_one_persons_messages_costs_what_that_person_has(queue, redis_client):
    """Erasure read every queued message of everyone (and a SCAN of every key for the sent ones): with the
    recipient's index it reads that person's messages only; the same for the console's list of them."""
    for n in range(300):
        await queue.enqueue(f"oOther{n:04d}", "通知", key=f"ev-{n}")
    await queue.enqueue(OPENID, "通知", key="mine-1")
    await queue.enqueue(OPENID, "通知", key="mine-2")
    before = await _commands(redis_client)
    assert len(await queue.to(OPENID)) == 2
    assert await queue.forget(OPENID, keep=lambda key: False) == 2
    used = await _commands(redis_client) - before
    assert used < 40, used  # the INFO calls themselves included; reading the queue would be 300+
    assert await queue.to(OPENID) == [] and await queue.pending() == 300


async def test_retries_stop_after_72_hours(queue, sandbox, http):
    await queue.enqueue(OPENID, "通知", key="k")
    await inject(http, sandbox, "custom", errcodes=[-1] * 200)
    now, rounds = T0, []
    while not rounds or rounds[-1]["failed"] == 0:
        rounds.append(await queue.send_due(now=now))
        now += 3600
        assert len(rounds) < 100
    attempts = sum(r["retry"] + r["failed"] for r in rounds)
    assert now - 3600 >= T0 + GIVE_UP_S
    [failed] = await queue.failed()
    assert failed["attempts"] == attempts and failed["errcode"] == -1 and "72 h" in failed["detail"]
    assert inbox(sandbox) == []


async def test_messages_are_sealed_in_redis(queue, redis_client, sandbox, http):
    text = "王小宝的重度残疾人护理补贴已批准"
    await queue.enqueue(OPENID, text, key="QY2:approved")
    await queue.enqueue("oAnotherCitizenOpenid42", "李秀英：请补充户口簿", key="QY3:materials")
    await inject(http, sandbox, "custom", errcodes=[-1, 43004])
    await queue.send_due(now=T0)  # one retried, one failed: both still stored
    stored = await dump(redis_client)
    assert (await queue.stored_key(OPENID, "QY2:approved")).encode() in stored  # the scan does see the queue
    for clear in (OPENID, text, "oAnotherCitizenOpenid42", "李秀英", "户口簿", "QY2", "QY3", "approved", "materials"):
        assert clear.encode() not in stored
    assert inbox(sandbox) == []


async def dump(redis) -> bytes:
    """Every key and value in the database, as bytes."""
    out = []
    async for key in redis.scan_iter(count=500):
        out.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out.append(await redis.get(key))
        elif kind == "hash":
            for f, v in (await redis.hgetall(key)).items():
                out += [f, v]
        elif kind == "zset":
            out += await redis.zrange(key, 0, -1)
    return b"\n".join(out)


async def test_the_background_task_sends_and_stops_when_cancelled(redis_url, redis_client, sandbox, sealer, http):
    # The production client's socket timeout makes redis-py use asyncio.wait_for, which on Python
    # 3.11 can lose a cancel: the task must stop all the same.
    redis = aioredis.from_url(redis_url, socket_timeout=1.0)
    queue = make_queue(http, redis, sandbox, sealer, time.time)
    await queue.enqueue(OPENID, "材料已收到", key="k")
    for i in range(30):
        task = asyncio.create_task(push_forever(queue, interval_s=0.001))
        await asyncio.sleep(0.001 * (i % 6))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the push task did not stop"
    await redis.aclose()
    assert inbox(sandbox) == ["材料已收到"]
