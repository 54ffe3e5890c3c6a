"""Run a pod inside a fresh network namespace whose IPv6 is switched off, and report on it.

Meant to run as ``unshare --net python in_net_ns.py --report R --log L -- COMMAND...``. Brings
``lo`` up, disables IPv6 (per namespace), starts the embedded DNS server on 127.0.0.1 publishing
``--service`` with one pod, 127.0.0.1, and starts COMMAND with ``H2O_DNS_NAMESERVER`` pointing
at it. Once ``/status`` says ``forming`` it asks the readiness probe, sends SIGTERM and writes
the probe's answer and the exit status to the report.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.dns_server import ThreadedDnsServer


def get(port: int, path: str) -> tuple[int, bytes] | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        connection.close()


def phase(port: int) -> str | None:
    answer = get(port, "/status")
    return None if answer is None else str(json.loads(answer[1])["phase"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--service", required=True)
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for interface in ("all", "default", "lo"):
        Path(f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6").write_text("1\n")
    report: dict[str, object] = {}
    with ThreadedDnsServer("127.0.0.1") as dns:
        dns.set_records(args.service, a=["127.0.0.1"])
        env = {**os.environ, "H2O_DNS_NAMESERVER": f"127.0.0.1:{dns.port}"}
        with args.log.open("wb") as log:
            pod = subprocess.Popen(args.command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while phase(args.api_port) != "forming" and time.monotonic() < deadline:
                time.sleep(0.02)  # polling the pod's own status, with a deadline
            answer = get(args.api_port, "/kubernetes/isLeaderNode")
            report["probe"] = None if answer is None else answer[0]
            pod.send_signal(signal.SIGTERM)
            report["status"] = pod.wait(timeout=20)
        finally:
            if pod.poll() is None:
                pod.kill()
                pod.wait()
    args.report.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
