"""The lookup's end rules, as pure functions of what a poll saw and when."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from h2o_k8s_discovery.discovery.constraints import LookupConstraints, Observation, StopReason
from h2o_k8s_discovery.peers import Peer


def peers(n: int) -> tuple[Peer, ...]:
    return tuple(Peer.parse(f"10.0.{i // 250}.{i % 250 + 1}", 54321) for i in range(n))


def test_count_reached_ends_before_timeout() -> None:
    """Exactly the expected count ends the lookup even though time remains."""
    rule = LookupConstraints(expected_count=3, timeout=180).rule()
    assert rule(Observation(peers(3), 1.0)) is StopReason.EXPECTED_COUNT
    assert rule(Observation(peers(2), 1.0)) is None


def test_more_than_expected_does_not_match() -> None:
    """As in H2O the count test is equality: a larger set keeps the lookup going."""
    rule = LookupConstraints(expected_count=3, timeout=180).rule()
    assert rule(Observation(peers(4), 1.0)) is None


def test_timeout_ends_with_whatever_was_seen() -> None:
    """Once the timeout has passed the lookup ends, however many peers were seen."""
    rule = LookupConstraints(expected_count=3, timeout=10).rule()
    assert rule(Observation(peers(1), 10.0)) is StopReason.TIMEOUT
    assert rule(Observation(peers(1), 9.99)) is None


def test_count_only_never_times_out() -> None:
    """Without a timeout the lookup waits for the count indefinitely."""
    constraints = LookupConstraints(expected_count=3, timeout=None)
    assert constraints.rule()(Observation(peers(2), 1e9)) is None
    assert math.isinf(constraints.remaining(1e9))


@given(
    expected=st.integers(min_value=1, max_value=20),
    found=st.integers(min_value=0, max_value=25),
    timeout=st.integers(min_value=1, max_value=600),
    elapsed=st.floats(min_value=0, max_value=1000),
)
def test_whichever_first(expected: int, found: int, timeout: int, elapsed: float) -> None:
    """The lookup ends exactly when the count matches or the time is up."""
    reason = LookupConstraints(expected, timeout).rule()(Observation(peers(found), elapsed))
    assert (reason is not None) == (found == expected or elapsed >= timeout)
    if found == expected:
        assert reason is StopReason.EXPECTED_COUNT


@given(timeout=st.floats(min_value=1, max_value=600), elapsed=st.floats(min_value=0, max_value=1e4))
def test_remaining_is_never_negative(timeout: float, elapsed: float) -> None:
    """The time left shrinks to zero and stays there."""
    left = LookupConstraints(None, timeout).remaining(elapsed)
    assert 0 <= left <= timeout


def test_stable_period_holds_the_count() -> None:
    """With a stable period the count only ends the lookup once the set has held that long."""
    rule = LookupConstraints(expected_count=3, timeout=180, stable_period=2.0).rule()
    assert rule(Observation(peers(3), 5.0, stable_for=1.9)) is None
    assert rule(Observation(peers(3), 5.0, stable_for=2.0)) is StopReason.EXPECTED_COUNT


def test_stable_period_does_not_delay_the_timeout() -> None:
    """The timeout ends the lookup however recently the set changed."""
    rule = LookupConstraints(expected_count=3, timeout=10, stable_period=5.0).rule()
    assert rule(Observation(peers(2), 10.0, stable_for=0.0)) is StopReason.TIMEOUT
