"""Whether this process can reach Redis, logged once per change of state.

During an outage every turn, every background loop and every delivery pass fails on Redis; logging
each of them buried the one line an operator needs ("Redis unreachable since 10:02") under thousands.
Each part reports what it saw; the log says when Redis went away (with the first error and where),
when it came back (with how long it was away and how many failures were not logged), and nothing in
between. `/metrics` shows the state as `bot_redis_up`.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("bot.redis")


class RedisHealth:
    def __init__(self) -> None:
        self.up = True
        self.down_since = 0.0
        self.failures = 0

    def failed(self, where: str, exc: BaseException) -> None:
        if self.up:
            self.up, self.down_since, self.failures = False, time.monotonic(), 0
            log.warning("Redis unreachable (%s in %s); answering 'busy' until it is back", type(exc).__name__, where)
        self.failures += 1

    def ok(self) -> None:
        if not self.up:
            self.up = True
            log.warning(
                "Redis reachable again after %.1f s (%d failures while away)", time.monotonic() - self.down_since, self.failures
            )


def is_redis_error(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionError, TimeoutError, OSError)) or "redis" in type(exc).__module__
