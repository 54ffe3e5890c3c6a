"""The flatfile's directory missing, read-only, full or out of inodes; the log pipe gone.

Root ignores permission bits, so read-only and full file systems are real ones: a small tmpfs
mounted inside a private mount namespace (``unshare --mount``), which vanishes with it. The
entrypoint runs inside that namespace; a helper lists the directory afterwards, so the test
sees any temp file or partial flatfile left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import Launch
from tests.support.dns_server import DnsServer
from tests.support.paths import CHILDREN, PYTHONPATH
from tests.support.reliability import (
    SERVICE,
    UNSHARE,
    free_port,
    requires_root,
    requires_unshare,
    write_java,
)

FLATFILE = "127.0.0.1:54321\n"


def run_on_tmpfs(
    dns: DnsServer,
    tmp_path: Path,
    options: str,
    *flags: str,
    subdir: str = "",
) -> tuple[dict[str, Any], str, Path]:
    """Run ``run`` with its flatfile on a fresh tmpfs; returns (report, log, evidence dir)."""
    mount = tmp_path / "mnt"
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    java = write_java(tmp_path / "bin")
    jar = tmp_path / "h2o.jar"
    jar.write_bytes(b"stand-in jar")
    flatfile = mount / subdir / "flatfile" if subdir else mount / "flatfile"
    env = {
        "PATH": f"{java.parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": PYTHONPATH,
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_DNS_NAMESERVER": f"{dns.host}:{dns.port}",
        "H2O_NODE_EXPECTED_COUNT": "1",
        "H2O_KUBERNETES_API_PORT": str(free_port()),
        "H2O_JAR": str(jar),
        "H2O_FLATFILE": str(flatfile),
        "POD_IP": "127.0.0.1",
        # The stand-in java reads no flatfile pipe: the JVM starts after the lookup.
        "H2O_JVM_EARLY_START": "false",
        "STAND_IN_MODE": "exit:0",
        "STAND_IN_DIR": str(evidence),
    }
    report_path, log_path = tmp_path / "report.json", tmp_path / "entrypoint.log"
    assert UNSHARE is not None
    done = subprocess.run(
        [
            UNSHARE,
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            str(CHILDREN / "in_mount_ns.py"),
            "--dir",
            str(mount),
            "--options",
            options,
            *flags,
            "--report",
            str(report_path),
            "--log",
            str(log_path),
            "--",
            sys.executable,
            "-m",
            "h2o_k8s_discovery",
            "run",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report, log_path.read_text(), evidence


def test_missing_directory_is_created(launch: Launch, tmp_path: Path) -> None:
    """A flatfile whose directories do not exist yet: they are created and the file written."""
    target = tmp_path / "new" / "deeper" / "flatfile"
    pod = launch("exit:0", env={"H2O_FLATFILE": str(target)})
    assert pod.wait() == 0, pod.log()
    assert target.read_text() == FLATFILE
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["flatfile"]
    pod.assert_clean_exit()


@pytest.mark.parametrize("subdir", ["", "missing"], ids=["existing-dir", "missing-dir"])
@pytest.mark.root
@requires_root
@requires_unshare
def test_read_only_directory_is_73(dns: DnsServer, tmp_path: Path, subdir: str) -> None:
    """A read-only file system under the flatfile: exit 73 naming the cause; no JVM, no file."""
    report, log, evidence = run_on_tmpfs(dns, tmp_path, "size=64k,ro", subdir=subdir)
    assert report["status"] == 73, log
    assert "cannot write the flatfile" in log
    assert "Read-only file system" in log
    assert report["entries"] == {}
    assert not (evidence / "started").exists()
    assert "Traceback" not in log


@pytest.mark.root
@requires_root
@requires_unshare
def test_disk_full_is_73_without_a_partial_file(dns: DnsServer, tmp_path: Path) -> None:
    """A full 4 KiB tmpfs: exit 73 "No space left", no temp file, no partial flatfile, no JVM."""
    report, log, evidence = run_on_tmpfs(dns, tmp_path, "size=4k", "--fill")
    assert report["status"] == 73, log
    assert "No space left on device" in log
    assert list(report["entries"]) == ["filler"]
    assert not (evidence / "started").exists()
    assert "Traceback" not in log


@pytest.mark.root
@requires_root
@requires_unshare
def test_disk_full_keeps_the_old_flatfile_whole(dns: DnsServer, tmp_path: Path) -> None:
    """A full disk with last run's flatfile in place: 73, and the old file is left intact."""
    old = "10.9.9.9:54321\n"
    report, log, _ = run_on_tmpfs(dns, tmp_path, "size=4k", f"--old=flatfile={old}", "--fill")
    assert report["status"] == 73, log
    entries = report["entries"]
    assert entries["flatfile"]["text"] == old
    assert sorted(entries) == ["filler", "flatfile"]


@pytest.mark.root
@requires_root
@requires_unshare
def test_no_inodes_left_is_73(dns: DnsServer, tmp_path: Path) -> None:
    """A file system out of inodes (the temp file cannot be created): 73, nothing left behind."""
    report, log, evidence = run_on_tmpfs(dns, tmp_path, "size=64k,nr_inodes=4", "--fill-inodes")
    assert report["status"] == 73, log
    assert "cannot write the flatfile" in log
    assert all(name.startswith("inode-") for name in report["entries"])
    assert not (evidence / "started").exists()


def test_flatfile_path_is_a_directory(launch: Launch, tmp_path: Path) -> None:
    """H2O_FLATFILE naming a directory: 73 and the temp file beside it is removed."""
    target = tmp_path / "is-a-dir"
    (target / "child").mkdir(parents=True)
    pod = launch("exit:0", env={"H2O_FLATFILE": str(target)})
    assert pod.wait() == 73, pod.log()
    assert "cannot write the flatfile" in pod.log()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".is-a-dir")) == []
    assert not pod.java_started()
    pod.assert_clean_exit()


def test_log_pipe_gone_keeps_the_jvm_status(launch: Launch) -> None:
    """The log collector's pipe closed: the entrypoint still exits with the JVM's status (7)."""
    reader, writer = os.pipe()
    os.close(reader)  # the collector is gone before the first line
    try:
        pod = launch("exit:7", output=writer)
    finally:
        os.close(writer)
    status = pod.wait()
    assert pod.java_started()
    assert status == 7
