"""A bug in ``run`` while the JVM runs: the JVM's process group dies, one traceback, exit 1.

Nothing real raises an unexpected exception in ``run`` (each one found became a fix), so the
fault is planted: ``tests/support/children/faults/sitecustomize.py`` on the pod's PYTHONPATH
makes one function of the package raise, in the main path or in the background watcher.
Everything else is the real command, with an early-started stand-in JVM that has a grandchild
in its process group, as a JVM's own helper processes would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from h2o_k8s_discovery import exit_codes
from tests.reliability.conftest import Launch
from tests.support.paths import CHILDREN, PYTHONPATH
from tests.support.reliability import requires_root, requires_unshare, start_sidecar, wait_for

FAULTS = CHILDREN / "faults"
AS_PID_1 = pytest.param(True, id="pid-1", marks=[pytest.mark.root, requires_root, requires_unshare])


@pytest.mark.parametrize("pid_namespace", [pytest.param(False, id="not-pid-1"), AS_PID_1])
@pytest.mark.parametrize("fault", ["lifecycle", "watcher"])
def test_unexpected_exception_kills_the_jvm_and_exits_1(
    launch: Launch, fault: str, pid_namespace: bool
) -> None:
    """The JVM and its group are killed, the traceback is logged once, the status is 1."""
    pod = launch(
        "group+flatfile+cloud",
        env={
            "H2O_JVM_EARLY_START": "true",
            "ENTRYPOINT_FAULT": fault,
            "PYTHONPATH": f"{FAULTS}:{PYTHONPATH}",
        },
        pid_namespace=pid_namespace,
    )
    assert pod.wait(20) == exit_codes.FAILURE
    log = pod.log()
    assert pod.java_started()
    assert (pod.evidence / "grandchild-ready").exists(), log
    assert log.count("unexpected error: stopping H2O and exiting 1") == 1, log
    assert log.count("Traceback") == 1, log
    assert f"InjectedFault: injected fault ({fault})" in log
    assert "H2O was killed (status 137)" in log
    wait_for(lambda: not pod.leftovers(), 5, f"every process of the pod to be gone:\n{log}")


def test_unexpected_exception_in_the_sidecar_exits_1(tmp_path: Path) -> None:
    """A sidecar whose watcher fails logs the traceback once and exits 1 instead of going stale."""
    sidecar = start_sidecar(
        tmp_path, env={"ENTRYPOINT_FAULT": "watcher", "PYTHONPATH": f"{FAULTS}:{PYTHONPATH}"}
    )
    try:
        assert sidecar.process.wait(timeout=20) == exit_codes.FAILURE
    finally:
        sidecar.close()
    log = sidecar.log()
    assert log.count("unexpected error: the sidecar stops; this is a bug") == 1, log
    assert log.count("Traceback") == 1, log
    assert "InjectedFault: injected fault (watcher)" in log
