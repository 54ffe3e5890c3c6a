"""Stop signals in every phase of a pod's life, once and twice, with ``run`` as PID 1.

Phases, each reached for real and checked from outside before the signal is sent: the lookup
(DNS publishes fewer pods than expected), the JVM starting (the stand-in has not installed its
handlers yet, so a forwarded signal kills it), forming (the stand-in traps signals) and formed
(the stand-in also serves a formed ``/3/Cloud``, so ``/status`` says ``formed`` and the probe
answers 200). The real JVM's "formed" case is the slow test at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from h2o_k8s_discovery.commands.run import Entrypoint
from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.discovery.lookup import PollEvent
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from tests.reliability.conftest import Launch
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.paths import PYTHONPATH
from tests.support.reliability import (
    SERVICE,
    Pod,
    free_port,
    free_port_pair,
    kill_all,
    processes_with,
    requires_root,
    requires_unshare,
    wait_for,
    write_java,
)

STOPS = [signal.SIGTERM, signal.SIGINT]


def start_in_phase(launch: Launch, dns: DnsServer, phase: str) -> Pod:
    """A PID-1 pod that has reached ``phase`` (checked through /status or the stand-in)."""
    if phase == "looking-up":
        pod = launch("exit:0", env={"H2O_NODE_EXPECTED_COUNT": "2"}, pid_namespace=True)
        wait_for(lambda: len(dns.questions()) > 0, 20, "the first DNS query")
        pod.wait_phase("looking-up")
    elif phase == "starting":
        pod = launch("hang", pid_namespace=True)
        wait_for(pod.java_started, 20, "the stand-in JVM to start")
    elif phase == "forming":
        pod = launch("twice", pid_namespace=True)
        wait_for(pod.java_ready, 20, "the stand-in JVM")
        pod.wait_phase("forming")
    else:
        pod = launch("cloud+twice", pid_namespace=True)
        wait_for(pod.java_ready, 20, "the stand-in JVM")
        pod.wait_phase("formed")
        assert pod.probe() == 200
    return pod


@pytest.mark.parametrize("signum", STOPS, ids=lambda s: s.name)
@pytest.mark.parametrize("phase", ["looking-up", "starting", "forming", "formed"])
@pytest.mark.root
@requires_root
@requires_unshare
def test_stop_signal_in_each_phase(
    launch: Launch, dns: DnsServer, phase: str, signum: signal.Signals
) -> None:
    """Lookup: 128 + n and no JVM; later phases: forwarded, and the JVM's own status passed on."""
    pod = start_in_phase(launch, dns, phase)
    pod.signal(signum)
    if phase in ("forming", "formed"):
        # The stand-in exits on the second stop signal: send it once it saw the first.
        wait_for(lambda: pod.java_signals() == [signum.name], 10, "the JVM to see the signal")
        assert pod.probe() == 503
        assert pod.phase() == "stopping"
        pod.signal(signum)
    assert pod.wait() == 128 + signum
    log = pod.log()
    if phase == "looking-up":
        assert not pod.java_started()
        assert f"{signum.name} received before H2O started: stopping" in log
    elif phase == "starting":
        assert pod.java_signals() == []  # died of the forwarded signal, as a starting JVM does
    else:
        assert pod.java_signals() == [signum.name, signum.name]
    pod.assert_clean_exit()


@pytest.mark.parametrize("phase", ["looking-up", "starting", "forming", "formed"])
@pytest.mark.root
@requires_root
@requires_unshare
def test_sigterm_twice_in_a_row(launch: Launch, dns: DnsServer, phase: str) -> None:
    """A second SIGTERM right after the first neither crashes nor changes the outcome."""
    pod = start_in_phase(launch, dns, phase)
    if phase in ("forming", "formed"):
        pod.signal(signal.SIGTERM)
        wait_for(lambda: pod.java_signals() == ["SIGTERM"], 10, "the first SIGTERM forwarded")
        pod.signal(signal.SIGTERM)
        assert pod.wait() == 143
        assert pod.java_signals() == ["SIGTERM", "SIGTERM"]  # the second was forwarded too
    else:
        pod.signal(signal.SIGTERM)
        pod.signal(signal.SIGTERM)
        assert pod.wait() == 143
        assert not pod.java_ready()
    pod.assert_clean_exit()


@pytest.mark.parametrize(
    ("signum", "stops"), [(signal.SIGHUP, True), (signal.SIGQUIT, True), (signal.SIGUSR1, False)]
)
@pytest.mark.root
@requires_root
@requires_unshare
def test_other_signals_during_the_lookup(
    launch: Launch, dns: DnsServer, signum: signal.Signals, stops: bool
) -> None:
    """HUP and QUIT stop a pod still looking up (128 + n); USR1 is ignored and the pod goes on."""
    pod = start_in_phase(launch, dns, "looking-up")
    pod.signal(signum)
    if stops:
        assert pod.wait() == 128 + signum
        assert not pod.java_started()
    else:
        wait_for(lambda: "received before H2O started: ignored" in pod.log(), 10, "the log")
        dns.set_records(SERVICE, a=["127.0.0.1", "127.0.0.2"])
        assert pod.wait() == 0  # the lookup went on, and the stand-in exited 0
        assert pod.java_started()
    pod.assert_clean_exit()


class _SignalledAsTheLookupEnds(Entrypoint):
    """The real entrypoint, whose stop-signal handler runs in the same turn as the last poll."""

    def _on_poll(self, event: PollEvent) -> None:
        super()._on_poll(event)
        if event.peers:
            self._on_signal(signal.SIGTERM)


async def test_stop_signal_as_the_lookup_ends_starts_no_jvm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM handled while the final DNS answer is processed still starts no JVM: 143."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    java = write_java(tmp_path / "bin")
    jar = tmp_path / "h2o.jar"
    jar.write_bytes(b"stand-in jar")
    async with DnsServer("127.0.0.1") as dns:
        dns.set_records(SERVICE, a=["127.0.0.1"])
        env = {
            "PATH": f"{java.parent}:{os.environ['PATH']}",
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_DNS_NAMESERVER": f"127.0.0.1:{dns.port}",
            "H2O_NODE_EXPECTED_COUNT": "1",
            "H2O_KUBERNETES_API_PORT": str(free_port()),
            "H2O_JAR": str(jar),
            "H2O_FLATFILE": str(tmp_path / "flatfile"),
            "POD_IP": "127.0.0.1",
            # The stand-in java reads no flatfile pipe: the JVM starts after the lookup.
            "H2O_JVM_EARLY_START": "false",
            "STAND_IN_MODE": "exit:0",
            "STAND_IN_DIR": str(evidence),
        }
        monkeypatch.setenv("PATH", env["PATH"])  # posix_spawnp searches this process's PATH
        status = await _SignalledAsTheLookupEnds(Settings.from_env(env), [], env).run()
    assert not (evidence / "started").exists(), "a JVM was started after SIGTERM"
    assert status == 143


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_real_jvm_formed_then_sigterm_twice(tmp_path: Path) -> None:
    """A real one-node H2O cloud forms; two SIGTERMs stop it with 143 and leave no java."""
    jar = ensure_h2o_jar(progress=False)
    h2o_port = free_port_pair()
    api_port = free_port()
    java_tmp = tmp_path / "java-tmp"
    ice_root = tmp_path / "ice"
    java_tmp.mkdir()
    ice_root.mkdir()
    marker = str(tmp_path)
    log_path = tmp_path / "entrypoint.log"
    with ThreadedDnsServer("127.0.0.1") as dns:
        dns.set_records(SERVICE, a=["127.0.0.1"])
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": PYTHONPATH,
            "H2O_RELIABILITY_MARKER": marker,
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_DNS_NAMESERVER": f"127.0.0.1:{dns.port}",
            "H2O_NODE_EXPECTED_COUNT": "1",
            "H2O_KUBERNETES_API_PORT": str(api_port),
            "H2O_PORT": str(h2o_port),
            "H2O_JAR": str(jar),
            "H2O_FLATFILE": str(tmp_path / "flatfile"),
            "POD_IP": "127.0.0.1",
            # The stand-in java reads no flatfile pipe: the JVM starts after the lookup.
            "H2O_JVM_EARLY_START": "false",
            "JAVA_OPTS": f"-Xmx512m -Djava.io.tmpdir={java_tmp}",
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "h2o_k8s_discovery",
                    "run",
                    "--",
                    "-ice_root",
                    f"{ice_root}",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pod = Pod(process, tmp_path, tmp_path, log_path, api_port, tmp_path / "flatfile", False)
        try:
            pod.wait_phase("formed", 180)
            assert pod.probe() == 200
            status = pod.status()
            assert status is not None
            assert status["cloud_size"] == 1
            pod.signal(signal.SIGTERM)
            wait_for(lambda: pod.phase() in ("stopping", None), 10, "phase stopping")
            pod.signal(signal.SIGTERM)
            assert pod.wait(30) == 143, pod.log()
            assert "Traceback" not in pod.log()
            wait_for(lambda: not processes_with(marker), 10, "no java left")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            kill_all(processes_with(marker))
