"""Time to one Ready leader: our entrypoint against H2O's built-in Kubernetes discovery.

What: seconds from starting N=3 simulated pods (all at t=0) until exactly one pod answers 200 on
``/kubernetes/isLeaderNode``, provided that then held for 5 s without a break. In the *seed*
scenarios the others must answer anything but 200 and that pod's ``/3/Cloud`` must show the full
cloud with consensus (issue 15's measure: H2O's built-in probe turns 200 before its cloud has
formed, so the cloud itself is the finish line); in the *tuned* ones the others must answer 404.

How: every run builds fresh pods (network namespaces, fresh ice and temp dirs, a new cloud name)
and a DNS server on the pods' gateway (``bench._common``). *Ours*: each pod runs
``h2o-k8s-discovery run``; in the seed scenarios with exactly the env and args of
``docker/kubernetes/h2o-compatible.yaml`` (H2O's four variables, API port 8081: no POD_IP, no
setting of ours) plus the per-pod paths; in the tuned ones with POD_IP, a cloud name and early
start as well. *Reference*: each pod runs the same jar with the four variables in its
environment (H2O's own discovery). The bench polls readiness and ``/3/Cloud`` every 150 ms.
DNS: either every pod's records at start (``publishNotReadyAddresses: true``), or *ready-gated*:
a kubelet-like prober per pod with the seed's readiness probe (initial delay 5 s, period 5 s,
failure threshold 1) publishes a pod only while it is Ready. Runs alternate ours/reference, pair
by pair, in every scenario.

Columns besides the time: *double-200* counts episodes of two or more pods answering 200 at once
after the first moment exactly one did (a second "leader" after formation: should be 0 for ours);
*flaps* counts changes of the set of pods answering 200 once every pod has answered at all.
The ratio is ours/reference of the medians (target: <= 0.80). ``--timeline`` adds, per run and
as medians over runs, where the time went (``bench._timeline``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import (
    API_PORT,
    CLOUD_PATH,
    LEADER_PATH,
    CloudView,
    Cluster,
    ClusterSpec,
    DnsMode,
    EnvMode,
    Impl,
    Poller,
    RunFailed,
    State,
    cloud_view,
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
from bench._timeline import EVENTS, Moments, pod_moments, prober_moments
from k8s_sim.pods import H2O_PORT

HOLD = 5.0
POLL_PERIOD = 0.15
TARGET_RATIO = 0.80
SIZE = 3
#: High in 198.18.0.0/15, away from the first free /24s that other harnesses take.
SUBNET = "198.19.250.0/24"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row pair of the table: how ours is configured, how DNS behaves, what counts."""

    name: str
    env: EnvMode
    dns: DnsMode
    #: Seconds after start at which the last pod's records appear (``None``: at start).
    late_last: float | None = None
    #: The seed measure: the leader's /3/Cloud must show the full cloud; others just non-200.
    full_cloud: bool = True
    deadline: float = 240.0


SCENARIOS = {
    "seed": [
        Scenario("seed env, records at once", EnvMode.SEED, DnsMode.AT_ONCE),
        Scenario("seed env, ready-gated", EnvMode.SEED, DnsMode.READY_GATED),
    ],
    "tuned": [
        Scenario(
            "tuned env, all records at start",
            EnvMode.TUNED,
            DnsMode.AT_ONCE,
            full_cloud=False,
            deadline=120.0,
        ),
        Scenario(
            "tuned env, third record 10 s late",
            EnvMode.TUNED,
            DnsMode.AT_ONCE,
            late_last=10.0,
            full_cloud=False,
            deadline=150.0,
        ),
    ],
}
SCENARIOS["all"] = SCENARIOS["seed"] + SCENARIOS["tuned"]


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
    #: Per pod: where its time went (``bench._timeline``).
    moments: list[Moments] = field(default_factory=list)
    leader: int | None = None


def one_formed_leader(size: int) -> Callable[[State[object]], bool]:
    """Over (codes of N pods, then their latest /3/Cloud views): exactly one pod answers 200,
    the others anything else, and that pod's cloud view shows the full cloud."""

    def holds(state: State[object]) -> bool:
        codes, views = state[:size], state[size:]
        ready = [i for i, code in enumerate(codes) if code == 200]
        if len(ready) != 1:
            return False
        view = views[ready[0]]
        return isinstance(view, CloudView) and view.formed

    return holds


def answered(line: Sequence[tuple[float, CloudView | None]]) -> list[tuple[float, CloudView]]:
    """The samples with an answer: a slow or refused /3/Cloud poll says nothing new."""
    return [(t, view) for t, view in line if view is not None]


def settled_at(line: Sequence[tuple[float, int | None]], end: float) -> float | None:
    """When a pod's readiness answer took the value it still had at ``end``."""
    samples = [(t, code) for t, code in line if t <= end]
    if not samples:
        return None
    final = samples[-1][1]
    at = samples[-1][0]
    for t, code in reversed(samples):
        if code != final:
            break
        at = t
    return at


def _one_leader_404(state: State[object]) -> bool:
    """The tuned measure: exactly one 200, every other pod 404."""
    return one_leader(tuple(code if isinstance(code, int) else None for code in state))


def keep_logs(cluster: Cluster, directory: Path) -> None:
    """Copy every pod's log (entrypoint and H2O) to ``directory/<pod>.log`` before cleanup."""
    directory.mkdir(parents=True, exist_ok=True)
    for pod in cluster.pods:
        with contextlib.suppress(OSError):
            shutil.copyfile(cluster.log_path(pod), directory / f"{pod.name}.log")


def run_once(spec: ClusterSpec, scenario: Scenario, jar: Path, logs: Path | None = None) -> Run:
    """One run: start the pods, poll until one leader held for ``HOLD`` s, read the logs."""
    with Cluster(spec, jar) as cluster:
        try:
            return _observe(cluster, spec, scenario)
        finally:
            if logs is not None:
                keep_logs(cluster, logs)


def _observe(cluster: Cluster, spec: ClusterSpec, scenario: Scenario) -> Run:
    """Start the entered cluster, wait for the finish line, gather the timeline."""
    cluster.start()
    leaders = cluster.observe(API_PORT, LEADER_PATH, POLL_PERIOD, status_code)
    clouds: list[Poller[CloudView | None]] = []
    if scenario.full_cloud:
        clouds = cluster.observe(H2O_PORT, CLOUD_PATH, POLL_PERIOD, cloud_view(spec.size))
    holds = one_formed_leader(spec.size) if scenario.full_cloud else _one_leader_404

    def lines() -> list[Sequence[tuple[float, object]]]:
        codes_now = timelines(leaders)
        current: list[Sequence[tuple[float, object]]] = [*codes_now]
        current += [answered(line) for line in timelines(clouds)]
        return current

    def formed() -> tuple[float, float] | None:
        current = lines()
        codes_now = timelines(leaders)
        end = observed_until(codes_now)
        at = first_stable(merge(current), holds, HOLD, end)
        return None if at is None else (at, end)

    try:
        at, end = wait_until(formed, cluster, scenario.deadline)
    except RunFailed as err:
        return Run(spec.impl, scenario.name, None, 0, 0, error=str(err))
    codes = timelines(leaders)
    views = [answered(line) for line in timelines(clouds)]
    states = merge(codes)
    events = cluster.h2o_events()
    moments = [pod_moments(cluster.log_path(pod), cluster.wall0, spec.size) for pod in cluster.pods]
    changes = [] if cluster.endpoints is None else cluster.endpoints.snapshot()
    for index, prober in enumerate(cluster.probers):
        moments[index] |= prober_moments(index, prober.results, changes)
    final = states[-1][1] if states else ()
    leader = next((i for i, code in enumerate(final) if code == 200), None)
    for index, pod_codes in enumerate(codes):
        settled = settled_at(pod_codes, end)
        if settled is not None:
            moments[index]["final readiness"] = settled
        if views:
            consensus = next((t for t, view in views[index] if view.formed), None)
            if consensus is not None:
                moments[index]["consensus (poll)"] = consensus
    started = [e.started for e in events]
    cloud_of = [e.first_cloud_of(spec.size) for e in events]
    # The first "200 and two 404": one 200 with the others not answering yet is no leader.
    first_single = first_true(states, one_leader)
    return Run(
        impl=spec.impl,
        scenario=scenario.name,
        seconds=at,
        double_ready=0 if first_single is None else count_double_ready(states, first_single, end),
        flaps=count_flaps(states, end),
        jvms_up=None if None in started else max(t for t in started if t is not None),
        cloud_formed=None if None in cloud_of else max(t for t in cloud_of if t is not None),
        moments=moments,
        leader=leader,
    )


# --- reporting -----------------------------------------------------------------------------------


def of(runs: Sequence[Run], scenario: str, impl: Impl) -> list[Run]:
    return [r for r in runs if r.scenario == scenario and r.impl is impl]


def table_rows(runs: list[Run], scenarios: Sequence[Scenario]) -> list[list[str]]:
    rows = []
    for scenario in scenarios:
        medians: dict[Impl, float] = {}
        lines: list[list[str]] = []
        for impl in Impl:
            mine = of(runs, scenario.name, impl)
            ok = [r for r in mine if r.seconds is not None]
            times = summarize([r.seconds for r in ok if r.seconds is not None])
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
                    scenario.name,
                    impl.value,
                    f"{len(ok)}/{len(mine)}",
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
        pairs = summarize(pair_ratios(runs, scenario.name))
        for line in lines:
            line.append(fmt(ratio, 2) + "x" if ratio is not None else "—")
            line.append("—" if pairs is None else f"{pairs.median:.2f}x ({pairs.span(digits=2)})")
        rows += lines
    return rows


def pair_ratios(runs: Sequence[Run], scenario: str) -> list[float]:
    """Ours over the reference within each pair (the runs next to each other in time, so under
    much the same load), for the pairs where both finished."""
    ours, reference = of(runs, scenario, Impl.OURS), of(runs, scenario, Impl.REFERENCE)
    return [
        a.seconds / b.seconds
        for a, b in zip(ours, reference, strict=False)
        if a.seconds is not None and b.seconds
    ]


def ratio_of_medians(
    runs: list[Run], scenario: str, value: Callable[[Run], float | None]
) -> float | None:
    """Median of ours over median of the reference for ``value`` among the completed runs."""
    medians = {}
    for impl in Impl:
        values = [v for r in of(runs, scenario, impl) if (v := value(r)) is not None]
        if not values:
            return None
        medians[impl] = statistics.median(values)
    return medians[Impl.OURS] / medians[Impl.REFERENCE]


def run_timeline(run: Run) -> str:
    """One run's moments per pod (rows: events in their usual order; columns: pods)."""
    names = [f"h2o-{i}" + (" (leader)" if i == run.leader else "") for i in range(SIZE)]
    rows = [
        [event, *(fmt(pod.get(event), 2) for pod in run.moments)]
        for event in EVENTS
        if any(event in pod for pod in run.moments)
    ]
    return markdown_table(["s since start", *names], rows)


def median_timeline(runs: Sequence[Run]) -> str:
    """Per event, the median over runs of the earliest pod, the latest pod and the leader."""
    ok = [r for r in runs if r.seconds is not None and r.moments]
    rows = []
    for event in EVENTS:
        first = [min(vs) for r in ok if (vs := [p[event] for p in r.moments if event in p])]
        last = [max(vs) for r in ok if (vs := [p[event] for p in r.moments if event in p])]
        lead = [
            r.moments[r.leader][event]
            for r in ok
            if r.leader is not None and event in r.moments[r.leader]
        ]
        if not first:
            continue
        rows.append(
            [
                event,
                fmt(statistics.median(first), 2),
                fmt(statistics.median(last), 2),
                fmt(statistics.median(lead), 2) if lead else "—",
                str(len(first)),
            ]
        )
    rows.append(
        [
            "**one formed leader, held 5 s**",
            "",
            "",
            fmt(statistics.median([r.seconds for r in ok if r.seconds is not None]), 2)
            if ok
            else "—",
            str(len(ok)),
        ]
    )
    return markdown_table(
        ["event (median over runs, s)", "first pod", "last pod", "leader", "runs"], rows
    )


#: Stages of a run: (label, from, to); each is the last pod's ``to`` minus the last pod's
#: ``from`` ("start": 0, "finish": the run's time), the slowest pod being the one waited for.
STAGES = (
    ("start -> JVM spawned (ours) / probe server up (reference)", "start", "boot"),
    ("start -> published (ready-gated)", "start", "published"),
    ("published -> lookup end", "published", "lookup end"),
    ("lookup end -> agreement end", "lookup end", "agreement end"),
    ("JVM spawned (ours) / lookup end (reference) -> H2O main", "jvm", "H2O main"),
    ("H2O main -> heartbeat", "H2O main", "heartbeat"),
    ("heartbeat -> cloud of N", "heartbeat", "cloud of N"),
    ("cloud of N -> REST up", "cloud of N", "REST up"),
    ("cloud of N -> finish", "cloud of N", "finish"),
)


def _last(run: Run, event: str) -> float | None:
    if event == "start":
        return 0.0
    if event == "finish":
        return run.seconds
    if event == "boot":
        event = "JVM spawned" if run.impl is Impl.OURS else "probes up"
    if event == "jvm":
        event = "JVM spawned" if run.impl is Impl.OURS else "lookup end"
    values = [pod[event] for pod in run.moments if event in pod]
    return max(values) if len(values) == len(run.moments) and values else None


def stage_table(runs: Sequence[Run]) -> str:
    """Median (min-max) over runs of each stage's length, for one implementation."""
    ok = [r for r in runs if r.seconds is not None and r.moments]
    rows = []
    for label, start, end in STAGES:
        lengths = [
            b - a
            for r in ok
            if (a := _last(r, start)) is not None and (b := _last(r, end)) is not None
        ]
        stats = summarize(lengths)
        if stats is not None:
            rows.append([label, fmt(stats.median, 2), stats.span(digits=2), str(stats.count)])
    return markdown_table(["stage (last pod), s", "median", "min-max", "runs"], rows)


def report(runs: list[Run], scenarios: Sequence[Scenario], timeline: bool) -> None:
    print("## Formation: start of 3 pods -> one Ready leader, held 5 s\n")
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
                "ours/reference (medians)",
                "ours/reference per pair, median (min-max)",
            ],
            table_rows(runs, scenarios),
        )
    )
    print(f"\n{machine_note()}; bench poll every {POLL_PERIOD * 1000:.0f} ms")
    verdicts = []
    for scenario in scenarios:
        ready = ratio_of_medians(runs, scenario.name, lambda r: r.seconds)
        cloud = ratio_of_medians(runs, scenario.name, lambda r: r.cloud_formed)
        if ready is None:
            verdicts.append(f"{scenario.name}: incomplete")
            continue
        met = "meets" if ready <= TARGET_RATIO else "misses"
        verdicts.append(
            f"{scenario.name}: {ready:.2f}x ({met} <= {TARGET_RATIO:.2f}x; to H2O's own cloud "
            f"of 3: {fmt(cloud, 2)}x)"
        )
    print("\nConclusion: ours/reference median time to one stable leader — " + "; ".join(verdicts))
    if not timeline:
        return
    for scenario in scenarios:
        for impl in Impl:
            mine = of(runs, scenario.name, impl)
            print(f"\n### Where the time goes: {scenario.name}, {impl.value}\n")
            print(median_timeline(mine))
            print()
            print(stage_table(mine))
            for number, run in enumerate(mine, 1):
                print(f"\nRun {number}: {fmt(run.seconds, 2)} s\n")
                print(run_timeline(run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one pair per scenario")
    parser.add_argument(
        "--pairs", "--runs", type=int, help="ours/reference pairs per scenario (default 5)"
    )
    parser.add_argument(
        "--scenarios",
        choices=sorted(SCENARIOS),
        default="seed",
        help="seed (default): the seed manifest's env, both DNS modes; tuned: the older "
        "scenarios with POD_IP and early start; all: both sets",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="also print where the time went, per pod"
    )
    parser.add_argument(
        "--subnet",
        default=SUBNET,
        help=f"the pods' /24 in every run, when free (default {SUBNET}; 'auto': the first free)",
    )
    parser.add_argument(
        "--h2o-args",
        default="",
        help="extra H2O arguments for both implementations, for diagnosis (e.g. '-log_level "
        "DEBUG'); the numbers are then not the seed's",
    )
    parser.add_argument("--json", type=Path, help="also write every run's data to this file")
    parser.add_argument(
        "--report", type=Path, help="run nothing: print the report of a file --json wrote"
    )
    parser.add_argument(
        "--keep-logs", type=Path, help="copy every pod's log to DIR/<run>-<scenario>-<impl>/"
    )
    args = parser.parse_args()
    pairs = args.pairs or (1 if args.quick else 5)
    scenarios = SCENARIOS[args.scenarios]
    if args.report is not None:
        machine, saved = load(args.report)
        print(f"(from {args.report}, written at {machine})\n")
        names = {run.scenario for run in saved}
        report(saved, [s for s in SCENARIOS["all"] if s.name in names], args.timeline)
        return
    jar = h2o_jar()
    progress(machine_note())
    runs: list[Run] = []
    for pair in range(pairs):
        for scenario in scenarios:
            # ABBA order: neither implementation always runs on the machine the other just left.
            for impl in list(Impl) if pair % 2 == 0 else list(reversed(Impl)):
                progress(f"{scenario.name}: {impl.value} run {pair + 1}/{pairs}")
                spec = ClusterSpec(
                    impl,
                    size=SIZE,
                    late_last=scenario.late_last,
                    env=scenario.env,
                    dns=scenario.dns,
                    subnet=None if args.subnet == "auto" else args.subnet,
                    h2o_args=tuple(args.h2o_args.split()),
                )
                logs = None
                if args.keep_logs is not None:
                    slug = scenario.name.replace(" ", "-").replace(",", "")
                    logs = args.keep_logs / f"{pair + 1}-{slug}-{impl.value}"
                run = run_once(spec, scenario, jar, logs)
                runs.append(run)
                progress(
                    f"  -> {fmt(run.seconds, 2)} s (JVMs up {fmt(run.jvms_up, 2)}, cloud of 3 "
                    f"{fmt(run.cloud_formed, 2)}), double-200 {run.double_ready}, "
                    f"flaps {run.flaps}; load {machine_note()}"
                    + (f"\n{run.error}" if run.error else "")
                )
                if args.json is not None:
                    save(runs, args.json)
                time.sleep(2)  # let the stopped JVMs' memory and CPU settle
    report(runs, scenarios, args.timeline)


def load(path: Path) -> tuple[str, list[Run]]:
    """The machine note and the runs of a file ``save`` wrote."""
    data = json.loads(path.read_text())
    runs = [Run(**(item | {"impl": Impl(item["impl"])})) for item in data["runs"]]
    return str(data["machine"]), runs


def save(runs: Sequence[Run], path: Path) -> None:
    """Every run so far as JSON, rewritten after each run so that an interruption loses one."""
    data = [dataclasses.asdict(run) | {"impl": run.impl.value} for run in runs]
    path.write_text(json.dumps({"machine": machine_note(), "runs": data}, indent=1))


if __name__ == "__main__":
    main()
