"""python -m bench [--quick]: measure the relay, print a table, write JSON, markdown and plots.

    make bench            # full run, ~25 minutes on a 2-core machine
    make bench QUICK=1    # about a minute

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

from . import inproc, report
from .scale import (
    WORKER_KINDS,
    Timing,
    budgets_available,
    run_point,
    run_side_by_side,
    summarize,
    wait_quiet,
)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

FULL_NS = [1, 50, 100, 200, 250, 300, 400, 500, 600]
QUICK_NS = [1, 50]
# The relay (Media Streams), the relay in SIP mode (OpenAI carries the audio), the new floor
# (the same trivial pass-through on aiohttp's server) and the old stack (that pass-through
# on Hypercorn), side by side in one run.
SERVERS = "relay,relay-sip,sip-floor,passthrough-aiohttp,passthrough"
FLOOR = "passthrough-aiohttp"
RATIO_NS = frozenset({50, 100})  # where the relay's CPU is compared with the floor's
# One worker vs two: each worker gets this share of a core (bench/scale.py, CpuBudget), and
# a point passes with no frame lost and p99 under WORKER_P99_MS both ways.
# A coarse climb; then each series is bisected between its last pass and its first failure
# down to WORKER_STEP calls, so neither series' capacity depends on where the grid falls.
WORKER_NS = [150, 250, 350, 450, 550, 650, 750, 850]
WORKER_STEP = 25
QUICK_WORKER_NS = [100, 200]
WORKER_SHARE = 0.5
WORKER_P99_MS = 20.0


def broke(s: dict[str, Any]) -> str:
    """Why this point is past what the server (or the generator) can carry; "" if fine."""
    if s["connected"] < s["calls"]:
        return f"only {s['connected']}/{s['calls']} calls connected"
    if s["frames_lost"] or s["media_lost"] or s["frames_reordered"] or s["media_reordered"]:
        return "frames lost or reordered"
    if s["server_cpu_frac"] > 0.97:
        return f"server core saturated ({100 * s['server_cpu_frac']:.0f}%)"
    if s["in_lat"]["p99"] > 200 or s["out_lat"]["p99"] > 200:
        return "p99 latency > 200 ms"
    return ""


def gen_limited(s: dict[str, Any]) -> str:
    if s["gen_cpu_frac"] > 0.9:
        return f"generator core at {100 * s['gen_cpu_frac']:.0f}%"
    if s["pacer_late"]["p99"] > 10:
        return f"generator's 20 ms ticks {s['pacer_late']['p99']:.0f} ms late (p99)"
    return ""


def worker_broke(s: dict[str, Any]) -> str:
    if s["connected"] < s["calls"]:
        return f"only {s['connected']}/{s['calls']} calls connected"
    if s["frames_lost"] or s["media_lost"] or s["frames_reordered"] or s["media_reordered"]:
        return "frames lost or reordered"
    if max(s["in_lat"]["p99"], s["out_lat"]["p99"]) > WORKER_P99_MS:
        return f"p99 > {WORKER_P99_MS:.0f} ms"
    return ""


def measure_workers(kind: str, n: int, t: Timing) -> dict[str, Any]:
    """One point of the one-vs-two-workers series, measured again if disturbed."""
    s: dict[str, Any] = {}
    for attempt in range(3):
        first = s
        s = summarize(run_point(kind, n, t, share=WORKER_SHARE))
        s["broke"], s["gen_limited"] = worker_broke(s), gen_limited(s)
        if attempt:
            s["retried"] = f"first try disturbed ({100 * first['other_cpu_frac']:.0f}% other load)"
        if not (s["broke"] or s["gen_limited"]) or s["other_cpu_frac"] <= 0.25:
            break
    return s


def refine(points: list[dict[str, Any]]) -> Iterator[int]:
    """Call counts between a series' last pass and its first failure, halving the gap down
    to WORKER_STEP; `points` grows as the caller measures each one."""
    while True:
        failed = [p["calls"] for p in points if p["broke"] or p["gen_limited"]]
        if not failed:
            return
        hi = min(failed)
        lo = max((p["calls"] for p in points if p["calls"] < hi), default=0)
        if hi - lo <= WORKER_STEP:
            return
        yield lo + max(WORKER_STEP, (hi - lo) // 2 // WORKER_STEP * WORKER_STEP)


def measure(kind: str, n: int, t: Timing, prof: str | None) -> dict[str, Any]:
    """One scale point, measured again if another process took the machine meanwhile."""
    s = summarize(run_point(kind, n, t, profile=prof))
    s["broke"] = broke(s)
    s["gen_limited"] = gen_limited(s)
    if (s["broke"] or s["gen_limited"]) and s["other_cpu_frac"] > 0.25:
        first = s
        s = summarize(run_point(kind, n, t, profile=prof))
        s["broke"] = broke(s)
        s["gen_limited"] = gen_limited(s)
        s["retried"] = f"first try disturbed ({100 * first['other_cpu_frac']:.0f}% other load)"
    return s


def measure_side_by_side(kinds: list[str], n: int, t: Timing) -> list[dict[str, Any]]:
    """One scale point of several servers at once (`run_side_by_side`)."""
    points = [summarize(r) for r in run_side_by_side(kinds, n, t)]
    for kind, s in zip(kinds, points, strict=True):
        s["broke"], s["gen_limited"] = broke(s), gen_limited(s)
        s["beside"] = [k for k in kinds if k != kind]
    return points


def median_pair(
    runs: dict[str, list[dict[str, Any]]], pair: list[str]
) -> dict[str, dict[str, Any]]:
    """The pair of runs (first kind over second, same window) whose CPU ratio is the median;
    every pair's ratio is kept on the first kind's run."""
    first, second = (runs[k] for k in pair)
    ratios = [
        a["server_cpu_ms_per_call_s"] / max(1e-9, b["server_cpu_ms_per_call_s"])
        for a, b in zip(first, second, strict=True)
    ]
    m = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    first[m]["pair_ratios"] = ratios
    return {pair[0]: first[m], pair[1]: second[m]}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="about a minute instead of ~10")
    ap.add_argument(
        "--servers",
        default=SERVERS,
        help="scale test servers: relay, relay-sip (SIP mode), sip-floor (SIP mode's floor), "
        "passthrough-aiohttp (the floor), passthrough (the same on Hypercorn)",
    )
    ap.add_argument("--ns", help="comma-separated call counts for the scale test")
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help=f"runs per server at {sorted(RATIO_NS)} calls (the relay and its floor: pairs run "
        "side by side), the median reported (full: 5, quick: 1)",
    )
    ap.add_argument("--profile", action="store_true", help="py-spy the relay at each N")
    ap.add_argument("--only", help="comma list of: hop,scale,workers,first,barge")
    ap.add_argument("--worker-ns", help="call counts for the one-vs-two-workers series")
    args = ap.parse_args()
    quick = args.quick
    if args.repeat is None:
        args.repeat = 1 if quick else 5
    ns = [int(x) for x in args.ns.split(",")] if args.ns else (QUICK_NS if quick else FULL_NS)
    only = set(args.only.split(",")) if args.only else {"hop", "scale", "workers", "first", "barge"}
    worker_ns = (
        [int(x) for x in args.worker_ns.split(",")]
        if args.worker_ns
        else (QUICK_WORKER_NS if quick else WORKER_NS)
    )
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    hop_t = Timing(ramp_s=0.2, warm_s=1.0, measure_s=6 if quick else 20)

    def scale_t(n: int) -> Timing:
        return Timing(ramp_s=max(1.0, n / 150), warm_s=2.0 if quick else 3.0,
                      measure_s=5 if quick else 12)  # fmt: skip

    est: dict[str, float] = {}
    if "hop" in only:
        est["hop"] = 3 * (hop_t.measure_s + 6)
    if "scale" in only:
        est["scale"] = sum(3 * (scale_t(n).measure_s + scale_t(n).ramp_s + 8) for n in ns)
    if "workers" in only:
        est["workers"] = sum(2 * (scale_t(n).measure_s + scale_t(n).ramp_s + 10) for n in worker_ns)
        est["workers"] += 4 * (scale_t(worker_ns[-1]).measure_s + 10)  # the bisection points
    if "first" in only:
        est["first"] = 12 if quick else 30
    if "barge" in only:
        est["barge"] = 12 if quick else 25
    bar = tqdm(
        total=round(sum(est.values())),
        unit="s",
        desc="bench",
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s est. [{elapsed}<{remaining}]",
    )

    results: dict[str, Any] = {
        "stamp": stamp,
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }

    def step(name: str, cost: float) -> None:
        bar.set_postfix_str(name)
        # Estimates can run short (a retried point): never past the total, which tqdm's
        # "remaining" cannot format.
        bar.update(max(0.0, min(cost, bar.total - bar.n)))

    if "hop" in only:
        hop: dict[str, Any] = {}
        for kind in ("relay", FLOOR, "passthrough"):
            bar.set_postfix_str(f"hop overhead, 1 call, {kind}")
            hop[kind] = summarize(run_point(kind, 1, hop_t))
            step("hop", hop_t.measure_s + 6)
        results["hop"] = hop

    if "scale" in only:
        servers = args.servers.split(",")
        scale: dict[str, list[dict[str, Any]]] = {kind: [] for kind in servers}
        stopped: dict[str, str] = {}
        for n in ns:
            t = scale_t(n)
            # CPU per call-second of separate runs moves by up to 2x on a shared VM: where a
            # target compares the relay with its floor, the two run side by side `repeat`
            # times and the pair with the median ratio is reported (every pair in the JSON);
            # without that pair, each server is measured `repeat` times, median kept.
            reps = args.repeat if n in RATIO_NS else 1
            runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in servers}
            paired = [k for k in ("relay", FLOOR) if k in servers] if n in RATIO_NS else []
            paired = paired if len(paired) == 2 and not set(paired) & set(stopped) else []
            for rep in range(reps):
                label = f" (run {rep + 1}/{reps})" if reps > 1 else ""
                if paired:
                    cost = 2 * (t.measure_s + t.ramp_s + 8) / reps
                    bar.set_postfix_str(f"scale: {n} calls, {' beside '.join(paired)}{label}")
                    for kind, point in zip(paired, measure_side_by_side(paired, n, t), strict=True):
                        runs[kind].append(point)
                    step(f"{n} calls side by side", cost)
                for kind in servers:
                    cost = (t.measure_s + t.ramp_s + 8) / reps
                    if kind in paired or (paired and rep):
                        continue  # the others are measured once where the pair is
                    if kind in stopped:
                        step("skipped", cost)
                        continue
                    bar.set_postfix_str(f"scale: {n} calls, {kind}{label}")
                    prof = (
                        os.path.join(RESULTS, f"{stamp}-pyspy-{kind}-{n}") if args.profile else None
                    )
                    runs[kind].append(measure(kind, n, t, prof))
                    step(f"{n} calls {kind}", cost)
            chosen = median_pair(runs, paired) if paired else {}
            for kind in servers:
                if not runs[kind]:
                    continue
                ordered = sorted(runs[kind], key=lambda r: r["server_cpu_ms_per_call_s"])
                s = chosen.get(kind) or ordered[len(ordered) // 2]
                if len(ordered) > 1:
                    s["cpu_runs"] = [r["server_cpu_ms_per_call_s"] for r in runs[kind]]
                scale[kind].append(s)
                if s["broke"] or s["gen_limited"]:
                    stopped[kind] = s["broke"] or s["gen_limited"]
            if all(kind in stopped for kind in servers):
                break
        results["scale"] = scale
        results["scale_stopped"] = stopped

    if "workers" in only:
        why = budgets_available()
        if why:
            results["workers"] = {"skipped": why}
            step("workers skipped", est["workers"])
        else:
            rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in WORKER_KINDS}
            halted: dict[str, str] = {}
            for n in worker_ns:
                for kind in WORKER_KINDS:
                    cost = scale_t(n).measure_s + scale_t(n).ramp_s + 10
                    if kind in halted:
                        step("skipped", cost)
                        continue
                    bar.set_postfix_str(f"workers: {n} calls, {kind}")
                    point = measure_workers(kind, n, scale_t(n))
                    rows[kind].append(point)
                    if point["broke"] or point["gen_limited"]:
                        halted[kind] = point["broke"] or point["gen_limited"]
                    step(f"{n} calls {kind}", cost)
                if all(kind in halted for kind in WORKER_KINDS):
                    break
            for kind in WORKER_KINDS:
                for n in refine(rows[kind]):
                    bar.set_postfix_str(f"workers: {n} calls, {kind} (bisecting)")
                    rows[kind].append(measure_workers(kind, n, scale_t(n)))
                rows[kind].sort(key=lambda p: p["calls"])
            capacity = {
                kind: max(
                    (p["calls"] for p in rows[kind] if not p["broke"] and not p["gen_limited"]),
                    default=0,
                )
                for kind in WORKER_KINDS
            }
            results["workers"] = {
                "share": WORKER_SHARE,
                "p99_ms": WORKER_P99_MS,
                "rows": rows,
                "capacity": capacity,
                "stopped": halted,
                "measured_up_to": worker_ns[-1],
            }

    if "first" in only:
        bar.set_postfix_str("first answer")
        wait_quiet(30)
        results["first_answer"] = asyncio.run(inproc.first_answer(2 if quick else 5))
        step("first answer", est["first"])

    if "barge" in only:
        bar.set_postfix_str("barge-in")
        wait_quiet(30)
        results["barge_in"] = asyncio.run(inproc.barge_in(1 if quick else 4))
        step("barge-in", est["barge"])
    bar.close()

    path = os.path.join(RESULTS, f"{stamp}{'-quick' if quick else ''}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    md = report.markdown(results, os.path.basename(path))
    # Only a full run replaces the committed summary and plots; a quick or partial one
    # (--quick, --only, --ns) writes to results/partial/, so it cannot clobber them.
    complete = (
        not args.only
        and not args.ns
        and not args.worker_ns
        and not quick
        and args.servers == SERVERS
    )
    out_dir = RESULTS if complete else os.path.join(RESULTS, "partial")
    os.makedirs(out_dir, exist_ok=True)
    pngs = report.plots(results, out_dir) if "scale" in only else []
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"\nraw results: {path}")
    for p in pngs:
        print(f"plot: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
