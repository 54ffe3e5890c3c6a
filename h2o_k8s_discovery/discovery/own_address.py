"""This pod's own IP address: from the downward API, kubelet's hosts file, or the routing table.

H2O must be told its address (``-ip``) and the flatfile must list it; a pod whose own address
is missing would form a cloud without itself.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from h2o_k8s_discovery.config.settings import IpFamily
from h2o_k8s_discovery.errors import ConfigError
from h2o_k8s_discovery.peers import IPAddress, Peer, Snapshot, snapshot

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


HOSTS_FILE = Path("/etc/hosts")


@dataclass(frozen=True, slots=True)
class KnownAddress:
    """This pod's address as known before any DNS answer, and where it came from."""

    ip: IPAddress | None
    #: ``POD_IP``, ``/etc/hosts``, or why neither gave an address.
    source: str


def known_address(
    pod_ip: IPAddress | None,
    *,
    family: IpFamily = IpFamily.AUTO,
    hostname: str | None = None,
    hosts_file: Path = HOSTS_FILE,
) -> KnownAddress:
    """``POD_IP`` when set; else the address kubelet's hosts file gives this pod's name.

    A StatefulSet pod's /etc/hosts always has the line ``<pod IP> <pod>.<service>... <pod>``
    (one per address on a dual-stack pod, the primary family first), so the address is known
    before DNS publishes anything, which behind a Service without ``publishNotReadyAddresses``
    it does only once the pod is Ready.
    """
    if pod_ip is not None:
        return KnownAddress(pod_ip, "POD_IP")
    name = hostname if hostname is not None else socket.gethostname()
    try:
        text = hosts_file.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return KnownAddress(None, f"POD_IP is not set and {hosts_file} is unreadable ({err})")
    ip, why = address_in_hosts(text, name, family)
    return KnownAddress(ip, f"{hosts_file}" if ip is not None else f"POD_IP is not set and {why}")


def address_in_hosts(
    text: str, hostname: str, family: IpFamily = IpFamily.AUTO
) -> tuple[IPAddress | None, str]:
    """The address a hosts file gives ``hostname`` (or its first label); else ``None`` and why.

    Loopback, link-local and unspecified addresses do not count: a machine's own hosts file
    often maps its name to 127.0.1.1, which is no address a peer can reach. Only ``family``'s
    addresses count when it is not ``AUTO``; with ``AUTO`` the first line's family does, as
    kubelet writes the primary family first. Two addresses of the counted family: ambiguous.
    """
    wanted = {hostname.lower(), hostname.lower().partition(".")[0]}
    found: list[IPAddress] = []
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2 or not wanted & {name.lower() for name in fields[1:]}:
            continue
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(fields[0])
            usable = not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)
            if usable and ip not in found and family in (IpFamily.AUTO, IpFamily.of(ip)):
                found.append(ip)
    if not found:
        return None, f"the hosts file gives {hostname!r} no address but loopback"
    same_family = [ip for ip in found if ip.version == found[0].version]
    if len(same_family) > 1:
        listed = " ".join(map(str, same_family))
        return None, f"the hosts file gives {hostname!r} several addresses ({listed})"
    return found[0], "hosts file"


def early_start_address(setting: bool | None, known: KnownAddress) -> IPAddress | None:
    """The address to start the JVM with before the lookup, or ``None`` for no early start.

    ``setting``: ``H2O_JVM_EARLY_START`` (``None``: auto, whenever the address is known). A
    ``True`` that cannot be honoured is a ``ConfigError``: the user asked for it.
    """
    if setting is False:
        return None
    if known.ip is not None:
        return known.ip
    if setting is True:
        raise ConfigError(
            [
                "H2O_JVM_EARLY_START=true needs this pod's address before the lookup: "
                f"{known.source}; set POD_IP from the downward API (status.podIP)"
            ]
        )
    log.info("no early JVM start: %s (it starts once the peers are known)", known.source)
    return None
