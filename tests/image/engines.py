"""The two container engines of the image test: a private dockerd to build, podman to run.

Docker builds the image the way a user's CI does (BuildKit, the Dockerfile as written); podman
runs it the way a node does, from an image tarball (``docker save`` / ``podman load``: the same
layers a registry hands over). Each engine gets its own state under a temporary directory, so
nothing here touches a daemon, an image store or a network someone else uses, and everything it
made goes when the context ends.

The one non-obvious decision: neither engine may create a network of its own. Docker's default
bridge (172.17.0.0/16) and podman's (10.88.0.0/16) would land private-range addresses and NAT
rules on a host that is shared. dockerd runs with ``"bridge": "none"`` and no iptables, builds
use ``--network host``; podman gets a CNI directory of its own, empty, and a default subnet in
198.19.0.0/16, and its containers join the simulated pods' namespaces (``ns:``) or ``none``.
``private_interfaces()`` is what the test checks afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Debian packages the image test needs, by the command each provides.
PACKAGES = {"dockerd": "docker.io", "podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap"}

#: podman's default network, should anything ask for one: inside the range the tests own.
PODMAN_SUBNET = "198.19.0.0/24"

#: The ranges that container engines pick their bridges from.
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)

#: podman lowers its own RLIMIT_NPROC to this at start (and so that of conmon and runc).
PODMAN_NPROC = 32768

#: Where the engines keep their state while the test runs.
STATE_PARENT = "/var/tmp"

_DOCKERD_START = 60.0  # seconds for a fresh daemon to answer
_DOCKERD_STOP = 30.0


class EngineError(RuntimeError):
    """A container engine command failed; the message quotes its output."""


def missing_packages() -> list[str]:
    """The Debian packages of ``PACKAGES`` whose command is not installed."""
    search = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    return [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd, path=search) is None]


def install_missing() -> None:
    """``apt-get install`` whatever of ``PACKAGES`` is missing (as root; CI runs as root)."""
    need = missing_packages()
    if not need:
        return
    if shutil.which("apt-get") is None:
        raise EngineError(f"missing {', '.join(need)} and no apt-get to install them (Debian)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need],
    ):
        run(argv, env=env, timeout=600)


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion; ``EngineError`` with its output when it fails."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        output = done.stdout[-4000:] + done.stderr[-4000:]
        raise EngineError(f"`{' '.join(argv)}` exited {done.returncode}:\n{output}")
    return done


def private_interfaces() -> set[str]:
    """``name address`` of every interface holding an address in a private IPv4 range."""
    out = run(["ip", "-4", "-o", "addr", "show"]).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if "inet" not in fields:
            continue
        address = ipaddress.ip_interface(fields[fields.index("inet") + 1])
        if any(address.ip in net for net in PRIVATE_RANGES):
            found.add(f"{fields[1]} {address}")
    return found


def docker_cli() -> str:
    """The docker client of the daemon's own package: it speaks BuildKit without buildx.

    A newer client elsewhere on PATH (``/usr/local/bin/docker``) refuses BuildKit when its
    buildx plugin is missing, and would ask the daemon for an API it does not serve.
    """
    dockerd = shutil.which("dockerd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if dockerd is not None:
        sibling = Path(dockerd).resolve().parent.parent / "bin" / "docker"
        if sibling.is_file():
            return str(sibling)
    found = shutil.which("docker")
    if found is None:
        raise EngineError("no docker client: install docker.io")
    return found


@dataclass
class Docker:
    """A private dockerd: its own socket, data root and pid file, no network of its own."""

    state: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.state / "docker.sock"

    def env(self) -> dict[str, str]:
        # BuildKit: the built-in Dockerfile frontend, RUN --mount included, no frontend image.
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "1"}

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([docker_cli(), *args], env=self.env(), timeout=timeout)

    def start(self) -> None:
        config = self.state / "daemon.json"
        config.write_text(json.dumps({"bridge": "none", "iptables": False, "ip6tables": False}))
        argv = [
            "dockerd",
            f"--config-file={config}",
            f"--data-root={self.state / 'data'}",
            f"--exec-root={self.state / 'exec'}",
            f"--pidfile={self.state / 'docker.pid'}",
            f"--host=unix://{self.socket}",
        ]
        with (self.state / "dockerd.log").open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + _DOCKERD_START
        while True:
            if self.process.poll() is not None:
                raise EngineError(f"dockerd exited {self.process.returncode}:\n{self.log()}")
            probe = run([docker_cli(), "version"], env=self.env(), timeout=30, check=False)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise EngineError(
                    f"dockerd did not answer within {_DOCKERD_START:g}s:\n{self.log()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.5)

    def log(self) -> str:
        path = self.state / "dockerd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the daemon (it stops its containerd too), SIGKILL its group if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=_DOCKERD_STOP)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # A daemon killed mid-way leaves its data root bind-mounted on itself.
        unmount_under(self.state)


@dataclass
class Podman:
    """podman with its own storage, configuration and CNI directory: it sees nobody's images."""

    state: Path

    def configure(self) -> None:
        for sub in ("root", "runroot", "tmp", "cni", "libpod"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.state / "containers.conf").write_text(
            "[network]\n"
            f'network_config_dir = "{self.state / "cni"}"\n'
            f'default_subnet = "{PODMAN_SUBNET}"\n'
            "default_subnet_pools = []\n"
            "[engine]\n"
            # libpod's own state (locks, exit files) stays here, not in the host's /run/libpod.
            f'tmp_dir = "{self.state / "libpod"}"\n'
            # No systemd here; cgroup v1; crun fails on this host, runc does not.
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            'runtime = "runc"\n'
        )
        (self.state / "storage.conf").write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.state / "root"}"\n'
            f'runroot = "{self.state / "runroot"}"\n'
        )

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.state / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.state / "storage.conf"),
            # `podman load` unpacks the tarball here, not in the host's /var/tmp.
            "TMPDIR": str(self.state / "tmp"),
        }

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["podman", *args], env=self.env(), timeout=timeout, check=check)

    def remove_everything(self) -> None:
        """Every container killed and removed, the store unmounted."""
        self("rm", "--all", "--force", "--time", "0", timeout=120, check=False)
        unmount_under(self.state)


def inherited_ulimits() -> list[str]:
    """``--ulimit`` arguments giving a container this process's limits, as a kubelet's would get.

    Without CAP_SYS_RESOURCE no limit can be raised, and podman 4.3 asks for more than it has
    (``nofile`` 1048576, also with ``--ulimit host``), which runc then fails to set. So the
    limits are spelled out: this process's open files, and processes as podman itself allows.
    """
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = [min(limit, PODMAN_NPROC) for limit in resource.getrlimit(resource.RLIMIT_NPROC)]
    return [f"--ulimit=nofile={nofile[0]}:{nofile[1]}", f"--ulimit=nproc={nproc[0]}:{nproc[1]}"]


def unmount_under(path: Path) -> None:
    """Lazily unmount whatever is still mounted under ``path``, deepest first."""
    prefix = str(path.resolve())
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == prefix or line.split()[4].startswith(prefix + "/")
    ]
    for target in sorted(set(mounts), key=len, reverse=True):
        run(["umount", "--lazy", target], check=False)


@contextlib.contextmanager
def engines() -> Iterator[tuple[Docker, Podman]]:
    """A started private dockerd and a configured podman; both gone afterwards."""
    # Not under /tmp: the daemons' mounts there would show in every mount namespace that puts a
    # fresh tmpfs on /tmp (tests/image/image-root.sh remounts each mount it sees read-only).
    state = Path(tempfile.mkdtemp(prefix="h2o-image-engines-", dir=STATE_PARENT))
    docker = Docker(state / "docker")
    podman = Podman(state / "podman")
    try:
        docker.state.mkdir()
        podman.configure()
        docker.start()
        yield docker, podman
    finally:
        try:
            podman.remove_everything()
        finally:
            docker.stop()
            shutil.rmtree(state, ignore_errors=True)
