"""A kubelet-like readiness poller for tests on simulated pods.

It probes ``/kubernetes/isLeaderNode`` on every pod at a fixed period, as a kubelet does, and
records what it saw, so a test can wait for "exactly one leader" and then check that it held.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from k8s_sim.pods import Pod

LEADER_PATH = "/kubernetes/isLeaderNode"


@dataclass(frozen=True, slots=True)
class Sample:
    """The readiness codes of every pod at one moment (``None``: no answer)."""

    at: float
    codes: tuple[int | None, ...]

    @property
    def one_leader(self) -> bool:
        return sorted(c or 0 for c in self.codes) == [200] + [404] * (len(self.codes) - 1)

    @property
    def leader(self) -> int:
        return self.codes.index(200)


class Kubelet:
    """Probes a set of pods every ``period`` seconds."""

    def __init__(
        self, pods: Sequence[Pod], port: int, path: str = LEADER_PATH, period: float = 0.15
    ) -> None:
        self.pods = pods
        self.port = port
        self.path = path
        self.period = period
        self.samples: list[Sample] = []

    def sample(self) -> Sample:
        codes = []
        for pod in self.pods:
            answer = pod.http_get(self.port, self.path, timeout=1.0)
            codes.append(None if answer is None else answer[0])
        taken = Sample(time.monotonic(), tuple(codes))
        self.samples.append(taken)
        return taken

    def wait_for_one_leader(self, deadline: float) -> Sample:
        """Probe until exactly one pod answers 200 and the others 404; fail at the deadline."""
        while time.monotonic() < deadline:
            taken = self.sample()
            if taken.one_leader:
                return taken
            time.sleep(self.period)
        last = self.samples[-1].codes if self.samples else ()
        raise AssertionError(f"no single leader before the deadline; last codes {last}")

    def hold(self, seconds: float) -> list[Sample]:
        """Probe for ``seconds`` and return every sample taken."""
        end = time.monotonic() + seconds
        taken = []
        while time.monotonic() < end:
            taken.append(self.sample())
            time.sleep(self.period)
        return taken


def get_json(pod: Pod, port: int, path: str) -> dict[str, Any]:
    answer = pod.http_get(port, path, timeout=2.0)
    assert answer is not None, f"{pod.name}:{port}{path} did not answer"
    status, body = answer
    assert status == 200, f"{pod.name}:{port}{path} answered {status}"
    data: dict[str, Any] = json.loads(body)
    return data
