"""A dual-stack headless Service: an A and an AAAA record for every pod, each pod one peer.

A Service with ``ipFamilyPolicy: PreferDualStack`` or ``RequireDualStack`` publishes both
families for every pod. Counting both doubled every pod, so the expected count was never met
and every lookup failed closed (exit 69). The DNS server here is the package's wire-protocol
server on loopback serving both families at once; the lookup is the library's and the real
``discover`` command's.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.config.settings import IpFamily, LookupSettings, Nameserver, RecordType
from h2o_k8s_discovery.discovery.constraints import StopReason
from h2o_k8s_discovery.discovery.ip_family import with_ip_family
from h2o_k8s_discovery.discovery.lookup import discover_peers
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.paths import PYTHONPATH
from tests.support.reliability import SERVICE

PODS4 = ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
PODS6 = ["2001:2:0:1::11", "2001:2:0:1::12", "2001:2:0:1::13"]
FLATFILE4 = "".join(f"{ip}:54321\n" for ip in PODS4)
FLATFILE6 = "".join(f"[{ip}]:54321\n" for ip in PODS6)


def publish_dual_stack(server: DnsServer) -> None:
    """Both families for every pod, by address records and by SRV records with glue."""
    server.set_records(SERVICE, a=PODS4, aaaa=PODS6)
    for i in range(3):
        server.set_records(f"h2o-{i}.{SERVICE}", a=[PODS4[i]], aaaa=[PODS6[i]])
    srv = [(0, 0, 54321, f"h2o-{i}.{SERVICE}") for i in range(3)]
    server.set_records(f"_h2o._tcp.{SERVICE}", srv=srv)


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    async with DnsServer("127.0.0.1") as server:
        publish_dual_stack(server)
        yield server


@pytest.fixture
def threaded_dns() -> Iterator[DnsServer]:
    with ThreadedDnsServer("127.0.0.1") as server:
        publish_dual_stack(server)
        yield server


def lookup(server: DnsServer, **changes: object) -> LookupSettings:
    settings = LookupSettings(
        service_dns=SERVICE,
        nameserver=Nameserver(ipaddress.ip_address(server.host), server.port),
        expected_count=3,
        timeout=2.0,
        poll_interval=0.05,
        query_timeout=0.5,
        backoff_max=0.2,
    )
    return replace(settings, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "flatfile"),
    [(IpFamily.IPV4, FLATFILE4), (IpFamily.IPV6, FLATFILE6)],
    ids=["ipv4", "ipv6"],
)
async def test_dual_stack_lookup_lists_each_pod_once(
    dns: DnsServer, family: IpFamily, flatfile: str
) -> None:
    """A and AAAA for 3 pods, 3 expected: the lookup ends on the count, 3 peers of one family."""
    result = await discover_peers(lookup(dns, ip_family=family))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert "".join(f"{peer}\n" for peer in result.peers) == flatfile
    asked = {question.rdtype for question in dns.questions()}
    assert asked == {"A" if family is IpFamily.IPV4 else "AAAA"}, asked


@pytest.mark.parametrize(
    ("family", "flatfile"),
    [(IpFamily.IPV4, FLATFILE4), (IpFamily.IPV6, FLATFILE6)],
    ids=["ipv4", "ipv6"],
)
async def test_dual_stack_srv_lookup_lists_each_pod_once(
    dns: DnsServer, family: IpFamily, flatfile: str
) -> None:
    """SRV targets with A and AAAA glue: each target is one peer, of the chosen family."""
    settings = lookup(
        dns, ip_family=family, record_type=RecordType.SRV, service_dns=f"_h2o._tcp.{SERVICE}"
    )
    result = await discover_peers(settings)
    assert result.reason is StopReason.EXPECTED_COUNT
    assert "".join(f"{peer}\n" for peer in result.peers) == flatfile


@pytest.mark.parametrize(
    ("hosts", "flatfile"),
    [
        (f"127.0.0.1\tlocalhost\n{PODS6[1]}\th2o-1.svc\th2o-1\n{PODS4[1]}\th2o-1\n", FLATFILE6),
        (f"127.0.1.1\th2o-1\n{PODS4[1]}\th2o-1.svc\th2o-1\n{PODS6[1]}\th2o-1\n", FLATFILE4),
    ],
    ids=["ipv6-primary", "ipv4-primary"],
)
async def test_auto_follows_the_pods_address_in_the_hosts_file(
    dns: DnsServer, tmp_path: Path, hosts: str, flatfile: str
) -> None:
    """``auto`` without POD_IP: the family of the kubelet's first address for this pod."""
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(hosts)
    settings = with_ip_family(lookup(dns), hosts_file=hosts_file, hostname="h2o-1")
    result = await discover_peers(settings)
    assert result.reason is StopReason.EXPECTED_COUNT
    assert "".join(f"{peer}\n" for peer in result.peers) == flatfile


def discover_once(server: DnsServer, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": PYTHONPATH,
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_DNS_NAMESERVER": f"{server.host}:{server.port}",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "h2o_k8s_discovery", "discover", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("extra", "flatfile", "why"),
    [
        ({"H2O_DNS_IP_FAMILY": "ipv4"}, FLATFILE4, "H2O_DNS_IP_FAMILY"),
        ({"H2O_DNS_IP_FAMILY": "IPv6"}, FLATFILE6, "H2O_DNS_IP_FAMILY"),
        ({"POD_IP": PODS6[0]}, FLATFILE6, f"the family of POD_IP={PODS6[0]}"),
        ({"POD_IP": PODS4[0], "H2O_DNS_IP_FAMILY": "auto"}, FLATFILE4, "the family of POD_IP"),
    ],
    ids=["ipv4", "ipv6", "auto-pod-ip-v6", "auto-pod-ip-v4"],
)
def test_discover_command_on_dual_stack(
    threaded_dns: DnsServer, extra: dict[str, str], flatfile: str, why: str
) -> None:
    """``discover --once`` prints each pod once, in the chosen family, and logs why that one."""
    done = discover_once(threaded_dns, **extra)
    assert done.returncode == 0, done.stderr
    assert done.stdout == flatfile
    assert why in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("raw", ["dual", "ipv5", "ip v6", "inet6", ""])
def test_invalid_ip_family_exits_2_naming_it(threaded_dns: DnsServer, raw: str) -> None:
    """A value other than auto, ipv4 or ipv6: exit 2 naming the variable and the choices."""
    done = discover_once(threaded_dns, H2O_DNS_IP_FAMILY=raw)
    assert done.returncode == exit_codes.USAGE, done.stderr
    assert f"H2O_DNS_IP_FAMILY={raw!r}" in done.stderr
    assert "expected auto" in done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_ip_family_contradicting_pod_ip_exits_2(threaded_dns: DnsServer) -> None:
    """ipv6 with an IPv4 POD_IP would leave the pod out of its own cloud: exit 2 saying so."""
    done = discover_once(threaded_dns, H2O_DNS_IP_FAMILY="ipv6", POD_IP=PODS4[0])
    assert done.returncode == exit_codes.USAGE, done.stderr
    assert "H2O_DNS_IP_FAMILY='ipv6' contradicts POD_IP=198.18.0.11" in done.stderr
    assert "set H2O_DNS_IP_FAMILY=ipv4 or auto" in done.stderr
    assert done.stdout == ""
