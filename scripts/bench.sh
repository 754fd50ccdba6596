#!/usr/bin/env bash
# make bench: record the project's test signal with capstan on a private
# real-time dummy jackd and report, per cell: frames, frames lost (verifier),
# JACK xruns, capstan CPU seconds and peak RSS.
#   BENCH_SECONDS   take length (default 60; 10 for a quick run)
#   BENCH_CHANNELS  channel counts (default "256")
#   BENCH_PERIODS   JACK periods (default "1024 128")
#   BENCH_LAYOUTS   capstan layouts (default "interleaved")
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
secs=${BENCH_SECONDS:-60}
out=$(mktemp -d "${BENCH_DIR:-/tmp}/capstan-bench.XXXXXX")
trap 'kill ${src:-} ${jack:-} 2>/dev/null || true; rm -rf "$out"' EXIT
bash scripts/jack-clean-stale.sh
printf '%-12s %5s %6s %10s %7s %8s %8s %6s %7s %7s %7s %7s %8s %9s %9s\n' \
  layout ch period frames lost overflow repeated xruns jitter user_s sys_s cpu_% rss_MiB cb_p99_us cb_max_us
for period in ${BENCH_PERIODS:-1024 128}; do
  for ch in ${BENCH_CHANNELS:-256}; do
    for layout in ${BENCH_LAYOUTS:-interleaved}; do
      export JACK_DEFAULT_SERVER="capstan-bench-$$"
      jackd -n "$JACK_DEFAULT_SERVER" -R -d dummy -r 48000 -p "$period" >"$out/jackd.log" 2>&1 &
      jack=$!
      for _ in $(seq 100); do JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
      "$bin/capstan-testsig" source --channels "$ch" --name src >"$out/src.log" &
      src=$!
      sleep 1
      "$bin/capstan" record -q --json --connect 'src:out_*' --duration "$secs" --layout "$layout" \
        --dir "$out/takes" >"$out/summary.json"
      kill -TERM "$src"; wait "$src" 2>/dev/null || true
      kill -TERM "$jack"; wait "$jack" 2>/dev/null || true
      python3 - "$out" "$layout" "$ch" "$period" "$secs" <<'PY'
import json, subprocess, sys, glob, os
out, layout, ch, period, secs = sys.argv[1:]
s = json.load(open(f"{out}/summary.json"))
files = sorted(f["path"] for f in s["take"]["files"])
# Lost = silence written for gaps + signal frames skipped at breaks;
# repeated = signal frames seen twice (JACK handed a stale buffer).
lost = rep = 0
for i, f in enumerate(files):
    first = i if layout == "mono" else 0
    r = subprocess.run(["target/release/capstan-testsig", "verify", f, "--first-channel", str(first)],
                       capture_output=True, text=True)
    v = json.loads(r.stdout.splitlines()[0])
    lost = max(lost, sum(x["frames"] for x in v["silent"]) + v["skipped"])
    rep = max(rep, v["repeated"])
# overflow = frames capstan itself dropped (its rings were full).
overflow = sum(g["frames"] for g in s["take"]["gaps"] if g["cause"] == "overflow")
cpu = s["cpu_user_s"] + s["cpu_sys_s"]
print(f'{layout:<12} {ch:>5} {period:>6} {s["take"]["frames"]:>10} {lost:>7} {overflow:>8} {rep:>8} '
      f'{s["xruns"]:>6} {s["take"]["timer_jitter"]:>7} {s["cpu_user_s"]:>7.2f} {s["cpu_sys_s"]:>7.2f} '
      f'{100*cpu/float(secs):>6.1f}% {s["max_rss_kib"]/1024:>8.1f} {s["callback"]["p99_us"]:>9.0f} '
      f'{s["callback"]["max_us"]:>9.0f}', flush=True)
for f in files:
    os.remove(f)
PY
    done
  done
done
