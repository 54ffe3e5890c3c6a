"""Reading the Kubernetes manifests under docker/kubernetes/ the way the cluster would.

Tests use this to hold the manifests to the code: the env a pod would get, the probes the
kubelet would send, the Service that publishes the pods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "docker" / "kubernetes"

Resource = dict[str, Any]


def load(path: Path) -> list[Resource]:
    """Every document of a multi-document YAML file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def manifest_files() -> list[Path]:
    return sorted(MANIFEST_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Deployment:
    """A StatefulSet, the headless Service it names, and the rest of its file."""

    path: Path
    resources: list[Resource]
    statefulset: Resource

    @property
    def namespace(self) -> str:
        return str(self.statefulset["metadata"].get("namespace", "default"))

    @property
    def pod_spec(self) -> Resource:
        spec: Resource = self.statefulset["spec"]["template"]["spec"]
        return spec

    @property
    def pod_labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.statefulset["spec"]["template"]["metadata"]["labels"]
        return labels

    def all_containers(self) -> list[Resource]:
        """Init containers (native sidecars among them), then the app containers."""
        return [*self.pod_spec.get("initContainers", []), *self.pod_spec["containers"]]

    def named(self, name: str) -> Resource:
        (match,) = [c for c in self.all_containers() if c["name"] == name]
        return match

    @property
    def container(self) -> Resource:
        """The container running h2o-k8s-discovery's probe server: the one Kubernetes probes."""
        probed = [c for c in self.all_containers() if "readinessProbe" in c]
        assert len(probed) == 1, f"{self.path.name}: expected one container with a readinessProbe"
        return probed[0]

    @property
    def replicas(self) -> int:
        return int(self.statefulset["spec"].get("replicas", 1))

    def services(self) -> list[Resource]:
        return [r for r in self.resources if r["kind"] == "Service"]

    def headless_service(self) -> Resource:
        name = self.statefulset["spec"]["serviceName"]
        matches = [s for s in self.services() if s["metadata"]["name"] == name]
        assert matches, f"{self.path.name}: no Service named {name} (serviceName)"
        return matches[0]

    def pod_env(self, pod_ip: str, container: Resource | None = None) -> dict[str, str]:
        """A container's env as a pod would see it; the downward API gives ``pod_ip``."""
        env = {}
        for item in (container or self.container).get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
                env[item["name"]] = pod_ip
            else:
                raise AssertionError(f"{self.path.name}: env {item['name']} has an unknown source")
        return env

    def probe(self, kind: str) -> tuple[str, int] | None:
        """``(path, port)`` of the container's ``readinessProbe`` or ``livenessProbe``."""
        probe = self.container.get(kind)
        if probe is None:
            return None
        get = probe["httpGet"]
        return str(get["path"]), int(get["port"])

    def args(self, container: Resource | None = None) -> list[str]:
        return [str(arg) for arg in (container or self.container).get("args", [])]

    def command_line(self, container: Resource, pod_ip: str) -> list[str]:
        """``command`` + ``args`` with ``$(VAR)`` references expanded as the kubelet does."""
        env = self.pod_env(pod_ip, container)
        words = [*container.get("command", []), *container.get("args", [])]
        expanded = []
        for word in map(str, words):
            text = word
            for name, value in env.items():
                text = text.replace(f"$({name})", value)
            expanded.append(text)
        return expanded


def deployments() -> list[Deployment]:
    found = []
    for path in manifest_files():
        resources = load(path)
        found += [Deployment(path, resources, r) for r in resources if r["kind"] == "StatefulSet"]
    return found


def deployment(file_name: str) -> Deployment:
    (match,) = [d for d in deployments() if d.path.name == file_name]
    return match
