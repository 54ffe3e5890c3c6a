"""Time to one Ready leader: our entrypoint against H2O's built-in Kubernetes discovery.

What: seconds from starting N=3 simulated pods (all at t=0) until exactly one pod answers 200 on
``/kubernetes/isLeaderNode`` and the other two 404, reported as the moment that first held,
provided it then held for 5 s without a break.

How: every run builds fresh pods (network namespaces, fresh ice and temp dirs, a new cloud name)
and a DNS server on the pods' gateway (``bench._common``). *Ours*: each pod runs
``h2o-k8s-discovery run -- -ice_root <ice>`` with H2O's four Kubernetes variables plus H2O_JAR,
JAVA_OPTS, H2O_FLATFILE, POD_IP, H2O_CLOUD_NAME. *Reference*: each pod runs the same jar with
the four variables in its environment (H2O's own discovery). A kubelet-like thread per pod polls
the readiness endpoint every 150 ms. Runs alternate ours/reference. Two scenarios: all records
published at start; the third pod's records published 10 s late.

Columns besides the time: *double-200* counts episodes of two or more pods answering 200 at once
after the first moment exactly one did (a second "leader" after formation: should be 0 for ours);
*flaps* counts changes of the set of pods answering 200 once every pod has answered at all.
The ratio is ours/reference of the medians (target: <= 0.80).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench._common import (
    API_PORT,
    LEADER_PATH,
    Cluster,
    ClusterSpec,
    Impl,
    RunFailed,
    count_double_ready,
    count_flaps,
    first_stable,
    first_true,
    fmt,
    h2o_jar,
    machine_note,
    markdown_table,
    merge,
    observed_until,
    one_leader,
    progress,
    status_code,
    summarize,
    timelines,
    wait_until,
)

HOLD = 5.0
KUBELET_PERIOD = 0.15
TARGET_RATIO = 0.80
SCENARIOS: dict[str, float | None] = {
    "all records at start": None,
    "third record 10 s late": 10.0,
}
DEADLINE = {None: 120.0, 10.0: 150.0}


@dataclass(frozen=True, slots=True)
class Run:
    impl: Impl
    scenario: str
    seconds: float | None
    double_ready: int
    flaps: int
    #: When the last JVM logged "H2O started in N ms".
    jvms_up: float | None = None
    #: When the last JVM logged "Cloud of size 3 formed".
    cloud_formed: float | None = None
    error: str | None = None


def run_once(spec: ClusterSpec, scenario: str, jar: Path) -> Run:
    """One run: start the pods, poll like a kubelet until one leader held for ``HOLD`` s."""
    with Cluster(spec, jar) as cluster:
        cluster.start()
        pollers = cluster.observe(API_PORT, LEADER_PATH, KUBELET_PERIOD, status_code)

        def formed() -> tuple[float, float] | None:
            lines = timelines(pollers)
            end = observed_until(lines)
            at = first_stable(merge(lines), one_leader, HOLD, end)
            return None if at is None else (at, end)

        try:
            at, end = wait_until(formed, cluster, DEADLINE[spec.late_last])
        except RunFailed as err:
            return Run(spec.impl, scenario, None, 0, 0, error=str(err))
        states = merge(timelines(pollers))
        events = cluster.h2o_events()
    started = [e.started for e in events]
    clouds = [e.first_cloud_of(spec.size) for e in events]
    first_single = first_true(states, one_leader)
    assert first_single is not None
    return Run(
        impl=spec.impl,
        scenario=scenario,
        seconds=at,
        double_ready=count_double_ready(states, first_single, end),
        flaps=count_flaps(states, end),
        jvms_up=None if None in started else max(t for t in started if t is not None),
        cloud_formed=None if None in clouds else max(t for t in clouds if t is not None),
    )


def table_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for scenario in SCENARIOS:
        medians: dict[Impl, float] = {}
        lines: list[list[str]] = []
        for impl in Impl:
            mine = [r for r in runs if r.scenario == scenario and r.impl is impl]
            times = summarize([r.seconds for r in mine if r.seconds is not None])
            ok = [r for r in mine if r.seconds is not None]
            flaps = summarize([float(r.flaps) for r in ok])
            up = summarize([r.jvms_up for r in ok if r.jvms_up is not None])
            cloud = summarize([r.cloud_formed for r in ok if r.cloud_formed is not None])
            lead = summarize(
                [r.seconds - r.cloud_formed for r in ok if r.seconds and r.cloud_formed]
            )
            if times is not None:
                medians[impl] = times.median
            lines.append(
                [
                    scenario,
                    impl.value,
                    f"{sum(r.seconds is not None for r in mine)}/{len(mine)}",
                    fmt(None if times is None else times.median, 1),
                    "—" if times is None else times.span(),
                    fmt(None if up is None else up.median, 1),
                    fmt(None if cloud is None else cloud.median, 1),
                    fmt(None if lead is None else lead.median, 2),
                    str(sum(r.double_ready for r in mine)),
                    "—" if flaps is None else f"{flaps.median:g} ({flaps.span(digits=0)})",
                ]
            )
        ratio = None
        if Impl.OURS in medians and Impl.REFERENCE in medians:
            ratio = medians[Impl.OURS] / medians[Impl.REFERENCE]
        for line in lines:
            line.append(fmt(ratio, 2) + "x" if ratio is not None else "—")
        rows += lines
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one run per implementation")
    parser.add_argument("--runs", type=int, help="runs per implementation and scenario")
    args = parser.parse_args()
    runs_each = args.runs or (1 if args.quick else 3)
    jar = h2o_jar()
    runs: list[Run] = []
    for scenario, late in SCENARIOS.items():
        for index in range(runs_each * 2):
            impl = (Impl.OURS, Impl.REFERENCE)[index % 2]
            progress(f"{scenario}: {impl.value} run {index // 2 + 1}/{runs_each}")
            run = run_once(ClusterSpec(impl, late_last=late), scenario, jar)
            runs.append(run)
            progress(
                f"  -> {fmt(run.seconds, 2)} s (JVMs up {fmt(run.jvms_up, 2)}, cloud of 3 "
                f"{fmt(run.cloud_formed, 2)}), double-200 {run.double_ready}, flaps {run.flaps}"
                + (f"\n{run.error}" if run.error else "")
            )
            time.sleep(2)  # let the stopped JVMs' memory and CPU settle
    print("## Formation: start of 3 pods -> exactly one 200 and two 404, held 5 s\n")
    print(
        markdown_table(
            [
                "scenario",
                "implementation",
                "ok runs",
                "median s",
                "min-max s",
                "last JVM up s",
                "H2O cloud of 3 s",
                "ready minus cloud s",
                "double-200 after first single leader",
                "flaps median (min-max)",
                "ours/reference",
            ],
            table_rows(runs),
        )
    )
    print(f"\n{machine_note()}; kubelet poll every {KUBELET_PERIOD * 1000:.0f} ms")
    verdicts = []
    for scenario in SCENARIOS:
        ready = ratio_of_medians(runs, scenario, lambda r: r.seconds)
        cloud = ratio_of_medians(runs, scenario, lambda r: r.cloud_formed)
        if ready is None:
            verdicts.append(f"{scenario}: incomplete")
            continue
        met = "meets" if ready <= TARGET_RATIO else "misses"
        verdicts.append(
            f"{scenario}: {ready:.2f}x ({met} <= {TARGET_RATIO:.2f}x; to H2O's own cloud of 3: "
            f"{fmt(cloud, 2)}x)"
        )
    print("\nConclusion: ours/reference median time to one stable leader — " + "; ".join(verdicts))
    print(
        "The reference's pods are Ready as one leader before H2O has logged the cloud of 3 "
        "(negative 'ready minus cloud'); ours waits for the formed cloud, then follows it within "
        "a poll."
    )


def ratio_of_medians(
    runs: list[Run], scenario: str, value: Callable[[Run], float | None]
) -> float | None:
    """Median of ours over median of the reference for ``value`` among the completed runs."""
    medians = {}
    for impl in Impl:
        values = [
            v
            for r in runs
            if r.scenario == scenario and r.impl is impl and (v := value(r)) is not None
        ]
        if not values:
            return None
        medians[impl] = statistics.median(values)
    return medians[Impl.OURS] / medians[Impl.REFERENCE]


if __name__ == "__main__":
    main()
