"""A StatefulSet on simulated pods: the real ``run`` command with a manifest's env and arguments.

Each pod of a ``PodNetwork`` runs ``python -m h2o_k8s_discovery run`` with the environment and
the arguments of one manifest under docker/kubernetes/, behind the tests' DNS server on the
bridge's gateway. Only what pods on one machine cannot share is moved: the jar's path, the
flatfile, the JVM's temp directory and the paths under /tmp (into the pod's workdir).

The one non-obvious decision: the settings the tests read (the service name, the ports, the
grace time) come from the same manifest env the pods get, parsed by ``Settings.from_env``, so a
manifest and a test cannot disagree about them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.manifests import Deployment, deployment
from k8s_sim.pods import Pod, PodNetwork
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.kubelet import Kubelet

LOG_NAME = "entrypoint.log"


@dataclass
class SimulatedCluster:
    network: PodNetwork
    dns: DnsServer
    pods: list[Pod]
    manifest: Deployment
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Variables every entrypoint gets on top of the manifest's (``H2O_JVM_STARTUP_CACHE``...).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: False: ``-ice_root`` alone instead of the manifest's arguments.
    manifest_args: bool = True

    #: The POD_IP the settings the tests read are parsed with.
    SETTINGS_POD_IP: ClassVar[str] = "198.18.0.1"

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.manifest.pod_env(self.SETTINGS_POD_IP))

    @property
    def service(self) -> str:
        return self.settings.lookup.service_dns

    @property
    def api_port(self) -> int:
        return self.settings.probe.api_port

    def kubelet(self) -> Kubelet:
        """Probes what the manifest's readiness probe names."""
        probe = self.manifest.probe("readinessProbe")
        assert probe is not None, f"{self.manifest.path.name} has no readinessProbe"
        path, port = probe
        return Kubelet(self.pods, port, path)

    def pod_ip(self, pod: Pod) -> str:
        """The pod's POD_IP."""
        return pod.ip

    def moved(self, value: str, pod: Pod) -> str:
        """A manifest path under /tmp moved into the pod's workdir."""
        return value.replace("/tmp/", f"{pod.workdir}/", 1) if value.startswith("/tmp/") else value

    def manifest_env(self, pod: Pod) -> dict[str, str]:
        return self.manifest.pod_env(self.pod_ip(pod))

    def entrypoint_env(self, pod: Pod, **overrides: str) -> dict[str, str]:
        return self.manifest_env(pod) | {
            "PATH": os.environ["PATH"],
            "H2O_JAR": str(ensure_h2o_jar(progress=False)),
            "H2O_FLATFILE": str(pod.workdir / "flatfile"),
            "JAVA_OPTS": f"-Xmx512m -Djava.io.tmpdir={pod.tmpdir}",
            **self.extra_env,
            **overrides,
        }

    def entrypoint_args(self, pod: Pod) -> list[str]:
        args = [self.moved(arg, pod) for arg in self.manifest.args()] if self.manifest_args else []
        return args or ["-ice_root", str(pod.ice_root)]

    def start(self, pod: Pod, **overrides: str) -> subprocess.Popen[bytes]:
        """The pod's entrypoint, with the manifest's env (and ``overrides``) and arguments."""
        argv = [sys.executable, "-m", "h2o_k8s_discovery", "run", "--", *self.entrypoint_args(pod)]
        process = pod.spawn(
            argv, env=self.entrypoint_env(pod, **overrides), log_path=pod.workdir / LOG_NAME
        )
        self.processes[pod.name] = process
        return process

    def log(self, pod: Pod) -> str:
        path = pod.workdir / LOG_NAME
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, lines: int = 30) -> str:
        """The entrypoints' own last log lines, pod by pod, for failure messages."""
        parts = []
        for pod in self.pods:
            own = [line for line in self.log(pod).splitlines() if "h2o_k8s_discovery" in line]
            parts.append(f"--- {pod.name}\n" + "\n".join(own[-lines:]))
        return "\n".join(parts)

    def java_pids(self, pod: Pod) -> list[int]:
        pids = []
        for pid in pod.pids():
            with contextlib.suppress(FileNotFoundError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                    pids.append(pid)
        return pids

    def exits(self, since: float, seconds: float) -> dict[str, tuple[int, float]]:
        """Each entrypoint's exit status and when (seconds after ``since``) it was seen."""
        seen: dict[str, tuple[int, float]] = {}
        deadline = time.monotonic() + seconds
        while len(seen) < len(self.processes) and time.monotonic() < deadline:
            for name, process in self.processes.items():
                if name not in seen and (status := process.poll()) is not None:
                    seen[name] = (status, time.monotonic() - since)
            time.sleep(0.02)
        return seen

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM to every entrypoint still running; their statuses (None: outlived the grace)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        seen = self.exits(time.monotonic(), self.settings.launch.shutdown_grace + 5)
        return {name: seen.get(name, (None, 0.0))[0] for name in self.processes}


@contextlib.contextmanager
def simulated_pods(
    manifest_file: str, family: str = "ipv4"
) -> Iterator[tuple[PodNetwork, DnsServer, list[Pod], Deployment]]:
    """A network with one pod per replica of the manifest and a DNS server on its gateway."""
    manifest = deployment(manifest_file)
    with PodNetwork(family=family) as network:
        pods = [network.add_pod(f"h2o-{i}") for i in range(manifest.replicas)]
        # The pods' resolv.conf names the primary gateway: IPv6 on IPv6-only, IPv4 on dual.
        with ThreadedDnsServer(network.gateway, 53) as dns:
            yield network, dns, pods, manifest
