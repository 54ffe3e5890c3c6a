"""The agreement with DNS still polled: the set this pod proposes follows the headless Service.

While the pods compare their sets (``agreement``), DNS goes on changing: a late pod appears, a
stale record goes. So before each round this pod polls once more and may change the set it
proposes, by the rules of ``agreement.next_set`` (an empty or failed answer keeps the set).

The one non-obvious decision: the agreement may outlast the lookup's own timeout. It runs until
the later of the lookup's deadline and ``H2O_NODE_LOOKUP_AGREEMENT_TIMEOUT`` after it began, so
a lookup that ended at its deadline still leaves the pods the time to agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from h2o_k8s_discovery.config.settings import LookupSettings
from h2o_k8s_discovery.discovery.agreement import Agreement, next_set, reach_agreement
from h2o_k8s_discovery.discovery.lookup import constraints_for
from h2o_k8s_discovery.discovery.query import make_resolver, poll_once
from h2o_k8s_discovery.errors import DnsQueryError
from h2o_k8s_discovery.peers import Peer, Snapshot, snapshot


async def agree_on_peers(
    lookup: LookupSettings,
    peers: Snapshot,
    me: Peer,
    api_port: int,
    *,
    lookup_started: float,
    on_peers: Callable[[Snapshot], None],
) -> tuple[Snapshot, Agreement]:
    """Agree on ``peers`` (the lookup's set, this pod included) with every pod in it.

    ``lookup_started``: when the lookup began (``time.monotonic``). ``on_peers`` is told each
    set this pod proposes. Returns the last set proposed and the last round's outcome.
    """
    constraints = constraints_for(lookup)
    refresh = DnsRefresh(lookup, me, peers, on_peers)
    agreement_deadline = time.monotonic() + lookup.agreement_timeout

    def remaining() -> float:
        return max(
            constraints.remaining(time.monotonic() - lookup_started),
            agreement_deadline - time.monotonic(),
        )

    return await reach_agreement(
        refresh, api_port, me, interval=lookup.poll_interval, remaining=remaining
    )


class DnsRefresh:
    """Called before each round of the agreement: one DNS poll, and the set to propose now."""

    def __init__(
        self,
        lookup: LookupSettings,
        me: Peer,
        peers: Snapshot,
        on_peers: Callable[[Snapshot], None],
    ) -> None:
        self._lookup = lookup
        self._me = me
        self._on_peers = on_peers
        self._resolver = make_resolver(lookup)
        self.current = peers

    async def __call__(self) -> Snapshot:
        try:
            fresh = await poll_once(self._resolver, self._lookup, self._lookup.query_timeout)
        except DnsQueryError:
            return self.current
        candidate = snapshot((*fresh, self._me)) if fresh else ()
        self.current = next_set(self.current, candidate, self._lookup.expected_count)
        self._on_peers(self.current)
        return self.current
