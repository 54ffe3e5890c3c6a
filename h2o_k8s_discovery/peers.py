"""A peer is one H2O node as the flatfile names it: an IP address and the H2O port.

Peers sort by address family, then numerically by address, then by port, so a snapshot has one
canonical order whatever order the DNS server shuffled its records into.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Self

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Peer:
    """One H2O node: ``ip`` and the H2O (REST API) ``port``; the internal port is ``port + 1``."""

    ip: IPAddress
    port: int

    @classmethod
    def parse(cls, ip: str, port: int) -> Self:
        """Build a peer from a textual address; raises ``ValueError`` on a malformed one."""
        if "%" in ip:
            raise ValueError(f"{ip!r}: a zone index has no place in a flatfile")
        return cls(ipaddress.ip_address(ip), port)

    def sort_key(self) -> tuple[int, int, int]:
        return (self.ip.version, int(self.ip), self.port)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Peer):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __str__(self) -> str:
        """The flatfile form: ``ip:port``, or ``[ip]:port`` for IPv6."""
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


Snapshot = tuple[Peer, ...]


def snapshot(peers: list[Peer] | set[Peer] | tuple[Peer, ...]) -> Snapshot:
    """Sorted, de-duplicated peers: the canonical form of one DNS poll."""
    # One key per peer, instead of two per comparison through __lt__.
    return tuple(sorted(set(peers), key=Peer.sort_key))
