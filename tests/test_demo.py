"""The demo as a newcomer runs it: one command, a real local cluster, a clear summary."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.net import free_port_pair, free_port_run


def demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h2o_k8s_discovery", "demo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.mark.slow
def test_demo_forms_a_cluster() -> None:
    """``demo --exit-when-ready`` forms one cloud of 3 with one leader and reports it."""
    h2o, api = free_port_run(6), free_port_run(3)  # H2O ports and their internal ports; probes
    done = demo("--exit-when-ready", "--nodes", "3", "--h2o-port", str(h2o), "--api-port", str(api))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    leader = re.search(r"H2O cloud formed: 3 members, (127\.0\.0\.1:\d+) leads", out)
    assert leader is not None, out
    codes = re.findall(r"isLeaderNode (\d+)", out)
    assert sorted(codes) == ["200", "404", "404"]
    assert f"peers: 127.0.0.1:{h2o} 127.0.0.1:{h2o + 2} 127.0.0.1:{h2o + 4}" in out
    assert f"http://{leader.group(1)}/flow/index.html" in out
    assert "Traceback" not in done.stderr


def test_port_in_use_is_a_clear_error() -> None:
    """A port the demo needs is taken: it says which one and exits 1 before starting anything."""
    jar = ensure_h2o_jar(progress=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = demo(
            "--exit-when-ready",
            "--nodes",
            "1",
            "--h2o-port",
            str(free_port_pair()),
            "--api-port",
            str(port),
            "--jar",
            str(jar),
        )
    assert done.returncode == 1
    assert f"port {port} (h2o-0's probe port) is in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    """Without java on PATH the demo says what to install."""
    env = {**os.environ, "PATH": str(tmp_path)}
    done = demo("--exit-when-ready", "--jar", str(ensure_h2o_jar(progress=False)), env=env)
    assert done.returncode == 1
    assert "java is not on PATH" in done.stderr
