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

from h2o_k8s_discovery.errors import ConfigError
from h2o_k8s_discovery.peers import IPAddress, Peer, Snapshot, snapshot

log = logging.getLogger(__name__)


def own_ip(configured: IPAddress | None, peers: Snapshot) -> IPAddress:
    """``POD_IP`` when set; else the source address the kernel picks to reach the peers."""
    if configured is not None:
        return configured
    for peer in peers:
        found = _source_address_towards(peer.ip)
        if found is not None:
            return found
    return ipaddress.ip_address(socket.gethostbyname(socket.gethostname()))


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
    pod_ip: IPAddress | None, *, hostname: str | None = None, hosts_file: Path = HOSTS_FILE
) -> KnownAddress:
    """``POD_IP`` when set; else the one address kubelet's hosts file gives this pod's name.

    A StatefulSet pod's /etc/hosts always has the line ``<pod IP> <pod>.<service>... <pod>``, so
    the address is known before DNS publishes anything (which, behind a Service without
    ``publishNotReadyAddresses``, it does only once the pod is Ready).
    """
    if pod_ip is not None:
        return KnownAddress(pod_ip, "POD_IP")
    name = hostname if hostname is not None else socket.gethostname()
    try:
        text = hosts_file.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return KnownAddress(None, f"POD_IP is not set and {hosts_file} is unreadable ({err})")
    ip, why = address_in_hosts(text, name)
    return KnownAddress(ip, f"{hosts_file}" if ip is not None else f"POD_IP is not set and {why}")


def address_in_hosts(text: str, hostname: str) -> tuple[IPAddress | None, str]:
    """The one usable address a hosts file gives ``hostname``; else ``None`` and why.

    Loopback, link-local and unspecified addresses do not count: a machine's own hosts file
    often maps its name to 127.0.1.1, which is no address a peer can reach.
    """
    wanted = hostname.lower()
    found: set[IPAddress] = set()
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2 or wanted not in (name.lower() for name in fields[1:]):
            continue
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(fields[0])
            if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
                found.add(ip)
    if not found:
        return None, f"the hosts file gives {hostname!r} no address but loopback"
    if len(found) > 1:
        listed = " ".join(sorted(map(str, found)))
        return None, f"the hosts file gives {hostname!r} several addresses ({listed})"
    return found.pop(), "hosts file"


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
