"""The hot path's auto-pipelined Redis connection, against a real Redis (and, for a Redis that
stops answering, a real TCP server on loopback that never replies)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from integrations.redis_pipeline import PipelinedRedis
from tests.conftest import free_port


@pytest.fixture
async def pipeline(redis_client):
    pipe = PipelinedRedis.like(redis_client)
    yield pipe
    await pipe.close()


async def test_replies_reach_their_callers_in_order_when_sent_together(pipeline, redis_client):
    values = [f"v{i}" for i in range(500)]
    await asyncio.gather(*(pipeline.execute("SET", f"k{i}", v) for i, v in enumerate(values)))
    got = await asyncio.gather(*(pipeline.execute("GET", f"k{i}") for i in range(500)))
    assert got == [v.encode() for v in values]
    # Same database as the redis-py client it was made like.
    assert await redis_client.get("k7") == b"v7"


async def test_errors_go_to_their_own_caller_only(pipeline):
    await pipeline.execute("SET", "text", "x")
    results = await asyncio.gather(pipeline.execute("INCR", "text"), pipeline.execute("GET", "text"), return_exceptions=True)
    assert isinstance(results[0], ResponseError)
    assert results[1] == b"x"


async def test_a_script_the_server_forgot_is_sent_again_with_its_body(pipeline, redis_client):
    script = pipeline.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(keys=["n"], args=[2]) == 2
    await redis_client.script_flush()
    assert await script(keys=["n"], args=[3]) == 5
    assert await script(keys=["n"], args=[4]) == 9  # EVAL cached it again: EVALSHA works


async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_others(pipeline):
    await pipeline.execute("SET", "a", "1")
    slow = asyncio.ensure_future(pipeline.execute("DEBUG", "SLEEP", "0.2"))
    await asyncio.sleep(0.01)
    slow.cancel()
    assert await pipeline.execute("GET", "a") == b"1"
    assert await pipeline.execute("ECHO", "after") == b"after"


async def test_a_dropped_connection_fails_what_waits_and_the_next_command_reconnects(pipeline, redis_client):
    await pipeline.execute("SET", "a", "1")
    my_id = await pipeline.execute("CLIENT", "ID")
    waiting = asyncio.ensure_future(pipeline.execute("BLPOP", "never", 5))
    await asyncio.sleep(0.05)
    await redis_client.execute_command("CLIENT", "KILL", "ID", my_id)
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 2)
    # No "busy" for the next citizen: the first command after the loss opens a new connection.
    assert await pipeline.execute("GET", "a") == b"1"
    assert await pipeline.execute("CLIENT", "ID") != my_id


async def test_nothing_listening_is_a_connection_error_not_a_hang():
    pipe = PipelinedRedis(host="127.0.0.1", port=free_port(), connect_timeout_s=0.5)
    with pytest.raises(RedisConnectionError):
        await pipe.execute("PING")
    await pipe.close()


async def test_a_server_that_stops_answering_is_dropped_after_the_stall_limit():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []

    async def accept_and_stay_silent():
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        while True:
            conn, _ = await loop.sock_accept(listener)
            accepted.append(conn)

    acceptor = asyncio.ensure_future(accept_and_stay_silent())
    pipe = PipelinedRedis(host="127.0.0.1", port=port, stall_s=0.2)
    try:
        first = asyncio.ensure_future(pipe.execute("PING"))
        await asyncio.sleep(0.3)
        assert not first.done()
        with pytest.raises(RedisConnectionError):
            await pipe.execute("PING")  # the stall is noticed when the next command comes
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(first, 1)
    finally:
        acceptor.cancel()
        await pipe.close()
        for conn in accepted:
            conn.close()
        listener.close()
