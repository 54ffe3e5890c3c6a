"""The lifecycle of ``run`` as a table: what follows each state's outcome, and the exit status.

``Entrypoint.decide`` is the one place that says it; these tests read it without running any
step, for both paths (without and with the early start).
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.commands.lifecycle import (
    EARLY_PATH,
    PLAIN_PATH,
    Done,
    Exit,
    Failed,
    JvmExited,
    State,
    StopCause,
    Stopped,
    Stopping,
)
from h2o_k8s_discovery.commands.run import Entrypoint
from h2o_k8s_discovery.config.settings import Settings

ENV = {
    "H2O_KUBERNETES_SERVICE_DNS": "h2o.default.svc.cluster.local",
    "POD_IP": "10.0.0.5",
}


def entrypoint(*, early: bool) -> Entrypoint:
    env = ENV | {"H2O_JVM_EARLY_START": "true" if early else "false"}
    return Entrypoint(Settings.from_env(env), [], env)


def test_each_path_goes_through_its_states_in_order() -> None:
    """Every step done: each state leads to the next one of its path, up to ``run``."""
    for early, path in ((False, PLAIN_PATH), (True, EARLY_PATH)):
        pod = entrypoint(early=early)
        assert pod.path == path
        walked = [pod.at]
        while walked[-1] is not State.RUN:
            decided = pod.decide(walked[-1], Done())
            assert isinstance(decided, State)
            walked.append(decided)
        assert tuple(walked) == path


@pytest.mark.parametrize("state", [State.SERVE_PROBES, State.FIND_PEERS, State.LAUNCH])
def test_without_the_early_start_a_failure_is_the_exit_status(state: State) -> None:
    """No JVM waits: a failed step ends the pod with that step's status."""
    pod = entrypoint(early=False)
    assert pod.decide(state, Failed(exit_codes.LOOKUP_FAILED)) == Exit(exit_codes.LOOKUP_FAILED)


def test_a_stop_signal_ends_with_128_plus_the_signal() -> None:
    """Stopped before H2O has its peers: 128 + the first stop signal (SIGTERM if none)."""
    pod = entrypoint(early=False)
    assert pod.decide(State.FIND_PEERS, Stopped()) == Exit(128 + signal.SIGTERM)
    pod.stop_signal = signal.SIGINT
    assert pod.decide(State.FIND_PEERS, Stopped()) == Exit(128 + signal.SIGINT)


@pytest.mark.parametrize("state", [State.SERVE_PROBES, State.FIND_PEERS, State.HAND_OVER])
def test_with_the_early_start_an_end_before_the_hand_over_discards_the_jvm(state: State) -> None:
    """The waiting JVM is killed first; the pod ends with the step's status, or the JVM's own
    when it ended by itself."""
    pod = entrypoint(early=True)
    assert pod.decide(state, Failed(exit_codes.PORT_IN_USE)) is State.DISCARD
    killed = JvmExited(128 + signal.SIGKILL, by_itself=False)
    assert pod.decide(State.DISCARD, killed) == Exit(exit_codes.PORT_IN_USE)
    assert pod.decide(State.DISCARD, JvmExited(1)) == Exit(1)


def test_an_early_launch_that_fails_has_nothing_to_discard() -> None:
    """No JVM runs when the pipe or the launch failed: the status is the exit status."""
    pod = entrypoint(early=True)
    assert pod.decide(State.LAUNCH_EARLY, Failed(exit_codes.FLATFILE)) == Exit(exit_codes.FLATFILE)


async def test_the_jvm_status_is_passed_on_unless_the_cloud_was_lost_or_never_formed() -> None:
    """A signal's stop passes on the JVM's status; a lost cloud is 70, one never formed 69."""
    pod = entrypoint(early=False)
    assert pod.decide(State.RUN, JvmExited(143)) == Exit(143)
    done: asyncio.Task[int] = asyncio.create_task(asyncio.sleep(0, 143))
    expected = {
        StopCause.SIGNAL: 143,
        StopCause.CLOUD_LOST: exit_codes.CLOUD_LOST,
        StopCause.NOT_FORMED: exit_codes.LOOKUP_FAILED,
    }
    for cause, status in expected.items():
        pod.stopping = Stopping(cause, done)
        assert pod.decide(State.RUN, JvmExited(143)) == Exit(status)
    await done
