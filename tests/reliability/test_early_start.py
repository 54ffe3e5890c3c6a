"""H2O_JVM_EARLY_START: a JVM started before the lookup, waiting on a flatfile pipe, with ``run``
as PID 1 and the stand-in java in ``flatfile`` mode (it reads the flatfile as it starts, as H2O
does during its boot, so on a pipe it waits until the peers are written).

The rule these tests hold: until the peers are handed over, that JVM belongs to no cloud. It gets
exactly the agreed peers or nothing, and whatever ends the lookup (a stop signal, a failed
lookup, the JVM dying) ends the pod as it would have without the early start, leaving nothing.
"""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.discovery.own_address import early_start_address, known_address
from h2o_k8s_discovery.errors import ConfigError
from tests.reliability.conftest import Launch
from tests.support.reliability import SERVICE, root_only, wait_for

EARLY = {"H2O_JVM_EARLY_START": "true"}
#: More pods expected than published: the lookup goes on until stopped or timed out.
NEVER_DONE = {**EARLY, "H2O_NODE_EXPECTED_COUNT": "2"}

pytestmark = root_only


def test_early_jvm_is_handed_the_agreed_peers(launch: Launch) -> None:
    """The JVM starts before the lookup ends, reads exactly the peers through the pipe, and the
    pipe then becomes a plain flatfile with the same content; the cloud forms as usual."""
    pod = launch("flatfile+cloud+trap", env=EARLY, pid_namespace=True)
    wait_for(pod.java_ready, 20, f"the stand-in JVM:\n{pod.log()}")
    assert (pod.evidence / "flatfile").read_text() == "127.0.0.1:54321\n"
    pod.wait_phase("formed")
    assert pod.probe() == 200
    assert stat.S_ISREG(pod.flatfile.stat().st_mode)
    assert pod.flatfile.read_text() == "127.0.0.1:54321\n"
    log = pod.log()
    assert "launching H2O early, to wait for its peers on the flatfile pipe" in log
    assert "(handed to the waiting JVM)" in log
    pod.signal(signal.SIGTERM)
    assert pod.wait() == 143
    assert pod.java_signals() == ["SIGTERM"]
    pod.assert_clean_exit()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_stop_signal_kills_the_waiting_jvm(launch: Launch, signum: signal.Signals) -> None:
    """A stop signal during the lookup: the waiting JVM (no peers yet) is killed at once, not
    given a grace period, and the pod exits 128 + n with no pipe and no process left."""
    pod = launch("flatfile+trap", env=NEVER_DONE, pid_namespace=True)
    wait_for(pod.java_started, 20, f"the stand-in JVM to start:\n{pod.log()}")
    pod.wait_phase("looking-up")
    assert stat.S_ISFIFO(pod.flatfile.stat().st_mode)
    pod.signal(signum)
    assert pod.wait(5) == 128 + signum
    assert not pod.java_ready()  # it never got past reading its flatfile
    assert not pod.flatfile.exists()
    log = pod.log()
    assert f"{signum.name} received before H2O started: stopping" in log
    assert "the waiting H2O JVM was stopped before it was given any peers" in log
    pod.assert_clean_exit()


def test_failed_lookup_kills_the_waiting_jvm(launch: Launch) -> None:
    """Fail closed with an early JVM: exit 69, the JVM killed without ever reading a peer."""
    env = {**NEVER_DONE, "H2O_NODE_LOOKUP_TIMEOUT": "1"}
    pod = launch("flatfile+trap", env=env, pid_namespace=True)
    assert pod.wait() == exit_codes.LOOKUP_FAILED
    assert pod.java_started()
    assert not (pod.evidence / "flatfile").exists()
    assert not pod.flatfile.exists()
    assert "1 peer(s) published instead of the 2 expected" in pod.log()
    pod.assert_clean_exit()


def test_early_jvm_dying_ends_the_lookup(launch: Launch) -> None:
    """A JVM that dies while it waits (bad JAVA_OPTS, say) ends the lookup at once, and the pod
    exits with the JVM's own status instead of looking up for minutes."""
    pod = launch("exit:3", env=NEVER_DONE, pid_namespace=True)
    assert pod.wait(10) == 3
    assert "H2O exited with status 3 before it was given its peers" in pod.log()
    assert not pod.flatfile.exists()
    pod.assert_clean_exit()


def test_early_start_needs_pod_ip(tmp_path: Path) -> None:
    """Without POD_IP and without a usable /etc/hosts line the JVM's own address is unknown
    before the lookup: ``true`` is a usage error naming the setting and the fix."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.1.1 h2o-0\n")
    settings = Settings.from_env({"H2O_KUBERNETES_SERVICE_DNS": SERVICE, **EARLY})
    known = known_address(settings.launch.pod_ip, hostname="h2o-0", hosts_file=hosts)
    with pytest.raises(ConfigError) as refused:
        early_start_address(settings.launch.early_start, known)
    (problem,) = refused.value.problems
    assert problem.startswith("H2O_JVM_EARLY_START=true needs this pod's address")
    assert "set POD_IP" in problem
