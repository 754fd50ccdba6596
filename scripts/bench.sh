#!/usr/bin/env bash
# make bench: capstan and jack_capture side by side, on the same private
# real-time dummy jackd and the same test-signal source, alternating
# A B A B; every recording is verified sample by sample.
#   BENCH_SECONDS   take length (default 30; BENCH_QUICK=1 makes it 5)
#   BENCH_CHANNELS  channel counts (default "16 64 256 512")
#   BENCH_PERIODS   JACK periods (default "1024 128")
#   BENCH_REPS      repetitions per recorder (default 2)
#   BENCH_RECORDERS default "capstan capstan-mono jack_capture"
# Columns: frames lost (silence + skipped signal, from the verifier),
# repeated frames, xruns the recorder saw, its CPU time and peak RSS, and
# capstan's real-time callback p99/max.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
secs=${BENCH_SECONDS:-30}
[ -n "${BENCH_QUICK:-}" ] && secs=5
reps=${BENCH_REPS:-2}
recorders=${BENCH_RECORDERS:-capstan capstan-mono jack_capture}
command -v jack_capture >/dev/null || recorders=${recorders//jack_capture/}
out=$(mktemp -d "${BENCH_DIR:-/tmp}/capstan-bench.XXXXXX")
trap 'kill ${src:-} ${jack:-} 2>/dev/null || true; rm -rf "$out"' EXIT
bash scripts/jack-clean-stale.sh
printf '%-13s %4s %6s %9s %7s %8s %6s %7s %7s %8s %9s %9s\n' \
  recorder ch period frames lost repeated xruns user_s sys_s rss_MiB cb_p99_us cb_max_us
for period in ${BENCH_PERIODS:-1024 128}; do
  for ch in ${BENCH_CHANNELS:-16 64 256 512}; do
    export JACK_DEFAULT_SERVER="capstan-bench-$$"
    jackd -n "$JACK_DEFAULT_SERVER" -R -d dummy -r 48000 -p "$period" >"$out/jackd.log" 2>&1 &
    jack=$!
    for _ in $(seq 100); do JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin/capstan-testsig" source --channels "$ch" --name src >"$out/src.log" &
    src=$!
    sleep 1
    for rep in $(seq "$reps"); do
      for rec in $recorders; do
        rm -rf "$out/takes"; mkdir -p "$out/takes"
        case $rec in
          capstan|capstan-mono)
            layout=interleaved; [ "$rec" = capstan-mono ] && layout=mono
            "$bin/capstan" record -q --json --connect 'src:out_*' --duration "$secs" --layout "$layout" \
              --dir "$out/takes" >"$out/summary.json" 2>"$out/rec.err" || true ;;
          jack_capture)
            /usr/bin/time -f '%U %S %M' -o "$out/time.txt" jack_capture -d "$secs" -c "$ch" -p 'src:out_*' \
              -f wav -B 4 -dc -ns "$out/takes/jc.wav" >"$out/rec.err" 2>&1 || true ;;
        esac
        python3 - "$out" "$rec" "$ch" "$period" <<'PY'
import json, subprocess, sys, glob, os, re
out, rec, ch, period = sys.argv[1:]
files = sorted(glob.glob(f"{out}/takes/*.wav"))
lost = rep = frames = 0
for i, f in enumerate(files):
    first = i if rec == "capstan-mono" else 0
    r = subprocess.run(["target/release/capstan-testsig", "verify", f, "--first-channel", str(first)],
                       capture_output=True, text=True)
    if not r.stdout:
        print(f"{rec}: cannot verify {f}: {r.stderr.strip()}", file=sys.stderr); continue
    v = json.loads(r.stdout.splitlines()[0])
    frames = max(frames, v["frames"])
    lost = max(lost, sum(x["frames"] for x in v["silent"]) + v["skipped"])
    rep = max(rep, v["repeated"])
p99 = mx = "-"
if rec.startswith("capstan"):
    s = json.load(open(f"{out}/summary.json"))
    user, sys_, rss, xruns = s["cpu_user_s"], s["cpu_sys_s"], s["max_rss_kib"], s["xruns"]
    p99, mx = f'{s["callback"]["p99_us"]:.0f}', f'{s["callback"]["max_us"]:.0f}'
else:
    user, sys_, rss = open(f"{out}/time.txt").read().split()[-3:]
    user, sys_, rss = float(user), float(sys_), int(rss)
    m = re.search(r"encountered (\d+) jack x-runs", open(f"{out}/rec.err", errors="replace").read())
    xruns = int(m.group(1)) if m else 0
print(f'{rec:<13} {ch:>4} {period:>6} {frames:>9} {lost:>7} {rep:>8} {xruns:>6} {user:>7.2f} {sys_:>7.2f} '
      f'{rss/1024:>8.1f} {p99:>9} {mx:>9}', flush=True)
PY
      done
    done
    kill -TERM "$src"; wait "$src" 2>/dev/null || true
    kill -TERM "$jack"; wait "$jack" 2>/dev/null || true
  done
done
