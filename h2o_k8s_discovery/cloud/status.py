"""The local H2O node's view of its cloud, read from ``GET /3/Cloud``.

Parsing (``CloudStatus.parse``) is kept apart from I/O (``client``) so the rules "has the
cloud formed?" and "is this node the leader?" are tested on plain dictionaries, and so the node's
state can hold a status without importing an HTTP client. The leader is never predicted from
addresses: it is whatever the node itself reports. Members are named as H2O writes them
(``members``) and read as addresses (``member_peers``), which is what every comparison uses.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from h2o_k8s_discovery.peers import Peer, parse_member

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CloudStatus:
    """The fields of ``/3/Cloud`` this project relies on."""

    cloud_size: int
    consensus: bool
    locked: bool
    healthy: bool
    #: This node's index in ``members``; -1 when it is not a member.
    node_idx: int
    leader_idx: int
    #: ``ip:port`` of every member, in H2O's order.
    members: tuple[str, ...]
    #: How many members H2O reports as unhealthy, and which.
    bad_nodes: int
    unhealthy: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> CloudStatus:
        """Read a ``/3/Cloud`` answer; raises ``ValueError`` when a field is missing or odd."""
        try:
            nodes = data["nodes"]
            return cls(
                cloud_size=_integer(data["cloud_size"]),
                consensus=_boolean(data["consensus"]),
                locked=_boolean(data["locked"]),
                healthy=_boolean(data["cloud_healthy"]),
                node_idx=_integer(data.get("node_idx", -1)),
                leader_idx=_integer(data.get("leader_idx", -1)),
                members=tuple(str(node["ip_port"]) for node in nodes),
                bad_nodes=_integer(data.get("bad_nodes", 0)),
                unhealthy=tuple(
                    str(node["ip_port"]) for node in nodes if node.get("healthy") is False
                ),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"unexpected /3/Cloud answer: missing or odd field {err}") from None

    def has_formed(self, expected_size: int) -> bool:
        """Every expected node agrees on one healthy cloud."""
        return self.consensus and self.healthy and self.cloud_size == expected_size

    @property
    def is_member(self) -> bool:
        return 0 <= self.node_idx < len(self.members)

    @property
    def is_leader(self) -> bool:
        """H2O's own rule: a member whose index is the leader's."""
        return self.is_member and self.node_idx == self.leader_idx

    @property
    def leader(self) -> str | None:
        """The leader's ``ip:port`` as H2O writes it, if H2O names one."""
        if 0 <= self.leader_idx < len(self.members):
            return self.members[self.leader_idx]
        return None

    @property
    def member_peers(self) -> tuple[Peer | None, ...]:
        """Every member as an address, in H2O's order; ``None`` for one that cannot be read."""
        return tuple(member_peer(member) for member in self.members)

    @property
    def leader_peer(self) -> Peer | None:
        """The leader as an address, if H2O names one that can be read."""
        return None if self.leader is None else member_peer(self.leader)


def member_peer(text: str) -> Peer | None:
    """H2O's name of a member as a ``Peer``; ``None`` (and a warning, once) when unreadable."""
    try:
        return parse_member(text)
    except ValueError as err:
        _warn_unreadable(str(err))
        return None


def member_text(text: str) -> str:
    """A member for messages: ``ip:port`` / ``[ip]:port`` when readable, else as H2O wrote it."""
    peer = member_peer(text)
    return text if peer is None else str(peer)


@functools.lru_cache(maxsize=64)
def _warn_unreadable(problem: str) -> None:
    # Cached: /3/Cloud is read every 100 ms, and one odd member would flood the log.
    log.warning(
        "H2O reports a member this entrypoint cannot read (%s); it counts as unknown", problem
    )


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    return value
