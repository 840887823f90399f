"""Prometheus metrics of one app (its own registry, so tests can build many apps)."""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry
    messages: Counter
    latency: Histogram
    errors: Counter
    dedup_hits: Counter
    rejected: Counter

    @classmethod
    def create(cls) -> "Metrics":
        r = CollectorRegistry()
        return cls(
            registry=r,
            messages=Counter("bot_messages", "Messages handled, by WeChat message type", ["type"], registry=r),
            latency=Histogram(
                "bot_turn_seconds", "Time to answer one WeChat message",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 5), registry=r,
            ),
            errors=Counter("bot_errors", "Turns answered with the 'please retry' message, by cause", ["cause"], registry=r),
            dedup_hits=Counter("bot_dedup_hits", "WeChat retries answered from the reply cache", registry=r),
            rejected=Counter("bot_rejected_requests", "Requests refused by the protocol layer, by status", ["status"], registry=r),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
