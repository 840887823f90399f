"""Staff accounts: argon2 password hashes in Redis, created and changed only by `bot users`.

There is no default account and no default password: the first administrator is made with
`bot users add NAME --role admin` on the server. A login is refused for a while after too many wrong
passwords, for the account and for the address it came from, even with the right password then
(otherwise a guesser learns when it hit).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.console import keys
from bot.console.roles import ROLES, Role
from integrations.redis_connection import RedisClient

MIN_PASSWORD_CHARS = 12
USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
# Wrong passwords within LOGIN_WINDOW_S before logins are refused (the window is Redis's TTL).
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_ADDRESS = 20
LOGIN_WINDOW_S = 15 * 60

_hasher = PasswordHasher()

# One more wrong password, counted in a window that starts at the first (EXPIRE NX needs Redis 7).
_COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@cache
def _dummy_hash() -> str:
    """Verified when the account does not exist, so a wrong name takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A refused account change; the message is one line for the operator."""


@dataclass(frozen=True)
class Account:
    username: str
    name: str
    role: Role
    disabled: bool


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(set(password)) < 5:
        raise AccountError("the password repeats too few characters")


class Accounts:
    def __init__(self, client: RedisClient):
        self.redis = client
        self._count_failure = client.register_script(_COUNT_FAILURE)

    async def get(self, username: str) -> Account | None:
        raw = await self.redis.hgetall(keys.user(username))
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return Account(username, h.get("name", username), ROLES[h["role"]], h.get("disabled") == "1")

    async def list(self) -> list[Account]:
        names = sorted(m.decode() for m in await self.redis.smembers(keys.USERS))
        return [a for a in [await self.get(n) for n in names] if a is not None]

    async def add(self, username: str, role: str, password: str, *, name: str = "") -> Account:
        if not USERNAME.match(username):
            raise AccountError("a user name is 2-32 lower-case letters, digits, '_', '.', '-', starting with a letter")
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        check_password(password)
        digest = await asyncio.to_thread(_hasher.hash, password)
        created = await self.redis.hsetnx(keys.user(username), "hash", digest)
        if not created:
            raise AccountError(f"user {username!r} exists (use `bot users reset` for a new password)")
        await self.redis.hset(keys.user(username), mapping={"role": role, "name": name or username, "disabled": "0"})
        await self.redis.sadd(keys.USERS, username)
        return Account(username, name or username, ROLES[role], False)

    async def set_disabled(self, username: str, disabled: bool = True) -> None:
        if not await self.redis.exists(keys.user(username)):
            raise AccountError(f"no user {username!r}")
        await self.redis.hset(keys.user(username), "disabled", "1" if disabled else "0")

    async def reset(self, username: str, password: str) -> None:
        if not await self.redis.exists(keys.user(username)):
            raise AccountError(f"no user {username!r}")
        check_password(password)
        await self.redis.hset(keys.user(username), "hash", await asyncio.to_thread(_hasher.hash, password))
        await self.redis.delete(keys.login_failures_of_account(username))

    async def login(self, username: str, password: str, address: str) -> Account | None | bool:
        """The account when the password is right; None when it is wrong (or the account is disabled);
        False when this account or address made too many wrong attempts lately (nothing verified)."""
        account_key, address_key = keys.login_failures_of_account(username), keys.login_failures_of_address(address)
        by_account, by_address = await self.redis.mget(account_key, address_key)
        if int(by_account or 0) >= FAILURES_PER_ACCOUNT or int(by_address or 0) >= FAILURES_PER_ADDRESS:
            return False
        stored = await self.redis.hget(keys.user(username), "hash")
        ok = await asyncio.to_thread(_verify, stored.decode() if stored else _dummy_hash(), password)
        account = await self.get(username) if ok and stored else None
        if account is None or account.disabled:
            for key in (account_key, address_key):
                await self._count_failure(keys=[key], args=[LOGIN_WINDOW_S])
            return None
        await self.redis.delete(account_key)
        return account


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False
