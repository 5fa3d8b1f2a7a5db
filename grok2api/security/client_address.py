"""Which address a request comes from, for rate limits, logs and the audit.

The socket peer is the client unless the peer is a proxy the operator
trusts (``security.trusted_proxies``). Then ``X-Forwarded-For`` is read from
the right: each trusted hop appended the address it saw, so the right-most
entry that is not itself a trusted proxy is the client. Entries further left
were written by the client and prove nothing; a forged header from an
untrusted peer is never read at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["TrustedProxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Some proxies append the client's port: "203.0.113.5:4711", "[::1]:80".
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    if "%" in text:
        text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in cidrs
        )

    @property
    def trusts_everyone(self) -> bool:
        return any(network.prefixlen == 0 for network in self.networks)

    def trusts(self, address: str | None) -> bool:
        if not self.networks:
            return False  # the usual case, asked on every request
        ip = _ip(address) if address else None
        return ip is not None and any(ip in network for network in self.networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client behind ``peer``; ``forwarded_for`` holds every
        ``X-Forwarded-For`` header value in the order received."""
        peer = peer or "unknown"
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        nearest = peer
        for hop in reversed([hop for hop in hops if hop]):
            ip = _ip(hop)
            if ip is None:
                # A trusted proxy passed on garbage: the last address we can
                # vouch for is the best answer.
                return nearest
            if not self.trusts(str(ip)):
                return str(ip)
            nearest = str(ip)
        return nearest

    def forwarded_https(self, peer: str | None, proto: str | None) -> bool:
        """Whether a trusted proxy says the client used https."""
        if not proto or not self.trusts(peer):
            return False
        return proto.split(",")[-1].strip().lower() == "https"
