"""The local H2O node's view of its cloud, read from ``GET /3/Cloud``.

Parsing (``CloudStatus.parse``) is kept apart from I/O (``cloud_watch``) so the rules "has the
cloud formed?" and "is this node the leader?" are tested on plain dictionaries, and so the node's
state can hold a status without importing an HTTP client. The leader is never predicted from
addresses: it is whatever the node itself reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
        """The leader's ``ip:port``, if H2O names one."""
        if 0 <= self.leader_idx < len(self.members):
            return self.members[self.leader_idx]
        return None


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    return value
