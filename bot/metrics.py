"""Prometheus metrics: counters of this app's turns, and gauges of the shared state read at scrape time.

Counters and histograms live in the app's own registry (tests build many apps in one process). With
several workers (`bot serve --workers N`) a scrape reaches one of them at random, so the workers write
their counters to files in PROMETHEUS_MULTIPROC_DIR (set by `bot serve` before they start) and each
scrape adds up all of them: one consistent view whichever worker answers. Gauges (outbox depth, push
queue, reminders, Redis) are read from Redis at scrape time, the same for every worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from bot.composition import Services

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The MsgTypes WeChat sends an official account (文本、图片、语音、视频、小视频、地理位置、链接、事件, and
# the files and mini-program cards some clients forward).
MESSAGE_TYPES = frozenset(
    {"text", "image", "voice", "video", "shortvideo", "location", "link", "event", "file", "miniprogrampage"}
)


@dataclass
class Metrics:
    registry: CollectorRegistry
    messages: Counter
    latency: Histogram
    errors: Counter
    dedup_hits: Counter
    rejected: Counter
    clock_skew: Gauge
    push_failed: Counter
    skew_logged_at: float = -60.0  # the last time a clock far from WeChat's was logged (monotonic)
    _by_type: dict[str, Any] = field(default_factory=dict)

    def count_message(self, msg_type: str) -> None:
        """One message handled. MsgType is the sender's word: a type WeChat does not send is counted as
        "other", so forged types cannot grow /metrics (and each process's memory) without bound."""
        kind = msg_type if msg_type in MESSAGE_TYPES else "other"
        child = self._by_type.get(kind)
        if child is None:
            child = self._by_type[kind] = self.messages.labels(kind)
        child.inc()

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            messages=Counter("bot_messages", "Messages handled, by WeChat message type", ["type"], registry=r),
            latency=Histogram(
                "bot_turn_seconds",
                "Time to answer one WeChat message",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 5),
                registry=r,
            ),
            errors=Counter("bot_errors", "Turns answered with the 'please retry' message, by cause", ["cause"], registry=r),
            dedup_hits=Counter("bot_dedup_hits", "WeChat retries answered from the reply cache", registry=r),
            rejected=Counter(
                "bot_rejected_requests", "Requests refused by the protocol layer, by status", ["status"], registry=r
            ),
            clock_skew=Gauge(
                "bot_clock_skew_seconds",
                "WeChat's timestamp minus our clock, on the last correctly signed message refused as out of the window",
                registry=r,
                multiprocess_mode="mostrecent",
            ),
            push_failed=Counter(
                "bot_push_failed",
                "Pushed messages given up on (listed by `bot push failed`), by kind of notice and WeChat errcode",
                ["kind", "errcode"],
                registry=r,
            ),
        )

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            every_worker = CollectorRegistry()
            multiprocess.MultiProcessCollector(every_worker)
            return generate_latest(every_worker)
        return generate_latest(self.registry)


async def state_gauges(services: Services) -> bytes:
    """What is waiting, and whether Redis answers: read from Redis now (no personal data)."""
    r = CollectorRegistry()
    up = Gauge("bot_redis_up", "1 when this worker reaches Redis", registry=r)
    outbox = Gauge(
        "bot_outbox_items",
        "Applications and the bot's events on their way to the intake, by state",
        ["kind", "state"],
        registry=r,
    )
    push = Gauge("bot_push_messages", "Messages to citizens in the push queue, by state", ["state"], registry=r)
    reminders = Gauge(
        "bot_reminders", "Scheduled reminders: all, and those due but not yet handed to the push queue", ["state"], registry=r
    )
    conflicts = Gauge(
        "bot_intake_conflicts",
        "Intake events refused as contradicting a service's status (left to operators), since the start",
        registry=r,
    )
    try:
        conflicts.set(await services.registry.conflict_count())
        depth = await services.push.depth()
        for kind, states in (await services.outbox_depth()).items():
            for state, n in states.items():
                outbox.labels(kind, state).set(n)
        for state, n in depth.items():
            push.labels(state).set(n)
        for state, n in (await services.reminders.depth(services.clock.time())).items():
            reminders.labels(state).set(n)
        up.set(1)
        services.health.ok()
    except Exception as exc:  # Redis away: say so, with the gauges we could not read left out
        up.set(0)
        services.health.failed("/metrics", exc)
    return generate_latest(r)
