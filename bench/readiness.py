"""Readiness reaction: from H2O's ``/3/Cloud`` showing the formed cloud to the probes saying so.

What: our entrypoint answers 200 on every pod while the cloud forms, so "the leader turns 200"
cannot be timed. Timed instead, per run of N=3 fresh simulated pods (``bench._common``): from
the first moment any pod's ``/3/Cloud`` (port 54321) shows the formed cloud (``consensus``,
``cloud_healthy`` and ``cloud_size == 3``) to the moment the last pod's ``/status`` says phase
``formed`` (the leader's is_leader true, each follower's readiness 404). Also per pod: from
its own ``/3/Cloud`` showing the formed cloud to its own ``/status`` saying ``formed`` (the
entrypoint's own reaction), and H2O's spread: how much later the last pod's ``/3/Cloud`` shows
the formed cloud than the first one's (consensus reaches H2O's nodes at different moments).
``/3/Cloud`` and ``/status`` are polled every 20 ms on every pod, so each time is exact to about
20 ms plus one HTTP round trip. Target: <= 250 ms.

For comparison, H2O's built-in discovery (the reference) is timed the same way up to the moment
exactly one pod answers 200 and the others 404, held 3 s (its non-leaders answer 403 on
``/3/Cloud``, so only its leader's view counts). A negative value means the pods were Ready
before the cloud had formed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from bench._common import (
    API_PORT,
    CLOUD_PATH,
    LEADER_PATH,
    STATUS_PATH,
    CloudView,
    Cluster,
    ClusterSpec,
    Impl,
    Poller,
    RunFailed,
    StatusView,
    cloud_view,
    first_stable,
    fmt,
    h2o_jar,
    machine_note,
    markdown_table,
    merge,
    observed_until,
    one_leader,
    progress,
    status_code,
    status_view,
    summarize,
    timelines,
    wait_until,
)
from k8s_sim.pods import H2O_PORT

SIZE = 3
PERIOD = 0.02
TARGET = 0.250
REFERENCE_HOLD = 3.0
DEADLINE = 120.0


@dataclass(frozen=True, slots=True)
class Reaction:
    impl: Impl
    #: Cluster level: first formed /3/Cloud anywhere -> last pod's probes reflect it.
    cluster: float | None
    #: Per pod: own /3/Cloud formed -> own /status formed (ours only).
    per_pod: tuple[float, ...] = ()
    #: When the first /3/Cloud showed the formed cloud (seconds since start).
    cloud_formed: float | None = None
    #: H2O's own spread: last pod's /3/Cloud formed minus the first one's (ours only).
    spread: float | None = None
    error: str | None = None


def first_formed(poller: Poller[CloudView | None]) -> float | None:
    return next((t for t, view in poller.snapshot() if view is not None and view.formed), None)


def first_phase_formed(poller: Poller[StatusView | None]) -> tuple[float, StatusView] | None:
    return next(
        ((t, v) for t, v in poller.snapshot() if v is not None and v.phase == "formed"), None
    )


def run_ours(jar: Path) -> Reaction:
    with Cluster(ClusterSpec(Impl.OURS, SIZE), jar) as cluster:
        cluster.start()
        clouds = cluster.observe(H2O_PORT, CLOUD_PATH, PERIOD, cloud_view(SIZE))
        statuses = cluster.observe(API_PORT, STATUS_PATH, PERIOD, status_view)

        def settled() -> list[tuple[float, StatusView]] | None:
            found = [first_phase_formed(poller) for poller in statuses]
            if any(item is None for item in found):
                return None
            return [item for item in found if item is not None]

        try:
            reacted = wait_until(settled, cluster, DEADLINE, step=0.05)
        except RunFailed as err:
            return Reaction(Impl.OURS, None, error=str(err))
        formed = [first_formed(poller) for poller in clouds]
    views = [view for _, view in reacted]
    roles = sorted(view.ready for view in views)
    if roles != [200] + [404] * (SIZE - 1) or sum(bool(v.is_leader) for v in views) != 1:
        return Reaction(Impl.OURS, None, error=f"unexpected roles once formed: {views}")
    known = [t for t in formed if t is not None]
    if not known:
        return Reaction(Impl.OURS, None, error="no /3/Cloud answer ever showed the formed cloud")
    start = min(known)
    per_pod = tuple(t - own for (t, _), own in zip(reacted, formed, strict=True) if own is not None)
    spread = max(known) - start if len(known) == len(formed) else None
    return Reaction(Impl.OURS, max(t for t, _ in reacted) - start, per_pod, start, spread)


def run_reference(jar: Path) -> Reaction:
    with Cluster(ClusterSpec(Impl.REFERENCE, SIZE), jar) as cluster:
        cluster.start()
        clouds = cluster.observe(H2O_PORT, CLOUD_PATH, PERIOD, cloud_view(SIZE))
        probes = cluster.observe(API_PORT, LEADER_PATH, PERIOD, status_code)

        def settled() -> tuple[float, float] | None:
            lines = timelines(probes)
            at = first_stable(merge(lines), one_leader, REFERENCE_HOLD, observed_until(lines))
            known = [t for t in map(first_formed, clouds) if t is not None]
            if at is None or not known:
                return None
            return at, min(known)

        try:
            ready, formed = wait_until(settled, cluster, DEADLINE, step=0.05)
        except RunFailed as err:
            return Reaction(Impl.REFERENCE, None, error=str(err))
    return Reaction(Impl.REFERENCE, ready - formed, (), formed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 runs of ours, 1 of the reference")
    parser.add_argument("--runs", type=int, help="runs of ours (default 5)")
    parser.add_argument("--reference-runs", type=int, help="runs of the reference (default 2)")
    args = parser.parse_args()
    ours_runs = args.runs or (2 if args.quick else 5)
    reference_runs = (
        args.reference_runs if args.reference_runs is not None else (1 if args.quick else 2)
    )
    jar = h2o_jar()
    plan = [Impl.OURS] * ours_runs
    for index in range(reference_runs):  # spread the reference runs among ours
        plan.insert(min(len(plan), 2 * index + 1), Impl.REFERENCE)
    results: list[Reaction] = []
    for number, impl in enumerate(plan, 1):
        progress(f"run {number}/{len(plan)}: {impl.value}")
        result = run_ours(jar) if impl is Impl.OURS else run_reference(jar)
        results.append(result)
        progress(
            f"  -> reaction {fmt(result.cluster, 3)} s, per pod "
            f"{', '.join(fmt(t, 3) for t in result.per_pod) or '—'}, H2O spread "
            f"{fmt(result.spread, 3)} s, cloud formed at "
            f"{fmt(result.cloud_formed, 2)} s" + (f"\n{result.error}" if result.error else "")
        )
        time.sleep(2)

    rows = []
    for impl in Impl:
        mine = [r for r in results if r.impl is impl]
        cluster = summarize([r.cluster for r in mine if r.cluster is not None])
        pods = summarize([t for r in mine for t in r.per_pod])
        spread = summarize([r.spread for r in mine if r.spread is not None])
        rows.append(
            [
                impl.value,
                f"{sum(r.cluster is not None for r in mine)}/{len(mine)}",
                fmt(None if cluster is None else cluster.median, 0, 1e3),
                fmt(None if cluster is None else cluster.low, 0, 1e3),
                fmt(None if cluster is None else cluster.high, 0, 1e3),
                fmt(None if pods is None else pods.median, 0, 1e3),
                fmt(None if pods is None else pods.high, 0, 1e3),
                fmt(None if spread is None else spread.median, 0, 1e3),
                fmt(None if spread is None else spread.high, 0, 1e3),
            ]
        )
    print("## Readiness reaction: /3/Cloud formed -> probes reflect the formed cloud\n")
    print(
        markdown_table(
            [
                "implementation",
                "ok runs",
                "cluster median ms",
                "cluster min ms",
                "cluster max ms",
                "per-pod median ms",
                "per-pod max ms",
                "H2O spread median ms",
                "H2O spread max ms",
            ],
            rows,
        )
    )
    print(f"\n{machine_note()}; /3/Cloud and probes polled every {PERIOD * 1000:.0f} ms")
    ours = summarize([r.cluster for r in results if r.impl is Impl.OURS and r.cluster is not None])
    pods = summarize([t for r in results if r.impl is Impl.OURS for t in r.per_pod])
    if ours is None or pods is None:
        print("\nConclusion: no run of ours completed.")
        return
    print(
        f"\nConclusion: each pod's probes follow its own /3/Cloud within {pods.median * 1e3:.0f} "
        f"ms (max {pods.high * 1e3:.0f} ms: {verdict(pods.high)} the <= {TARGET * 1e3:.0f} ms "
        f"target); the whole cluster settles {ours.median * 1e3:.0f} ms (max "
        f"{ours.high * 1e3:.0f} ms) after the first /3/Cloud shows the formed cloud "
        f"({verdict(ours.high)} the target), the difference being H2O's own spread of consensus "
        "between its nodes; the reference's readiness comes before its cloud has formed."
    )


def verdict(seconds: float) -> str:
    return "meets" if seconds <= TARGET else "misses"


if __name__ == "__main__":
    main()
