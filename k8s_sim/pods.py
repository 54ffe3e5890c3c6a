"""Simulated Kubernetes pods: network namespaces joined by a bridge, for tests that need real IPs.

A ``PodNetwork`` is one node: a bridge in the root namespace holding the gateway address
(``198.18.<k>.1``, inside the 198.18.0.0/15 benchmarking range that is never routed anywhere
real; with ``family="ipv6"`` or ``"dual"`` also, or only, ``2001:2:0:<k>::1/64`` inside the
IPv6 benchmarking range 2001:2::/48, pods on ``::11``, ``::12`` ...). Each ``Pod`` is a named
network namespace whose ``eth0`` is one end of a veth pair plugged into that bridge, with its
own address, a default route via the gateway, and pod-like ``/etc/resolv.conf`` and
``/etc/hosts`` that ``ip netns exec`` bind-mounts over the host's. A DNS server bound to the
gateway address in the root namespace plays the cluster DNS; processes started with
``Pod.spawn`` play the containers.

The non-obvious decision: everything the harness creates carries the prefix ``h2k`` and a 4-hex
suffix, and the bridge's alias records the owner's pid and start time. ``sweep_stale()`` (also run
on every ``PodNetwork.__enter__``) can therefore remove the leftovers of a crashed run without
touching a harness that is still running in another process. Creation and sweeping happen under
one host-wide lock (an abstract Unix socket: no file to clean up, released when its owner dies).

Bridged traffic: with ``br_netfilter`` loaded and ``net.bridge.bridge-nf-call-iptables=1`` (as
here), frames crossing the bridge traverse the root namespace's iptables FORWARD chain, so a
firewall with a DROP policy there would cut pod-to-pod traffic. The harness changes no sysctl or
firewall rule (that would affect the whole host); it logs a warning naming the fix when iptables
tables are loaded, and ``bridge_netfilter_hint()`` is there for test failure messages.

H2O reverse-resolves its peers' addresses (it logs ``h2o-0.<search>/198.18.0.11:54321``): its own
name comes from the pod's hosts file, the peers' from PTR queries to the pods' nameserver. A
test DNS server on the gateway should answer or refuse those at once; one that stays silent
makes every JVM wait out resolver timeouts.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import http.client
import ipaddress
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

import pytest

log = logging.getLogger(__name__)

PREFIX = "h2k"
"""Every namespace, link, /etc/netns entry and work directory made here starts with this."""

POOL = ipaddress.IPv4Network("198.18.0.0/15")
"""Pod subnets are carved out of this range only."""

POOL6 = ipaddress.IPv6Network("2001:2::/48")
"""IPv6 pod subnets (/64) are carved out of this range only (RFC 5180's benchmarking range)."""

FAMILIES = ("ipv4", "ipv6", "dual")
"""A pod network's address families: IPv4 only, IPv6 only, or both (IPv4 primary)."""

NETNS_ETC = Path("/etc/netns")
"""``ip netns exec NS`` bind-mounts every file in ``/etc/netns/NS/`` over ``/etc/<file>``."""

H2O_PORT = 54321
"""H2O's default REST API port; the internal port is one above."""

_LOCK_NAME = b"\0h2k-pods.lock"
_LOCK_TIMEOUT = 60.0  # seconds to wait for another harness to finish creating or sweeping
_POLL = 0.05  # seconds between polls of a condition
_POD_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_FIRST_POD_HOST = 10  # pod i (1-based) gets host number 10 + i: .11, .12, ...


class PodNetworkError(RuntimeError):
    """An ``ip`` command or a harness precondition failed; the message quotes ``ip``'s stderr."""


# --- preconditions -------------------------------------------------------------------------------


def root_skip_reason() -> str | None:
    """Why the harness cannot run here, or ``None`` when it can (root and ``ip`` present)."""
    if os.geteuid() != 0:
        return "needs root for network namespaces (ip netns); CI runs as root"
    if shutil.which("ip") is None:
        return "needs the `ip` command from iproute2 for network namespaces"
    return None


_SKIP_REASON = root_skip_reason()

requires_root = pytest.mark.skipif(
    _SKIP_REASON is not None, reason=_SKIP_REASON or "needs root for network namespaces"
)
"""Skip a test (or module, via ``pytestmark``) unless the harness can run."""


def bridge_netfilter_hint() -> str | None:
    """A hint for failure messages when bridged frames pass through iptables, else ``None``."""
    try:
        enabled = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
    except OSError:
        return None
    if not enabled:
        return None
    return (
        "br_netfilter is active (net.bridge.bridge-nf-call-iptables=1): bridged pod traffic "
        "crosses the root namespace's iptables/nftables FORWARD chain; if a firewall drops it, "
        "allow 198.18.0.0/15 there or set that sysctl to 0 while testing"
    )


def _iptables_tables_loaded() -> bool:
    try:
        return bool(Path("/proc/net/ip_tables_names").read_text().split())
    except OSError:
        return False


# --- small helpers -------------------------------------------------------------------------------


def _ip_binary() -> str:
    found = shutil.which("ip")
    if found is None:
        raise PodNetworkError("the `ip` command (iproute2) is not on PATH")
    return found


def _ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its stdout; raise ``PodNetworkError`` with stderr on failure."""
    result = subprocess.run(
        [_ip_binary(), *args], capture_output=True, text=True, check=False, timeout=30
    )
    if check and result.returncode != 0:
        raise PodNetworkError(
            f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout


@contextlib.contextmanager
def _host_lock(timeout: float = _LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the host-wide harness lock: whoever binds the abstract socket name owns it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.bind(_LOCK_NAME)
                break
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() > deadline:
                    raise PodNetworkError(
                        f"another pod harness held the lock for over {timeout:.0f} s"
                    ) from err
                time.sleep(_POLL)
        yield
    finally:
        sock.close()


def _process_start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of ``pid``, or ``None`` if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count from its closing paren.
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_tag() -> str:
    pid = os.getpid()
    return f"{PREFIX}-pods owner={pid}:{_process_start_time(pid)}"


def _owner_alive(tag: str) -> bool:
    match = re.fullmatch(rf"{PREFIX}-pods owner=(\d+):(\d+)", tag.strip())
    if match is None:
        return False
    return _process_start_time(int(match[1])) == match[2]


def _links() -> list[str]:
    names = []
    for line in _ip("-o", "link", "show").splitlines():
        # "7: h2kv1a2bp1@if2: <...>": the name ends at "@" (veth peer) or ":".
        fields = line.split(":", 2)
        if len(fields) >= 2:
            names.append(fields[1].strip().split("@", 1)[0])
    return names


def _netns_names() -> list[str]:
    # "h2k-1a2b-pod0 (id: 3)" or just "h2k-1a2b-pod0"
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _netns_pids(netns: str) -> list[int]:
    out = _ip("netns", "pids", netns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def _kill_netns_processes(netns: str, deadline: float) -> None:
    """SIGKILL every process inside ``netns`` until none is left or ``deadline`` passes."""
    while pids := _netns_pids(netns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            log.warning("processes %s in %s survived SIGKILL", pids, netns)
            return
        time.sleep(_POLL)


def _in_use_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    return nets


def _in_use_networks6() -> list[ipaddress.IPv6Network]:
    nets = []
    for line in _ip("-6", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet6" in fields:
            nets.append(ipaddress.IPv6Interface(fields[fields.index("inet6") + 1]).network)
    return nets


def _pick_subnet6() -> ipaddress.IPv6Network:
    """The first ``2001:2:0:<k>::/64`` (k >= 1) on no local interface."""
    in_use = _in_use_networks6()
    for k in range(1, 0x10000):
        candidate = ipaddress.IPv6Network(f"2001:2:0:{k:x}::/64")
        if not any(candidate.overlaps(net) for net in in_use):
            return candidate
    raise PodNetworkError(f"every /64 in {POOL6} is in use on this host")


def _pick_subnet(requested: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network:
    in_use = _in_use_networks()
    candidates = [requested] if requested is not None else list(POOL.subnets(new_prefix=24))
    for candidate in candidates:
        if not any(candidate.overlaps(net) for net in in_use):
            return candidate
    if requested is not None:
        raise PodNetworkError(f"subnet {requested} overlaps an address already on this host")
    raise PodNetworkError(f"every /24 in {POOL} is in use on this host")


def _rmdir_netns_etc_if_empty() -> None:
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only succeeds when empty: other users' entries stay


def _suffix_of(name: str) -> str | None:
    """The 4-hex suffix in a harness-made name, or ``None`` if the name is not the harness's."""
    for pattern in (
        rf"^{PREFIX}br([0-9a-f]{{4}})$",
        rf"^{PREFIX}v([0-9a-f]{{4}})p\d+$",
        rf"^{PREFIX}-([0-9a-f]{{4}})-.+$",
    ):
        if match := re.match(pattern, name):
            return match[1]
    return None


def _live_suffixes() -> set[str]:
    live = set()
    for link in _links():
        suffix = _suffix_of(link)
        if suffix is None or not link.startswith(f"{PREFIX}br"):
            continue
        try:
            tag = Path(f"/sys/class/net/{link}/ifalias").read_text()
        except OSError:
            continue
        if _owner_alive(tag):
            live.add(suffix)
    return live


def _remove_netns(netns: str, deadline: float) -> None:
    _kill_netns_processes(netns, deadline)
    if netns in _netns_names():
        _ip("netns", "delete", netns, check=False)
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def _remove_pod(pod: Pod, deadline: float) -> None:
    """Delete the pod's veth, then its namespace, and check the veth is really gone.

    The veth goes first: deleting one end removes both at once, whereas the kernel destroys a
    deleted namespace's interfaces later, in the background.
    """
    _kill_netns_processes(pod.netns, deadline)
    _ip("link", "delete", pod.veth, check=False)  # absent if creation stopped before it
    _remove_netns(pod.netns, deadline)
    if pod.veth in _links():
        raise PodNetworkError(f"veth {pod.veth} is still there after deleting it")


def _sweep_locked(keep: set[str]) -> list[str]:
    removed = []
    deadline = time.monotonic() + 10
    for netns in _netns_names():
        suffix = _suffix_of(netns)
        if suffix is not None and suffix not in keep:
            _remove_netns(netns, deadline)
            removed.append(f"netns {netns}")
    for link in _links():
        suffix = _suffix_of(link)
        if suffix is not None and suffix not in keep:
            _ip("link", "delete", link, check=False)
            removed.append(f"link {link}")
    if NETNS_ETC.is_dir():
        for entry in NETNS_ETC.iterdir():
            suffix = _suffix_of(entry.name)
            if suffix is not None and suffix not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(f"dir {entry}")
        _rmdir_netns_etc_if_empty()
    for entry in Path(tempfile.gettempdir()).glob(f"{PREFIX}-????-*"):
        suffix = _suffix_of(entry.name)
        if suffix is not None and suffix not in keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"dir {entry}")
    return removed


def sweep_stale() -> list[str]:
    """Remove leftovers of crashed harness runs (dead owner); return what was removed.

    Live harnesses, in this process or another, are recognised by their bridge's owner tag and
    left alone. Work directories are only looked for in the default temporary directory.
    """
    with _host_lock():
        removed = _sweep_locked(_live_suffixes())
    for item in removed:
        log.warning("removed stale pod harness leftover: %s", item)
    return removed


# --- processes -----------------------------------------------------------------------------------


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:  # never signal a reaped pid: it may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def _stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each process group, wait up to ``grace`` seconds in all, then SIGKILL the rest."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


# --- pods ----------------------------------------------------------------------------------------


class Pod:
    """One simulated pod: a network namespace with ``eth0`` on the network's bridge.

    ``workdir`` (removed with the network) holds ``tmp/`` and ``ice/`` for a JVM: each H2O JVM
    unpacks ~157 MB of native libraries into ``java.io.tmpdir``, so pods must not share one.
    """

    def __init__(
        self,
        network: PodNetwork,
        name: str,
        index: int,
        ip: ipaddress.IPv4Address | None,
        ip6: ipaddress.IPv6Address | None = None,
    ) -> None:
        self.network = network
        self.name = name
        self.index = index
        self.address = ip
        self.address6 = ip6
        self.netns = f"{PREFIX}-{network.suffix}-{name}"
        self.veth = f"{PREFIX}v{network.suffix}p{index}"
        self.workdir = network.workdir / name
        self.tmpdir = self.workdir / "tmp"
        self.ice_root = self.workdir / "ice"
        self.processes: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"Pod({self.name!r}, ip={self.ip!r}, netns={self.netns!r})"

    @property
    def ip(self) -> str:
        """The pod's primary address as text: ``198.18.0.11``, or ``2001:2:0:1::11`` when
        the network is IPv6-only (``status.podIP``)."""
        primary = self.address if self.address is not None else self.address6
        return str(primary)

    @property
    def ips(self) -> list[str]:
        """Every address of the pod, the primary first (``status.podIPs``)."""
        return [str(ip) for ip in (self.address, self.address6) if ip is not None]

    def _ip_netns_exec(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return [_ip_binary(), "netns", "exec", self.netns, *(os.fspath(arg) for arg in argv)]

    def spawn(
        self,
        argv: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the pod in its own process group and session.

        ``env`` is the complete environment (``None``: this process's). stdout and stderr are
        appended to ``log_path`` (``None``: discarded). ``ip netns exec`` execs ``argv`` in
        place, so the returned process *is* the program, and the network stops it on exit.
        """
        sink: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            sink = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                self._ip_netns_exec(argv),
                env=dict(os.environ if env is None else env),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            if not isinstance(sink, int):
                sink.close()
        self.processes.append(proc)
        return proc

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the pod to completion, capturing its text output."""
        return subprocess.run(
            self._ip_netns_exec(argv),
            env=dict(os.environ if env is None else env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.workdir,
        )

    def pids(self) -> list[int]:
        """Every process inside the pod's network namespace, spawned or not."""
        return _netns_pids(self.netns)

    def stop(self, grace: float = 10.0) -> None:
        """Stop everything running in the pod: SIGTERM the spawned groups, then SIGKILL all."""
        _stop_processes(self.processes, grace)
        _kill_netns_processes(self.netns, time.monotonic() + 10)

    def http_get(self, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """GET ``http://<pod ip>:<port><path>`` from the root namespace; ``None`` if unreachable.

        Any HTTP status counts as an answer; refused connections, timeouts and broken responses
        give ``None``.
        """
        conn = http.client.HTTPConnection(self.ip, port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def h2o_command(
        self,
        jar: Path,
        *,
        flatfile: Path,
        cloud_name: str,
        port: int = H2O_PORT,
        xmx: str = "512m",
        extra: Sequence[str] = (),
    ) -> list[str]:
        """The ``java`` command line for one H2O node of this pod (own tmpdir and ice_root)."""
        return [
            "java",
            f"-Xmx{xmx}",
            f"-Djava.io.tmpdir={self.tmpdir}",
            "-jar",
            str(jar),
            "-flatfile",
            str(flatfile),
            "-port",
            str(port),
            "-ip",
            self.ip,
            "-name",
            cloud_name,
            "-ice_root",
            str(self.ice_root),
            *extra,
        ]


class PodNetwork:
    """A bridge with a gateway address and the pods plugged into it; a context manager.

    ``subnet`` (inside 198.18.0.0/15) defaults to the first /24 not on any local interface, so
    harnesses in several processes coexist. The gateway is the subnet's first host; pod ``i``
    (1-based) gets host number ``10 + i``. ``family`` is ``"ipv4"``, ``"ipv6"`` (no IPv4
    address outside ``lo``: an IPv6-only cluster) or ``"dual"`` (both, IPv4 primary); IPv6
    subnets are the first free ``2001:2:0:<k>::/64``, gateway ``::1``, pod ``i`` on ``::1<i>``
    (the IPv4 host number's digits read as hexadecimal), all without duplicate address
    detection so the addresses are usable at once. ``namespace`` and ``cluster_domain`` shape
    the pods' DNS search list like a Kubernetes namespace's. Leaving the context (also on an
    exception or Ctrl-C, and at interpreter exit as a last resort) stops every process and
    removes everything.
    """

    def __init__(
        self,
        subnet: str | ipaddress.IPv4Network | None = None,
        *,
        namespace: str = "h2o-statefulset",
        cluster_domain: str = "cluster.local",
        base_dir: Path | None = None,
        stop_grace: float = 10.0,
        family: str = "ipv4",
    ) -> None:
        if family not in FAMILIES:
            raise PodNetworkError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
        self.family = family
        self._requested = None if subnet is None else ipaddress.IPv4Network(subnet)
        if self._requested is not None and not self._requested.subnet_of(POOL):
            raise PodNetworkError(f"subnet {self._requested} is outside {POOL}")
        self.namespace = namespace
        self.cluster_domain = cluster_domain
        self.stop_grace = stop_grace
        self._base_dir = base_dir
        self.suffix = secrets.token_hex(2)
        self.bridge = f"{PREFIX}br{self.suffix}"
        self.pods: list[Pod] = []
        self._subnet: ipaddress.IPv4Network | None = None
        self._subnet6: ipaddress.IPv6Network | None = None
        self._workdir: Path | None = None
        self._created_bridge = False
        self._closed = False
        self._close_lock = threading.Lock()

    # properties valid once entered
    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The pods' subnet, e.g. ``198.18.0.0/24``."""
        if self._subnet is None:
            raise PodNetworkError("the PodNetwork has not been entered yet")
        return self._subnet

    @property
    def has_ipv4(self) -> bool:
        return self.family != "ipv6"

    @property
    def has_ipv6(self) -> bool:
        return self.family != "ipv4"

    @property
    def subnet6(self) -> ipaddress.IPv6Network:
        """The pods' IPv6 subnet, e.g. ``2001:2:0:1::/64`` (``family`` ipv6 or dual only)."""
        if self._subnet6 is None:
            raise PodNetworkError("this PodNetwork has no IPv6 subnet, or is not entered yet")
        return self._subnet6

    @property
    def gateway4(self) -> str:
        """The bridge's IPv4 address (IPv4 and dual-stack pod networks)."""
        return str(self.subnet.network_address + 1)

    @property
    def gateway6(self) -> str:
        """The bridge's IPv6 address (IPv6 and dual-stack pod networks)."""
        return str(self.subnet6.network_address + 1)

    @property
    def gateway(self) -> str:
        """The bridge's primary address in the root namespace: the pods' nameserver."""
        return self.gateway4 if self.has_ipv4 else self.gateway6

    @property
    def workdir(self) -> Path:
        """A directory removed on exit: pods' work dirs, flatfiles, anything per test."""
        if self._workdir is None:
            raise PodNetworkError("the PodNetwork has not been entered yet")
        return self._workdir

    @property
    def search(self) -> list[str]:
        """The pods' DNS search list, as in a pod of ``namespace``."""
        return [
            f"{self.namespace}.svc.{self.cluster_domain}",
            f"svc.{self.cluster_domain}",
            self.cluster_domain,
        ]

    def __enter__(self) -> Self:
        if self._subnet is not None or self._closed:
            raise PodNetworkError("a PodNetwork can be entered only once")
        atexit.register(self.close)
        try:
            with _host_lock():
                removed = _sweep_locked(_live_suffixes())
                self._subnet = _pick_subnet(self._requested)
                _ip("link", "add", "name", self.bridge, "type", "bridge")
                self._created_bridge = True
                _ip("link", "set", "dev", self.bridge, "alias", _owner_tag())
                if self.has_ipv4:
                    prefix = self.subnet.prefixlen
                    _ip("addr", "add", f"{self.gateway4}/{prefix}", "dev", self.bridge)
                if self.has_ipv6:
                    self._subnet6 = _pick_subnet6()
                    self._add_ipv6(None, self.gateway6, self.bridge)
                _ip("link", "set", "dev", self.bridge, "up")
                self._workdir = Path(
                    tempfile.mkdtemp(prefix=f"{PREFIX}-{self.suffix}-", dir=self._base_dir)
                )
        except BaseException:
            self.close()
            raise
        for item in removed:
            log.warning("removed stale pod harness leftover: %s", item)
        if _iptables_tables_loaded() and (hint := bridge_netfilter_hint()):
            log.warning("%s", hint)
        log.debug("pod network %s on %s (gateway %s)", self.bridge, self.subnet, self.gateway)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add_pod(self, name: str) -> Pod:
        """Create pod ``name`` (lowercase letters, digits, dashes) and return it, ready to use."""
        if self._closed or self._subnet is None:
            raise PodNetworkError("add_pod() needs an entered, open PodNetwork")
        if not _POD_NAME_RE.match(name) or any(p.name == name for p in self.pods):
            raise PodNetworkError(f"pod name {name!r} is not a fresh DNS label of <= 40 chars")
        index = len(self.pods) + 1
        address = self.subnet.network_address + _FIRST_POD_HOST + index
        if address >= self.subnet.broadcast_address:
            raise PodNetworkError(f"subnet {self.subnet} has no room for pod {index}")
        address6 = None
        if self.has_ipv6:
            # ::11, ::12, ...: the IPv4 host number's digits, read as hexadecimal.
            address6 = self.subnet6.network_address + int(str(_FIRST_POD_HOST + index), 16)
        pod = Pod(self, name, index, address if self.has_ipv4 else None, address6)
        self.pods.append(pod)  # before creating anything, so close() removes a half-made pod
        try:
            self._create_pod(pod)
        except BaseException:
            with contextlib.suppress(Exception):
                _remove_pod(pod, time.monotonic() + 10)
            raise
        return pod

    def _create_pod(self, pod: Pod) -> None:
        pod.tmpdir.mkdir(parents=True)
        pod.ice_root.mkdir()
        etc = NETNS_ETC / pod.netns
        with _host_lock():  # /etc/netns may be removed by another harness's cleanup otherwise
            etc.mkdir(parents=True)
            (etc / "resolv.conf").write_text(
                f"search {' '.join(self.search)}\nnameserver {self.gateway}\noptions ndots:5\n"
            )
            # The pod shares the host's UTS namespace, so its hostname is the host's: map that
            # name to the pod's own IP, as the kubelet does, so that Java's getLocalHost() never
            # asks the (test) cluster DNS about it.
            # One line per pod address, the primary first, as the kubelet writes it.
            names = f"{pod.name}.{self.search[0]}\t{pod.name}\t{socket.gethostname()}"
            (etc / "hosts").write_text(
                "127.0.0.1\tlocalhost\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n"
                + "".join(f"{ip}\t{names}\n" for ip in pod.ips)
            )
        _ip("netns", "add", pod.netns)
        _ip("link", "add", pod.veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        _ip("link", "set", "dev", pod.veth, "master", self.bridge, "up")
        _ip("-n", pod.netns, "link", "set", "dev", "lo", "up")
        if pod.address is not None:
            prefix = self.subnet.prefixlen
            _ip("-n", pod.netns, "addr", "add", f"{pod.address}/{prefix}", "dev", "eth0")
        if pod.address6 is not None:
            self._add_ipv6(pod.netns, str(pod.address6), "eth0")
        _ip("-n", pod.netns, "link", "set", "dev", "eth0", "up")
        if pod.address is not None:
            _ip("-n", pod.netns, "route", "add", "default", "via", self.gateway4)
        if pod.address6 is not None:
            _ip("-n", pod.netns, "-6", "route", "add", "default", "via", self.gateway6)
        log.debug("pod %s: netns %s, ips %s", pod.name, pod.netns, " ".join(pod.ips))

    def _add_ipv6(self, netns: str | None, address: str, device: str) -> None:
        """Add ``address``/64 to ``device`` (in ``netns``, or the root namespace).

        ``nodad``: duplicate address detection would leave the address "tentative", unusable
        for a second or two, and nothing else on this private bridge can hold it.
        """
        where = [] if netns is None else ["-n", netns]
        prefix = self.subnet6.prefixlen
        _ip(*where, "-6", "addr", "add", f"{address}/{prefix}", "dev", device, "nodad")

    def close(self) -> None:
        """Stop every process and remove pods, bridge and files; safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            previous = _ignore_sigint()
            try:
                self._teardown()
            finally:
                _restore_sigint(previous)

    def _teardown(self) -> None:
        problems: list[str] = []
        # Stop every spawned process group of every pod at once, with one shared grace period.
        try:
            _stop_processes([proc for pod in self.pods for proc in pod.processes], self.stop_grace)
        except Exception as err:
            problems.append(f"stopping processes: {err}")
        deadline = time.monotonic() + 10
        for pod in self.pods:
            try:
                _remove_pod(pod, deadline)
            except Exception as err:
                problems.append(f"removing pod {pod.name}: {err}")
        try:
            with _host_lock():  # the bridge goes last: while it exists, a sweep keeps the pods
                if self._created_bridge and self.bridge in _links():
                    _ip("link", "delete", self.bridge)
                _rmdir_netns_etc_if_empty()
        except Exception as err:
            problems.append(f"removing bridge {self.bridge}: {err}")
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if problems:
            raise PodNetworkError("pod network cleanup incomplete: " + "; ".join(problems))


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _ignore_sigint() -> tuple[bool, _Handler]:
    """Ignore Ctrl-C while cleaning up (main thread only), so a second one cannot leave debris."""
    if threading.current_thread() is not threading.main_thread():
        return False, None
    return True, signal.signal(signal.SIGINT, signal.SIG_IGN)


def _restore_sigint(previous: tuple[bool, _Handler]) -> None:
    changed, handler = previous
    if changed:
        signal.signal(signal.SIGINT, signal.SIG_DFL if handler is None else handler)
