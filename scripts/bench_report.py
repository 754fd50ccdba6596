#!/usr/bin/env python3
"""Summarizes scripts/bench.sh's results: medians per cell, capstan /
jack_capture ratios, the zero-loss check, command latency, and a plot.

usage: bench_report.py DIR   (DIR holds results.tsv and latency.jsonl;
bench.png is written there when matplotlib is installed)
"""
import csv
import json
import os
import statistics
import sys
from collections import defaultdict


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}".replace(",", " ")


def main(d):
    rows = list(csv.DictReader(open(os.path.join(d, "results.tsv")), delimiter="\t"))
    cells = defaultdict(list)
    for r in rows:
        cells[(int(r["period"]), int(r["ch"]), r["recorder"])].append(r)
    med = {}
    print(f"\nMedians over repetitions ({d}/results.tsv):\n")
    print("| recorder | ch | period | reps | lost | repeated | source xruns | CPU s (user+sys) | RSS MiB "
          "| callback p99 / max µs | lost where source had 0 xruns |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted(cells, key=lambda k: (-k[0], k[1], k[2])):
        rs = cells[key]
        cpu = median([num(r["user_s"]) + num(r["sys_s"]) for r in rs])
        rss = median([num(r["rss_mib"]) for r in rs])
        clean = [r for r in rs if int(r["src_xruns"]) == 0 and num(r["lost"]) is not None]
        clean_lost = sum(int(r["lost"]) for r in clean)
        m = dict(
            lost=median([num(r["lost"]) for r in rs]),
            rep=median([num(r["repeated"]) for r in rs]),
            sx=median([int(r["src_xruns"]) for r in rs]),
            cpu=cpu,
            rss=rss,
            p99=median([num(r["cb_p99_us"]) for r in rs]),
            mx=median([num(r["cb_max_us"]) for r in rs]),
        )
        med[key] = m
        period, ch, rec = key
        cb = f'{fmt(m["p99"])} / {fmt(m["mx"])}' if m["p99"] is not None else "–"
        zero = f"{clean_lost} in {len(clean)} of {len(rs)}" if clean else f"– (0 of {len(rs)} clean)"
        if rec in ("null", "dd"):
            zero = "– (records nothing)"
        print(f'| {rec} | {ch} | {period} | {len(rs)} | {fmt(m["lost"])} | {fmt(m["rep"])} | {fmt(m["sx"])} '
              f'| {fmt(cpu, 2)} | {fmt(rss, 1)} | {cb} | {zero} |')

    recs = sorted({k[2] for k in med if k[2].startswith("capstan")}, key=lambda r: (r != "capstan", r))
    print("\nCPU (user+sys) and RSS of each capstan variant / jack_capture's, medians; "
          "floor = CPU / (null client + dd oflag=direct):\n")
    print("| ch | period | " + " | ".join(f"{r} CPU | {r} RSS" for r in recs) + " | capstan / floor |")
    print("| --- | --- | " + " | ".join("--- | ---" for _ in recs) + " | --- |")
    for (period, ch) in sorted({(k[0], k[1]) for k in med}, key=lambda k: (-k[0], k[1])):
        jc = med.get((period, ch, "jack_capture"))
        out = []
        for rec in recs:
            c = med.get((period, ch, rec))
            ok = c and jc and jc["cpu"]
            out += [f'{c["cpu"] / jc["cpu"]:.2f}' if ok else "–", f'{c["rss"] / jc["rss"]:.2f}' if ok else "–"]
        null, dd, cap = (med.get((period, ch, r)) for r in ("null", "dd", "capstan"))
        floor = f'{cap["cpu"] / (null["cpu"] + dd["cpu"]):.2f}' if cap and null and dd else "–"
        print(f"| {ch} | {period} | " + " | ".join(out) + f" | {floor} |")

    lat_path = os.path.join(d, "latency.jsonl")
    lats = [json.loads(l) for l in open(lat_path) if l.strip()] if os.path.exists(lat_path) else []
    if lats:
        print("\nCommand latency (ms):\n")
        print("| period | takes | start → first frame p50 / p99 / max | target p99 (period + 1 ms) "
              "| start reply p50 / p99 | stop → file final p50 / p99 / max |")
        print("| --- | --- | --- | --- | --- | --- |")
        for l in lats:
            s, r, t = l["start_to_first_frame_ms"], l["start_reply_ms"], l["stop_to_final_ms"]
            print(f'| {l["period_frames"]} | {l["takes"]} | {s["p50"]:.2f} / {s["p99"]:.2f} / {s["max"]:.2f} '
                  f'| {l["period_ms"] + 1:.2f} | {r["p50"]:.1f} / {r["p99"]:.1f} '
                  f'| {t["p50"]:.1f} / {t["p99"]:.1f} / {t["max"]:.1f} |')

    rt_path, enc_path = os.path.join(d, "rt.jsonl"), os.path.join(d, "encode.jsonl")
    rts = [json.loads(l) for l in open(rt_path) if l.strip()] if os.path.exists(rt_path) else []
    if rts:
        print("\nThe callback alone (rt-bench), µs per cycle, one row per run:\n")
        print("| ports × frames | capture core p50 / p99 / max | bare memcpy p50 / p99 / max | p50 ratio |")
        print("| --- | --- | --- | --- |")
        for r in rts:
            c, m = r["callback"], r["memcpy_floor"]
            print(f'| {r["ports"]} × {r["frames"]} | {c["p50_us"]:.0f} / {c["p99_us"]:.0f} / {c["max_us"]:.0f} '
                  f'| {m["p50_us"]:.0f} / {m["p99_us"]:.0f} / {m["max_us"]:.0f} | {c["p50_us"] / m["p50_us"]:.2f} |')
        ratios = [r["callback"]["p50_us"] / r["memcpy_floor"]["p50_us"] for r in rts]
        print(f"\nmedian p50 ratio: {statistics.median(ratios):.2f}")
    encs = [json.loads(l) for l in open(enc_path) if l.strip()] if os.path.exists(enc_path) else []
    if encs:
        print("\nThe encoder (encode-bench), ns per sample:\n")
        fmts = list(encs[0]["ns_per_sample"])
        print("| channels × frames | " + " | ".join(fmts) + " |")
        print("| --- | " + " | ".join("---" for _ in fmts) + " |")
        for e in encs:
            print(f'| {e["channels"]} × {e["frames"]} | ' + " | ".join(f'{e["ns_per_sample"][f]:.2f}' for f in fmts) + " |")

    if not med:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(no plot: pip install matplotlib)")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for rec, color in (("capstan", "tab:blue"), ("capstan-mono", "tab:cyan"), ("jack_capture", "tab:red")):
        for period, style in ((1024, "-"), (128, "--")):
            pts = sorted((k[1], v) for k, v in med.items() if k[2] == rec and k[0] == period)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            label = f"{rec}, period {period}"
            a.plot(xs, [p[1]["cpu"] for p in pts], style, marker="o", color=color, label=label)
            b.plot(xs, [max(p[1]["lost"] or 0, 0.5) for p in pts], style, marker="o", color=color, label=label)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("channels")
        ax.grid(True, alpha=0.3)
    a.set_ylabel("recorder CPU seconds per take (median)")
    b.set_ylabel("frames lost per take (median; 0 drawn at 0.5)")
    b.set_yscale("log")
    a.legend(fontsize=7)
    fig.suptitle("capstan vs jack_capture, dummy jackd -R, 48 kHz, float32")
    fig.tight_layout()
    png = os.path.join(d, "bench.png")
    fig.savefig(png, dpi=110)
    print(f"\nplot: {png}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
