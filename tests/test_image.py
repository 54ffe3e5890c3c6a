"""The container image: its Dockerfile and manifests linted, its ENTRYPOINT run for real.

No image is built here (no daemon, no registry): the image's contract is read from the final
stage of ``docker/Dockerfile`` and reproduced instead. The wheel built from this checkout is
installed where the image's PATH looks for the console command, the real ``h2o.jar`` is
bind-mounted at ``H2O_JAR``, the root filesystem is read-only with a fresh tmpfs on ``/tmp``
(the manifests' emptyDir), and ENTRYPOINT + CMD run exactly as parsed, as the image's USER,
with the image's ENV. ``tests/image/image-root.sh`` lays that out inside a private mount
namespace, so nothing on the host changes and every mount dies with the run.

The one non-obvious decision: the console command's interpreter is this checkout's venv (the
image has its own), found through the script's shebang. When the user cannot enter a directory
above that interpreter (pyenv under ``/root``), the namespace hides the rest of that directory
behind an empty tmpfs and keeps only the interpreter visible, rather than changing permissions
on the host.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.config.settings import LookupSettings, ProbeSettings
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.net import free_port, free_port_pair
from tests.support.dns_server import DnsServer, ThreadedDnsServer

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
MANIFESTS = sorted((REPO / "docker" / "kubernetes").glob("*.yaml"))
IMAGE_ROOT_SCRIPT = Path(__file__).resolve().parent / "image" / "image-root.sh"
UNSHARE = ("unshare", "--mount", "--propagation", "private", "--")

#: The PATH the Dockerfile's ``$PATH`` stands for: the base image's, less its JDK directory
#: (``java`` is the host's, in /usr/bin).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The image's own directory, replaced by an empty tmpfs holding only what the image puts there.
IMAGE_DIR = PurePosixPath("/opt")
#: Where the pod's writable emptyDir is mounted.
WRITABLE_ROOT = PurePosixPath("/tmp")
#: ``kubernetes-validate -k`` versions: a minor still served by many clusters, and the tool's
#: default (the newest it ships), so an API removed on either side is caught.
KUBERNETES_VERSIONS: tuple[str | None, ...] = ("1.34.0", None)

SERVICE = "h2o-headless.h2o.svc.cluster.local"
FORMATION_DEADLINE = 90.0
#: H2O_SHUTDOWN_GRACE (8 s) plus the entrypoint's own stop, as terminationGracePeriodSeconds.
STOP_DEADLINE = 10.0
FAILURE_DEADLINE = 30.0


# --- the Dockerfile's final stage -------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The runtime instructions of the Dockerfile's final stage, as written (nothing expanded)."""

    entrypoint: str = ""
    cmd: str = ""
    env: tuple[tuple[str, str], ...] = ()
    user: str = ""
    workdir: str = "/"
    expose: tuple[str, ...] = ()

    def entrypoint_argv(self) -> list[str]:
        return exec_form(self.entrypoint, "ENTRYPOINT")

    def cmd_argv(self) -> list[str]:
        return exec_form(self.cmd, "CMD")

    def user_ids(self) -> tuple[int, int]:
        """``USER uid:gid`` as numbers; raises ``ValueError`` for names or a missing group."""
        uid, sep, gid = self.user.partition(":")
        if not sep or not uid.isdecimal() or not gid.isdecimal():
            raise ValueError(f"USER {self.user!r} is not numeric uid:gid")
        return int(uid), int(gid)

    def exposed_ports(self) -> set[int]:
        return {int(port.split("/")[0]) for port in self.expose}

    def environment(self) -> dict[str, str]:
        """ENV applied in order over the base image's PATH, ``$VAR`` references expanded."""
        env = {"PATH": BASE_PATH}
        for key, value in self.env:
            env[key] = re.sub(
                r"\$(?:\{(\w+)\}|(\w+))",
                lambda match: env.get(match.group(1) or match.group(2), ""),
                value,
            )
        return env


def exec_form(value: str, instruction: str) -> list[str]:
    """The JSON array of an exec-form instruction; raises ``ValueError`` for the shell form."""
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"{instruction} {value!r} is not the exec form (a JSON array of strings)")
    return argv


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical:
            keyword, _, rest = logical.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def env_pairs(value: str) -> list[tuple[str, str]]:
    """The pairs of ``ENV k=v k2="v 2"`` (or the legacy ``ENV key value``)."""
    words = shlex.split(value)
    if words and "=" not in words[0]:
        return [(words[0], value.partition(" ")[2].strip())]
    return [(word.partition("=")[0], word.partition("=")[2]) for word in words]


def parse_dockerfile(path: Path) -> ImageConfig:
    """The final stage's ENTRYPOINT, CMD, ENV, USER, WORKDIR and EXPOSE."""
    steps = instructions(path.read_text())
    starts = [index for index, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    fields: dict[str, Any] = {"env": (), "expose": ()}
    for keyword, rest in steps[starts[-1] + 1 :]:
        if keyword in ("ENTRYPOINT", "CMD", "USER", "WORKDIR"):
            fields[keyword.lower()] = rest
        elif keyword == "ENV":
            fields["env"] = (*fields["env"], *env_pairs(rest))
        elif keyword == "EXPOSE":
            fields["expose"] = (*fields["expose"], *rest.split())
    return ImageConfig(**fields)


def console_scripts() -> dict[str, str]:
    with (REPO / "pyproject.toml").open("rb") as file:
        scripts: dict[str, str] = tomllib.load(file)["project"]["scripts"]
    return scripts


def writable_paths(image: ImageConfig) -> dict[str, str]:
    """Every path the running image writes to, named by where it is set (``NOT_SET`` if not)."""
    env = image.environment()
    cmd = image.cmd_argv()
    paths = {
        "ENV H2O_FLATFILE": env.get("H2O_FLATFILE", NOT_SET),
        "ENV HOME": env.get("HOME", NOT_SET),
        "WORKDIR": image.workdir,
    }
    for option in ("-ice_root", "-log_dir"):
        paths[f"CMD {option}"] = cmd[cmd.index(option) + 1] if option in cmd[:-1] else NOT_SET
    tmpdirs = [word for word in shlex.split(env.get("JAVA_OPTS", "")) if "java.io.tmpdir=" in word]
    paths["JAVA_OPTS -Djava.io.tmpdir"] = tmpdirs[-1].partition("=")[2] if tmpdirs else NOT_SET
    return paths


def outside_tmp(image: ImageConfig) -> dict[str, str]:
    """The writable paths that are not under /tmp, so would hit the read-only root."""
    return {
        where: path
        for where, path in writable_paths(image).items()
        if not PurePosixPath(path).is_relative_to(WRITABLE_ROOT)
    }


#: A writable path the image leaves to a default: never under /tmp, so it is reported.
NOT_SET = "<not set>"


def command_dir(image: ImageConfig) -> PurePosixPath:
    """The one directory the image's ENV puts in front of the base image's PATH."""
    added = [d for d in image.environment()["PATH"].split(":") if d not in BASE_PATH.split(":")]
    assert len(added) == 1, f"expected one directory added to PATH, got {added}"
    return PurePosixPath(added[0])


@pytest.fixture(scope="module")
def image() -> ImageConfig:
    return parse_dockerfile(DOCKERFILE)


# --- static checks ----------------------------------------------------------------------------


def _venv_tool(name: str) -> Path:
    """A command installed next to the interpreter running the tests; skips when missing."""
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable} (pip install -e '.[dev]')")
    return tool


def test_dockerfile_passes_hadolint() -> None:
    """docker/Dockerfile has no hadolint finding at any level."""
    hadolint = _venv_tool("hadolint")
    done = subprocess.run(
        [hadolint, "--no-color", DOCKERFILE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "default")
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_manifest_passes_strict_schema_validation(manifest: Path, version: str | None) -> None:
    """Every resource of a manifest validates against Kubernetes' schema, unknown fields refused."""
    tool = _venv_tool("kubernetes-validate")
    done = subprocess.run(
        [tool, "--strict", *(["-k", version] if version else []), manifest],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (done.stdout + done.stderr).splitlines()
    failures = [line for line in lines if not line.startswith("INFO ")]
    assert done.returncode == 0, "\n".join(lines)
    assert failures == []
    assert any(" passed for resource " in line for line in lines), lines


def test_entrypoint_is_the_console_command_in_exec_form(image: ImageConfig) -> None:
    """ENTRYPOINT is the exec-form ``<console command> run --``: PID 1 itself, CMD after it."""
    argv = image.entrypoint_argv()
    assert argv[0] in console_scripts()
    assert argv[1:] == ["run", "--"]
    assert image.cmd_argv()[0].startswith("-"), "CMD holds h2o.jar arguments only"


def test_user_is_numeric_and_not_root(image: ImageConfig) -> None:
    """USER is a numeric uid:gid other than root, so runAsNonRoot can verify it."""
    uid, gid = image.user_ids()
    assert uid != 0
    assert gid != 0


def test_exposes_the_default_ports(image: ImageConfig) -> None:
    """EXPOSE lists H2O's two ports and the probe port, which are the settings' defaults."""
    h2o_port = LookupSettings(service_dns=SERVICE).h2o_port
    api_port = ProbeSettings().api_port
    assert {54321, 54322, 8080} <= image.exposed_ports()
    assert {h2o_port, h2o_port + 1, api_port} <= image.exposed_ports()


def test_every_writable_path_is_under_tmp(image: ImageConfig) -> None:
    """The flatfile, ice root, logs, JVM temp files, HOME and WORKDIR all live under /tmp."""
    assert outside_tmp(image) == {}


def test_image_files_live_in_the_image_directory(image: ImageConfig) -> None:
    """The console command's bin directory and H2O_JAR are under /opt, the image's own place."""
    assert command_dir(image).is_relative_to(IMAGE_DIR)
    assert command_dir(image).name == "bin"
    assert PurePosixPath(image.environment()["H2O_JAR"]).is_relative_to(IMAGE_DIR)


def test_image_prepares_the_startup_cache_of_its_jar(image: ImageConfig) -> None:
    """The final stage runs prepare-jvm for H2O_JAR after that jar is in place: a cache made
    before the jar changed would be refused at run time, and pods would start without it."""
    steps = instructions(DOCKERFILE.read_text())
    final = steps[max(i for i, (name, _) in enumerate(steps) if name == "FROM") :]
    jar = image.environment()["H2O_JAR"]
    copies = [i for i, (name, args) in enumerate(final) if name == "COPY" and args.endswith(jar)]
    prepares = [
        i for i, (name, args) in enumerate(final) if name == "RUN" and "prepare-jvm" in args
    ]
    assert copies, f"no COPY of {jar} in the final stage"
    assert prepares, "no RUN ... prepare-jvm in the final stage"
    assert prepares[-1] > copies[-1]
    assert f"H2O_JAR={jar}" in final[prepares[-1]][1]


def test_the_checks_catch_a_bad_final_stage(tmp_path: Path) -> None:
    """The checks read only the final stage and catch shell form, a named USER, paths off /tmp."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM base AS build\n"
        'ENTRYPOINT ["from-the-build-stage"]\n'
        "USER 10001:10001\n"
        "FROM runtime\n"
        "# a comment\n"
        "ENV HOME=/tmp \\\n"
        "    # a comment inside a continuation\n"
        '    JAVA_OPTS="-Djava.io.tmpdir=/var/tmp -Xss1m"\n'
        "USER h2o\n"
        "ENTRYPOINT h2o-k8s-discovery run --\n"
        'CMD ["-log_dir", "/var/log/h2o"]\n'
    )
    bad = parse_dockerfile(dockerfile)
    assert bad.environment()["JAVA_OPTS"] == "-Djava.io.tmpdir=/var/tmp -Xss1m"
    with pytest.raises(ValueError, match="not the exec form"):
        bad.entrypoint_argv()
    with pytest.raises(ValueError, match="not numeric"):
        bad.user_ids()
    assert set(outside_tmp(bad)) == {
        "ENV H2O_FLATFILE",  # not set
        "JAVA_OPTS -Djava.io.tmpdir",
        "CMD -ice_root",  # not set
        "CMD -log_dir",
        "WORKDIR",  # "/", the default
    }


# --- running the image's entrypoint -------------------------------------------------------------


def _runtime_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a mount namespace and a switch to the image's user; CI runs as root"
    missing = [tool for tool in ("unshare", "setpriv", "mount") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} from util-linux"
    if shutil.which("java", path=BASE_PATH) is None:
        return f"needs java (17+) on {BASE_PATH}"
    return None


_RUNTIME_SKIP = _runtime_skip_reason()
requires_root = pytest.mark.skipif(_RUNTIME_SKIP is not None, reason=_RUNTIME_SKIP or "")


@pytest.fixture(scope="module")
def installed_wheel() -> Iterator[Path]:
    """The wheel built from this checkout, installed with ``pip --target`` (bin/ included)."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip(
            "building the wheel offline needs hatchling in the venv: pip install -e '.[dev]'"
        )
    with tempfile.TemporaryDirectory(prefix="h2o-image-") as tmp:
        wheels, target = Path(tmp) / "wheels", Path(tmp) / "install"
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO))
        built = [str(wheel) for wheel in wheels.glob("*.whl")]
        assert len(built) == 1, built
        _pip("install", "--no-deps", "--no-compile", "--target", str(target), *built)
        yield target


def _pip(*args: str) -> None:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def h2o_jar() -> Path:
    return ensure_h2o_jar(progress=False)


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with ThreadedDnsServer("127.0.0.1") as server:
        server.set_records(SERVICE, a=["127.0.0.1"])
        yield server


def _first_closed_ancestor(path: Path) -> Path | None:
    """The outermost directory above ``path`` that other users cannot enter, if any."""
    for ancestor in reversed(path.parents):
        if not ancestor.stat().st_mode & stat.S_IXOTH:
            return ancestor
    return None


def _interpreter_reveals() -> list[str]:
    """``--reveal`` arguments keeping this interpreter reachable for the image's user."""
    reveals = []
    for prefix in sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}):
        closed = _first_closed_ancestor(prefix)
        if closed is not None:
            reveals += ["--reveal", f"{prefix}:{closed}"]
    return reveals


def _kept_under_tmp() -> list[str]:
    """``--keep`` for this venv when it lives under /tmp, which the pod's emptyDir hides."""
    venv = Path(sys.prefix)
    if venv.is_relative_to("/tmp"):
        return ["--keep", str(venv)]
    return []


def _mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _process_uid(pid: int) -> int | None:
    """The real uid of ``pid`` (``/proc/<pid>``'s owner can stay root after a uid change)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    uids = [line.split()[1] for line in status.splitlines() if line.startswith("Uid:")]
    return int(uids[0]) if uids else None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdecimal()]


def _pids_of_uid(uid: int) -> set[int]:
    return {pid for pid in _pids() if _process_uid(pid) == uid}


@dataclass
class ImageRun:
    """One run of the image's ENTRYPOINT + CMD in its own mount namespace."""

    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    namespace: str | None = None

    @property
    def root(self) -> Path:
        """The container's filesystem, as its processes see it."""
        return Path(f"/proc/{self.proc.pid}/root")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def in_namespace(self) -> list[int]:
        """The processes still in the run's mount namespace."""
        if self.namespace is None:
            return []
        return [pid for pid in _pids() if _mount_namespace(pid) == self.namespace]

    def get(self, path: str) -> tuple[int, bytes] | None:
        """GET on the probe port; ``None`` while nothing answers."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", int(self.env["H2O_KUBERNETES_API_PORT"]), timeout=2
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return None
        finally:
            connection.close()

    def status(self) -> dict[str, Any] | None:
        answer = self.get("/status")
        if answer is None or answer[0] != 200:
            return None
        body: dict[str, Any] = json.loads(answer[1])
        return body

    def poll(self, what: str, condition: Callable[[], T | None], deadline: float) -> T:
        """The first truthy value of ``condition`` before ``deadline`` seconds have passed."""
        end = time.monotonic() + deadline
        while True:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the entrypoint exited {self.proc.returncode} before {what}:\n" + self.tail()
                )
            if time.monotonic() > end:
                pytest.fail(f"no {what} within {deadline:g}s:\n" + self.tail())
            # Waiting on the process doubles as the pause between two polls.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.25)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def kill_leftovers(self) -> None:
        """SIGKILL every process of this run that is still there (after a failed test)."""
        namespace = self.namespace or _mount_namespace(self.proc.pid)
        # Before `unshare` has run, the process is still in ours: then it alone is killed.
        if namespace is None or namespace == _mount_namespace(os.getpid()):
            namespace = None
        killed: set[int] = set()
        end = time.monotonic() + 30
        while True:
            for pid in _pids():
                if namespace is not None and _mount_namespace(pid) == namespace:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            if self.proc.poll() is None:
                self.proc.kill()
            # Orphans die asynchronously (init reaps them): wait until they are gone.
            killed = {pid for pid in killed if Path(f"/proc/{pid}").exists()}
            if not killed or time.monotonic() > end:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.1)
        self.proc.wait(timeout=30)


def pod_env(image: ImageConfig, install_dir: PurePosixPath, dns: DnsServer) -> dict[str, str]:
    """The image's ENV plus what a one-pod StatefulSet adds, on ports free on loopback."""
    env = image.environment()
    h2o_port = free_port_pair()
    api_port = free_port()
    while api_port in (h2o_port, h2o_port + 1):
        api_port = free_port()
    env.update(
        {
            # The image's venv finds the package in its site-packages; this interpreter is the
            # checkout's venv, so the installed wheel goes first on sys.path instead.
            "PYTHONPATH": str(install_dir),
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_DNS_NAMESERVER": f"127.0.0.1:{dns.port}",
            "H2O_NODE_EXPECTED_COUNT": "1",
            "POD_IP": "127.0.0.1",
            "H2O_KUBERNETES_API_PORT": str(api_port),
            # Not 54321: another H2O on this machine (a demo, a parallel run) must not collide.
            "H2O_PORT": str(h2o_port),
            "JAVA_OPTS": f"{env.get('JAVA_OPTS', '')} -Xmx512m".strip(),
        }
    )
    return env


@contextlib.contextmanager
def run_image(
    image: ImageConfig,
    installed: Path,
    jar: Path,
    env: Mapping[str, str],
    argv: list[str],
    *,
    tmpfs: bool,
) -> Iterator[ImageRun]:
    """Start ``argv`` in the image's layout; on the way out, kill whatever of it is left."""
    uid, gid = image.user_ids()
    layout = [
        "--overlay", str(IMAGE_DIR),
        "--bind", f"{jar}:{image.environment()['H2O_JAR']}",
        "--bind", f"{installed}:{command_dir(image).parent}",
        *_interpreter_reveals(),
        *_kept_under_tmp(),
        "--tmp", "tmpfs" if tmpfs else "none",
        "--user", f"{uid}:{gid}",
        "--workdir", image.workdir,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="h2o-image-run-") as tmp:
        log = Path(tmp) / "output.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*UNSHARE, "/bin/sh", str(IMAGE_ROOT_SCRIPT), *layout, "--", *argv],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = ImageRun(proc, log, dict(env))
        try:
            yield run
        finally:
            run.kill_leftovers()


def _shebang_interpreter(script: Path) -> str:
    first = script.read_text().splitlines()[0]
    assert first.startswith("#!"), first
    return first[2:].strip()


@pytest.mark.root
@requires_root
def test_console_command_comes_from_the_installed_wheel(
    image: ImageConfig, installed_wheel: Path, dns: DnsServer, tmp_path: Path
) -> None:
    """In the image's layout the console command and the package it imports are the wheel's."""
    name = image.entrypoint_argv()[0]
    interpreter = _shebang_interpreter(installed_wheel / "bin" / name)
    probe = (
        "import h2o_k8s_discovery, os, shutil; "
        f"print(shutil.which({name!r}), h2o_k8s_discovery.__file__, os.getuid(), sep='\\n')"
    )
    env = pod_env(image, command_dir(image).parent, dns)
    jar = tmp_path / "placeholder.jar"  # no JVM here: any file does, and no download
    jar.touch()
    with run_image(image, installed_wheel, jar, env, [interpreter, "-c", probe], tmpfs=True) as run:
        assert run.proc.wait(timeout=FAILURE_DEADLINE) == 0, run.output()
        which, module, uid = run.output().splitlines()
    install_dir = command_dir(image).parent
    assert which == str(command_dir(image) / name)
    assert PurePosixPath(module).is_relative_to(install_dir)
    assert int(uid) == image.user_ids()[0]


@pytest.mark.slow
@pytest.mark.root
@requires_root
@pytest.mark.timeout(240)
def test_image_forms_a_cloud_of_one_and_stops_on_sigterm(
    image: ImageConfig, installed_wheel: Path, h2o_jar: Path, dns: DnsServer
) -> None:
    """On a read-only root with /tmp as emptyDir: a cloud of one, its leader, 143 on SIGTERM."""
    uid = image.user_ids()[0]
    before = _pids_of_uid(uid)
    env = pod_env(image, command_dir(image).parent, dns)
    argv = image.entrypoint_argv() + image.cmd_argv()
    with run_image(image, installed_wheel, h2o_jar, env, argv, tmpfs=True) as run:
        run.namespace = run.poll(
            "the entrypoint in its namespace", lambda: _ns_of_user(run, uid), 10
        )
        status = run.poll("a formed cloud", lambda: _formed_and_leading(run), FORMATION_DEADLINE)
        peer = f"127.0.0.1:{env['H2O_PORT']}"
        assert status["peers"] == [peer]
        assert status["self"] == peer
        assert status["is_leader"] is True
        assert status["cloud_size"] == 1
        health = run.get("/healthz")
        assert health is not None
        assert health[0] == 200

        jvm = int(status["jvm_pid"])
        assert _process_uid(jvm) == uid
        assert _mount_namespace(jvm) == run.namespace
        jvm_argv = Path(f"/proc/{jvm}/cmdline").read_bytes().decode().split("\0")[:-1]
        assert jvm_argv[-len(image.cmd_argv()) :] == image.cmd_argv()

        flatfile = run.root / env["H2O_FLATFILE"].lstrip("/")
        assert flatfile.read_text() == peer + "\n"
        emptydir = run.root / WRITABLE_ROOT.relative_to("/")
        assert flatfile.stat().st_dev == emptydir.stat().st_dev != run.root.stat().st_dev
        log_dir = run.root / writable_paths(image)["CMD -log_dir"].lstrip("/")
        assert any(log_dir.iterdir()), "H2O wrote no log into CMD's -log_dir"

        run.proc.send_signal(signal.SIGTERM)
        try:
            code = run.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_DEADLINE:g}s after SIGTERM:\n" + run.tail())
        assert code == exit_codes.SIGNAL_BASE + signal.SIGTERM, run.tail()
        assert run.in_namespace() == []
        assert _pids_of_uid(uid) - before == set()
        assert "Traceback" not in run.output()


def _ns_of_user(run: ImageRun, uid: int) -> str | None:
    """The run's mount namespace once its entrypoint runs as ``uid`` (layout done)."""
    if _process_uid(run.proc.pid) != uid:
        return None
    return _mount_namespace(run.proc.pid)


def _formed_and_leading(run: ImageRun) -> dict[str, Any] | None:
    status = run.status()
    if status is None or status.get("phase") != "formed":
        return None
    answer = run.get("/kubernetes/isLeaderNode")
    return status if answer is not None and answer[0] == 200 else None


@pytest.mark.slow
@pytest.mark.root
@requires_root
def test_image_without_a_writable_tmp_fails_on_the_flatfile(
    image: ImageConfig, installed_wheel: Path, h2o_jar: Path, dns: DnsServer
) -> None:
    """Without the emptyDir on /tmp the image exits 73 with one clear flatfile error and no JVM."""
    uid = image.user_ids()[0]
    before = _pids_of_uid(uid)
    env = pod_env(image, command_dir(image).parent, dns)
    argv = image.entrypoint_argv() + image.cmd_argv()
    with run_image(image, installed_wheel, h2o_jar, env, argv, tmpfs=False) as run:
        try:
            code = run.proc.wait(timeout=FAILURE_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {FAILURE_DEADLINE:g}s:\n" + run.tail())
        output = run.output()
    assert code == exit_codes.FLATFILE, output
    lines = output.splitlines()
    assert all(line.startswith("{") for line in lines), output
    errors = [record["message"] for record in map(json.loads, lines) if record["level"] == "error"]
    # POD_IP is set, so the JVM would start early, on a named pipe as its flatfile.
    expected = f"cannot create the flatfile pipe {env['H2O_FLATFILE']}: Read-only file system"
    assert errors == [expected], output
    assert "launching H2O" not in output
    assert "Traceback" not in output
    assert _pids_of_uid(uid) - before == set()
