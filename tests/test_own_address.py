"""This pod's own address before any DNS answer: POD_IP, else kubelet's /etc/hosts line; and
the early JVM start that follows from it."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2o_k8s_discovery.config.settings import IpFamily
from h2o_k8s_discovery.discovery.own_address import (
    KnownAddress,
    address_in_hosts,
    early_start_address,
    known_address,
)
from h2o_k8s_discovery.errors import ConfigError
from k8s_sim.net import free_port

#: What kubelet writes into a StatefulSet pod's /etc/hosts (pod h2o-1 of Service h2o-service).
KUBELET_HOSTS = """\
# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::1\tip6-allnodes
10.244.1.5\th2o-1.h2o-service.h2o.svc.cluster.local\th2o-1
"""
ADDRESS = ipaddress.ip_address("10.244.1.5")


def test_kubelets_line_gives_the_pods_address() -> None:
    """The pod's name on kubelet's line maps to its IP, whatever else the file lists."""
    assert address_in_hosts(KUBELET_HOSTS, "h2o-1") == (ADDRESS, "hosts file")
    assert address_in_hosts(KUBELET_HOSTS, "H2O-1")[0] == ADDRESS
    fqdn = "h2o-1.h2o-service.h2o.svc.cluster.local"
    assert address_in_hosts(KUBELET_HOSTS, fqdn)[0] == ADDRESS


def test_a_dual_stack_pod_takes_the_first_family_or_the_one_asked_for() -> None:
    """kubelet lists a dual-stack pod's primary address first: that one, unless a family is
    asked for (H2O_DNS_IP_FAMILY); the pod's short name also matches its full name."""
    text = "10.244.1.5 h2o-1\nfd00::15 h2o-1\n"
    assert address_in_hosts(text, "h2o-1")[0] == ADDRESS
    assert address_in_hosts(text, "h2o-1", IpFamily.IPV6)[0] == ipaddress.ip_address("fd00::15")
    assert address_in_hosts(text, "h2o-1.h2o-service.h2o.svc.cluster.local")[0] == ADDRESS


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.1.1\th2o-1\n", "no address but loopback"),
        ("# 10.0.0.1 h2o-1\n", "no address but loopback"),
        ("10.0.0.1 h2o-10\n", "no address but loopback"),
        ("not-an-ip h2o-1\n", "no address but loopback"),
        ("fe80::1 h2o-1\n0.0.0.0 h2o-1\n", "no address but loopback"),
        ("10.0.0.1 h2o-1\n10.0.0.2 h2o-1\n", "several addresses (10.0.0.1 10.0.0.2)"),
    ],
)
def test_no_single_usable_address_is_none_with_the_reason(text: str, why: str) -> None:
    """Loopback-only, commented, other names, garbage, or two addresses: none, and why."""
    found, reason = address_in_hosts(text, "h2o-1")
    assert found is None
    assert why in reason


@given(st.text(max_size=300), st.sampled_from(["h2o-0", "vm", ""]))
def test_any_hosts_text_is_read_without_error(text: str, hostname: str) -> None:
    """Whatever bytes the file holds, the answer is an address or a reason, never an error."""
    found, reason = address_in_hosts(text, hostname)
    assert found is None or not found.is_loopback
    assert reason


def test_pod_ip_wins_over_the_hosts_file(tmp_path: Path) -> None:
    """POD_IP, when set, is the address; the hosts file is not even read."""
    missing = tmp_path / "absent"
    assert known_address(ADDRESS, hosts_file=missing) == KnownAddress(ADDRESS, "POD_IP")
    hosts = tmp_path / "hosts"
    hosts.write_text(KUBELET_HOSTS)
    assert known_address(None, hostname="h2o-1", hosts_file=hosts) == KnownAddress(
        ADDRESS, str(hosts)
    )
    unreadable = known_address(None, hostname="h2o-1", hosts_file=missing)
    assert unreadable.ip is None
    assert "unreadable" in unreadable.source


def test_early_start_follows_the_setting_and_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """auto starts early when the address is known and says why not otherwise; true without an
    address is a settings error; false never starts early."""
    known = KnownAddress(ADDRESS, "/etc/hosts")
    unknown = KnownAddress(None, "POD_IP is not set and the hosts file gives 'x' no address")
    assert early_start_address(None, known) == ADDRESS
    assert early_start_address(True, known) == ADDRESS
    assert early_start_address(False, known) is None
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.discovery.own_address")
    assert early_start_address(None, unknown) is None
    assert "no early JVM start: POD_IP is not set" in caplog.text
    with pytest.raises(ConfigError, match="H2O_JVM_EARLY_START=true needs this pod's address"):
        early_start_address(True, unknown)


# --- the real command ---------------------------------------------------------------------------

UNSHARE = shutil.which("unshare")
needs_mount_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None,
    reason="needs root and unshare(1) for a private /etc/hosts",
)


def run_with_hosts(
    tmp_path: Path, hosts: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``h2o-k8s-discovery run`` in a mount namespace whose /etc/hosts is ``hosts``; the lookup
    fails closed at once (nothing publishes the Service), so what happened before is visible."""
    (tmp_path / "hosts").write_text(hosts)
    (tmp_path / "bin").mkdir()
    java = tmp_path / "bin" / "java"
    java.write_text("#!/bin/sh\nexec sleep 30\n")  # waits like a JVM on its flatfile pipe
    java.chmod(0o755)
    (tmp_path / "h2o.jar").write_bytes(b"jar")
    script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
    return subprocess.run(
        [
            UNSHARE or "unshare",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            str(tmp_path / "hosts"),
            sys.executable,
            "-m",
            "h2o_k8s_discovery",
            "run",
        ],
        env={
            "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "H2O_KUBERNETES_SERVICE_DNS": "h2o-service.nowhere.svc.cluster.local",
            "H2O_DNS_NAMESERVER": "127.0.0.1:9",
            "H2O_NODE_LOOKUP_TIMEOUT": "1",
            "H2O_KUBERNETES_API_PORT": str(free_port()),
            "H2O_JAR": str(tmp_path / "h2o.jar"),
            "H2O_FLATFILE": str(tmp_path / "flatfile"),
            "H2O_JVM_STARTUP_CACHE": "off",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_mount_namespace
@pytest.mark.root
def test_run_starts_early_from_kubelets_hosts_line(tmp_path: Path) -> None:
    """Without POD_IP, ``run`` takes its address from /etc/hosts and starts the JVM at once
    with it; the failed lookup then kills that JVM (69)."""
    hostname = os.uname().nodename
    done = run_with_hosts(tmp_path, f"127.0.0.1 localhost\n198.18.7.7 {hostname}\n", {})
    assert done.returncode == 69, done.stdout + done.stderr
    assert "starting the JVM early, at 198.18.7.7 (from /etc/hosts)" in done.stdout + done.stderr
    assert "-ip 198.18.7.7" in done.stdout + done.stderr


@needs_mount_namespace
@pytest.mark.root
@pytest.mark.parametrize(("setting", "status"), [("auto", 69), ("true", 2)])
def test_without_an_address_auto_waits_and_true_is_refused(
    tmp_path: Path, setting: str, status: int
) -> None:
    """A hosts file mapping the name to loopback only: auto starts nothing early and says why;
    true is a settings error (2) before anything starts."""
    hostname = os.uname().nodename
    done = run_with_hosts(tmp_path, f"127.0.1.1 {hostname}\n", {"H2O_JVM_EARLY_START": setting})
    out = done.stdout + done.stderr
    assert done.returncode == status, out
    assert "Traceback" not in out
    if setting == "auto":
        assert "no early JVM start: POD_IP is not set" in out
        assert "launching H2O" not in out
    else:
        assert "H2O_JVM_EARLY_START=true needs this pod's address" in out
