"""The cloud as this pod sees it: formation latched, damage decided on evidence and latched.

One owner (the ``run`` or ``sidecar`` flow, and the watch it starts) feeds a ``CloudView`` what
the local node's ``/3/Cloud`` and the members' ports say; the probe server only reads it. The
one non-obvious decision: formation is latched. Once the local node has reported the full,
healthy cloud, this node's role (leader or follower) is fixed, so readiness cannot flap while
H2O's views converge.

After formation, damage is decided on evidence and latched: a member that refused connections,
H2O's own report of a smaller or unhealthy cloud, or a silence longer than ``loss_timeout``.
H2O cannot repair a cloud that lost a member, so nothing un-damages it. A shorter silence (a
JVM in a long GC pause) is only ``silence``: readiness is 503 meanwhile, nothing is stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from h2o_k8s_discovery.cloud.status import CloudStatus, member_text
from h2o_k8s_discovery.peers import Peer, Snapshot

log = logging.getLogger(__name__)


class Phase(Enum):
    LOOKING_UP = "looking-up"
    LAUNCHING = "launching"
    FORMING = "forming"
    FORMED = "formed"
    STOPPING = "stopping"
    EXITED = "exited"


@dataclass
class CloudView:
    """The pod's phase, its peers, and what the cloud they form looks like from here."""

    phase: Phase = Phase.LOOKING_UP
    peers: Snapshot = ()
    self_peer: Peer | None = None
    #: The last ``/3/Cloud`` answer (``None`` while the node does not answer).
    cloud: CloudStatus | None = None
    #: Latched when the cloud forms.
    is_leader: bool = False
    leader: str | None = None
    #: Why the formed cloud is not whole any more (``None`` while it is): readiness is 503.
    #: Latched: once set, it stays.
    damage: str | None = None
    #: Who is silent, and for how long, while that is no evidence yet: readiness is 503.
    silence: str | None = None
    #: Seconds of silence, once formed, before a silent node counts as lost
    #: (``H2O_CLOUD_LOSS_TIMEOUT``).
    loss_timeout: float = 60.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    #: Called once, when the formed cloud becomes damaged, with the reason.
    on_damage: Callable[[str], None] | None = field(default=None, repr=False)
    last_answer_at: float | None = None
    #: Members lost after formation, with the reason (``members.py``).
    lost_members: Mapping[Peer, str] = field(default_factory=dict)
    #: Members whose port does not accept connections for now -> seconds since it last did.
    silent_members: Mapping[Peer, float] = field(default_factory=dict)
    #: Whether the local node refusing a connection, once formed, is a loss. The sidecar's JVM
    #: runs in another container: nothing else tells it that JVM died, and a new one may
    #: rejoin. ``run`` learns it from its JVM's exit instead (and passes on that status).
    local_refusal_is_loss: bool = False
    local_refused: bool = False
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
        leader = status.leader_peer
        # The leader as this package writes addresses (as in the flatfile and /peers), not as
        # H2O does: an IPv6 leader is [fd00::a]:54321, never fd00:0:0:0:0:0:0:a:54321.
        self.leader = str(leader) if leader is not None else status.leader
        log.info(
            "Created cluster of size %d, leader node IP is '/%s'; this node is the %s",
            status.cloud_size,
            "?" if leader is None else leader.ip,
            "leader" if self.is_leader else "follower",
            extra={
                "event": "formed",
                "cloud_size": status.cloud_size,
                "leader": self.leader,
                "is_leader": self.is_leader,
            },
        )

    def observe_rest_problem(self, problem: str | None) -> None:
        """Record why the local node's REST API refuses us (``None``: it answers again)."""
        self.rest_problem = problem

    def observe_members(self, lost: Mapping[Peer, str], silent: Mapping[Peer, float]) -> None:
        """Record which members of the formed cloud are lost (and why) and which are silent."""
        self.lost_members = lost
        self.silent_members = silent
        if self.phase is Phase.FORMED:
            self._check_damage(self.cloud)

    def observe_local_refusal(self) -> None:
        """The local node's H2O port refused a connection (kept once formed, when a loss)."""
        if self.phase is Phase.FORMED and self.local_refusal_is_loss:
            self.local_refused = True

    def _check_damage(self, status: CloudStatus | None) -> None:
        silence = self._silence(status)
        # Logged when a silence starts and when it ends, not on every poll in between.
        if (silence is None) != (self.silence is None) and self.damage is None:
            if silence is None:
                log.info("the cloud answers again")
            else:
                log.warning("not ready while %s", silence)
        self.silence = silence
        if self.damage is not None:
            return  # latched: H2O cannot take a lost member back
        damage = self._damage(status)
        if damage is None:
            return
        log.error("the cloud is damaged: %s", damage)
        self.damage = damage
        if self.on_damage is not None:
            self.on_damage(damage)

    def _local_silence(self) -> float:
        """Seconds since the local node last answered ``/3/Cloud``."""
        return self.clock() - (self.last_answer_at or 0.0)

    def _silence(self, status: CloudStatus | None) -> str | None:
        """Who has been silent for how long, while that is no evidence of a loss yet."""
        parts = [
            f"member {peer} has accepted no connection for {seconds:.1f}s"
            for peer, seconds in sorted(self.silent_members.items())
        ]
        if status is None:
            parts.insert(0, f"the local H2O node has not answered for {self._local_silence():.1f}s")
        if not parts:
            return None
        return "; ".join(parts) + f" (lost after H2O_CLOUD_LOSS_TIMEOUT={self.loss_timeout:g}s)"

    def _damage(self, status: CloudStatus | None) -> str | None:
        """What is wrong with a cloud that had formed, or ``None``."""
        if (lost := self._lost_node(status)) is not None:
            return lost
        if status is None:
            return None
        # Addresses, not text: H2O writes fd00:0:0:0:0:0:0:a:54321 for our [fd00::a]:54321.
        members = set(status.member_peers)
        missing = sorted(set(self.peers) - members, key=Peer.sort_key)
        if status.cloud_size < self.expected_size or missing:
            return f"cloud of {status.cloud_size} of {self.expected_size}; missing: " + (
                " ".join(map(str, missing)) or "?"
            )
        if not status.healthy:
            sick = " ".join(map(member_text, status.unhealthy)) or "?"
            return f"H2O reports unhealthy node(s): {sick}"
        return None

    def _lost_node(self, status: CloudStatus | None) -> str | None:
        """A node lost on this pod's own evidence: a refused connection, or a long silence."""
        if self.lost_members:
            lost = "; ".join(f"{peer} {why}" for peer, why in sorted(self.lost_members.items()))
            return f"member(s) lost: {lost}"
        if self.local_refused:
            return "the local H2O node refused a connection: nothing listens on its H2O port"
        silent = self._local_silence()
        if status is None and silent > self.loss_timeout:
            return (
                f"the local H2O node has not answered for {silent:.1f}s, more than "
                f"H2O_CLOUD_LOSS_TIMEOUT={self.loss_timeout:g}s"
            )
        return None
