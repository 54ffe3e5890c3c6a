"""What this pod knows about itself, and the probe answers that follow from it.

One owner (the ``run`` or ``sidecar`` flow) mutates a ``NodeState``; the probe server only reads
it, so probes answer from memory and never do work per request. The one non-obvious decision:
formation is latched. Once the local node has reported the full, healthy cloud, this node's
role (leader or follower) is fixed, so readiness cannot flap while H2O's views converge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from h2o_k8s_discovery.cloud import CloudStatus
from h2o_k8s_discovery.peers import Peer, Snapshot

log = logging.getLogger(__name__)

#: H2O's own readiness codes: 200 on the leader, 404 on the other members.
LEADER = 200
FOLLOWER = 404
#: Not ready for another reason (stopping, JVM gone, waiting with ready-until-formed off).
UNAVAILABLE = 503


class Phase(Enum):
    LOOKING_UP = "looking-up"
    LAUNCHING = "launching"
    FORMING = "forming"
    FORMED = "formed"
    STOPPING = "stopping"
    EXITED = "exited"


@dataclass
class NodeState:
    """The pod's state as the probes see it."""

    ready_until_formed: bool = True
    phase: Phase = Phase.LOOKING_UP
    peers: Snapshot = ()
    self_peer: Peer | None = None
    #: The last ``/3/Cloud`` answer (``None`` while the node does not answer).
    cloud: CloudStatus | None = None
    #: Latched when the cloud forms.
    is_leader: bool = False
    leader: str | None = None
    jvm_pid: int | None = None
    exit_status: int | None = None
    last_dns_error: str | None = None
    #: What the peers said last time they were asked for their set (``/status``).
    agreement: str | None = None
    #: Counters behind ``/metrics``.
    dns_polls: int = 0
    dns_errors: dict[str, int] = field(default_factory=dict)
    lookup_seconds: float | None = None
    jvm_starts: int = 0
    #: Why the formed cloud is not whole any more (``None`` while it is): readiness is 503.
    damage: str | None = None
    #: Seconds without an answer from the local node, once formed, before it counts as lost.
    unreachable_after: float = 1.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    #: Called once each time a formed cloud becomes damaged, with the reason.
    on_damage: Callable[[str], None] | None = field(default=None, repr=False)
    last_answer_at: float | None = None
    #: Members that stopped accepting connections after formation (``members.py``).
    lost_members: frozenset[Peer] = frozenset()
    #: Why the local node's REST API cannot be read (a 401, a 403, an untrusted certificate):
    #: it will not form in our eyes until that is fixed, so readiness is 503 meanwhile.
    rest_problem: str | None = None

    @property
    def expected_size(self) -> int:
        return len(self.peers)

    def observe_cloud(self, status: CloudStatus | None) -> None:
        """Record a ``/3/Cloud`` answer (``None``: no answer) and what follows from it."""
        self.cloud = status
        if status is not None:
            self.last_answer_at = self.clock()
        if self.phase is Phase.FORMING and status is not None:
            self._check_formation(status)
        elif self.phase is Phase.FORMED:
            self._check_damage(status)

    def _check_formation(self, status: CloudStatus) -> None:
        """Latch the role the first time the local node reports the full, healthy cloud."""
        if not status.has_formed(self.expected_size):
            return
        self.phase = Phase.FORMED
        self.is_leader = status.is_leader
        self.leader = status.leader
        log.info(
            "Created cluster of size %d, leader node IP is '/%s'; this node is the %s",
            status.cloud_size,
            (status.leader or "?").rpartition(":")[0],
            "leader" if self.is_leader else "follower",
            extra={
                "event": "formed",
                "cloud_size": status.cloud_size,
                "leader": status.leader,
                "is_leader": self.is_leader,
            },
        )

    def observe_rest_problem(self, problem: str | None) -> None:
        """Record why the local node's REST API refuses us (``None``: it answers again)."""
        self.rest_problem = problem

    def observe_members(self, lost: frozenset[Peer]) -> None:
        """Record which members of the formed cloud do not accept connections any more."""
        self.lost_members = lost
        if self.phase is Phase.FORMED:
            self._check_damage(self.cloud)

    def _check_damage(self, status: CloudStatus | None) -> None:
        damage = self._damage(status)
        if damage != self.damage:
            if damage is None:
                log.info("the cloud is whole again")
            else:
                log.error("the cloud is damaged: %s", damage)
        newly_damaged = damage is not None and self.damage is None
        self.damage = damage
        if newly_damaged and damage is not None and self.on_damage is not None:
            self.on_damage(damage)

    def _damage(self, status: CloudStatus | None) -> str | None:
        """What is wrong with a cloud that had formed, or ``None``."""
        if self.lost_members:
            lost = " ".join(sorted(map(str, self.lost_members)))
            return f"member(s) not reachable any more: {lost}"
        if status is None:
            silent = self.clock() - (self.last_answer_at or 0.0)
            if silent >= self.unreachable_after:
                return f"the local H2O node has not answered for {silent:.1f}s"
            return self.damage
        members = set(status.members)
        missing = sorted({str(peer) for peer in self.peers} - members)
        if status.cloud_size < self.expected_size or missing:
            return f"cloud of {status.cloud_size} of {self.expected_size}; missing: " + (
                " ".join(missing) or "?"
            )
        if not status.healthy:
            sick = " ".join(status.unhealthy) or "?"
            return f"H2O reports unhealthy node(s): {sick}"
        return None

    def peer_view(self) -> dict[str, Any]:
        """The JSON body of ``/peers``: the set this pod would launch (or launched) with."""
        return {
            "phase": self.phase.value,
            "self": None if self.self_peer is None else str(self.self_peer),
            "peers": [str(peer) for peer in self.peers],
        }

    def readiness(self) -> int:
        """The answer of ``/kubernetes/isLeaderNode``."""
        if self.phase is Phase.FORMED:
            if self.damage is not None:
                return UNAVAILABLE
            return LEADER if self.is_leader else FOLLOWER
        if self.phase in (Phase.STOPPING, Phase.EXITED) or self.rest_problem is not None:
            return UNAVAILABLE
        # Still forming: H2O answers 200 so the pod is published in DNS; configurable.
        return LEADER if self.ready_until_formed else UNAVAILABLE

    def liveness(self) -> int:
        """The answer of ``/healthz``: alive until the JVM has exited."""
        return UNAVAILABLE if self.phase is Phase.EXITED else 200

    def describe(self) -> dict[str, Any]:
        """The JSON body of ``/status``."""
        cloud = self.cloud
        return {
            "phase": self.phase.value,
            "ready": self.readiness(),
            "self": None if self.self_peer is None else str(self.self_peer),
            "peers": [str(peer) for peer in self.peers],
            "leader": self.leader,
            "is_leader": self.is_leader if self.phase is Phase.FORMED else None,
            "cloud_size": None if cloud is None else cloud.cloud_size,
            "cloud_healthy": None if cloud is None else cloud.healthy,
            "consensus": None if cloud is None else cloud.consensus,
            "locked": None if cloud is None else cloud.locked,
            "jvm_pid": self.jvm_pid,
            "exit_status": self.exit_status,
            "last_dns_error": self.last_dns_error,
            "agreement": self.agreement,
            "damage": self.damage,
            "rest_problem": self.rest_problem,
        }
