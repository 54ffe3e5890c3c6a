"""Watching a node, shared by ``run`` and ``sidecar``: its ``/3/Cloud``, then its members.

Until the cloud has formed only the local node is asked. Once it has, the members are checked
too (``members.py``), so a member whose port refuses connections turns readiness off within
about a second, and a silent one after ``H2O_CLOUD_LOSS_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib

from h2o_k8s_discovery.cloud.client import CloudWatcher, cloud_url
from h2o_k8s_discovery.cloud.members import MemberWatcher, members_to_watch
from h2o_k8s_discovery.cloud.status import CloudStatus, member_peer
from h2o_k8s_discovery.cloud.view import CloudView, Phase
from h2o_k8s_discovery.config.rest_security import RestAccess
from h2o_k8s_discovery.peers import Peer


async def watch_node(
    state: CloudView, access: RestAccess | None = None, *, context_path: str = ""
) -> None:
    """Keep ``state`` up to date until cancelled; ``state.self_peer`` must be set.

    ``access``: how to call H2O's REST API when it runs a login service or HTTPS.
    ``context_path``: H2O's ``-context_path`` (``""`` or ``/path``), under which its REST API is.
    """
    me = state.self_peer
    if me is None:
        raise ValueError("watch_node needs the node's own address (state.self_peer)")
    formed = asyncio.Event()

    def observe(status: CloudStatus | None) -> None:
        state.observe_cloud(status)
        if state.phase is Phase.FORMED:
            formed.set()

    access = access or RestAccess()
    watcher = CloudWatcher(
        cloud_url(str(me.ip), me.port, context_path, scheme=access.scheme),
        observe,
        is_formed=formed.is_set,
        access=access,
        on_problem=state.observe_rest_problem,
        on_refused=state.observe_local_refusal,
    )
    cloud = asyncio.create_task(watcher.run(), name="cloud-watcher")
    members: asyncio.Task[None] | None = None
    try:
        await _formed_or_failed(formed, cloud)
        members = asyncio.create_task(_watch_members(state, me), name="member-watcher")
        await asyncio.gather(cloud, members)
    finally:
        for task in (cloud, members):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _formed_or_failed(formed: asyncio.Event, cloud: asyncio.Task[None]) -> None:
    """Wait until the cloud has formed; raise what ended the cloud watcher if it ended first
    (a bug: waiting on for ``formed`` would hide it and leave readiness stuck)."""
    waiting = asyncio.create_task(formed.wait(), name="formed")
    try:
        await asyncio.wait({waiting, cloud}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if cloud.done():
        await cloud


async def _watch_members(state: CloudView, me: Peer) -> None:
    leader = _leader_peer(state.leader)
    watched = members_to_watch(state.peers, me, leader)
    if watched:
        await MemberWatcher(
            watched, state.observe_members, loss_timeout=state.loss_timeout, clock=state.clock
        ).run()


def _leader_peer(address: str | None) -> Peer | None:
    # Parsed, so an IPv6 leader in H2O's form is the same peer as the flatfile's.
    return None if address is None else member_peer(address)
