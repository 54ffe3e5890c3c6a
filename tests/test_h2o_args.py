"""Which h2o.jar arguments after ``run --`` are refused, and what ``run`` follows of the rest."""

from __future__ import annotations

import ipaddress

import pytest

from h2o_k8s_discovery.config.h2o_args import H2OArgs, normalise_context_path, read_h2o_args
from h2o_k8s_discovery.errors import ConfigError

POD_IP = ipaddress.ip_address("10.0.0.5")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("h2o", "/h2o"), ("/h2o", "/h2o"), ("/", ""), ("/ ", ""), ("a/b", "/a/b")],
)
def test_context_path_is_normalised_as_h2o_does(raw: str, normalised: str) -> None:
    """A leading slash is added, and a slash alone means no context path."""
    assert normalise_context_path(raw) == normalised


def test_arguments_that_contradict_nothing_pass() -> None:
    """Log, memory and password options are H2O's business: nothing is refused or followed."""
    args = ["-log_dir", "/tmp/l", "-nthreads", "4", "-jks_pass", "x", "-port_offset", "2"]
    assert read_h2o_args(args, POD_IP) == H2OArgs()


def test_the_last_context_path_wins_as_in_h2o() -> None:
    """H2O takes the last of repeated options; so does the watcher."""
    assert read_h2o_args(["-context_path", "a", "--context_path", "b"], None).context_path == "/b"


def test_web_ip_is_compared_as_an_address() -> None:
    """``-web_ip`` naming the pod's address in another spelling is the same address."""
    pod_ip = ipaddress.ip_address("fd00::a")
    assert read_h2o_args(["-web_ip", "fd00:0:0:0:0:0:0:a"], pod_ip) == H2OArgs()


@pytest.mark.parametrize(
    "args", [["-web_ip"], ["-web_ip", "not-an-ip"], ["-web_ip", "10.0.0.6"]], ids=str
)
def test_web_ip_elsewhere_or_unknown_is_refused(args: list[str]) -> None:
    """A missing, unparsable or other ``-web_ip`` is one problem naming it."""
    with pytest.raises(ConfigError) as caught:
        read_h2o_args(args, POD_IP)
    assert caught.value.problems[0].startswith(f"h2o.jar argument {' '.join(args)} after --")


def test_web_ip_without_pod_ip_is_refused() -> None:
    """Without POD_IP the address H2O binds is not known before start: refused, saying why."""
    with pytest.raises(ConfigError, match="set POD_IP to the same address"):
        read_h2o_args(["-web_ip", "10.0.0.5"], None)


def test_every_problem_is_listed() -> None:
    """Each refused argument is its own problem, in order."""
    with pytest.raises(ConfigError) as caught:
        read_h2o_args(["-ip", "1.2.3.4", "-name", "x", "--flatfile", "f"], POD_IP)
    assert [p.split(" after")[0] for p in caught.value.problems] == [
        "h2o.jar argument -ip",
        "h2o.jar argument -name",
        "h2o.jar argument --flatfile",
    ]
