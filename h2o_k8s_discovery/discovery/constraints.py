"""When is the lookup over? Small pure rules over what the last poll saw.

Each rule looks at one ``Observation`` (the snapshot and the seconds since the lookup began)
and either says why the lookup ends or returns ``None``. The clock is never read here, so the
rules are tested with plain numbers; ``discovery`` owns the clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from h2o_k8s_discovery.peers import Snapshot


class StopReason(Enum):
    """Why a lookup ended."""

    EXPECTED_COUNT = "expected-count"
    TIMEOUT = "timeout"
    SINGLE_POLL = "single-poll"


@dataclass(frozen=True, slots=True)
class Observation:
    """What one poll saw, and when."""

    peers: Snapshot
    #: Seconds since the lookup began.
    elapsed: float
    #: Seconds this same snapshot has been seen for (0 on the poll that first saw it).
    stable_for: float = 0.0


Rule = Callable[[Observation], StopReason | None]


def count_reached(expected: int) -> Rule:
    """Over when the snapshot holds exactly ``expected`` peers (H2O compares with ``==``)."""

    def rule(observation: Observation) -> StopReason | None:
        return StopReason.EXPECTED_COUNT if len(observation.peers) == expected else None

    return rule


def stable(period: float, rule: Rule) -> Rule:
    """``rule``, but only once the snapshot has stayed the same for ``period`` seconds."""

    def stable_rule(observation: Observation) -> StopReason | None:
        return rule(observation) if observation.stable_for >= period else None

    return stable_rule


def timed_out(timeout: float) -> Rule:
    """Over once ``timeout`` seconds have passed."""

    def rule(observation: Observation) -> StopReason | None:
        return StopReason.TIMEOUT if observation.elapsed >= timeout else None

    return rule


def first_of(*rules: Rule) -> Rule:
    """Over when any rule says so; the first rule that does gives the reason."""

    def rule(observation: Observation) -> StopReason | None:
        for each in rules:
            reason = each(observation)
            if reason is not None:
                return reason
        return None

    return rule


@dataclass(frozen=True, slots=True)
class LookupConstraints:
    """H2O's constraints, the expected count (held stable) or the timeout, whichever first."""

    expected_count: int | None
    #: ``None``: no deadline.
    timeout: float | None
    #: Seconds the snapshot must stay the same before the count counts.
    stable_period: float = 0.0

    def rule(self) -> Rule:
        rules: list[Rule] = []
        if self.expected_count is not None:
            rules.append(stable(self.stable_period, count_reached(self.expected_count)))
        if self.timeout is not None:
            rules.append(timed_out(self.timeout))
        return first_of(*rules)

    def remaining(self, elapsed: float) -> float:
        """Seconds left before the deadline (``inf`` without one, never negative)."""
        if self.timeout is None:
            return math.inf
        return max(0.0, self.timeout - elapsed)
