"""The wait between DNS polls after errors: exponential, jittered, capped.

Our own wait function instead of ``tenacity.wait_exponential_jitter``: that class's
parameters changed across the releases pyproject allows (``multiplier`` exists only from
9.2, where ``initial``, the older name, is deprecated), so no single call works on all of
them. tenacity takes any callable of the retry state as a wait, in every release.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import RetryCallState


def exponential_jitter(
    first: float, cap: float, jitter: float
) -> Callable[[RetryCallState], float]:
    """``first * 2**n + uniform(0, jitter)`` seconds after the n-th retry (from 0), at most ``cap``.

    The cap holds jitter included, so the backoff never exceeds ``H2O_DNS_BACKOFF_MAX``.
    """

    def wait(state: RetryCallState) -> float:
        # Past 2**64 the float overflows; the cap is reached long before that matters.
        exponent = min(state.attempt_number - 1, 64)
        # Jitter spreads pods' retries apart; it needs no cryptographic randomness.
        spread = random.uniform(0, jitter)  # noqa: S311
        return float(min(cap, first * 2**exponent + spread))

    return wait
