"""BOT_CONSOLE_NETWORKS: the addresses the console answers (comma-separated networks)."""

from __future__ import annotations

import ipaddress


def parse_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def network_problem(text: str) -> list[str]:
    try:
        networks = parse_networks(text)
    except ValueError as e:
        return [f"BOT_CONSOLE_NETWORKS must be networks like 10.12.0.0/16,127.0.0.1 ({e})"]
    return [] if networks else ["BOT_CONSOLE_NETWORKS is empty: the console would answer no one"]
