"""Every HTTP endpoint of the real ``run`` and ``sidecar`` processes, as a kubelet and a
Prometheus scraper see them.

In-process tests render with the test process's modules, where ``ssl`` is importable; the real
commands keep OpenSSL out (``footprint.py``), which is how ``/metrics`` answered 500 there and
nowhere else. So each answer here comes from a console command started as a subprocess, on a
formed cloud (the stand-in JVM serves ``/3/Cloud``), and the metrics are parsed in this process
with prometheus_client's strict OpenMetrics parser.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.reliability.conftest import Launch
from tests.support.dns_server import ThreadedDnsServer
from tests.support.paths import CHILDREN, PYTHONPATH
from tests.support.reliability import (
    LEADER_PATH,
    SERVICE,
    PodFactory,
    proc_status_kib,
    start_sidecar,
    wait_for,
)

PREFIX = "h2o_k8s_discovery"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Live:
    """A running command: its pid, probe port, log, and its RSS before anything scraped it."""

    command: str
    pid: int
    api_port: int
    log_path: Path
    rss_before_scrape_kib: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module", params=["run", "sidecar"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A formed, ready ``run`` or ``sidecar``, shared by the tests that only read answers."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "sidecar":
        sidecar = start_sidecar(root)
        try:
            sidecar.wait_phase("formed")
            pid = sidecar.process.pid
            yield Live("sidecar", pid, sidecar.api_port, sidecar.log_path, rss(pid))
        finally:
            sidecar.close()
        return
    with ThreadedDnsServer("127.0.0.1") as dns:
        dns.set_records(SERVICE, a=["127.0.0.1"])
        factory = PodFactory(dns, root)
        try:
            pod = factory.start("cloud+trap")
            pod.wait_phase("formed")
            yield Live("run", pod.pid(), pod.api_port, pod.log_path, rss(pod.pid()))
        finally:
            factory.close()


def rss(pid: int) -> int:
    return proc_status_kib(pid, "VmRSS")


def request(port: int, method: str, path: str) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_probes_answer_as_the_kubelet_expects(live: Live) -> None:
    """Readiness 200 on the formed cloud's leader, liveness 200, both text/plain with no body."""
    for path in (LEADER_PATH, "/healthz"):
        status, content_type, body = request(live.api_port, "GET", path)
        assert (status, body) == (200, b""), path
        assert content_type.startswith("text/plain"), path


def test_status_and_peers_are_json(live: Live) -> None:
    """/status and /peers are JSON describing the formed cloud of this one node."""
    status, content_type, body = request(live.api_port, "GET", "/status")
    assert status == 200
    assert content_type.startswith("application/json")
    described = json.loads(body)
    assert described["phase"] == "formed"
    assert described["is_leader"] is True
    assert described["cloud_size"] == 1
    assert described["damage"] is None
    status, content_type, body = request(live.api_port, "GET", "/peers")
    assert status == 200
    assert content_type.startswith("application/json")
    view = json.loads(body)
    assert view["phase"] == "formed"
    assert view["peers"] == [view["self"]]


def test_metrics_parse_as_openmetrics(live: Live) -> None:
    """/metrics answers 200 in OpenMetrics, parsed strictly, with the formed leader's values."""
    status, content_type, body = request(live.api_port, "GET", "/metrics")
    assert status == 200, live.log()
    assert content_type == OPENMETRICS
    parsed = text_string_to_metric_families(body.decode())  # type: ignore[no-untyped-call]
    families = {family.name: family for family in parsed}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert samples[(f"{PREFIX}_phase", ((f"{PREFIX}_phase", "formed"),))] == 1
    assert samples[(f"{PREFIX}_phase", ((f"{PREFIX}_phase", "forming"),))] == 0
    assert samples[(f"{PREFIX}_leader", ())] == 1
    assert samples[(f"{PREFIX}_ready", ())] == 1
    assert samples[(f"{PREFIX}_cloud_size", ())] == 1
    assert samples[(f"{PREFIX}_peers", ())] == 1
    assert samples[(f"{PREFIX}_cloud_damaged", ())] == 0
    assert families[f"{PREFIX}_dns_polls"].type == "counter"
    expected_starts = 1 if live.command == "run" else 0
    assert samples[(f"{PREFIX}_jvm_starts_total", ())] == expected_starts


def test_a_scrape_keeps_openssl_out(live: Live) -> None:
    """After scrapes the process still maps no libssl and has grown by less than 2 MB."""
    for _ in range(5):
        assert request(live.api_port, "GET", "/metrics")[0] == 200
    maps = Path(f"/proc/{live.pid}/maps").read_text()
    assert "libssl" not in maps
    grown = rss(live.pid) - live.rss_before_scrape_kib
    print(f"{live.command}: VmRSS {live.rss_before_scrape_kib} kB before, +{grown} kB after")
    assert grown < 2048


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/nope", 404),
        ("GET", "/kubernetes", 404),
        ("POST", LEADER_PATH, 405),
        ("PUT", "/status", 405),
        ("DELETE", "/peers", 405),
        ("HEAD", "/metrics", 405),
        ("POST", "/healthz", 405),
    ],
)
def test_other_paths_and_methods(live: Live, method: str, path: str, expected: int) -> None:
    """Other paths get 404 and other methods 405, as from H2O."""
    assert request(live.api_port, method, path)[0] == expected


def test_nothing_above_was_an_error(live: Live) -> None:
    """No answer of the module's tests put a traceback or an error line in the log."""
    log = live.log()
    assert "Traceback" not in log
    assert '"level": "error"' not in log


def test_server_error_is_logged_with_its_traceback(launch: Launch) -> None:
    """A failing handler answers 500, logs its traceback once, and the server goes on."""
    faults = CHILDREN / "faults"
    pod = launch(
        "cloud+trap",
        env={"ENTRYPOINT_FAULT": "status", "PYTHONPATH": f"{faults}:{PYTHONPATH}"},
    )
    wait_for(lambda: pod.probe() == 200, 20, f"the probe:\n{pod.log()}")
    assert request(pod.api_port, "GET", "/status") == (
        500,
        "text/plain; charset=utf-8",
        b"internal error\n",
    )
    assert request(pod.api_port, "GET", "/healthz")[0] == 200
    wait_for(lambda: "GET /status failed, answered 500" in pod.log(), 5, "the error line")
    log = pod.log()
    assert log.count("GET /status failed, answered 500; this is a bug") == 1
    assert log.count("Traceback") == 1
    assert "InjectedFault: injected fault (status)" in log
    assert pod.process.poll() is None
