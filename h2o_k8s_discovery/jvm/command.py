"""The H2O JVM's command line and environment.

Pure functions, so the exact command ``run`` starts can be checked without starting it. The
one rule that matters most: the JVM never sees H2O's Kubernetes variables, or an h2o.jar >= 3.30
would run its own discovery and bind the probe port itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.config.settings import H2O_K8S_VARIABLES, LaunchSettings
from h2o_k8s_discovery.errors import LaunchError
from h2o_k8s_discovery.peers import IPAddress


def jvm_command(
    launch: LaunchSettings,
    *,
    flatfile: Path,
    port: int,
    own_ip: IPAddress,
    extra_args: Sequence[str] = (),
    startup_options: Sequence[str] = (),
) -> list[str]:
    """``java [cache options] [JAVA_OPTS] -jar JAR -flatfile F -port P -ip IP [-name N] [args]``."""
    command = ["java", *startup_options, *launch.java_opts]
    if own_ip.version == 6:
        command += ipv6_options(launch.java_opts)
    command += ["-jar", str(launch.jar), "-flatfile", str(flatfile)]
    command += ["-port", str(port), "-ip", str(own_ip)]
    if launch.cloud_name is not None:
        command += ["-name", launch.cloud_name]
    return [*command, *extra_args]


#: What H2O needs to run on IPv6. Both: H2O's ``NetworkUtils.isIPv4Preferred()`` reads
#: ``java.net.preferIPv4Addresses`` with a default of true, and with it H2O exits at start
#: ("IPv4 network stack specified but IPv6 address found") even when IPv6 is preferred.
IPV6_PROPERTIES = (
    ("java.net.preferIPv6Addresses", "true"),
    ("java.net.preferIPv4Addresses", "false"),
)


def ipv6_options(java_opts: Sequence[str]) -> list[str]:
    """The ``-D`` options H2O needs on IPv6, except those ``JAVA_OPTS`` already sets (they win)."""
    return [
        f"-D{name}={value}"
        for name, value in IPV6_PROPERTIES
        if not any(_sets_property(option, name) for option in java_opts)
    ]


def _sets_property(option: str, name: str) -> bool:
    return option == f"-D{name}" or option.startswith(f"-D{name}=")


def jvm_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The entrypoint's environment without H2O's Kubernetes variables."""
    return {key: value for key, value in env.items() if key not in H2O_K8S_VARIABLES}


def check_jar(jar: Path) -> None:
    """Fail like a shell would, before spawning: 127 when the jar is missing, 126 unreadable."""
    try:
        found = jar.is_file()
    except OSError as err:  # a path the kernel refuses outright (too long, say)
        raise LaunchError(
            f"the H2O jar {jar} cannot be looked up ({err.strerror}): set H2O_JAR to the jar's "
            "path",
            exit_codes.NOT_FOUND,
        ) from err
    if not found:
        raise LaunchError(
            f"the H2O jar {jar} does not exist: set H2O_JAR to the jar's path",
            exit_codes.NOT_FOUND,
        )
    if not os.access(jar, os.R_OK):
        raise LaunchError(
            f"the H2O jar {jar} is not readable by this user (uid {os.getuid()})",
            exit_codes.NOT_EXECUTABLE,
        )
