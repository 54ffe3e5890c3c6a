"""checkov's Kubernetes and secrets checks on the manifests: only the accepted findings remain.

Every finding checkov reports on ``docker/kubernetes/*.yaml`` must be in ``ACCEPTED`` with its
reason (the README's "Security checks" lists the same), and every accepted one must still be
reported, so a fix, or a new finding, shows up here. ``h2o-compatible.yaml`` is H2O's
documented StatefulSet with only the image changed, and keeps that shape on purpose.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from k8s_sim.manifests import MANIFEST_DIR, manifest_files

REPO = Path(__file__).resolve().parent.parent
#: Kept as H2O documents it, so that it shows what changes (only the image) and nothing more.
UNCHECKED = {"h2o-compatible.yaml"}

_DIGEST = "images are built from docker/Dockerfile and tagged by H2O version; pin by digest on push"
_PULL = "IfNotPresent with a versioned tag, so a locally built or preloaded image works"
#: (file, check id) -> why it stays.
ACCEPTED = {
    ("h2o-cluster.yaml", "CKV_K8S_43"): _DIGEST,
    ("h2o-cluster.yaml", "CKV_K8S_15"): _PULL,
    ("h2o-secured.yaml", "CKV_K8S_43"): _DIGEST,
    ("h2o-secured.yaml", "CKV_K8S_15"): _PULL,
    ("h2o-sidecar.yaml", "CKV_K8S_43"): _DIGEST,
    ("h2o-sidecar.yaml", "CKV_K8S_15"): _PULL,
    ("h2o-sidecar.yaml", "CKV_K8S_9"): (
        "the readiness probe is on the probes container, a native sidecar (an init container "
        "with restartPolicy: Always) that checkov does not look at; it answers for the pod"
    ),
}


def checkov_binary() -> str | None:
    """checkov from its own venv (``make``), else from PATH."""
    own = REPO / ".venv-checkov" / "bin" / "checkov"
    if own.is_file():
        return str(own)
    return shutil.which("checkov")


def findings(binary: str, files: list[Path]) -> set[tuple[str, str]]:
    """(file name, check id) of every failed check."""
    command = [binary, "--framework", "kubernetes", "secrets", "-o", "json", "--compact"]
    command += ["--quiet", "--skip-download"]
    for path in files:
        command += ["-f", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    reports = json.loads(done.stdout)
    failed = set()
    for report in reports if isinstance(reports, list) else [reports]:
        for check in report.get("results", {}).get("failed_checks", []):
            failed.add((Path(check["file_path"]).name, check["check_id"]))
    return failed


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_only_accepted_findings_remain() -> None:
    """checkov fails exactly the accepted checks on the manifests, nothing else."""
    binary = checkov_binary()
    if binary is None:
        pytest.skip("checkov is not installed: `make .venv-checkov/.installed`, or put it on PATH")
    files = [path for path in manifest_files() if path.name not in UNCHECKED]
    assert {path.parent for path in files} == {MANIFEST_DIR}
    found = findings(binary, files)
    assert found - set(ACCEPTED) == set(), "new findings: fix them or accept them with a reason"
    assert set(ACCEPTED) - found == set(), "accepted findings that are gone: drop them"


def test_every_accepted_finding_is_in_the_readme() -> None:
    """The README lists each accepted finding with the file it is in."""
    section = (REPO / "README.md").read_text().split("### Security checks", 1)[1]
    section = section.split("\n## ", 1)[0]
    for name, check in ACCEPTED:
        line = next((row for row in section.splitlines() if f"`{check}`" in row), "")
        assert name in line, f"{check} in {name} is not in the README's security checks"
