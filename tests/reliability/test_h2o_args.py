"""h2o.jar arguments after ``run --`` that contradict what ``run`` sets, through the real command.

Each refused one exits 2 before anything starts, naming the argument and what to set instead;
``-context_path`` is followed instead: the stand-in JVM serves ``/3/Cloud`` only under it, as
H2O does, so the pod becomes Ready only if the watcher reads it there.
"""

from __future__ import annotations

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.config.h2o_args import REFUSED
from tests.reliability.conftest import Launch
from tests.support.reliability import listening_on, wait_for

#: A value for each refused option that takes one (the others are flags).
VALUES = {
    "flatfile": "/tmp/other",
    "port": "54999",
    "baseport": "54999",
    "ip": "10.0.0.9",
    "network": "10.0.0.0/8",
    "name": "other-cloud",
}
#: What each message tells the user to set or do instead.
INSTEAD = {
    "flatfile": "H2O_FLATFILE",
    "port": "H2O_PORT",
    "baseport": "H2O_PORT",
    "ip": "POD_IP",
    "network": "POD_IP",
    "name": "H2O_CLOUD_NAME",
    "client": "never a member",
    "disable_web": "/3/Cloud",
}

#: (the arguments after --, the one refused, what the message says to do instead)
REFUSED_ARGS = [
    pytest.param(
        [f"-{name}", *([VALUES[name]] if name in VALUES else [])],
        f"-{name}",
        INSTEAD[name],
        id=name,
    )
    for name in REFUSED
] + [
    pytest.param(["--port", "54999"], "--port", "H2O_PORT", id="double-dash-port"),
    pytest.param(
        ["-Xss", "-log_level", "INFO", "-name", "x"], "-name", "H2O_CLOUD_NAME", id="among-others"
    ),
]


@pytest.mark.parametrize(("args", "refused", "instead"), REFUSED_ARGS)
def test_contradicting_argument_exits_2_and_names_it(
    launch: Launch, args: list[str], refused: str, instead: str
) -> None:
    """A contradicting argument: exit 2, its name and the fix on stderr, no port, no JVM."""
    pod = launch("cloud", args=args)
    assert pod.wait() == exit_codes.USAGE
    log = pod.log()
    assert f"h2o.jar argument {refused} after --" in log
    assert instead in log
    assert "Traceback" not in log
    assert not pod.java_started()
    assert not listening_on(pod.api_port)
    assert not pod.flatfile.exists()


def test_every_contradiction_is_reported_at_once(launch: Launch) -> None:
    """Two contradicting arguments are both named in one run."""
    pod = launch("cloud", args=["-port", "1", "-client"])
    assert pod.wait() == exit_codes.USAGE
    log = pod.log()
    assert "h2o.jar argument -port after --" in log
    assert "h2o.jar argument -client after --" in log


def test_web_ip_other_than_the_pod_ip_exits_2(launch: Launch) -> None:
    """``-web_ip`` elsewhere than POD_IP would hide /3/Cloud from the probes: exit 2."""
    pod = launch("cloud", args=["-web_ip", "127.0.0.2"])
    assert pod.wait() == exit_codes.USAGE
    assert "h2o.jar argument -web_ip 127.0.0.2 after --" in pod.log()
    assert not pod.java_started()


def test_web_ip_equal_to_the_pod_ip_is_passed_on(launch: Launch) -> None:
    """``-web_ip`` naming POD_IP contradicts nothing: the pod forms and is Ready."""
    pod = launch("cloud", args=["-web_ip", "127.0.0.1"])
    pod.wait_phase("formed")
    assert pod.probe() == 200


@pytest.mark.parametrize("path", ["h2o", "/h2o", "/h2o/api"])
def test_context_path_is_followed_by_the_watcher(launch: Launch, path: str) -> None:
    """Under ``-context_path`` the watcher reads /3/Cloud there: the cloud forms, 200."""
    pod = launch("cloud", args=["-context_path", path])
    pod.wait_phase("formed")
    assert pod.probe() == 200
    assert pod.process.poll() is None


def test_context_path_of_a_slash_is_the_root(launch: Launch) -> None:
    """``-context_path /`` is no context path, for H2O and for the watcher alike."""
    pod = launch("cloud", args=["-context_path", "/"])
    pod.wait_phase("formed")
    wait_for(lambda: pod.probe() == 200, 5, "readiness")
