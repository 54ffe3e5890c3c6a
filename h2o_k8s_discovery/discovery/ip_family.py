"""Which address family the peers are looked up in: one, so that no pod is listed twice.

A dual-stack headless Service (``ipFamilyPolicy: PreferDualStack`` or ``RequireDualStack``)
publishes an A and an AAAA record for every pod. Counted together they double every pod, the
expected count is never met and the lookup fails closed. An H2O cloud speaks one family anyway
(``-ip`` and the flatfile), so the lookup asks for one: ``H2O_DNS_IP_FAMILY``, or with ``auto``
the family of this pod's own address.

The non-obvious decision is where ``auto`` finds that address before any peer is known. In
order: ``POD_IP`` (settled by ``Settings.from_env``); else the first address the hosts file
gives for this host's name, which is how the kubelet writes a pod's IPs (its primary family
first, so every pod of a StatefulSet decides alike); else IPv4 when the kernel has an IPv4
route out, IPv6 when it has only an IPv6 one. The last rule also decides alike on every pod of
one cluster, and is logged so a wrong guess is visible.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path

from h2o_k8s_discovery.config.settings import IpFamily, LookupSettings
from h2o_k8s_discovery.discovery.own_address import HOSTS_FILE, address_in_hosts
from h2o_k8s_discovery.peers import IPAddress

#: Documentation addresses (RFC 5737, RFC 3849): a route towards them means a route out.
_ROUTE_PROBES = (
    (IpFamily.IPV4, socket.AF_INET, "192.0.2.1"),
    (IpFamily.IPV6, socket.AF_INET6, "2001:db8::1"),
)


@dataclass(frozen=True, slots=True)
class FamilyChoice:
    """The family chosen (never ``AUTO``) and why, for the log."""

    family: IpFamily
    reason: str


def with_ip_family(
    settings: LookupSettings, *, hosts_file: Path = HOSTS_FILE, hostname: str | None = None
) -> LookupSettings:
    """``settings`` with ``ip_family`` settled: unchanged unless it is ``AUTO``."""
    if settings.ip_family is not IpFamily.AUTO:
        return settings
    choice = choose_family(hosts_file=hosts_file, hostname=hostname)
    return replace(settings, ip_family=choice.family, ip_family_reason=choice.reason)


def choose_family(*, hosts_file: Path = HOSTS_FILE, hostname: str | None = None) -> FamilyChoice:
    """``auto`` without ``POD_IP``: the hosts file's address of this host, else the routes."""
    name = hostname if hostname is not None else socket.gethostname()
    own = address_in_hosts_file(hosts_file, name)
    if own is not None:
        family = IpFamily.of(own)
        return FamilyChoice(family, f"the family of {own}, this host's address in {hosts_file}")
    routed = [family for family, af, probe in _ROUTE_PROBES if _has_route(af, probe)]
    if routed == [IpFamily.IPV6]:
        return FamilyChoice(
            IpFamily.IPV6, "no POD_IP, no address in the hosts file, only an IPv6 route"
        )
    return FamilyChoice(
        IpFamily.IPV4,
        "no POD_IP and no address in the hosts file: IPv4 unless only IPv6 is routed "
        "(set POD_IP or H2O_DNS_IP_FAMILY to be sure)",
    )


def address_in_hosts_file(path: Path, hostname: str) -> IPAddress | None:
    """The address ``path`` gives ``hostname`` (``own_address.address_in_hosts``), or ``None``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return address_in_hosts(text, hostname)[0]


def _has_route(family: socket.AddressFamily, probe: str) -> bool:
    # connect() on a UDP socket sends nothing; it only asks the kernel for a route.
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
    except OSError:  # no route, or the family is not there at all
        return False
    return True
