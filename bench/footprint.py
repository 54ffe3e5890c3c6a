"""Footprint of the entrypoint itself while H2O idles: RSS and CPU of the Python process.

What: N=3 fresh simulated pods run ``h2o-k8s-discovery run`` (``bench._common``). Once every
pod's ``/status`` says phase ``formed``, a window of 60 s (``--quick``: 15 s) starts during which
the cluster only idles: the entrypoint keeps polling its JVM's ``/3/Cloud`` (every second once
formed) and a kubelet-like prober asks ``/kubernetes/isLeaderNode`` every 5 s (the
``periodSeconds`` of H2O's manifests). Each second, ``VmRSS`` of every entrypoint process (the
``h2o-k8s-discovery`` Python process, which ``ip netns exec`` execs in place; not the JVM) is read
from ``/proc/<pid>/status``, with its anonymous part (``RssAnon``; the rest is file-backed pages
of the interpreter and its shared libraries); its CPU is ``utime + stime`` from
``/proc/<pid>/stat`` at the window's start and end, as a percentage of one core. The JVM's RSS
is shown for scale.
Targets: peak RSS <= 40 MB (10^6 bytes), CPU <= 1 % of one core.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench._common import (
    API_PORT,
    LEADER_PATH,
    STATUS_PATH,
    Cluster,
    ClusterSpec,
    Impl,
    RunFailed,
    StatusView,
    fmt,
    h2o_jar,
    machine_note,
    markdown_table,
    proc_cpu_seconds,
    proc_rss_mb,
    progress,
    status_code,
    status_view,
    wait_until,
)

SIZE = 3
TARGET_RSS_MB = 40.0
TARGET_CPU_PERCENT = 1.0
KUBELET_PERIOD = 5.0


@dataclass(frozen=True, slots=True)
class PodFootprint:
    pod: str
    role: str
    rss_at_formed: float
    rss_peak: float
    rss_mean: float
    anon_mean: float
    cpu_percent: float
    jvm_rss_mean: float | None


def measure(jar: Path, window: float) -> tuple[list[PodFootprint], float]:
    """Form a cluster, then sample the entrypoints for ``window`` s; returns (pods, formed at)."""
    with Cluster(ClusterSpec(Impl.OURS, SIZE), jar) as cluster:
        cluster.start()
        statuses = cluster.observe(API_PORT, STATUS_PATH, 0.2, status_view)

        def all_formed() -> list[StatusView] | None:
            latest = [poller.snapshot()[-1][1] if poller.samples else None for poller in statuses]
            if all(v is not None and v.phase == "formed" for v in latest):
                return [v for v in latest if v is not None]
            return None

        views = wait_until(all_formed, cluster, 150.0)
        formed_at = cluster.clock()
        for poller in statuses:
            poller.halt()
        cluster.observe(API_PORT, LEADER_PATH, KUBELET_PERIOD, status_code)
        pids = [process.pid for process in cluster.processes]
        jvms = [view.jvm_pid for view in views]
        rss: list[list[float]] = [[] for _ in pids]
        anon: list[list[float]] = [[] for _ in pids]
        jvm_rss: list[list[float]] = [[] for _ in pids]
        cpu_start = [proc_cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        tick = started
        while time.monotonic() - started < window:
            for index, pid in enumerate(pids):
                if (value := proc_rss_mb(pid)) is not None:
                    rss[index].append(value)
                if (value := proc_rss_mb(pid, "RssAnon")) is not None:
                    anon[index].append(value)
                jvm = jvms[index]
                if jvm is not None and (value := proc_rss_mb(jvm)) is not None:
                    jvm_rss[index].append(value)
            if (why := cluster.failure()) is not None:
                raise RunFailed(why)
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))
        elapsed = time.monotonic() - started
        cpu_end = [proc_cpu_seconds(pid) for pid in pids]
    pods = []
    for index, view in enumerate(views):
        before, after = cpu_start[index], cpu_end[index]
        if before is None or after is None or not rss[index]:
            raise RunFailed(f"h2o-{index}'s entrypoint vanished during the window")
        pods.append(
            PodFootprint(
                pod=f"h2o-{index}",
                role="leader" if view.is_leader else "follower",
                rss_at_formed=rss[index][0],
                rss_peak=max(rss[index]),
                rss_mean=statistics.fmean(rss[index]),
                anon_mean=statistics.fmean(anon[index]) if anon[index] else math.nan,
                cpu_percent=(after - before) / elapsed * 100,
                jvm_rss_mean=statistics.fmean(jvm_rss[index]) if jvm_rss[index] else None,
            )
        )
    return pods, formed_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a 15 s window instead of 60 s")
    parser.add_argument("--window", type=float, help="seconds of idle to sample")
    args = parser.parse_args()
    window = args.window or (15.0 if args.quick else 60.0)
    jar = h2o_jar()
    progress(f"forming a cluster of {SIZE}, then sampling for {window:g} s")
    pods, formed_at = measure(jar, window)
    rows = [
        [
            p.pod,
            p.role,
            f"{p.rss_at_formed:.1f}",
            f"{p.rss_peak:.1f}",
            f"{p.rss_mean:.1f}",
            f"{p.anon_mean:.1f}",
            f"{p.cpu_percent:.2f}",
            fmt(p.jvm_rss_mean, 0),
        ]
        for p in pods
    ]
    print(f"## Footprint of the entrypoint process, {window:g} s idle after formation\n")
    print(
        markdown_table(
            [
                "pod",
                "role",
                "RSS at formed MB",
                "peak RSS MB",
                "mean RSS MB",
                "of which anonymous MB",
                "CPU % of one core",
                "JVM RSS MB (for scale)",
            ],
            rows,
        )
    )
    print(
        f"\n{machine_note()}; cloud formed {formed_at:.1f} s after start; samples every 1 s; "
        f"readiness probed every {KUBELET_PERIOD:g} s"
    )
    peak = max(p.rss_peak for p in pods)
    cpu = max(p.cpu_percent for p in pods)
    rss_verdict = "meets" if peak <= TARGET_RSS_MB else "misses"
    cpu_verdict = "meets" if cpu <= TARGET_CPU_PERCENT else "misses"
    print(
        f"\nConclusion: worst pod peaks at {peak:.1f} MB RSS ({rss_verdict} <= "
        f"{TARGET_RSS_MB:g} MB) and uses {cpu:.2f} % of a core ({cpu_verdict} <= "
        f"{TARGET_CPU_PERCENT:g} %)."
    )


if __name__ == "__main__":
    main()
