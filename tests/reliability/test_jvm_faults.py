"""The JVM misbehaving, with ``run`` as PID 1 of a real PID namespace and a stand-in ``java``.

Each fault is caused for real: a missing or unreadable file, a process that exits, is killed,
ignores SIGTERM or leaves descendants behind. The entrypoint must answer each with the status
the README promises, one clear log line, no traceback and no process left.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from h2o_k8s_discovery import exit_codes
from tests.reliability.conftest import Launch
from tests.support.reliability import (
    NOBODY,
    SETPRIV,
    children_of,
    kill_all,
    root_only,
    wait_for,
    write_java,
)

pytestmark = root_only


def test_java_missing_is_127(launch: Launch) -> None:
    """With no ``java`` on PATH the entrypoint exits 127 naming it; nothing is left running."""
    pod = launch("exit:0", path="/nonexistent", pid_namespace=True)
    assert pod.wait() == 127
    assert "cannot start 'java'" in pod.log()
    pod.assert_clean_exit()


def test_java_not_executable_is_126(launch: Launch, tmp_path: Path) -> None:
    """A ``java`` without the execute bit gives 126 and a message naming it."""
    java = write_java(tmp_path / "broken-bin")
    java.chmod(0o644)
    # Alone on PATH: a PATH search would skip it and find the system's java.
    pod = launch("exit:0", path=str(java.parent), pid_namespace=True)
    assert pod.wait() == 126
    assert "cannot start 'java'" in pod.log()
    pod.assert_clean_exit()


def test_jar_missing_is_127(launch: Launch, tmp_path: Path) -> None:
    """A jar that does not exist gives 127 naming H2O_JAR; java is never started."""
    pod = launch("exit:0", env={"H2O_JAR": str(tmp_path / "gone.jar")}, pid_namespace=True)
    assert pod.wait() == 127
    assert "H2O_JAR" in pod.log()
    assert not pod.java_started()
    pod.assert_clean_exit()


@pytest.mark.skipif(SETPRIV is None, reason="needs setpriv(1) to run the pod as uid 65534")
def test_jar_not_readable_is_126(launch: Launch) -> None:
    """As a non-root user, a jar it cannot read gives 126 and says so; java is never started."""
    # Owned by root with mode 0600: uid 65534 may not read it (root would ignore the mode).
    pod = launch("exit:0", pid_namespace=True, unprivileged=True, jar_mode=0o600)
    jar = pod.workdir / "h2o.jar"
    assert pod.wait() == 126, pod.log()
    assert f"the H2O jar {jar} is not readable by this user (uid {NOBODY})" in pod.log()
    assert not pod.java_started()
    pod.assert_clean_exit()


def test_jvm_exiting_at_once_with_1_gives_1(launch: Launch) -> None:
    """A JVM that fails at start (exit 1) makes the entrypoint exit 1, saying so."""
    pod = launch("exit:1", pid_namespace=True)
    assert pod.wait() == 1
    assert "exited with code 1" in pod.log()
    pod.assert_clean_exit()


def test_jvm_killed_by_sigkill_gives_137(launch: Launch) -> None:
    """A JVM killed from outside with SIGKILL (the OOM killer) makes the entrypoint exit 137."""
    pod = launch("trap", pid_namespace=True)
    wait_for(pod.java_ready, 20, "the stand-in JVM")
    entrypoint = pod.pid()
    wait_for(lambda: children_of(entrypoint), 5, "the JVM process")
    # The shell wrapper exec'd python: the entrypoint's only child is the JVM itself.
    (jvm,) = children_of(entrypoint)
    os.kill(jvm, signal.SIGKILL)
    assert pod.wait() == 137
    assert "killed by SIGKILL (status 137)" in pod.log()
    pod.assert_clean_exit()


def test_jvm_crash_by_sigabrt_gives_134(launch: Launch) -> None:
    """A JVM that aborts (a crash writing hs_err) makes the entrypoint exit 134."""
    pod = launch("self-kill:SIGABRT", pid_namespace=True)
    assert pod.wait() == 134
    pod.assert_clean_exit()


def test_jvm_ignoring_sigterm_is_killed_after_the_grace(launch: Launch) -> None:
    """A JVM that ignores SIGTERM is killed when H2O_SHUTDOWN_GRACE is up: status 137."""
    pod = launch("stubborn", env={"H2O_SHUTDOWN_GRACE": "1"}, pid_namespace=True)
    wait_for(pod.java_ready, 20, "the stand-in JVM")
    sent = time.monotonic()
    pod.signal(signal.SIGTERM)
    assert pod.wait() == 137
    took = time.monotonic() - sent
    assert 1.0 <= took < 3.0, took
    assert pod.java_signals() == ["SIGTERM"]
    assert "sending SIGKILL to its group" in pod.log()
    pod.assert_clean_exit()


def test_jvm_forking_and_exiting_leaves_nothing_as_pid_1(launch: Launch) -> None:
    """As PID 1, a JVM that exits leaving running descendants ends with nothing left behind."""
    pod = launch("fork-exit", pid_namespace=True)
    assert pod.wait() == 0
    assert (pod.evidence / "descendants").read_text().split()
    pod.assert_clean_exit()


def test_orphans_are_reaped_as_pid_1(launch: Launch) -> None:
    """An orphan reparented to the entrypoint is reaped: the stand-in sees no zombie, exits 0."""
    pod = launch("orphans", pid_namespace=True)
    assert pod.wait() == 0
    pod.assert_clean_exit()


def test_jvm_forking_and_exiting_leaves_nothing_when_not_pid_1(launch: Launch) -> None:
    """Not PID 1 (shareProcessNamespace, tini): what the JVM left in its group dies with it."""
    pod = launch("fork-exit:group", pid_namespace=False)
    assert pod.wait() == 0
    try:
        wait_for(lambda: not pod.leftovers(), 3, "the JVM's descendants to be gone")
    finally:
        kill_all(pod.leftovers())


def test_jvm_daemon_in_its_own_session_dies_when_not_pid_1(launch: Launch) -> None:
    """Not PID 1: a daemon the JVM started in a session of its own does not outlive the pod."""
    pod = launch("fork-exit:session", pid_namespace=False)
    assert pod.wait() == 0
    try:
        wait_for(lambda: not pod.leftovers(), 3, "the JVM's daemon to be gone")
    finally:
        kill_all(pod.leftovers())


def test_frozen_jvm_turns_unready_and_is_killed_after_the_grace(launch: Launch) -> None:
    """A formed JVM frozen by SIGSTOP: 503 within 3 s, silent but not lost; SIGTERM gives 137."""
    pod = launch("cloud+trap", env={"H2O_SHUTDOWN_GRACE": "1"}, pid_namespace=True)
    wait_for(pod.java_ready, 20, "the stand-in JVM")
    pod.wait_phase("formed")
    assert pod.probe() == 200
    (jvm,) = children_of(pod.pid())
    os.kill(jvm, signal.SIGSTOP)
    frozen_at = time.monotonic()
    wait_for(lambda: pod.probe() == 503, 5, "readiness to turn 503")
    # /3/Cloud is polled every 0.5 s once formed, each request given 2 s: a hung node (its
    # socket still accepts) is noticed within 2.5 s, a dead one within about 1 s.
    assert time.monotonic() - frozen_at < 3.0
    status = pod.status()
    assert status is not None
    # Silence is no evidence before H2O_CLOUD_LOSS_TIMEOUT (60 s): nothing is stopped.
    assert status["damage"] is None
    assert status["silence"].startswith("the local H2O node has not answered for")
    assert status["phase"] == "formed"
    pod.signal(signal.SIGTERM)
    assert pod.wait() == 137
    assert pod.java_signals() == []  # it never ran again to see the SIGTERM
    pod.assert_clean_exit()


def test_a_cloud_that_never_forms_stops_at_the_formation_deadline(launch: Launch) -> None:
    """A JVM that never reports the full cloud: at ``H2O_CLOUD_FORMATION_TIMEOUT`` H2O is stopped
    (SIGTERM, then its own exit) and ``run`` exits 69 naming the setting, leaving nothing."""
    pod = launch("trap", env={"H2O_CLOUD_FORMATION_TIMEOUT": "1"}, pid_namespace=True)
    wait_for(pod.java_started, 20, "the stand-in JVM")
    assert pod.wait() == exit_codes.LOOKUP_FAILED
    log = pod.log()
    assert "no cloud of 1 formed within 1s of starting H2O (H2O_CLOUD_FORMATION_TIMEOUT)" in log
    assert "the local H2O node does not answer" in log
    assert pod.java_signals() == ["SIGTERM"]
    pod.assert_clean_exit()
