"""The ``h2o-k8s-discovery`` command as a user runs it: a real process, a real DNS server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s_sim.net import free_port
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.test_settings import BAD_VALUES

SERVICE = "h2o-service.h2o.svc.cluster.local"


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with ThreadedDnsServer("127.0.0.1") as server:
        yield server


def command(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the console command with exactly ``env`` (plus PATH), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "h2o_k8s_discovery", *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def env_for(server: DnsServer, **extra: str) -> dict[str, str]:
    return {
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_DNS_NAMESERVER": f"{server.host}:{server.port}",
        **extra,
    }


def test_discover_once_prints_peers(dns: DnsServer) -> None:
    """``discover --once`` prints the published peers in flatfile form and exits 0."""
    dns.set_records(SERVICE, a=["10.0.0.2", "10.0.0.1"])
    done = command("discover", "--once", env=env_for(dns))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "10.0.0.1:54321\n10.0.0.2:54321\n"
    assert "single poll" in done.stderr


def test_discover_writes_flatfile(dns: DnsServer, tmp_path: Path) -> None:
    """``discover --write`` waits for the expected count and writes the flatfile."""
    dns.set_records(SERVICE, a=["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    target = tmp_path / "shared" / "flatfile"
    done = command(
        "discover", "--write", str(target), env=env_for(dns, H2O_NODE_EXPECTED_COUNT="3")
    )
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "10.0.0.1:54321\n10.0.0.2:54321\n10.0.0.3:54321\n"
    assert "expected count was reached" in done.stderr


def test_discover_fails_closed(dns: DnsServer, tmp_path: Path) -> None:
    """Short of the expected count at the timeout: exit 69, no output, no flatfile."""
    dns.set_records(SERVICE, a=["10.0.0.1", "10.0.0.2"])
    target = tmp_path / "flatfile"
    env = env_for(dns, H2O_NODE_EXPECTED_COUNT="3", H2O_NODE_LOOKUP_TIMEOUT="1")
    done = command("discover", "--write", str(target), env=env)
    assert done.returncode == 69
    assert done.stdout == ""
    assert not target.exists()
    assert "2 peer(s) published instead of the 3 expected" in done.stderr


def test_discover_fails_closed_when_dns_never_answered(tmp_path: Path) -> None:
    """Without a count, a lookup that never got one DNS answer is not "no pods": exit 69."""
    env = {
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_DNS_NAMESERVER": f"127.0.0.1:{free_port()}",
        "H2O_NODE_LOOKUP_TIMEOUT": "1",
        "H2O_DNS_QUERY_TIMEOUT": "0.3",
    }
    done = command("discover", "--write", str(tmp_path / "flatfile"), env=env)
    assert done.returncode == 69
    assert "DNS never answered" in done.stderr
    assert not (tmp_path / "flatfile").exists()


def test_discover_fail_open_writes_what_it_found(dns: DnsServer, tmp_path: Path) -> None:
    """With H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT=false the timeout gives what was found, as in H2O."""
    dns.set_records(SERVICE, a=["10.0.0.1", "10.0.0.2"])
    env = env_for(
        dns,
        H2O_NODE_EXPECTED_COUNT="3",
        H2O_NODE_LOOKUP_TIMEOUT="1",
        H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT="false",
    )
    done = command("discover", env=env)
    assert done.returncode == 0
    assert done.stdout == "10.0.0.1:54321\n10.0.0.2:54321\n"


def test_discover_unwritable_flatfile(dns: DnsServer, tmp_path: Path) -> None:
    """A flatfile that cannot be written is a clear error with its own exit status."""
    dns.set_records(SERVICE, a=["10.0.0.1"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = command("discover", "--once", "--write", str(blocker / "x"), env=env_for(dns))
    assert done.returncode == 73
    assert "cannot write the flatfile" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
@pytest.mark.parametrize("subcommand", ["discover", "run"])
def test_bad_env_exits_2(subcommand: str, name: str, value: str, tmp_path: Path) -> None:
    """Every bad value exits 2 naming the variable, with no traceback and nothing started."""
    flatfile = tmp_path / "flatfile"
    env = {
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_FLATFILE": str(flatfile),
        "H2O_DNS_NAMESERVER": "127.0.0.1:9",
        name: value,
    }
    done = command(subcommand, env=env)
    assert done.returncode == 2
    assert f"{name}=" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not flatfile.exists()


def test_no_command_is_a_usage_error() -> None:
    """Without a subcommand the usage is printed and the status is 2."""
    done = command(env={})
    assert done.returncode == 2
    assert "usage:" in done.stderr
