"""This pod's own IP address: from the downward API, or found from the routing table.

H2O must be told its address (``-ip``) and the flatfile must list it; a pod whose own address
is missing would form a cloud without itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket

from h2o_k8s_discovery.peers import IPAddress, Peer, Snapshot, snapshot
from h2o_k8s_discovery.settings import IpFamily

log = logging.getLogger(__name__)


def own_ip(
    configured: IPAddress | None, peers: Snapshot, family: IpFamily = IpFamily.AUTO
) -> IPAddress:
    """``POD_IP`` when set; else the source address the kernel picks to reach the peers; else
    this host's name resolved in ``family`` (IPv4 unless it is ``IPV6``)."""
    if configured is not None:
        return configured
    for peer in peers:
        found = _source_address_towards(peer.ip)
        if found is not None:
            return found
    af = socket.AF_INET6 if family is IpFamily.IPV6 else socket.AF_INET
    info = socket.getaddrinfo(socket.gethostname(), None, af, socket.SOCK_STREAM)
    return ipaddress.ip_address(info[0][4][0])


def _source_address_towards(ip: IPAddress) -> IPAddress | None:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    # connect() on a UDP socket sends nothing; it only asks the kernel for a route.
    with socket.socket(family, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect((str(ip), 9))
        return ipaddress.ip_address(probe.getsockname()[0])
    return None


def with_self(peers: Snapshot, me: Peer) -> Snapshot:
    """The peers, including this node; warns when DNS did not list it."""
    if me in peers:
        return peers
    log.warning(
        "this pod (%s) is not among the %d published peer(s); adding it to the flatfile",
        me,
        len(peers),
    )
    return snapshot((*peers, me))
