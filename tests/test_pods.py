"""The simulated-pod harness: reachability, pod-like DNS files, complete cleanup, a real H2O cloud.

Also the offline paths of the jar cache (the ~280 MB download itself is left to setup scripts).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from h2o_k8s_discovery.errors import H2OK8sDiscoveryError
from h2o_k8s_discovery.jvm.jar import (
    cached_jar_path,
    default_cache_dir,
    ensure_h2o_jar,
    extract_h2o_jar,
)
from k8s_sim.pods import (
    H2O_PORT,
    NETNS_ETC,
    PREFIX,
    Pod,
    PodNetwork,
    bridge_netfilter_hint,
    requires_root,
    sweep_stale,
)

POLL = 0.1  # seconds between polls of a condition
TESTS_DIR = Path(__file__).resolve().parent
T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something other than ``None``/``False``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


def python_in_pod(pod: Pod, code: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return pod.run([sys.executable, "-c", textwrap.dedent(code)], timeout=timeout)


def leftovers(suffix: str, workdir: Path | None = None) -> list[str]:
    """Everything on the host that still carries the harness suffix ``suffix``."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    found += [f"netns {line}" for line in netns.stdout.splitlines() if f"-{suffix}-" in line]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    found += [f"link {line}" for line in links.stdout.splitlines() if suffix in line]
    if NETNS_ETC.is_dir():
        found += [f"dir {p}" for p in NETNS_ETC.iterdir() if f"-{suffix}-" in p.name]
    if workdir is not None and workdir.exists():
        found.append(f"workdir {workdir}")
    return found


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"<no log: {err}>"


@pytest.fixture
def network() -> Iterator[PodNetwork]:
    with PodNetwork(stop_grace=2.0) as net:
        yield net


# --- reachability and pod files ------------------------------------------------------------------


@pytest.mark.root
@requires_root
def test_pods_reach_each_other_and_the_gateway(network: PodNetwork, tmp_path: Path) -> None:
    """Pods reach each other and TCP/UDP servers on the gateway, and see the pod's resolv.conf."""
    a, b = network.add_pod("pod-a"), network.add_pod("pod-b")
    hint = bridge_netfilter_hint() or "no bridge netfilter in play"

    # TCP and UDP servers in the root namespace on the gateway address, as the test DNS server.
    with (
        socket.create_server((network.gateway, 0)) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        udp.bind((network.gateway, 0))
        udp.settimeout(10)
        client = a.spawn(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                    import socket
                    socket.create_connection(("{network.gateway}", {tcp.getsockname()[1]}), 5)
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    u.settimeout(10)
                    u.sendto(b"ping", ("{network.gateway}", {udp.getsockname()[1]}))
                    print(u.recv(100).decode(), flush=True)
                """),
            ],
            log_path=tmp_path / "client.log",
        )
        tcp.settimeout(10)
        conn, (peer_ip, _) = tcp.accept()
        conn.close()
        assert peer_ip == a.ip, hint
        data, (udp_peer_ip, udp_peer_port) = udp.recvfrom(100)
        assert (data, udp_peer_ip) == (b"ping", a.ip), hint
        udp.sendto(b"pong", (udp_peer_ip, udp_peer_port))
        assert client.wait(timeout=10) == 0, log_tail(tmp_path / "client.log")
    assert (tmp_path / "client.log").read_text().strip() == "pong"

    # An HTTP server in pod b: reachable from the root namespace and from pod a.
    b.spawn(
        [sys.executable, "-m", "http.server", "8000", "--bind", b.ip],
        log_path=tmp_path / "http.log",
    )
    reply = wait_for(lambda: b.http_get(8000, "/", timeout=1), 20, "the HTTP server in pod b")
    assert reply[0] == 200
    fetched = python_in_pod(
        a,
        f"""
        import urllib.request
        print(urllib.request.urlopen("http://{b.ip}:8000/", timeout=5).status)
        """,
    )
    assert fetched.stdout.strip() == "200", f"{fetched.stderr}\n{hint}"

    # The pod's own DNS files replace the host's inside the namespace, and only there.
    resolv = a.run(["cat", "/etc/resolv.conf"]).stdout
    assert resolv.splitlines() == [
        "search h2o-statefulset.svc.cluster.local svc.cluster.local cluster.local",
        f"nameserver {network.gateway}",
        "options ndots:5",
    ]
    assert f"{a.ip}\tpod-a." in a.run(["cat", "/etc/hosts"]).stdout
    assert Path("/etc/resolv.conf").read_text() != resolv
    addresses = b.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert f"inet {b.ip}/24" in addresses


@pytest.mark.root
@requires_root
def test_unreachable_pod_port_gives_none(network: PodNetwork) -> None:
    """``http_get`` answers ``None`` for a port nothing listens on (the check can fail)."""
    pod = network.add_pod("idle")
    assert pod.http_get(H2O_PORT, "/3/Cloud", timeout=1) is None


@pytest.mark.root
@requires_root
@pytest.mark.parametrize("family", ["ipv6", "dual"])
def test_ipv6_pods_reach_each_other(family: str, tmp_path: Path) -> None:
    """IPv6 pods get 2001:2:0:<k>::1x at once (no DAD) and reach each other and the gateway."""
    with PodNetwork(family=family, stop_grace=1.0) as network:
        a, b = network.add_pod("pod-a"), network.add_pod("pod-b")
        assert network.subnet6.subnet_of(ipaddress.IPv6Network("2001:2::/48"))
        assert b.address6 == network.subnet6.network_address + 0x12
        assert b.ip == (str(b.address6) if family == "ipv6" else str(b.address))
        assert network.gateway == (network.gateway6 if family == "ipv6" else network.gateway4)
        ip6 = str(b.address6)
        addresses = b.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"inet6 {ip6}/64 scope global nodad" in addresses, addresses
        ipv4 = b.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert ("inet " in ipv4) == (family == "dual")
        hosts = b.run(["cat", "/etc/hosts"]).stdout.splitlines()
        assert [line.split("\t")[0] for line in hosts[2:]] == b.ips
        with socket.create_server((network.gateway6, 0), family=socket.AF_INET6) as gateway:
            b.spawn(
                [sys.executable, "-m", "http.server", "8000", "--bind", ip6],
                log_path=tmp_path / "http.log",
            )
            fetch = f"""
                import socket, urllib.request
                print(urllib.request.urlopen("http://[{ip6}]:8000/", timeout=2).status)
                socket.create_connection(("{network.gateway6}", {gateway.getsockname()[1]}), 5)
                """

            def fetched() -> subprocess.CompletedProcess[str] | None:
                result = python_in_pod(a, fetch)
                return result if result.returncode == 0 else None

            done = wait_for(fetched, 20, "pod a to reach pod b and the gateway over IPv6")
            assert done.stdout.strip() == "200"
            gateway.settimeout(5)
            conn, (peer, *_) = gateway.accept()
            conn.close()
        assert peer == str(a.address6)


@pytest.mark.root
@requires_root
def test_two_networks_get_distinct_subnets() -> None:
    """Two harnesses at once get different /24s inside 198.18.0.0/15."""
    with PodNetwork() as first, PodNetwork() as second:
        assert first.subnet != second.subnet
        assert not first.subnet.overlaps(second.subnet)
        assert first.add_pod("x").ip != second.add_pod("x").ip


# --- cleanup -------------------------------------------------------------------------------------

ESCAPEE = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # must be SIGKILLed
child = subprocess.Popen(["sleep", "600"], start_new_session=True)  # leaves our process group
print(child.pid, flush=True)
time.sleep(600)
"""


def _start_stubborn_processes(pod: Pod, log_path: Path) -> list[int]:
    """A TERM-ignoring process plus a child that escaped its group; return both pids."""
    parent = pod.spawn([sys.executable, "-c", ESCAPEE], log_path=log_path)

    def child_pid() -> int | None:
        text = log_path.read_text().strip() if log_path.exists() else ""
        return int(text) if text else None

    return [parent.pid, wait_for(child_pid, 20, "the escapee's child pid")]


@pytest.mark.root
@requires_root
def test_cleanup_leaves_nothing(tmp_path: Path) -> None:
    """After the context exits no namespace, link, /etc/netns entry, work dir or process is left."""
    with PodNetwork(stop_grace=0.5) as net:
        pods = [net.add_pod(f"pod-{i}") for i in range(3)]
        pids = _start_stubborn_processes(pods[0], tmp_path / "escapee.log")
        suffix, workdir = net.suffix, net.workdir
        assert len(leftovers(suffix, workdir)) >= 3 + 4 + 3 + 1  # the check sees what exists
    assert leftovers(suffix, workdir) == []
    wait_for(lambda: not any(map(is_running, pids)), 10, f"pids {pids} to end")


@pytest.mark.root
@requires_root
def test_cleanup_runs_on_an_exception(tmp_path: Path) -> None:
    """An exception inside the context still stops the processes and removes everything."""
    net = PodNetwork(stop_grace=0.5)
    pids: list[int] = []

    def interrupted_test() -> None:
        with net:
            pids.extend(_start_stubborn_processes(net.add_pod("doomed"), tmp_path / "escapee.log"))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_test()
    assert len(pids) == 2
    assert leftovers(net.suffix, net.workdir) == []
    wait_for(lambda: not any(map(is_running, pids)), 10, f"pids {pids} to end")
    net.close()  # idempotent


CRASH = """
import os, sys
sys.path.insert(0, {root!r})
from k8s_sim.pods import PodNetwork
net = PodNetwork().__enter__()
pod = net.add_pod("crashed")
pod.spawn(["sleep", "600"])
print(net.suffix, net.workdir, flush=True)
os._exit(1)  # no cleanup at all, like a SIGKILLed test run
"""


@pytest.mark.root
@requires_root
def test_sweep_stale_removes_a_crashed_run_but_not_a_live_one() -> None:
    """``sweep_stale`` removes a dead owner's leftovers and keeps a live harness's."""
    with PodNetwork() as live:
        live.add_pod("alive")
        crash = subprocess.run(
            [sys.executable, "-c", CRASH.format(root=str(TESTS_DIR.parent))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert crash.returncode == 1, crash.stderr
        suffix, workdir = crash.stdout.split()
        assert leftovers(suffix, Path(workdir)) != []
        removed = sweep_stale()
        assert leftovers(suffix, Path(workdir)) == []
        assert any(suffix in item for item in removed)
        assert not any(live.suffix in item for item in removed)
        assert len(leftovers(live.suffix, live.workdir)) > 0


# --- a real H2O cloud ----------------------------------------------------------------------------


def cloud_status(pod: Pod) -> dict[str, Any] | None:
    """The pod's ``/3/Cloud`` answer, or ``None`` while it does not answer 200 with JSON."""
    reply = pod.http_get(H2O_PORT, "/3/Cloud?skip_ticks=true", timeout=2)
    if reply is None or reply[0] != 200:
        return None
    try:
        status: dict[str, Any] = json.loads(reply[1])
    except ValueError:
        return None
    return status


def is_formed(status: dict[str, Any] | None, size: int) -> bool:
    return (
        status is not None
        and status.get("consensus") is True
        and status.get("cloud_size") == size
        and status.get("cloud_healthy") is True
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.root
@pytest.mark.slow
@requires_root
@pytest.mark.timeout(280)
def test_real_h2o_cloud_of_three_forms_in_pods(tmp_path: Path) -> None:
    """Three H2O JVMs in three pods, given one flatfile, form one healthy cloud with one leader."""
    size = 3
    jar = Path(os.environ.get("H2O_JAR") or ensure_h2o_jar(progress=False))
    # Without the k8s variables, or the JVM would run its own discovery (ANCHORS section 1).
    env = {k: v for k, v in os.environ.items() if not k.startswith("H2O_")}
    with PodNetwork(stop_grace=10.0) as net:
        pods = [net.add_pod(f"h2o-{i}") for i in range(size)]
        flatfile = net.workdir / "flatfile"
        flatfile.write_text("".join(f"{pod.ip}:{H2O_PORT}\n" for pod in pods))
        cloud_name = f"{PREFIX}-{net.suffix}-{secrets.token_hex(3)}"
        logs = [tmp_path / f"{pod.name}.log" for pod in pods]

        started = time.monotonic()
        procs = [
            pod.spawn(pod.h2o_command(jar, flatfile=flatfile, cloud_name=cloud_name), env, log)
            for pod, log in zip(pods, logs, strict=True)
        ]

        def all_formed() -> list[dict[str, Any]] | None:
            for pod, proc, log in zip(pods, procs, logs, strict=True):
                if proc.poll() is not None:
                    pytest.fail(f"JVM in {pod.name} exited {proc.returncode}:\n{log_tail(log)}")
            statuses = [cloud_status(pod) for pod in pods]
            if all(is_formed(s, size) for s in statuses):
                return [s for s in statuses if s is not None]
            return None

        try:
            statuses = wait_for(all_formed, 120, "a formed cloud of 3")
        except pytest.fail.Exception:
            tails = "\n".join(f"--- {log.name}\n{log_tail(log)}" for log in logs)
            print(tails)
            raise
        formed_after = time.monotonic() - started
        rss = [rss_mib(proc.pid) for proc in procs]

        members = [sorted(node["ip_port"] for node in s["nodes"]) for s in statuses]
        assert members[0] == sorted(f"{pod.ip}:{H2O_PORT}" for pod in pods)
        assert all(m == members[0] for m in members)
        assert {s["cloud_name"] for s in statuses} == {cloud_name}
        leaders = [s for s in statuses if s["node_idx"] == s["leader_idx"]]
        assert len(leaders) == 1
        leader_ip = leaders[0]["nodes"][leaders[0]["leader_idx"]]["ip_port"]

        stop_started = time.monotonic()
        net.close()
        stopped_after = time.monotonic() - stop_started
    print(
        f"\nH2O cloud of {size} formed {formed_after:.1f} s after JVM start; leader {leader_ip}; "
        f"RSS per JVM {', '.join(f'{r:.0f}' for r in rss)} MiB; "
        f"stop (SIGTERM to gone) {stopped_after:.1f} s; exit codes "
        f"{[proc.returncode for proc in procs]}"
    )
    assert all(proc.returncode is not None for proc in procs)
    assert leftovers(net.suffix, net.workdir) == []


# --- the jar cache (offline) ---------------------------------------------------------------------


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    return buffer.getvalue()


def _sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_default_cache_dir_follows_the_environment() -> None:
    """The cache dir is ``$H2O_K8S_DISCOVERY_CACHE``, else under ``$XDG_CACHE_HOME``, else ~."""
    both = {"H2O_K8S_DISCOVERY_CACHE": "/c", "XDG_CACHE_HOME": "/x"}
    assert default_cache_dir(both) == Path("/c")
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/h2o-k8s-discovery")
    assert default_cache_dir({}) == Path.home() / ".cache" / "h2o-k8s-discovery"


def test_a_cached_jar_is_returned_without_download(tmp_path: Path) -> None:
    """A jar already in the cache is returned at once (pip would fail on this made-up version)."""
    jar = cached_jar_path("0.0.0.0", tmp_path)
    jar.write_bytes(_zip_bytes())
    assert ensure_h2o_jar("0.0.0.0", tmp_path, progress=False) == jar


def test_a_cached_file_that_is_no_zip_is_refused(tmp_path: Path) -> None:
    """A cached file that is not a zip archive raises an error naming the file and the fix."""
    cached_jar_path("0.0.0.0", tmp_path).write_bytes(b"not a jar")
    with pytest.raises(H2OK8sDiscoveryError, match="delete it"):
        ensure_h2o_jar("0.0.0.0", tmp_path, progress=False)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"h2o-1.2/setup.py": b""}, "has no member h2o-1.2/h2o/backend/bin/h2o.jar"),
        ({"h2o-1.2/h2o/backend/bin/h2o.jar": b"truncated"}, "not a zip archive"),
    ],
)
def test_a_bad_sdist_raises_and_leaves_no_jar(
    tmp_path: Path, members: dict[str, bytes], message: str
) -> None:
    """An sdist without the jar, or with a broken one, raises and leaves nothing behind."""
    target = tmp_path / "h2o-1.2.jar"
    with pytest.raises(H2OK8sDiscoveryError, match=message):
        extract_h2o_jar(_sdist(tmp_path / "h2o-1.2.tar.gz", members), "1.2", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2o-1.2.tar.gz"]


def test_a_corrupt_archive_raises(tmp_path: Path) -> None:
    """A file that is no tar archive at all raises a clear error and leaves no jar."""
    sdist = tmp_path / "h2o-1.2.tar.gz"
    sdist.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(H2OK8sDiscoveryError, match="cannot read the h2o sdist"):
        extract_h2o_jar(sdist, "1.2", tmp_path / "h2o-1.2.jar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2o-1.2.tar.gz"]


def test_a_good_sdist_yields_the_jar(tmp_path: Path) -> None:
    """The jar member of a well-formed sdist lands at the target, byte for byte."""
    data = _zip_bytes()
    sdist = _sdist(tmp_path / "s.tar.gz", {"h2o-1.2/h2o/backend/bin/h2o.jar": data})
    extract_h2o_jar(sdist, "1.2", tmp_path / "h2o-1.2.jar")
    assert (tmp_path / "h2o-1.2.jar").read_bytes() == data
