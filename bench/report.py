"""The markdown summary and the PNG plots of one bench run."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

TARGET_CPU_RATIO = 1.15  # relay CPU per call-second over the aiohttp pass-through's
TARGET_CALLS_PER_CORE = 250
TARGET_P99_MS = 20.0
TARGET_P50_MS = 0.5
TARGET_KB_PER_CALL = 100
TARGET_BARGE_MS = 40.0
FLOOR = "passthrough-aiohttp"  # the trivial pass-through on the relay's own stack
SIP = "relay-sip"  # the relay in SIP mode: the same calls, OpenAI carrying the audio
SIP_FLOOR = "sip-floor"  # only reading those calls' control sockets: SIP mode's floor
TARGET_SIP_FACTOR = 20.0
OLD = "passthrough"  # the same on Hypercorn, the relay's stack before


def _f(x: float | None, nd: int = 2) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.{nd}f}"


def _ok(good: bool) -> str:
    return "met" if good else "**not met**"


def _largest_clean(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    clean = [p for p in points if not p.get("broke")]
    return clean[-1] if clean else None


def markdown(res: dict[str, Any], json_name: str) -> str:
    out: list[str] = []
    mode = "quick" if res.get("quick") else "full"
    m = res["machine"]
    out.append(f"# Relay benchmarks ({mode} run {res['stamp']})")
    out.append("")
    out.append(
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}. "
        f"Raw numbers: `bench/results/{json_name}` (git-ignored). "
        "Command: `make bench` (`make bench QUICK=1` for the quick run). "
        "How it is measured: [bench/README.md](../README.md)."
    )
    out.append("")
    heads: list[str] = []
    hop = res.get("hop")
    scale = res.get("scale")
    if hop:
        r, p = hop["relay"], hop[FLOOR if FLOOR in hop else OLD]
        d_in = r["in_lat"]["p50"] - p["in_lat"]["p50"]
        d_out = r["out_lat"]["p50"] - p["out_lat"]["p50"]
        heads.append(
            f"- One call, p50 hop overhead over the pass-through: inbound {_f(d_in, 3)} ms, "
            f"outbound {_f(d_out, 3)} ms (target < {TARGET_P50_MS} ms: "
            f"{_ok(d_in < TARGET_P50_MS and d_out < TARGET_P50_MS)})"
        )
    if scale and scale.get("relay"):
        rel = scale["relay"]
        floor = {p["calls"]: p for p in scale.get(FLOOR, [])}
        for n in (50, 100):
            mine = next((p for p in rel if p["calls"] == n and not p.get("broke")), None)
            base = floor.get(n)
            if mine is None or base is None:
                continue
            ratio = mine["server_cpu_ms_per_call_s"] / base["server_cpu_ms_per_call_s"]
            runs = ""
            if "pair_ratios" in mine:  # run side by side: each pair shared one window
                pairs = mine["pair_ratios"]
                runs = (
                    f"; the median of {len(pairs)} pairs run side by side, whose ratios were "
                    f"{', '.join(_f(x) for x in sorted(pairs))}"
                    if len(pairs) > 1
                    else "; one pair, run side by side"
                )
            elif "cpu_runs" in mine and "cpu_runs" in base:
                runs = (
                    f"; medians of {len(mine['cpu_runs'])} runs each: relay "
                    f"{', '.join(_f(x) for x in mine['cpu_runs'])}, pass-through "
                    f"{', '.join(_f(x) for x in base['cpu_runs'])}"
                )
            heads.append(
                f"- Relay CPU at {n} calls: {_f(mine['server_cpu_ms_per_call_s'])} ms per "
                f"call-second, {ratio:.2f}x the aiohttp pass-through's "
                f"{_f(base['server_cpu_ms_per_call_s'])}{runs} (target <= {TARGET_CPU_RATIO}x: "
                f"{_ok(ratio <= TARGET_CPU_RATIO)})"
            )
        sip = {p["calls"]: p for p in scale.get(SIP, [])}
        both = [p for p in rel if p["calls"] in sip and p["calls"] > 1 and not p.get("broke")]
        if both:
            mine, theirs = both[-1], sip[both[-1]["calls"]]
            factor = mine["server_cpu_ms_per_call_s"] / max(
                1e-9, theirs["server_cpu_ms_per_call_s"]
            )
            cost = _f(theirs["server_cpu_ms_per_call_s"], 3)
            sip_floor = {p["calls"]: p for p in scale.get(SIP_FLOOR, [])}.get(mine["calls"])
            beside = ""
            if sip_floor is not None:
                least = sip_floor["server_cpu_ms_per_call_s"]
                most = mine["server_cpu_ms_per_call_s"] / max(1e-9, least)
                beside = (
                    f"; only reading those calls' control sockets costs {_f(least, 3)} "
                    f"(sip-floor), so no relay on this stack gets past {most:.1f}x"
                )
            heads.append(
                f"- SIP mode at {mine['calls']} calls: {cost} ms "
                f"per call-second, {factor:.1f}x less than Media Streams' "
                f"{_f(mine['server_cpu_ms_per_call_s'])}{beside} (target >= "
                f"{TARGET_SIP_FACTOR:.0f}x: {_ok(factor >= TARGET_SIP_FACTOR)})"
            )
        fine = [
            p
            for p in rel
            if not p.get("broke")
            and p["in_lat"]["p99"] < TARGET_P99_MS
            and p["out_lat"]["p99"] < TARGET_P99_MS
        ]
        best = fine[-1] if fine else None
        stop = res.get("scale_stopped", {}).get("relay", "")
        if best is not None:
            cost = best["server_cpu_ms_per_call_s"]
            pin, pout = best["in_lat"]["p99"], best["out_lat"]["p99"]
            lost = best["frames_lost"] + best["media_lost"]
            reord = best["frames_reordered"] + best["media_reordered"]
            heads.append(
                f"- Calls on one core with p99 under {TARGET_P99_MS:.0f} ms both ways: "
                f"{best['calls']} measured (p99 {_f(pin, 1)} ms in, {_f(pout, 1)} ms out; "
                f"{lost} frames lost, {reord} reordered; core "
                f"{100 * best['server_cpu_frac']:.0f}% busy, so about "
                f"{1000 / cost:.0f} calls per core at {_f(cost)} ms per call-second) "
                f"(target >= {TARGET_CALLS_PER_CORE}: "
                f"{_ok(best['calls'] >= TARGET_CALLS_PER_CORE)})"
            )
            kb = best["rss_per_call_kb"]
            heads.append(
                f"- Relay memory: {_f(kb, 0)} KB per live call at {best['calls']} calls "
                f"(target < {TARGET_KB_PER_CALL} KB: {_ok(kb < TARGET_KB_PER_CALL)})"
            )
        if stop:
            heads.append(f"- The relay series stopped at {rel[-1]['calls']} calls: {stop}")
    bi = res.get("barge_in")
    if bi:
        worst = max(
            (bi[k]["max_error_ms"] or 0.0) for k in ("burst", "realtime", "slow") if k in bi
        )
        probs = sum(len(bi[k]["problems"]) for k in ("burst", "realtime", "slow"))
        fin = bi["after_finished"]["ok"]
        heads.append(
            f"- Barge-in: worst truncation error {_f(worst, 1)} ms over all pacings "
            f"(target <= {TARGET_BARGE_MS:.0f} ms: {_ok(worst <= TARGET_BARGE_MS and not probs)});"
            f" after a finished answer: {'no clear, no truncate' if fin else '**WRONG**'}"
        )
    fa = res.get("first_answer")
    if fa:
        heads.append(
            f"- First answer (start -> model ready): {_f(fa['cold']['ready_ms_median'], 0)} ms "
            f"cold, {_f(fa['prewarm']['ready_ms_median'], 0)} ms pre-warmed"
            + (
                f", {_f(fa['prewarm_miss']['ready_ms_median'], 0)} ms on a pre-warm miss "
                "(the stream reached another process)"
                if "prewarm_miss" in fa
                else ""
            )
        )
    wk = res.get("workers")
    if wk and "capacity" in wk:
        one, two = wk["capacity"]["relay-1w"], wk["capacity"]["relay-2w"]
        ratio = two / one if one else float("nan")
        heads.append(
            f"- Two workers vs one (each worker {wk['share']:.2f} of a core): {two} vs {one} "
            f"calls with p99 under {wk['p99_ms']:.0f} ms, {_f(ratio)}x (target >= 1.8x: "
            f"{_ok(ratio >= 1.8)})"
        )
    if heads:
        out += ["## Headline", "", *heads, ""]

    if hop:
        out += [
            "## 1. Hop overhead at one call (ms)",
            "",
            "Inbound: caller sends a frame -> the model receives the append carrying it. "
            "Outbound: the model sends a delta -> the caller receives the media carrying it. "
            "Every frame is tagged in its audio bytes and matched exactly.",
            "",
            "| server | dir | n | p50 | p90 | p99 | max |",
            "|---|---|---|---|---|---|---|",
        ]
        kinds = [k for k in ("relay", FLOOR, OLD) if k in hop]
        for kind in kinds:
            for d, key in (("in", "in_lat"), ("out", "out_lat")):
                L = hop[kind][key]
                out.append(
                    f"| {kind} | {d} | {L['n']} | {_f(L['p50'], 3)} | {_f(L['p90'], 3)} | "
                    f"{_f(L['p99'], 3)} | {_f(L['max'], 3)} |"
                )
        for d, key in (("in", "in_lat"), ("out", "out_lat")):
            r, p = hop["relay"][key], hop[kinds[1]][key]
            out.append(
                f"| **relay - {kinds[1]}** | {d} | | **{_f(r['p50'] - p['p50'], 3)}** | "
                f"{_f(r['p90'] - p['p90'], 3)} | {_f(r['p99'] - p['p99'], 3)} | "
                f"{_f(r['max'] - p['max'], 3)} |"
            )
        out.append("")

    if scale:
        out += [
            "## 2. Scale (server pinned to core 0; generator + model on core 1)",
            "",
            "Caller frames every 20 ms all the time; the model answers half the time (2 s of "
            "audio in 100 ms deltas, sent 4x faster than real time, then 2 s listening). "
            "Latencies in ms, as measured (harness included); CPU from /proc utime+stime "
            "over the measurement window. *Other load* is what the rest of the machine ran "
            "meanwhile (other processes, in % of one core, from /proc/stat): on a shared "
            "2-core box it is the main source of latency noise. Where the relay's CPU is "
            "compared with the aiohttp pass-through's (50 and 100 calls), the two run side "
            "by side, each with its own generator, started together, so that each pair "
            "meets the same machine in the same window; the row shown is the pair with the "
            "median ratio.",
            "",
            "| N | server | in p50 | in p99 | out p50 | out p99 | lost | reord | "
            "CPU ms/call-s | server core | RSS MB | KB/call | gen core | gen lag p99 | "
            "other load | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        rows = [(p["calls"], kind, p) for kind in scale for p in scale[kind]]
        for n, kind, p in sorted(rows, key=lambda r: (r[0], r[1] != "relay")):
            note = p.get("broke") or p.get("gen_limited") or ""
            if p.get("beside") and not note:  # its other load includes that server's
                note = f"run beside {', '.join(p['beside'])}"
            out.append(
                f"| {n} | {kind} | {_f(p['in_lat']['p50'])} | {_f(p['in_lat']['p99'], 1)} | "
                f"{_f(p['out_lat']['p50'])} | {_f(p['out_lat']['p99'], 1)} | "
                f"{p['frames_lost'] + p['media_lost']} | "
                f"{p['frames_reordered'] + p['media_reordered']} | "
                f"{_f(p['server_cpu_ms_per_call_s'])} | {100 * p['server_cpu_frac']:.0f}% | "
                f"{_f(p['rss_mb'], 0)} | {_f(p['rss_per_call_kb'], 0)} | "
                f"{100 * p['gen_cpu_frac']:.0f}% | {_f(p['pacer_late']['p99'], 0)} | "
                f"{100 * p.get('other_cpu_frac', 0):.0f}% | {note} |"
            )
        out.append("")
        out.append("![latency vs N](latency_vs_n.png)")
        out.append("")
        out.append("![CPU and memory vs N](cpu_mem_vs_n.png)")
        out.append("")

    if wk:
        out += _workers_section(wk)

    if fa:
        out += [
            "## 3. First answer: Twilio `start` -> model ready for audio (ms)",
            "",
            f"Simulated model: {fa['connect_delay_ms']:.0f} ms to accept the WebSocket, "
            f"{fa['configure_delay_ms']:.0f} ms to apply `session.update`; the phone rings "
            f"{fa['ring_ms']:.0f} ms between the `/twiml` webhook and the stream. Ready = the "
            "session is configured and has received the caller's first frame (which the caller "
            "sends 20 ms after `start`).",
            "",
            "| mode | runs | median | max |",
            "|---|---|---|---|",
        ]
        names = {
            "cold": "cold",
            "prewarm": "prewarm",
            "prewarm_miss": "prewarm miss (webhook and stream on two processes, Redis)",
        }
        for k, name in names.items():
            if k not in fa:
                continue
            v = fa[k]
            out.append(
                f"| {name} | {v['runs']} | {_f(v['ready_ms_median'], 1)} | "
                f"{_f(v['ready_ms_max'], 1)} |"
            )
        out.append("")

    if bi:
        out += [
            "## 4. Barge-in accuracy",
            "",
            "|truncate audio_end_ms - what the caller had heard| at the clear, per model "
            "pacing (SimCaller's playback record is the ground truth).",
            "",
            "| pacing | runs | errors (ms) | max | problems |",
            "|---|---|---|---|---|",
        ]
        for k in ("burst", "realtime", "slow"):
            v = bi[k]
            errs = ", ".join(_f(e, 1) for e in v["errors_ms"]) or "-"
            out.append(
                f"| {k} | {v['runs']} | {errs} | {_f(v['max_error_ms'], 1)} | "
                f"{len(v['problems'])} |"
            )
        af = bi["after_finished"]
        out.append(
            f"| after a finished answer | {af['runs']} | {af['clears']} clears, "
            f"{af['truncates']} truncates (want 0) | - | {len(af['problems'])} |"
        )
        out.append("")
    return "\n".join(out)


def _workers_section(wk: dict[str, Any]) -> list[str]:
    out = ["## 2b. One worker vs two (RELAY_WORKERS=2 with Redis)", ""]
    if "skipped" in wk:
        return [*out, f"Skipped: {wk['skipped']}.", ""]
    out += [
        f"Each worker process gets {wk['share']:.2f} of a core (a CPU cgroup quota, 10 ms "
        "period), all on core 0; the generator has core 1. So two workers get twice the CPU "
        "of one, as two cores would give them, while the generator keeps a core of its own "
        "(this machine has two). `relay-1w`: the default relay, one process, no Redis. "
        "`relay-2w`: `RELAY_WORKERS=2` and a Redis, which runs on the generator's core as a "
        "deployment runs it on a machine of its own; its CPU is the *Redis* column, not "
        "the server's. A "
        f"point passes with no frame lost and p99 under {wk['p99_ms']:.0f} ms both ways; "
        "each series climbs until its first failure, then is bisected between its last "
        "pass and that failure down to 25 calls.",
        "",
        "| N | server | in p50 | in p99 | out p50 | out p99 | lost | CPU ms/call-s | "
        "of budget | Redis ms/call-s | gen core | other load | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(p["calls"], kind, p) for kind in wk["rows"] for p in wk["rows"][kind]]
    for n, kind, p in sorted(rows, key=lambda r: (r[0], r[1])):
        note = p.get("broke") or p.get("gen_limited") or ""
        used = p["server_cpu_frac"] / p["cpu_budget"] if p.get("cpu_budget") else 0.0
        out.append(
            f"| {n} | {kind} | {_f(p['in_lat']['p50'])} | {_f(p['in_lat']['p99'], 1)} | "
            f"{_f(p['out_lat']['p50'])} | {_f(p['out_lat']['p99'], 1)} | "
            f"{p['frames_lost'] + p['media_lost']} | {_f(p['server_cpu_ms_per_call_s'])} | "
            f"{100 * used:.0f}% | {_f(p.get('aux_cpu_ms_per_call_s', 0.0), 3)} | "
            f"{100 * p['gen_cpu_frac']:.0f}% | "
            f"{100 * p.get('other_cpu_frac', 0):.0f}% | {note} |"
        )
    cap = wk["capacity"]
    out += [
        "",
        f"Calls carried: one worker {cap['relay-1w']}, two workers {cap['relay-2w']} "
        f"(measured up to {wk['measured_up_to']}).",
        "",
    ]
    return out


def plots(res: dict[str, Any], folder: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = res.get("scale") or {}
    paths: list[str] = []
    colors: defaultdict[str, str] = defaultdict(
        lambda: "tab:green",
        {
            "relay": "tab:blue",
            SIP: "tab:purple",
            SIP_FLOOR: "tab:pink",
            FLOOR: "tab:orange",
            OLD: "tab:gray",
        },
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in (
        (axes[0], "in_lat", "inbound: caller -> model"),
        (axes[1], "out_lat", "outbound: model -> caller"),
    ):
        for kind, pts in scale.items():
            if not pts:
                continue
            n = [p["calls"] for p in pts]
            for q, style in (("p50", "-o"), ("p90", "--s"), ("p99", ":^")):
                ax.plot(n, [p[key][q] for p in pts], style, color=colors[kind],
                        label=f"{kind} {q}", alpha=1.0 if kind == "relay" else 0.6)  # fmt: skip
        ax.axhline(TARGET_P99_MS, color="tab:red", lw=0.8, ls="--", label="p99 target")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent calls")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("hop latency (ms, harness included)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle("Hop latency vs concurrent calls")
    fig.tight_layout()
    p = os.path.join(folder, "latency_vs_n.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for kind, pts in scale.items():
        if not pts:
            continue
        n = [p["calls"] for p in pts]
        many = [p for p in pts if p["calls"] > 1]  # one call: fixed costs dominate
        axes[0].plot([p["calls"] for p in many], [p["server_cpu_ms_per_call_s"] for p in many],
                     "-o", color=colors[kind], label=kind)  # fmt: skip
        axes[1].plot(n, [100 * p["server_cpu_frac"] for p in pts], "-o", color=colors[kind],
                     label=f"{kind} (server core)")  # fmt: skip
        axes[1].plot(n, [100 * p["gen_cpu_frac"] for p in pts], "--x", color=colors[kind],
                     label=f"generator with {kind}")  # fmt: skip
        axes[2].plot(
            n,
            [p["rss_mb"] for p in pts],
            "-o",
            color=colors[kind],
            label=f"{kind} RSS",
        )
        ax2 = axes[2]
        ax2.plot(n, [p["rss_per_call_kb"] / 1024 * 100 for p in pts], "--x", color=colors[kind],
                 label=f"{kind} per call (MB x100)")  # fmt: skip
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel("server CPU ms per call-second")
    axes[0].set_title("CPU cost per call")
    axes[1].axhline(100, color="k", lw=0.6)
    axes[1].set_ylabel("% of one core")
    axes[1].set_title("core utilisation")
    axes[2].set_ylabel("MB")
    axes[2].set_title("server memory")
    for ax in axes:
        ax.set_xlabel("concurrent calls")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    p = os.path.join(folder, "cpu_mem_vs_n.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
