"""The JVM's command line and environment, as pure functions."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.redaction import redacted
from h2o_k8s_discovery.config.settings import LaunchSettings
from h2o_k8s_discovery.errors import LaunchError
from h2o_k8s_discovery.jvm.command import check_jar, jvm_command, jvm_environment


def test_command_line() -> None:
    """java, JAVA_OPTS, -jar, -flatfile, -port, -ip, -name, then the extra arguments."""
    launch = LaunchSettings(jar=Path("/opt/h2o.jar"), java_opts=("-Xmx1g",), cloud_name="c")
    argv = jvm_command(
        launch,
        flatfile=Path("/tmp/f"),
        port=54321,
        own_ip=ipaddress.ip_address("10.0.0.1"),
        extra_args=["-log_level", "WARN"],
    )
    assert argv == [
        "java", "-Xmx1g", "-jar", "/opt/h2o.jar", "-flatfile", "/tmp/f",
        "-port", "54321", "-ip", "10.0.0.1", "-name", "c", "-log_level", "WARN",
    ]  # fmt: skip


def test_ipv6_needs_the_jvm_to_prefer_it() -> None:
    """An IPv6 pod address makes the JVM prefer IPv6 and not IPv4, as H2O needs, before -jar."""
    argv = jvm_command(
        LaunchSettings(), flatfile=Path("f"), port=1, own_ip=ipaddress.ip_address("fd00::1")
    )
    jar = argv.index("-jar")
    assert argv.index("-Djava.net.preferIPv6Addresses=true") < jar
    assert argv.index("-Djava.net.preferIPv4Addresses=false") < jar


def test_ipv4_leaves_the_address_preference_alone() -> None:
    """An IPv4 pod address adds no address preference."""
    argv = jvm_command(
        LaunchSettings(), flatfile=Path("f"), port=1, own_ip=ipaddress.ip_address("10.0.0.1")
    )
    assert not [arg for arg in argv if "preferIPv" in arg]


def test_java_opts_preference_wins() -> None:
    """A preference JAVA_OPTS sets is kept as it is; only the missing one is added."""
    launch = LaunchSettings(java_opts=("-Djava.net.preferIPv6Addresses=false",))
    argv = jvm_command(launch, flatfile=Path("f"), port=1, own_ip=ipaddress.ip_address("fd00::1"))
    assert [arg for arg in argv if "preferIPv" in arg] == [
        "-Djava.net.preferIPv6Addresses=false",
        "-Djava.net.preferIPv4Addresses=false",
    ]


def test_kubernetes_variables_are_removed() -> None:
    """H2O's four variables never reach the JVM; everything else does."""
    env = jvm_environment(
        {
            "H2O_KUBERNETES_SERVICE_DNS": "x",
            "H2O_NODE_LOOKUP_TIMEOUT": "1",
            "H2O_NODE_EXPECTED_COUNT": "3",
            "H2O_KUBERNETES_API_PORT": "8080",
            "HOME": "/tmp",
        }
    )
    assert env == {"HOME": "/tmp"}


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["-jks_pass", "hunter2", "-port", "1"], ["-jks_pass", "***", "-port", "1"]),
        (["-Dssl.keystore.password=hunter2"], ["-Dssl.keystore.password=***"]),
        (["--token=abc", "-name", "x"], ["--token=***", "-name", "x"]),
        (
            ["-hash_login", "-login_conf", "/etc/realm"],
            ["-hash_login", "-login_conf", "/etc/realm"],
        ),
    ],
)
def test_secrets_are_redacted(argv: list[str], shown: list[str]) -> None:
    """Values of password-like options are replaced in what is logged; other words stay."""
    assert redacted(argv) == shown


def test_a_jar_path_the_kernel_refuses_is_127_not_a_traceback(tmp_path: Path) -> None:
    """A file name longer than the file system allows (ENAMETOOLONG from stat) is reported as a
    jar that cannot be found, like a missing one."""
    with pytest.raises(LaunchError) as refused:
        check_jar(tmp_path / ("1" * 300 + ".jar"))
    assert refused.value.exit_status == 127
    assert "cannot be looked up" in str(refused.value)
