"""What this pod knows about itself, and the probe answers that follow from it.

A ``NodeState`` is the one object the probe server reads and one owner (the ``run`` or
``sidecar`` flow) writes: the cloud as this pod sees it (``cloud/view.py``: the phase, the
latched formation and damage), the numbers behind ``/metrics`` (``counters.py``) and the facts
of the process (the JVM's pid and exit status, the last DNS error, the agreement).

The one non-obvious decision: it is both a ``CloudView`` and ``Counters`` rather than holding
them, so that the rules of the view (in ``cloud``, free of any HTTP server) and the plain counts
stay apart in the code while every reader, ``/status`` and ``/metrics`` alike, sees one
consistent object with flat attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from h2o_k8s_discovery.cloud.view import CloudView, Phase
from h2o_k8s_discovery.server.counters import Counters

__all__ = ["FOLLOWER", "LEADER", "UNAVAILABLE", "NodeState", "Phase"]

#: H2O's own readiness codes: 200 on the leader, 404 on the other members.
LEADER = 200
FOLLOWER = 404
#: Not ready for another reason (stopping, JVM gone, waiting with ready-until-formed off).
UNAVAILABLE = 503


@dataclass
class NodeState(CloudView, Counters):
    """The pod's state as the probes see it."""

    ready_until_formed: bool = True
    jvm_pid: int | None = None
    exit_status: int | None = None
    last_dns_error: str | None = None
    #: What the peers said last time they were asked for their set (``/status``).
    agreement: str | None = None

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
            if self.damage is not None or self.silence is not None:
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
            "silence": self.silence,
            "rest_problem": self.rest_problem,
        }
