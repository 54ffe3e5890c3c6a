"""``demo``: a real H2O cluster on this machine, formed the way it would be on Kubernetes.

An embedded DNS server publishes a simulated headless Service and N entrypoint processes (the
real ``run`` code path) discover each other through it. All the "pods" share 127.0.0.1 here,
so the Service publishes SRV records carrying each pod's H2O port, and discovery runs in SRV
mode. Nothing is predicted: the summary reports what each pod's probes and ``/status`` say.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.commands.demo_dns import DnsServer
from h2o_k8s_discovery.config.settings import default_startup_cache
from h2o_k8s_discovery.errors import H2OK8sDiscoveryError, StartupCacheError
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from h2o_k8s_discovery.jvm.startup_prepare import ensure_startup_cache

log = logging.getLogger(__name__)

SERVICE = "h2o-service.demo.svc.cluster.local"
HOST = "127.0.0.1"


class DemoError(H2OK8sDiscoveryError):
    """The demo cannot start or the cluster did not form."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    nodes: int = 3
    h2o_base_port: int = 54321
    api_base_port: int = 8081
    #: Seconds allowed from start to "exactly one leader".
    timeout: float = 180.0
    exit_when_ready: bool = False
    jar: Path | None = None
    heap: str = "768m"


@dataclass(frozen=True, slots=True)
class DemoPod:
    index: int
    h2o_port: int
    api_port: int
    workdir: Path

    @property
    def name(self) -> str:
        return f"h2o-{self.index}"

    @property
    def target(self) -> str:
        return f"{self.name}.{SERVICE}"


@dataclass(frozen=True, slots=True)
class PodView:
    """One pod as its probes show it."""

    readiness: int | None
    status: dict[str, Any] | None

    @property
    def phase(self) -> str:
        if self.status is None:
            return "starting"
        phase = str(self.status.get("phase"))
        if phase == "formed":
            return "leader" if self.status.get("is_leader") else "follower"
        return phase


def plan_pods(options: DemoOptions, root: Path) -> list[DemoPod]:
    return [
        DemoPod(
            index=i,
            h2o_port=options.h2o_base_port + 2 * i,
            api_port=options.api_base_port + i,
            workdir=root / f"h2o-{i}",
        )
        for i in range(options.nodes)
    ]


def check_prerequisites(pods: Sequence[DemoPod]) -> None:
    """Java on PATH and every port free, or a DemoError saying what to do."""
    if shutil.which("java") is None:
        raise DemoError("java is not on PATH: install a Java 11+ runtime (e.g. openjdk-17-jre)")
    for pod in pods:
        for port, role in (
            (pod.h2o_port, "H2O port"),
            (pod.h2o_port + 1, "H2O internal port"),
            (pod.api_port, "probe port"),
        ):
            if not _port_is_free(port):
                raise DemoError(
                    f"port {port} ({pod.name}'s {role}) is in use: stop what holds it, or pick "
                    "other ports with --h2o-port / --api-port"
                )


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As H2O and the probe server bind: a closed connection still in TIME_WAIT on the port
        # does not stop them, so it must not fail this check either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def publish(server: DnsServer, pods: Sequence[DemoPod]) -> None:
    """The headless Service: one SRV record per pod, each target an A record for 127.0.0.1."""
    for pod in pods:
        server.set_records(pod.target, a=[HOST])
    server.set_records(SERVICE, srv=[(0, 0, pod.h2o_port, pod.target) for pod in pods])


def pod_environment(
    pod: DemoPod, server: DnsServer, options: DemoOptions, jar: Path, cloud: str
) -> dict[str, str]:
    tmp = pod.workdir / "tmp"
    return {
        **os.environ,
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_NODE_EXPECTED_COUNT": str(options.nodes),
        "H2O_NODE_LOOKUP_TIMEOUT": str(int(options.timeout)),
        "H2O_KUBERNETES_API_PORT": str(pod.api_port),
        "H2O_DNS_RECORD_TYPE": "SRV",
        "H2O_DNS_NAMESERVER": f"{server.host}:{server.port}",
        "H2O_DNS_POLL_INTERVAL": "0.5",
        # The pods share 127.0.0.1 and each has its own probe port, which a peer cannot know
        # from DNS; in a cluster every pod serves /peers on the same port.
        "H2O_NODE_LOOKUP_AGREEMENT": "false",
        "H2O_PORT": str(pod.h2o_port),
        "POD_IP": HOST,
        "H2O_JAR": str(jar),
        "H2O_FLATFILE": str(pod.workdir / "flatfile"),
        "H2O_CLOUD_NAME": cloud,
        "JAVA_OPTS": f"-Xmx{options.heap} -Djava.io.tmpdir={tmp}",
    }


async def start_pod(pod: DemoPod, env: dict[str, str]) -> asyncio.subprocess.Process:
    (pod.workdir / "tmp").mkdir(parents=True, exist_ok=True)
    log_file = (pod.workdir / "pod.log").open("wb")
    with log_file:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "h2o_k8s_discovery",
            "run",
            "--",
            "-ice_root",
            str(pod.workdir / "ice"),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )


async def observe(session: aiohttp.ClientSession, pod: DemoPod) -> PodView:
    base = f"http://{HOST}:{pod.api_port}"
    try:
        async with session.get(base + "/kubernetes/isLeaderNode") as response:
            readiness = response.status
        async with session.get(base + "/status") as response:
            status = await response.json()
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
        return PodView(None, None)
    return PodView(readiness, status)


def one_leader(views: Sequence[PodView]) -> bool:
    """Exactly one pod 200 and every other 404, all of them past formation."""
    codes = sorted(view.readiness or 0 for view in views)
    formed = all(view.status and view.status.get("phase") == "formed" for view in views)
    return formed and codes == [200] + [404] * (len(views) - 1)


def pod_exit_message(pod: DemoPod, status: int) -> str:
    """Which pod ended, with what status and what it means, and the end of its log."""
    if status < 0:
        meaning = f"its entrypoint was killed by {_signal_name(-status)}"
    elif status > exit_codes.SIGNAL_BASE:
        meaning = f"its H2O JVM was killed by {_signal_name(status - exit_codes.SIGNAL_BASE)}"
    else:
        meaning = "see its log"
    try:
        tail = (pod.workdir / "pod.log").read_text(errors="replace")[-2000:]
    except OSError:
        tail = "(no log)"
    return f"{pod.name} exited with status {status} ({meaning}); its log ends:\n{tail}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.processes: list[asyncio.subprocess.Process] = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def fetch_jar(self) -> Path:
        """The cached h2o.jar, and its JVM start-up cache (both made once, on first use)."""
        jar = ensure_h2o_jar(progress=True)
        try:
            ensure_startup_cache(
                jar,
                default_startup_cache(jar),
                progress=lambda step: self.say(f"JVM start-up cache (once): {step}"),
            )
        except StartupCacheError as err:
            self.say(f"no JVM start-up cache ({err}); H2O starts without it, a few seconds slower")
        return jar

    async def run(self) -> int:
        jar = self.options.jar or self.fetch_jar()
        with tempfile.TemporaryDirectory(prefix="h2o-k8s-demo-") as root:
            pods = plan_pods(self.options, Path(root))
            check_prerequisites(pods)
            async with DnsServer(HOST) as server:
                publish(server, pods)
                self.say(
                    f"headless Service {SERVICE} published by a DNS server on "
                    f"{server.host}:{server.port} ({len(pods)} SRV records)"
                )
                cloud = f"demo-{uuid.uuid4().hex[:8]}"
                try:
                    for pod in pods:
                        env = pod_environment(pod, server, self.options, jar, cloud)
                        self.processes.append(await start_pod(pod, env))
                    self.say(f"started {len(pods)} pods (h2o-k8s-discovery run); logs in {root}")
                    views = await self.wait_for_leader(pods)
                    self.summarize(pods, views)
                    if not self.options.exit_when_ready:
                        self.say("cluster is up; press Ctrl-C to stop it")
                        await self.watch(pods)
                finally:
                    await self.stop_all()
        return 0

    async def wait_for_leader(self, pods: Sequence[DemoPod]) -> list[PodView]:
        deadline = time.monotonic() + self.options.timeout
        shown: list[str] = []
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                views = list(await asyncio.gather(*(observe(session, pod) for pod in pods)))
                phases = [view.phase for view in views]
                if phases != shown:
                    shown = phases
                    line = "  ".join(
                        f"{p.name}: {ph:<10}" for p, ph in zip(pods, phases, strict=True)
                    )
                    self.say(f"[{time.strftime('%H:%M:%S')}] {line}")
                if one_leader(views):
                    return views
                self.check_alive(pods)
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"no single leader after {self.options.timeout:g}s; "
                        f"see the pod logs under {pods[0].workdir.parent}"
                    )
                await asyncio.sleep(0.2)

    def check_alive(self, pods: Sequence[DemoPod]) -> None:
        for pod, process in zip(pods, self.processes, strict=True):
            if process.returncode is not None:
                raise DemoError(pod_exit_message(pod, process.returncode))

    async def watch(self, pods: Sequence[DemoPod]) -> None:
        """Until a pod's entrypoint exits (it does when its JVM does): then a ``DemoError`` that
        names the pod and its status; the caller stops the others."""
        waits = {
            asyncio.create_task(p.wait()): pod for p, pod in zip(self.processes, pods, strict=True)
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        ended = next(iter(done))
        raise DemoError(pod_exit_message(waits[ended], ended.result()) + "\nstopping the others")

    def summarize(self, pods: Sequence[DemoPod], views: Sequence[PodView]) -> None:
        leader_pod = next(p for p, v in zip(pods, views, strict=True) if v.readiness == 200)
        status = views[0].status or {}
        self.say("")
        self.say(
            f"H2O cloud formed: {status.get('cloud_size')} members, {status.get('leader')} leads"
        )
        for pod, view in zip(pods, views, strict=True):
            self.say(
                f"  {pod.name}  h2o {HOST}:{pod.h2o_port}  probe :{pod.api_port}"
                f"  isLeaderNode {view.readiness}  ({view.phase})"
            )
        self.say(f"  peers: {' '.join(status.get('peers') or [])}")
        self.say(f"Flow (the leader's web UI): http://{HOST}:{leader_pod.h2o_port}/flow/index.html")
        self.say(f'Python: h2o.connect(url="http://{HOST}:{leader_pod.h2o_port}")')

    async def stop_all(self) -> None:
        running = [p for p in self.processes if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            self.say(f"stopping {len(running)} pods")
            _, pending = await asyncio.wait(
                [asyncio.create_task(p.wait()) for p in running], timeout=15
            )
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=5)
