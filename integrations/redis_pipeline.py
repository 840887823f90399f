"""The conversation hot path's Redis client: one connection, auto-pipelined.

Every turn makes two script calls. Through redis-py each takes a pooled connection, a write
syscall, a read wake-up and (with a socket timeout) a helper task; at 32 concurrent users that
was a fifth of a turn's CPU. Here all commands issued in one event-loop iteration go out in one
write on one connection, and the replies, which Redis sends in order, are matched to their
callers as they arrive (what ioredis calls auto-pipelining). The rest of the bot keeps redis-py.

Failure behaviour, which the turn's deadline relies on:
- a command is written only on a live connection; when the connection drops, every command
  still waiting fails at once with ConnectionError (Redis may or may not have run it; the
  conversation scripts are fenced, so the caller's "busy" reply is safe), and the next command
  opens a new connection, so one restart of Redis costs no more than the turns in flight;
- a caller that gives up (its turn's deadline) just stops waiting; its reply is read and dropped;
- when the oldest command has waited longer than `stall_s`, the connection is presumed dead
  (a Redis that stopped answering without closing) and is closed;
- a script unknown to the server (NOSCRIPT, after a restart) is sent again with its body.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl as ssl_module
import time
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


class _Connection(asyncio.Protocol):
    def __init__(self, stall_s: float):
        self.stall_s = stall_s
        self.transport: asyncio.Transport  # set by connection_made, which asyncio calls before anything else
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisConnectionError(f"Redis protocol error: {exc}"))
                self.transport.abort()
                return
            if reply is False:
                return
            future, _ = self.waiting.popleft()
            if future.done():  # its caller gave up
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_error(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(RedisConnectionError("Redis connection lost"))

    def _fail(self, error: Exception) -> None:
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def send(self, packed: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        if self.waiting and time.monotonic() - self.waiting[0][1] > self.stall_s:
            self.transport.abort()  # connection_lost fails the waiting commands
            raise RedisConnectionError("Redis stopped answering")
        future = loop.create_future()
        self.waiting.append((future, time.monotonic()))
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(packed)
        return future

    def _flush(self) -> None:
        if not self.closed:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()


def _error(reply: ResponseError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return reply


class PipelinedRedis:
    """Commands and scripts over one auto-pipelined connection (see the module's docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        connect_timeout_s: float = 1.0,
        stall_s: float = 1.0,
    ):
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password, self.ssl = username, password, ssl
        self.connect_timeout_s, self.stall_s = connect_timeout_s, stall_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task | None = None

    @classmethod
    def like(cls, client) -> PipelinedRedis:
        """One that talks to the same server and database as a redis-py client."""
        kwargs = client.connection_pool.connection_kwargs
        ssl = None
        if kwargs.get("ssl_cert_reqs") is not None or "ssl_ca_certs" in kwargs:
            ssl = ssl_module.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
        return cls(
            host=kwargs.get("host", "127.0.0.1"),
            port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path"),
            db=int(kwargs.get("db", 0) or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            ssl=ssl,
        )

    async def execute(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        return await connection.send(hiredis.pack_command(args), asyncio.get_running_loop())

    def script(self, body: str) -> Script:
        """A Lua script, called like redis-py's: `await script(keys=[...], args=[...])`."""
        return Script(self, body)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None and not self._connection.closed:
            self._connection.transport.close()
        self._connection = None

    async def _connect(self) -> _Connection:
        # Concurrent callers share one connection attempt.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        factory = lambda: _Connection(self.stall_s)  # noqa: E731
        async with asyncio.timeout(self.connect_timeout_s):
            try:
                if self.path:
                    _, connection = await loop.create_unix_connection(factory, self.path)
                else:
                    _, connection = await loop.create_connection(factory, self.host, self.port, ssl=self.ssl)
            except OSError as exc:
                raise RedisConnectionError(f"cannot reach Redis: {exc}") from exc
            hello = []
            if self.password:
                auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                # hiredis.pyi types the command as a 1-tuple (Tuple[X], not Tuple[X, ...]; redis/hiredis-py#195).
                hello.append(connection.send(hiredis.pack_command(auth), loop))  # type: ignore[arg-type]
            if self.db:
                hello.append(connection.send(hiredis.pack_command(("SELECT", self.db)), loop))  # type: ignore[arg-type]
            try:
                for reply in hello:
                    await reply
            except BaseException:
                connection.transport.close()
                raise
        self._connection = connection
        return connection


class Script:
    """A Lua script known by its SHA-1, sent with its body only when the server does not have it."""

    def __init__(self, redis: PipelinedRedis, body: str):
        self.redis = redis
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()

    async def __call__(self, *, keys: list, args: list) -> Any:
        try:
            return await self.redis.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.execute("EVAL", self.body, len(keys), *keys, *args)
