"""The h2o.jar arguments given after ``run --``: which ones contradict ``run``, which it follows.

``run`` builds H2O's command line itself (``jvm/command.py``): ``-flatfile``, ``-port``, ``-ip`` and
``-name``, and it reads the node's ``/3/Cloud`` at the pod's address. H2O takes the last of
repeated options, so an argument after ``--`` that says otherwise wins inside the JVM while the
entrypoint goes on from its own view: the flatfile is not the one written, the port is not the
one watched. The pod is then never Ready and the cause shows only at DEBUG. So each such
argument is refused before anything starts (exit 2, naming it and what to set instead), or
followed consistently: ``-context_path`` moves H2O's REST API, and the watcher reads
``/3/Cloud`` under it; the login options and ``-jks`` are followed by ``rest_security``, which
refuses them without the credentials or the CA the watcher then needs.

H2O's parser (``water.H2O.parseH2OArgumentsTo``) accepts ``-x`` and ``--x`` alike; so do we.
Everything else is passed on unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from h2o_k8s_discovery.errors import ConfigError
from h2o_k8s_discovery.peers import IPAddress

#: Options ``run`` cannot pass on, and what to do instead.
REFUSED: dict[str, str] = {
    "flatfile": "run writes the flatfile from DNS; set H2O_FLATFILE to choose its path",
    "port": "run passes -port itself; set H2O_PORT instead",
    "baseport": "run passes -port, which H2O prefers; set H2O_PORT instead",
    "ip": "run passes -ip itself; set POD_IP instead",
    "network": "run passes -ip, which H2O prefers; set POD_IP instead",
    "name": "run passes -name itself; set H2O_CLOUD_NAME instead",
    "client": "a client node is never a member of the cloud the probes wait for",
    "disable_web": "the probes read the node's /3/Cloud on its REST API",
}


@dataclass(frozen=True, slots=True)
class H2OArgs:
    """What ``run`` follows of the extra arguments."""

    #: H2O's ``-context_path`` as H2O normalises it: ``""`` or ``/path``.
    context_path: str = ""


def read_h2o_args(args: Sequence[str], pod_ip: IPAddress | None) -> H2OArgs:
    """Check the arguments after ``--``; raises ``ConfigError`` listing every contradiction."""
    problems: list[str] = []
    context_path = ""
    for index, arg in enumerate(args):
        name = _option_name(arg)
        value = args[index + 1] if index + 1 < len(args) else None
        if name in REFUSED:
            problems.append(f"h2o.jar argument {arg} after --: {REFUSED[name]}")
        elif name == "web_ip" and not _same_address(value, pod_ip):
            problems.append(
                f"h2o.jar argument {' '.join(args[index : index + 2])} after --: the probes "
                "read /3/Cloud at the pod's address, where H2O would then not listen; drop "
                "-web_ip, or set POD_IP to the same address"
            )
        elif name == "context_path" and value is not None:
            context_path = normalise_context_path(value)
    if problems:
        raise ConfigError(problems)
    return H2OArgs(context_path=context_path)


def normalise_context_path(value: str) -> str:
    """``-context_path`` as H2O reads it: a leading ``/`` added, ``/`` alone meaning none."""
    if not value.startswith("/"):
        return "/" + value
    return "" if value.strip() == "/" else value


def _option_name(arg: str) -> str | None:
    if arg.startswith("--"):
        return arg[2:]
    if arg.startswith("-"):
        return arg[1:]
    return None


def _same_address(value: str | None, pod_ip: IPAddress | None) -> bool:
    if value is None or pod_ip is None:
        return False
    try:
        return ip_address(value) == pod_ip
    except ValueError:
        return False
