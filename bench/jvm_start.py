"""What the JVM start-up cache buys: three H2O JVMs started at once, with and without it.

What: seconds from spawning each of N=3 real H2O JVMs (``-Xmx512m``, all started at the same
instant, one per simulated pod) until (a) its REST API first answers
``GET /3/Cloud?skip_ticks=true`` (any HTTP status) and (b) that answer says ``cloud_size == 3``
and ``consensus == true``; a run's value is its slowest pod's. Also, once the cloud has formed:
the bytes in each pod's ``java.io.tmpdir`` (the ~157 MB of XGBoost libraries H2O copies out of
the jar on every start unless it finds them on ``java.library.path``) and the ``VmRSS`` of one
pod's JVM. Four variants: *plain* (no extra option, as H2O's stock image starts it); *native
libraries only* (``-Djava.library.path=<cache>/native:...``); *start-up cache* (that and
``-XX:SharedArchiveFile=`` of the cache's proven class archive: the options ``startup_options``
gives ``run``); *libraries + archive recorded at exit* (a dynamic archive recorded here from one
idle start, as the cache once shipped it: H2O then binds ``POST /4/sessions`` to the wrong
method and the first session kills the cloud; measured for comparison, never shipped).

How: every run builds fresh pods (``k8s_sim.pods``: network namespaces, own tmpdir and ice_root),
a static flatfile listing the three pods' ``<ip>:54321`` and a new cloud name, starts the three
``java`` processes directly (no entrypoint, no DNS: only the JVM's start differs between
variants), polls each pod every 50 ms from a thread of its own, and tears everything down before
the next run. Variants alternate, their order rotating from one round to the next, so that a
machine busy with other work penalizes them alike. The jar and the cache are read once before
the first run so that no variant pays for a cold page cache.

The non-obvious decision: the three JVMs start together on a 2-core machine rather than one
alone, because that is how a StatefulSet with ``podManagementPolicy: Parallel`` starts them and
the cost the cache removes (unzipping and writing 157 MB, parsing thousands of classes) is CPU
and I/O the three contend for; a JVM started alone would understate it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from bench._common import (
    CLOUD_PATH,
    XMX,
    HttpResult,
    RunFailed,
    Summary,
    fmt,
    h2o_jar,
    log_tail,
    machine_note,
    markdown_table,
    proc_rss_mb,
    progress,
    summarize,
)
from h2o_k8s_discovery.config.settings import default_startup_cache
from h2o_k8s_discovery.jvm.startup_cache import StartupCache, startup_options
from h2o_k8s_discovery.jvm.startup_prepare import ensure_startup_cache
from k8s_sim.h2o_jvm import record_cds_archive
from k8s_sim.pods import H2O_PORT, Pod, PodNetwork

SIZE = 3
POLL = 0.05
DEADLINE = 120.0
HTTP_TIMEOUT = 1.0
PLAIN = "plain"
VARIANTS = (
    PLAIN,
    "native libraries only",
    "start-up cache (libraries + proven archive)",
    "libraries + archive recorded at exit (not shipped)",
)


# --- variants ------------------------------------------------------------------------------------


def variant_options(cache: StartupCache, jar: Path, unproven: Path) -> dict[str, list[str]]:
    """The extra JVM options of each variant, from the very function ``run`` uses."""
    options, notes = startup_options(cache, jar, (), os.environ)
    if len(options) != 2:
        raise SystemExit(f"the start-up cache {cache.directory} is incomplete: {notes}")
    libraries = options[:1]
    return {
        VARIANTS[0]: [],
        VARIANTS[1]: libraries,
        VARIANTS[2]: options,
        VARIANTS[3]: [*libraries, f"-XX:SharedArchiveFile={unproven}"],
    }


def warm(paths: Sequence[Path]) -> None:
    """Read every file under ``paths`` once, so that no run pays for a cold page cache."""
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            with path.open("rb") as stream:
                while stream.read(1 << 24):
                    pass


def schedule(runs: int) -> list[str]:
    """Every variant ``runs`` times, in rounds whose order rotates by one each round."""
    order: list[str] = []
    for round_ in range(runs):
        shift = round_ % len(VARIANTS)
        order += [*VARIANTS[shift:], *VARIANTS[:shift]]
    return order


# --- one run -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodTimes:
    """Seconds from one pod's spawn until its REST API answered, and until it saw the cloud."""

    api_up: float
    formed: float


@dataclass(frozen=True, slots=True)
class Run:
    """One run's outcome: slowest pod's times, mean tmpdir bytes per pod, one JVM's RSS."""

    variant: str
    api_up: float | None = None
    formed: float | None = None
    tmpdir_mb: float | None = None
    rss_mb: float | None = None

    @property
    def ok(self) -> bool:
        return self.formed is not None


def cloud_formed(result: HttpResult) -> bool:
    """Whether a ``/3/Cloud`` answer says ``cloud_size == 3`` and ``consensus == true``."""
    if result is None:
        return False
    try:
        data = json.loads(result[1])
    except ValueError:
        return False
    return (
        isinstance(data, dict) and data.get("cloud_size") == SIZE and data.get("consensus") is True
    )


def log_path(pod: Pod) -> Path:
    return pod.workdir / "h2o.log"


def watch(pod: Pod, process: Popen[bytes], spawned: float, abort: threading.Event) -> PodTimes:
    """Poll ``pod``'s ``/3/Cloud`` every ``POLL`` s until it reports the cloud of ``SIZE``."""
    api_up: float | None = None
    next_at = spawned
    while not abort.is_set():
        if process.poll() is not None:
            raise RunFailed(f"{pod.name}'s JVM exited with status {process.returncode}")
        if time.monotonic() - spawned > DEADLINE:
            raise RunFailed(f"{pod.name} saw no cloud of {SIZE} within {DEADLINE:.0f} s")
        result = pod.http_get(H2O_PORT, CLOUD_PATH, timeout=HTTP_TIMEOUT)
        at = time.monotonic() - spawned
        if result is not None and api_up is None:
            api_up = at
        if api_up is not None and cloud_formed(result):
            return PodTimes(api_up, at)
        next_at += POLL
        abort.wait(max(0.0, next_at - time.monotonic()))
    raise RunFailed(f"{pod.name}: given up because another pod failed")


def tmpdir_bytes(pod: Pod) -> int:
    """The sizes of the files in ``pod``'s ``java.io.tmpdir``, summed."""
    total = 0
    for path in pod.tmpdir.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:  # H2O may remove a file while we look
            continue
    return total


@dataclass(frozen=True, slots=True)
class Started:
    """One pod's JVM and the moment (``time.monotonic()``) it was spawned."""

    pod: Pod
    process: Popen[bytes]
    at: float


def start_pods(net: PodNetwork, jar: Path, extra: Sequence[str]) -> list[Started]:
    """Three pods sharing one static flatfile and cloud name, their JVMs spawned back to back."""
    pods = [net.add_pod(f"h2o-{i}") for i in range(SIZE)]
    flatfile = net.workdir / "flatfile"
    flatfile.write_text("".join(f"{pod.ip}:{H2O_PORT}\n" for pod in pods), encoding="ascii")
    cloud = f"jvm-start-{secrets.token_hex(4)}"
    commands = []
    for pod in pods:
        java, *rest = pod.h2o_command(jar, flatfile=flatfile, cloud_name=cloud, xmx=XMX)
        commands.append([java, *extra, *rest])  # JVM options go before -jar
    started = []
    for pod, command in zip(pods, commands, strict=True):
        at = time.monotonic()
        started.append(Started(pod, pod.spawn(command, log_path=log_path(pod)), at))
    return started


def measure(variant: str, jar: Path, extra: Sequence[str]) -> Run:
    """One run of ``variant``: fresh pods, three JVMs at once, times of the slowest pod."""
    with PodNetwork(stop_grace=5.0) as net:
        started = start_pods(net, jar, extra)
        abort = threading.Event()
        with ThreadPoolExecutor(SIZE) as pool:
            futures = [
                pool.submit(watch, node.pod, node.process, node.at, abort) for node in started
            ]
            try:
                times = [future.result() for future in futures]
            except RunFailed as err:
                abort.set()
                tails = "\n".join(
                    f"--- {node.pod.name}\n{log_tail(log_path(node.pod))}" for node in started
                )
                progress(f"{variant}: run failed: {err}\n{tails}")
                return Run(variant)
        sizes = [tmpdir_bytes(node.pod) for node in started]
        rss = proc_rss_mb(started[0].process.pid)
    return Run(
        variant,
        api_up=max(t.api_up for t in times),
        formed=max(t.formed for t in times),
        tmpdir_mb=statistics.fmean(sizes) / 1e6,
        rss_mb=rss,
    )


# --- report --------------------------------------------------------------------------------------


def cell(summary: Summary | None) -> str:
    """``"median (min-max)"`` in seconds, or an em dash."""
    if summary is None:
        return "—"
    return f"{summary.median:.1f} ({summary.span()})"


def median_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def table(runs: Sequence[Run]) -> str:
    """One row per variant; the ratio is the variant's median "formed" over plain's."""
    plain = summarize([r.formed for r in runs if r.variant == PLAIN and r.formed is not None])
    rows = []
    for variant in VARIANTS:
        mine = [r for r in runs if r.variant == variant]
        ok = [r for r in mine if r.ok]
        formed = summarize([r.formed for r in ok if r.formed is not None])
        ratio = None if formed is None or plain is None else formed.median / plain.median
        rows.append(
            [
                variant,
                f"{len(ok)}/{len(mine)}",
                cell(summarize([r.api_up for r in ok if r.api_up is not None])),
                cell(formed),
                fmt(median_of([r.tmpdir_mb for r in ok]), 0),
                fmt(median_of([r.rss_mb for r in ok]), 0),
                "—" if ratio is None else f"{ratio:.2f}x",
            ]
        )
    headers = [
        "variant",
        "runs ok",
        "REST API up s (median, min-max)",
        "cloud of 3 formed s (median, min-max)",
        "tmpdir MB",
        "JVM RSS MB",
        "vs plain",
    ]
    return markdown_table(headers, rows)


def run_all(jar: Path, options: dict[str, list[str]], runs_each: int) -> list[Run]:
    runs: list[Run] = []
    order = schedule(runs_each)
    for index, variant in enumerate(order, 1):
        progress(f"run {index}/{len(order)}: {variant}")
        run = measure(variant, jar, options[variant])
        progress(f"  REST API up {fmt(run.api_up, 2)} s, cloud of {SIZE} {fmt(run.formed, 2)} s")
        runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run per variant")
    args = parser.parse_args()
    runs_each = 1 if args.quick else args.runs
    jar = h2o_jar()
    cache = ensure_startup_cache(jar, default_startup_cache(jar), progress=progress)
    with tempfile.TemporaryDirectory(prefix="h2o-cds-") as scratch:
        progress("recording a CDS archive at the exit of one idle start of H2O (not shipped)")
        libraries = startup_options(cache, jar, (), {})[0][:1]
        unproven = record_cds_archive(jar, Path(scratch), libraries)
        options = variant_options(cache, jar, unproven)
        warm([jar, unproven, cache.directory])
        runs = run_all(jar, options, runs_each)
    each = f"{runs_each} run{'s' if runs_each != 1 else ''} each"
    print(f"## JVM start-up: {SIZE} H2O JVMs (-Xmx{XMX}) started at once, {each}\n")
    print(table(runs))
    print(
        "\nTimes are the slowest pod's, from spawning its JVM; tmpdir MB (10^6 bytes) is the mean "
        "per pod once formed; JVM RSS is h2o-0's VmRSS once formed; medians over the runs."
    )
    print(f"\n{machine_note()}; poll every {POLL * 1000:.0f} ms")


if __name__ == "__main__":
    main()
