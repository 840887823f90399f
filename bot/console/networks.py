"""BOT_CONSOLE_NETWORKS: the addresses the console answers (comma-separated networks), and
BOT_CONSOLE_PROXIES: the reverse proxies in front of it, whose X-Forwarded-For is believed."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def network_problem(text: str, variable: str = "BOT_CONSOLE_NETWORKS", *, empty_ok: bool = False) -> list[str]:
    try:
        networks = parse_networks(text)
    except ValueError as e:
        return [f"{variable} must be networks like 10.12.0.0/16,127.0.0.1 ({e})"]
    return [] if networks or empty_ok else [f"{variable} is empty: the console would answer no one"]


def client_address(peer: str | None, forwarded_for: str | None, proxies: list[Network]) -> str:
    """The staff's address: the peer's, unless the peer is one of our proxies; then the nearest hop of
    X-Forwarded-For that is not one (hops further back anyone could have written)."""
    address = peer or ""
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    while hops and is_proxy(address, proxies):
        address = hops.pop()
    return address


def is_proxy(address: str, proxies: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in proxy for proxy in proxies)
