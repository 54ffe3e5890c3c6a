"""The DNS error backoff: exponential from the poll interval, jittered, never past its cap."""

from __future__ import annotations

from tenacity import RetryCallState, Retrying

from h2o_k8s_discovery.discovery.backoff import exponential_jitter


def state_at(attempt: int) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


def test_backoff_doubles_from_the_first_wait() -> None:
    """Without jitter the waits are first, 2 x first, 4 x first..."""
    wait = exponential_jitter(0.5, 100.0, jitter=0.0)
    assert [wait(state_at(n)) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_backoff_never_exceeds_its_cap_jitter_included() -> None:
    """Late attempts, and the jitter on top, stay at or under the cap; early ones get jitter."""
    wait = exponential_jitter(1.0, 15.0, jitter=0.2)
    assert all(wait(state_at(n)) <= 15.0 for n in range(1, 200))
    assert all(1.0 <= wait(state_at(1)) <= 1.2 for _ in range(50))
