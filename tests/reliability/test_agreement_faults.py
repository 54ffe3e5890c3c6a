"""DNS changing under a running agreement, through the real ``run`` command.

The pod at 127.0.0.1 is published with a second peer, a simulated pod (a network namespace,
``k8s_sim/pods.py``) where nothing listens, so it never answers ``/peers`` (a second address on
loopback would reach this very pod's probe server, which listens on every address): the
agreement cannot complete, so the test sees what the pod does with each fresh DNS answer
while it waits. Without an expected count nothing tells a whole view from a partial one; the
set must never shrink, or the pod would start a cloud of one and answer 200.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from h2o_k8s_discovery import exit_codes
from k8s_sim.pods import PodNetwork
from tests.reliability.conftest import Launch
from tests.support.dns_server import DnsServer
from tests.support.reliability import SERVICE, Pod, root_only, wait_for

pytestmark = root_only

#: No expected count; the lookup ends after 1 s with both peers, the agreement has 3 s more.
NO_COUNT = {"H2O_NODE_LOOKUP_TIMEOUT": "1", "H2O_NODE_AGREEMENT_TIMEOUT": "3"}


@pytest.fixture
def silent_ip() -> Iterator[str]:
    """The address of a simulated pod that serves nothing: every connection is refused."""
    with PodNetwork() as network:
        yield network.add_pod("silent").ip


def agreeing_pod(launch: Launch, dns: DnsServer, silent_ip: str) -> Pod:
    """A pod without an expected count that is waiting for the silent peer to agree."""
    dns.set_records(SERVICE, a=["127.0.0.1", silent_ip])
    pod = launch("cloud", env=NO_COUNT, unset=["H2O_NODE_EXPECTED_COUNT"])
    wait_for(lambda: "waiting for the peers to agree" in pod.log(), 15, "the agreement")
    return pod


def peers_of(pod: Pod) -> set[str] | None:
    status = pod.status()
    return None if status is None else set(status["peers"])


def polls_after(dns: DnsServer, count: int) -> bool:
    """True once ``count`` more queries reached the server since its last ``reset_stats``."""
    return dns.stats.udp >= count


@pytest.mark.parametrize(
    "answer",
    [pytest.param([], id="empty"), pytest.param(["127.0.0.1"], id="only-this-pod")],
)
def test_agreement_never_shrinks_without_an_expected_count(
    launch: Launch, dns: DnsServer, silent_ip: str, answer: list[str]
) -> None:
    """An empty answer, or one naming this pod alone, keeps the set: no cloud of one, exit 69."""
    pod = agreeing_pod(launch, dns, silent_ip)
    if answer:
        dns.set_records(SERVICE, a=answer)
    else:
        dns.remove(SERVICE)
    dns.reset_stats()
    wait_for(lambda: polls_after(dns, 3), 5, "three polls of the changed answer")
    assert peers_of(pod) == {"127.0.0.1:54321", f"{silent_ip}:54321"}
    assert pod.probe() == 200  # still looking up: ready until formed, as H2O
    assert pod.wait(15) == exit_codes.LOOKUP_FAILED
    assert not pod.java_started()
    log = pod.log()
    assert f"the peers did not agree in time: 1 agree, 1 do not answer ({silent_ip}:54321)" in log
    pod.assert_clean_exit()


def test_agreement_grows_with_a_new_pod_without_an_expected_count(
    launch: Launch, dns: DnsServer, silent_ip: str
) -> None:
    """A fresh answer holding every peer and one more replaces the set while the peers agree."""
    pod = agreeing_pod(launch, dns, silent_ip)
    dns.set_records(SERVICE, a=["127.0.0.1", silent_ip, "198.18.255.254"])
    grown = {"127.0.0.1:54321", f"{silent_ip}:54321", "198.18.255.254:54321"}
    wait_for(lambda: peers_of(pod) == grown, 5, "the grown set")
    assert pod.wait(15) == exit_codes.LOOKUP_FAILED
    assert not pod.java_started()
    pod.assert_clean_exit()
