"""H2O_DNS_IP_FAMILY: the setting, and how ``auto`` finds this pod's family without POD_IP."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.settings import IpFamily, LookupSettings, Settings
from h2o_k8s_discovery.discovery.ip_family import (
    address_in_hosts_file,
    choose_family,
    with_ip_family,
)
from h2o_k8s_discovery.errors import ConfigError

BASE = {"H2O_KUBERNETES_SERVICE_DNS": "h2o.ns.svc.cluster.local"}

#: A kubelet-managed hosts file of a dual-stack pod: its IPs, the primary family first.
KUBELET_DUAL = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
2001:2:0:1::12\th2o-1.h2o.ns.svc.cluster.local\th2o-1
198.18.0.12\th2o-1.h2o.ns.svc.cluster.local\th2o-1
"""


@pytest.mark.parametrize(
    ("env", "family"),
    [
        ({}, IpFamily.AUTO),
        ({"H2O_DNS_IP_FAMILY": "IPV4"}, IpFamily.IPV4),
        ({"H2O_DNS_IP_FAMILY": "ipv6"}, IpFamily.IPV6),
        ({"POD_IP": "2001:2::1"}, IpFamily.IPV6),
        ({"POD_IP": "10.0.0.1", "H2O_DNS_IP_FAMILY": "auto"}, IpFamily.IPV4),
        ({"POD_IP": "2001:2::1", "H2O_DNS_IP_FAMILY": "ipv6"}, IpFamily.IPV6),
    ],
)
def test_setting(env: dict[str, str], family: IpFamily) -> None:
    """The family as set; auto becomes POD_IP's family, and stays auto without POD_IP."""
    assert Settings.from_env({**BASE, **env}).lookup.ip_family is family


def test_contradicting_pod_ip_is_one_problem() -> None:
    """A family other than POD_IP's is refused, naming both variables and the fix."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**BASE, "POD_IP": "2001:2::1", "H2O_DNS_IP_FAMILY": "ipv4"})
    assert refused.value.problems == (
        "H2O_DNS_IP_FAMILY='ipv4' contradicts POD_IP=2001:2::1, an ipv6 address: this pod "
        "would not be among its peers; set H2O_DNS_IP_FAMILY=ipv6 or auto",
    )


def test_kubelet_hosts_file_gives_the_primary_address(tmp_path: Path) -> None:
    """The first non-loopback address listed for this host's name, short or qualified."""
    hosts = tmp_path / "hosts"
    hosts.write_text(KUBELET_DUAL)
    expected = ipaddress.ip_address("2001:2:0:1::12")
    assert address_in_hosts_file(hosts, "h2o-1") == expected
    assert address_in_hosts_file(hosts, "H2O-1.h2o.ns.svc.cluster.local") == expected
    assert address_in_hosts_file(hosts, "h2o-2") is None


@pytest.mark.parametrize(
    "text",
    [
        "127.0.1.1\th2o-1\n::1\th2o-1\nfe80::1\th2o-1\n",  # only loopback and link-local
        "# 10.0.0.1 h2o-1\n",  # a comment
        "not-an-ip\th2o-1\n10.0.0.1\n",  # garbage, and an address without names
        "\xff\xfe\x00binary",
    ],
)
def test_hosts_file_without_a_usable_address(tmp_path: Path, text: str) -> None:
    """Loopback, link-local, comments and garbage say nothing about the pod's address."""
    hosts = tmp_path / "hosts"
    hosts.write_text(text, errors="surrogateescape")
    assert address_in_hosts_file(hosts, "h2o-1") is None


def test_missing_hosts_file_is_no_address(tmp_path: Path) -> None:
    """No hosts file at all is no address, not an error."""
    assert address_in_hosts_file(tmp_path / "absent", "h2o-1") is None


def test_choice_names_its_reason(tmp_path: Path) -> None:
    """``auto`` says where the family came from, for the lookup's first log line."""
    hosts = tmp_path / "hosts"
    hosts.write_text(KUBELET_DUAL)
    choice = choose_family(hosts_file=hosts, hostname="h2o-1")
    assert choice.family is IpFamily.IPV6
    assert choice.reason == f"the family of 2001:2:0:1::12, this host's address in {hosts}"
    fallback = choose_family(hosts_file=tmp_path / "absent", hostname="h2o-1")
    assert fallback.family in (IpFamily.IPV4, IpFamily.IPV6)
    assert "no POD_IP" in fallback.reason


def test_a_set_family_is_kept(tmp_path: Path) -> None:
    """Only ``auto`` is looked up; a family set explicitly (or from POD_IP) stays as it is."""
    settings = LookupSettings(service_dns="x.", ip_family=IpFamily.IPV4)
    hosts = tmp_path / "hosts"
    hosts.write_text(KUBELET_DUAL)
    assert with_ip_family(settings, hosts_file=hosts, hostname="h2o-1") is settings
