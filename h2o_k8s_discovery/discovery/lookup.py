"""The lookup: poll the headless Service until the constraints say the peer set is final.

Every poll is a fresh snapshot; nothing is carried over from an earlier poll, so a pod that went
away is gone from the result (H2O's own lookup keeps it forever). DNS errors are retried with
jittered exponential backoff, capped, and the backoff starts over after a good answer. The
deadline bounds everything, queries and sleeps alike: the lookup ends within one poll interval
of its timeout even when the DNS server never answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.asyncresolver
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
)

from h2o_k8s_discovery.config.settings import IpFamily, LookupSettings
from h2o_k8s_discovery.discovery.backoff import exponential_jitter
from h2o_k8s_discovery.discovery.constraints import LookupConstraints, Observation, StopReason
from h2o_k8s_discovery.discovery.ip_family import with_ip_family
from h2o_k8s_discovery.discovery.query import make_resolver, poll_once
from h2o_k8s_discovery.errors import DnsQueryError
from h2o_k8s_discovery.peers import Snapshot

log = logging.getLogger(__name__)

Clock = Callable[[], float]
PollListener = Callable[["PollEvent"], None]


@dataclass(frozen=True, slots=True)
class PollEvent:
    """What one poll gave: a snapshot, or the error that stood in its place."""

    peers: Snapshot | None
    error: DnsQueryError | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The outcome of a lookup, and why it ended."""

    peers: Snapshot
    reason: StopReason
    #: Seconds the lookup took.
    elapsed: float
    #: Polls that got an answer, and polls that failed.
    polls: int
    errors: int
    #: The last DNS error seen, if any (``"timeout: ..."``).
    last_error: str | None

    def shortfall(self, settings: LookupSettings) -> str | None:
        """Why this lookup must not be used when failing closed, or ``None`` when it may.

        It falls short when it timed out without exactly the expected count, or without a
        single answer from DNS (an empty set then means "unknown", not "no pods").
        """
        if not settings.fail_on_timeout or self.reason is not StopReason.TIMEOUT:
            return None
        found = " ".join(map(str, self.peers)) or "none"
        if self.polls == 0:
            return f"DNS never answered ({self.last_error}); found: {found}"
        if settings.expected_count not in (None, len(self.peers)):
            return (
                f"{len(self.peers)} peer(s) published instead of the "
                f"{settings.expected_count} expected after {self.elapsed:.0f}s: {found}"
            )
        return None

    def describe(self) -> str:
        """One line for logs and the CLI."""
        why = {
            StopReason.EXPECTED_COUNT: "the expected count was reached",
            StopReason.TIMEOUT: "the lookup timed out",
            StopReason.SINGLE_POLL: "a single poll was asked for",
        }[self.reason]
        return (
            f"found {len(self.peers)} peer(s) in {self.elapsed:.1f}s after {self.polls} "
            f"poll(s) and {self.errors} DNS error(s): {why}"
        )


def constraints_for(settings: LookupSettings) -> LookupConstraints:
    return LookupConstraints(
        expected_count=settings.expected_count,
        timeout=settings.timeout,
        stable_period=settings.stable_period,
    )


async def discover_peers(
    settings: LookupSettings,
    *,
    once: bool = False,
    resolver: dns.asyncresolver.Resolver | None = None,
    clock: Clock = time.monotonic,
    on_poll: PollListener | None = None,
) -> LookupResult:
    """Poll DNS until the expected count or the timeout is met; ``once``: a single poll."""
    settings = with_ip_family(settings)
    lookup = _Lookup(settings, resolver or make_resolver(settings), clock, on_poll)
    return await lookup.run(once=once)


class _Lookup:
    """The state of one lookup: the clock, the last snapshot, counters, the condition log."""

    def __init__(
        self,
        settings: LookupSettings,
        resolver: dns.asyncresolver.Resolver,
        clock: Clock,
        on_poll: PollListener | None,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.clock = clock
        self.on_poll = on_poll
        self.constraints = constraints_for(settings)
        self.rule = self.constraints.rule()
        self.started = clock()
        self.peers: Snapshot = ()
        self.peers_since = 0.0
        self.polls = 0
        self.errors = 0
        self.last_error: DnsQueryError | None = None
        self.conditions = _ConditionLog()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return self.constraints.remaining(self.elapsed())

    async def run(self, *, once: bool) -> LookupResult:
        self._log_start()
        while True:
            try:
                self.peers = await self._poll_with_retries()
            except (DnsQueryError, _DeadlineReached):
                # Retries end only at the deadline: time is up, and the last snapshot stands.
                return self._result(StopReason.TIMEOUT)
            if once:
                return self._result(StopReason.SINGLE_POLL)
            now = self.elapsed()
            reason = self.rule(Observation(self.peers, now, stable_for=now - self.peers_since))
            if reason is not None:
                return self._result(reason)
            await asyncio.sleep(min(self.settings.poll_interval, self.remaining()))

    async def _poll_with_retries(self) -> Snapshot:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(DnsQueryError),
            wait=exponential_jitter(
                self.settings.poll_interval,
                self.settings.backoff_max,
                jitter=self.settings.poll_interval * 0.2,
            ),
            stop=self._deadline_passed if math.isfinite(self.remaining()) else stop_never,
            sleep=self._sleep_within_deadline,
            reraise=True,
        )
        return await retrying(self._poll)

    def _deadline_passed(self, _state: RetryCallState) -> bool:
        return self.remaining() <= 0

    def _sleep_within_deadline(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(min(seconds, self.remaining()))

    async def _poll(self) -> Snapshot:
        lifetime = min(self.settings.query_timeout, self.remaining())
        if lifetime <= 0:
            raise _DeadlineReached
        try:
            peers = await poll_once(self.resolver, self.settings, lifetime)
        except DnsQueryError as err:
            self.errors += 1
            self.last_error = err
            self.conditions.note(err.kind, logging.WARNING, "DNS error, retrying: %s", err)
            self._notify(None, err)
            raise
        self.polls += 1
        if peers != self.peers or self.polls == 1:
            self.peers_since = self.elapsed()
        self._note_snapshot(peers)
        self._notify(peers, None)
        return peers

    def _note_snapshot(self, peers: Snapshot) -> None:
        if not peers:
            self.conditions.note(
                "empty",
                logging.INFO,
                "no peers published under %s yet (normal while pods start; if it lasts, check "
                "it is the headless Service's fully qualified name)",
                self.settings.absolute_name,
            )
            return
        key = "peers " + " ".join(map(str, peers))
        expected = self.settings.expected_count
        if expected is not None and len(peers) > expected:
            # H2O would wait for ever here; say what is published so the extra pods can be found.
            self.conditions.note(
                key,
                logging.WARNING,
                "%d peer(s) published, %d more than the %d expected (pods still terminating?); "
                "waiting for the set to shrink: %s",
                len(peers),
                len(peers) - expected,
                expected,
                " ".join(map(str, peers)),
            )
        else:
            self.conditions.note(key, logging.INFO, "%d peer(s) published", len(peers))

    def _notify(self, peers: Snapshot | None, error: DnsQueryError | None) -> None:
        if self.on_poll is not None:
            self.on_poll(PollEvent(peers, error, self.elapsed()))

    def _log_start(self) -> None:
        timeout = self.settings.timeout
        settings = self.settings
        log.info(
            "looking up %s (%s records, %s addresses only: %s): expecting %s peer(s), timeout %s",
            settings.absolute_name,
            settings.record_type.value,
            "IPv6" if settings.ip_family is IpFamily.IPV6 else "IPv4",
            settings.ip_family_reason,
            settings.expected_count or "any number of",
            "none" if timeout is None else f"{timeout:g}s",
        )

    def _result(self, reason: StopReason) -> LookupResult:
        result = LookupResult(
            peers=self.peers,
            reason=reason,
            elapsed=self.elapsed(),
            polls=self.polls,
            errors=self.errors,
            last_error=None if self.last_error is None else str(self.last_error),
        )
        log.info(
            "lookup over: %s",
            result.describe(),
            extra={
                "event": "lookup",
                "found": len(result.peers),
                "expected": self.settings.expected_count,
                "elapsed_s": round(result.elapsed, 3),
                "reason": reason.value,
                "polls": result.polls,
                "dns_errors": result.errors,
            },
        )
        return result


class _DeadlineReached(Exception):
    """No time is left for another query; not retried."""


class _ConditionLog:
    """Logs a condition when it starts, not on every poll that sees it again."""

    def __init__(self) -> None:
        self.current: str | None = None

    def note(self, key: str, level: int, message: str, *args: object) -> None:
        if key != self.current:
            self.current = key
            log.log(level, message, *args)
