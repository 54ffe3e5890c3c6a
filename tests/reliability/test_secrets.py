"""Passwords given to H2O never leave the pod through the entrypoint's log or HTTP answers.

A keystore password passed after ``--`` (``-jks_pass``), a ``-D...password=`` JVM option in
JAVA_OPTS, and the same in a JAVA_OPTS the entrypoint refuses. The JVM itself gets them, of
course (the stand-in records its argv); the entrypoint must not repeat them. The watcher's own
password (``H2O_REST_PASSWORD_FILE``) is the same one here, so it is hunted for as well; and a
password file that cannot be used stops ``run`` at start, without showing any password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.reliability.conftest import Launch
from tests.support.paths import PYTHONPATH
from tests.support.reliability import LEADER_PATH, SERVICE, Pod, http_get, wait_for
from tests.support.tls_material import make_keystore, new_password, secret_file

JKS_SECRET = "jks-s3cr3t-Pa55"  # noqa: S105 - a made-up password the test hunts for
OPTS_SECRET = "opts-s3cr3t-Pa55"  # noqa: S105 - a made-up password the test hunts for
LOGIN_CONF = "realm.properties"


def secret_pod(launch: Launch, tmp_path: Path) -> Pod:
    """A forming pod given both secrets, at DEBUG level so every log line is written.

    ``-hash_login`` and ``-jks`` need the watcher's login and a CA (or ``run`` exits 2): the
    login's password is the same secret, and the CA a real certificate.
    """
    realm = tmp_path / LOGIN_CONF
    realm.write_text(f"admin: {JKS_SECRET}\n")
    ca = make_keystore(tmp_path / "tls", "h2o", ["127.0.0.1"]).ca_pem
    pod = launch(
        "trap",
        env={
            "JAVA_OPTS": f"-Xmx1g -Djavax.net.ssl.keyStorePassword={OPTS_SECRET}",
            "H2O_DISCOVERY_LOG_LEVEL": "DEBUG",
            "H2O_REST_USER": "admin",
            "H2O_REST_PASSWORD_FILE": str(secret_file(tmp_path, "rest-password", JKS_SECRET)),
            "H2O_REST_CA_FILE": str(ca),
        },
        args=[
            "-jks",
            "/etc/h2o/keystore.jks",
            "-jks_pass",
            JKS_SECRET,
            "-hash_login",
            "-login_conf",
            str(realm),
        ],
    )
    pod.wait_phase("forming")
    wait_for(pod.java_ready, 10, "the stand-in JVM")
    argv = json.loads((pod.evidence / "argv.json").read_text())["argv"]
    assert JKS_SECRET in argv, "the JVM itself must get the password"
    return pod


def test_http_answers_never_show_secrets(launch: Launch, tmp_path: Path) -> None:
    """/status, /peers, /metrics, /healthz and the probe carry neither password."""
    pod = secret_pod(launch, tmp_path)
    for path in ("/status", "/peers", "/metrics", "/healthz", LEADER_PATH):
        answer = http_get(pod.api_port, path)
        assert answer is not None, path
        body = answer[1].decode(errors="replace")
        assert JKS_SECRET not in body, path
        assert OPTS_SECRET not in body, path


def test_h2o_argument_password_stays_out_of_the_log(launch: Launch, tmp_path: Path) -> None:
    """The value after ``-jks_pass`` never appears in the entrypoint's log."""
    pod = secret_pod(launch, tmp_path)
    assert "-jks_pass" in pod.log()
    assert JKS_SECRET not in pod.log()


def test_java_opts_password_stays_out_of_the_log(launch: Launch, tmp_path: Path) -> None:
    """A ``-Djavax.net.ssl.keyStorePassword=`` value never appears in the entrypoint's log."""
    pod = secret_pod(launch, tmp_path)
    assert "-Djavax.net.ssl.keyStorePassword=" in pod.log()
    assert OPTS_SECRET not in pod.log()


def test_refused_java_opts_is_not_echoed_with_its_password(tmp_path: Path) -> None:
    """A JAVA_OPTS refused for its quoting: exit 2 naming JAVA_OPTS, without the password."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": PYTHONPATH,
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_FLATFILE": str(tmp_path / "flatfile"),
        "JAVA_OPTS": f"-Djavax.net.ssl.keyStorePassword={OPTS_SECRET} -Dname='unclosed",
    }
    done = subprocess.run(
        [sys.executable, "-m", "h2o_k8s_discovery", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "JAVA_OPTS" in done.stderr
    assert OPTS_SECRET not in done.stderr + done.stdout


def run_console(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    """``h2o-k8s-discovery run -- ARGS`` as a container starts it, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "h2o_k8s_discovery", "run", "--", *args],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": PYTHONPATH, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_password_file_exits_2(tmp_path: Path) -> None:
    """H2O_REST_PASSWORD_FILE naming no file: exit 2 naming the variable, nothing started."""
    done = run_console(
        {
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_FLATFILE": str(tmp_path / "flatfile"),
            "H2O_REST_USER": "admin",
            "H2O_REST_PASSWORD_FILE": str(tmp_path / "absent"),
        },
        ["-hash_login", "-login_conf", str(tmp_path / LOGIN_CONF)],
    )
    assert done.returncode == 2, done.stderr
    assert "H2O_REST_PASSWORD_FILE=" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "flatfile").exists()


def test_wrong_keystore_password_file_exits_2(tmp_path: Path) -> None:
    """H2O_JKS_PASSWORD_FILE that does not open -jks's keystore: exit 2, no password shown."""
    right, wrong = new_password(), new_password()
    keystore = make_keystore(tmp_path, "h2o", ["127.0.0.1"], password=right)
    done = run_console(
        {
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_FLATFILE": str(tmp_path / "h2o" / "flatfile"),
            "H2O_REST_CA_FILE": str(keystore.ca_pem),
            "H2O_JKS_PASSWORD_FILE": str(secret_file(tmp_path, "jks-password", wrong)),
        },
        ["-jks", str(keystore.path)],
    )
    assert done.returncode == 2, done.stderr
    assert "H2O_JKS_PASSWORD_FILE=" in done.stderr
    assert "Traceback" not in done.stderr
    assert right not in done.stderr + done.stdout
    assert wrong not in done.stderr + done.stdout
    assert not (tmp_path / "h2o" / "rest-keystore.p12").exists()
