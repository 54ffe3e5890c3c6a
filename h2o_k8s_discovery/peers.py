"""A peer is one H2O node as the flatfile names it: an IP address and the H2O port.

Peers sort by address family, then numerically by address, then by port, so a snapshot has one
canonical order whatever order the DNS server shuffled its records into.

Members are compared as addresses, never as text: H2O names an IPv6 node in Java's uncompressed
form without brackets (``fd00:0:0:0:0:0:0:a:54321`` in ``/3/Cloud``, with a ``/`` or a host
name in front in its log), while the flatfile and this package write ``[fd00::a]:54321``.
``parse_member`` reads every form H2O writes into a ``Peer``.
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

#: Groups in an IPv6 address written out in full, as Java's ``getHostAddress()`` does.
_IPV6_GROUPS = 8


def parse_member(text: str) -> Peer:
    """A member as H2O names it, as a ``Peer``; raises ``ValueError`` naming the text.

    Accepted: ``10.42.0.12:54321``; ``fd00:0:0:0:0:0:0:a:54321`` (all eight groups, the port
    after the last colon); ``[fd00::a]:54321``; each optionally after ``/`` or ``name/``
    (``InetAddress.toString()``). An unbracketed IPv6 address with ``::`` is refused: with a
    port of four digits or fewer it could itself be a whole address, and H2O never writes it.
    """
    stripped = text.strip()
    name, slash, address = stripped.partition("/")
    if not slash:
        address = name
    if "/" in address:
        raise ValueError(f"{text!r} is not a member address: more than one '/'")
    host, port = _split_host_port(text, address)
    number = _member_port(text, port)
    try:
        return Peer.parse(host, number)
    except ValueError as err:
        raise ValueError(f"{text!r} is not a member address: {err}") from None


def _split_host_port(text: str, address: str) -> tuple[str, str]:
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not a member address: expected [address]:port")
        return host, rest[1:]
    host, colon, port = address.rpartition(":")
    if not colon:
        raise ValueError(f"{text!r} is not a member address: no port")
    if ":" in host and ("::" in host or host.count(":") != _IPV6_GROUPS - 1):
        raise ValueError(
            f"{text!r} is not a member address: an IPv6 address without brackets must have "
            "all eight groups (as H2O writes it); otherwise write [address]:port"
        )
    return host, port


def _member_port(text: str, port: str) -> int:
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not a member address: port {port!r} is not 1-65535")
    return int(port)


def snapshot(peers: list[Peer] | set[Peer] | tuple[Peer, ...]) -> Snapshot:
    """Sorted, de-duplicated peers: the canonical form of one DNS poll."""
    # One key per peer, instead of two per comparison through __lt__.
    return tuple(sorted(set(peers), key=Peer.sort_key))
