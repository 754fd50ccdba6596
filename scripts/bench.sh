#!/usr/bin/env bash
# make bench: capstan and jack_capture side by side, on the same private
# real-time dummy jackd and the same test-signal source, alternating
# A B A B; every recording is verified sample by sample. Then the daemon's
# command latency (start -> first frame, stop -> final file) over N takes.
#   BENCH_SECONDS   take length (default 30)
#   BENCH_CHANNELS  channel counts (default "16 64 256 512")
#   BENCH_PERIODS   JACK periods (default "1024 128")
#   BENCH_REPS      repetitions per recorder (default 3)
#   BENCH_RECORDERS default "capstan capstan-mono jack_capture"
#   BENCH_LATENCY_TAKES  takes for the latency run (default 100; 0 skips)
#   BENCH_GRID=0    skip the recorder grid (latency only)
#   BENCH_CORE=0    skip the callback and encoder micro-benchmarks
#   BENCH_UPLOAD=0  skip the off-site upload's cost (scripts/bench-upload.sh)
#   BENCH_QUICK=1   CI-sized: 5 s, 16 and 64 channels, period 1024, 1 rep,
#                   20 latency takes (under 2 minutes)
#   BENCH_OUT       where results.tsv, latency.json and bench.png go
#                   (default target/bench)
# Row columns: frames lost (silence + skipped signal, from the verifier),
# repeated frames, JACK xruns during the take as the source counted them,
# xruns the recorder saw, its CPU time and peak RSS, capstan's callback
# p99/max. scripts/bench_report.py prints the medians, the capstan /
# jack_capture ratios, and draws the plot.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
secs=${BENCH_SECONDS:-30}
channels=${BENCH_CHANNELS:-16 64 256 512}
periods=${BENCH_PERIODS:-1024 128}
reps=${BENCH_REPS:-3}
lat_takes=${BENCH_LATENCY_TAKES:-100}
if [ -n "${BENCH_QUICK:-}" ]; then
  secs=5 channels="16 64" periods=1024 reps=1 lat_takes=20
fi
# capstan-loud: capstan interleaved with EBU R 128 loudness measured
# (`--loudness on`; `auto`, the default, measures takes of up to 8 inputs).
# capstan-flac: one s24 FLAC file per input (--format flac --layout mono).
# capstan-buffered: capstan interleaved without O_DIRECT (--buffered-io, hidden).
# capstan-s24: capstan interleaved, 24-bit integer.
# capstan-mirror: capstan interleaved with a second copy (--mirror) on the
#   same disk.
# capstan-mirror-flac: capstan interleaved with a copy in mono FLAC
#   (--mirror-as) on the same disk.
# capstan-base: the capstan binary at $BENCH_BASE_BIN (an older build, for
#   an A/B of a change in the same run); capstan-base-mono: the same in
#   the mono layout.
# The floor, two references that record nothing: null (capstan-testsig
# sink: a JACK client with the same inputs connected, reading its
# buffers) and dd (dd oflag=direct of the same number of bytes).
recorders=${BENCH_RECORDERS:-capstan capstan-loud capstan-mono capstan-flac jack_capture null dd}
command -v jack_capture >/dev/null || {
  echo "jack_capture not installed (apt-get install jack-capture): capstan rows only" >&2
  recorders=${recorders//jack_capture/}
}
results=${BENCH_OUT:-target/bench}
mkdir -p "$results"
out=$(mktemp -d "${BENCH_DIR:-/tmp}/capstan-bench.XXXXXX")
trap 'kill ${daemon:-} ${src:-} ${jack:-} 2>/dev/null || true; rm -rf "$out"' EXIT
bash scripts/jack-clean-stale.sh
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), $(jackd --version 2>/dev/null | head -1)" >&2
echo "# BENCH_SECONDS=$secs BENCH_CHANNELS=\"$channels\" BENCH_PERIODS=\"$periods\" BENCH_REPS=$reps" >&2
printf 'recorder\tch\tperiod\trep\tframes\tlost\trepeated\tsrc_xruns\txruns\tuser_s\tsys_s\trss_mib\tcb_p99_us\tcb_max_us\tring_overflow\n' \
  >"$results/results.tsv"
printf '%-13s %4s %6s %3s %9s %7s %8s %9s %6s %7s %7s %8s %9s %9s %8s\n' \
  recorder ch period rep frames lost repeated src_xruns xruns user_s sys_s rss_MiB cb_p99_us cb_max_us ring_ovf

start_jack() { # period
  export JACK_DEFAULT_SERVER="capstan-bench-$$"
  jackd -n "$JACK_DEFAULT_SERVER" -R --port-max 4096 -d dummy -r 48000 -p "$1" >"$out/jackd.log" 2>&1 &
  jack=$!
  for _ in $(seq 100); do JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

[ "${BENCH_GRID:-1}" = 0 ] && channels=
for period in $periods; do
  for ch in $channels; do
    start_jack "$period"
    "$bin/capstan-testsig" source --channels "$ch" --name src --xrun-file "$out/src.xruns" >"$out/src.log" &
    src=$!
    sleep 1
    for rep in $(seq "$reps"); do
      for rec in $recorders; do
        rm -rf "$out/takes"; mkdir -p "$out/takes"
        x0=$(cat "$out/src.xruns" 2>/dev/null || echo 0)
        case $rec in
          capstan|capstan-*)
            layout=interleaved fmt=(--format wav); loud=off io=() exe="$bin/capstan"
            case $rec in
              capstan-mono) layout=mono ;;
              capstan-loud) loud=on ;;
              capstan-flac) layout=mono fmt=(--format flac --sample-format s24) ;;
              capstan-buffered) io=(--buffered-io) ;;
              capstan-s24) fmt=(--format wav --sample-format s24) ;;
              capstan-mirror) io=(--mirror "$out/takes/mirror") ;;
              capstan-mirror-flac) io=(--mirror-as "flac,mono=$out/takes/mirror") ;;
              capstan-base) exe=${BENCH_BASE_BIN:?capstan-base needs BENCH_BASE_BIN} ;;
              capstan-base-mono) layout=mono exe=${BENCH_BASE_BIN:?capstan-base-mono needs BENCH_BASE_BIN} ;;
            esac
            "$exe" record -q --json --connect 'src:out_*' --duration "$secs" \
              --layout "$layout" --loudness "$loud" "${fmt[@]}" "${io[@]}" --dir "$out/takes" >"$out/summary.json" \
              2>"$out/rec.err" || true ;;
          null)
            /usr/bin/time -f '%U %S %M' -o "$out/time.txt" "$bin/capstan-testsig" sink --channels "$ch" \
              --seconds "$secs" >"$out/rec.err" 2>&1 || true ;;
          dd)
            mib=$(( (ch * 4 * 48000 * secs + 1048575) / 1048576 ))
            /usr/bin/time -f '%U %S %M' -o "$out/time.txt" dd if=/dev/zero of="$out/takes/dd.raw" bs=1M \
              count="$mib" oflag=direct status=none >"$out/rec.err" 2>&1 || true ;;
          jack_capture)
            # -B 4: the same 4 s of ring per port as capstan's default.
            /usr/bin/time -f '%U %S %M' -o "$out/time.txt" jack_capture -d "$secs" -c "$ch" -p 'src:out_*' \
              -f wav -B 4 -dc -ns "$out/takes/jc.wav" >"$out/rec.err" 2>&1 || true ;;
        esac
        x1=$(cat "$out/src.xruns" 2>/dev/null || echo 0)
        python3 - "$out" "$rec" "$ch" "$period" "$rep" "$((x1 - x0))" "$results/results.tsv" <<'PY'
import json, subprocess, sys, glob, re
out, rec, ch, period, rep, src_xruns, tsv = sys.argv[1:]
files = sorted(glob.glob(f"{out}/takes/*.wav") + glob.glob(f"{out}/takes/*.flac"),
               key=lambda f: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", f)])
lost = repeated = frames = 0
for i, f in enumerate(files):
    first = i if rec.endswith("-mono") or rec == "capstan-flac" else 0
    extra = []
    if f.endswith(".flac"):
        # Decoded by the reference decoder, checked at the JACK frame time
        # its tag gives.
        wav = f[:-5] + ".decoded.wav"
        subprocess.run(["flac", "-d", "-s", "-f", "-o", wav, f], check=True)
        tag = subprocess.run(["metaflac", "--show-tag=CAPSTAN_JACK_FRAME_TIME", f],
                             capture_output=True, text=True).stdout.strip()
        extra = ["--first-frame-time", tag.split("=", 1)[1]]
        f = wav
    r = subprocess.run(["target/release/capstan-testsig", "verify", f, "--first-channel", str(first)] + extra,
                       capture_output=True, text=True)
    if not r.stdout:
        print(f"{rec}: cannot verify {f}: {r.stderr.strip()}", file=sys.stderr); continue
    v = json.loads(r.stdout.splitlines()[0])
    frames = max(frames, v["frames"])
    # A frame away from its position counts as lost too (capstan's files
    # say their JACK frame time; jack_capture's do not, so only silence and
    # skips are counted for it).
    bad = v["mismatched"] if rec.startswith("capstan") else 0
    lost = max(lost, sum(x["frames"] for x in v["silent"]) + v["skipped"] + bad)
    repeated = max(repeated, v["repeated"])
p99 = mx = ovf = "-"
if rec in ("null", "dd"):
    frames = lost = repeated = "-"
if rec.startswith("capstan"):
    s = json.load(open(f"{out}/summary.json"))
    # Frames capstan's own rings dropped (the rest of "lost" is JACK's).
    ovf = sum(g["frames"] for g in s["take"]["gaps"] if g["cause"] in ("disk_overrun", "overflow"))
    user, sys_, rss, xruns = s["cpu_user_s"], s["cpu_sys_s"], s["max_rss_kib"], s["xruns"]
    p99, mx = f'{s["callback"]["p99_us"]:.0f}', f'{s["callback"]["max_us"]:.0f}'
else:
    user, sys_, rss = open(f"{out}/time.txt").read().split()[-3:]
    user, sys_, rss = float(user), float(sys_), int(rss)
    m = re.search(r"encountered (\d+) jack x-runs", open(f"{out}/rec.err", errors="replace").read())
    xruns = int(m.group(1)) if m else 0
row = [rec, ch, period, rep, frames, lost, repeated, src_xruns, xruns, f"{user:.2f}", f"{sys_:.2f}",
       f"{rss/1024:.1f}", p99, mx, ovf]
open(tsv, "a").write("\t".join(map(str, row)) + "\n")
print(f'{rec:<13} {ch:>4} {period:>6} {rep:>3} {frames:>9} {lost:>7} {repeated:>8} {src_xruns:>9} {xruns:>6} '
      f'{user:>7.2f} {sys_:>7.2f} {rss/1024:>8.1f} {p99:>9} {mx:>9} {ovf:>8}', flush=True)
PY
      done
    done
    stop_pid "$src"; src=
    stop_pid "$jack"; jack=
  done
done

# Command latency: a daemon with 8 inputs on each period, N start/stop pairs.
: >"$results/latency.jsonl"
if [ "$lat_takes" -gt 0 ]; then
  for period in $periods; do
    start_jack "$period"
    "$bin/capstan-testsig" source --channels 8 --name src >"$out/src.log" &
    src=$!
    mkdir -p "$out/lat"
    port=$((17000 + RANDOM % 2000))
    "$bin/capstan" daemon -q --ports 8 --connect 'src:out_*' --dir "$out/lat" --osc-port "$port" \
      --min-minutes 0.1 --min-free-fraction 0 2>"$out/daemon.err" &
    daemon=$!
    sleep 1
    "$bin/capstan-testsig" latency --osc "127.0.0.1:$port" --takes "$lat_takes" | tee -a "$results/latency.jsonl"
    stop_pid "$daemon"; daemon=
    rm -rf "$out/lat"
    stop_pid "$src"; src=
    stop_pid "$jack"; jack=
  done
fi
# The callback alone against a bare memcpy (capstan-testsig rt-bench, 5
# runs, the two measured alternately inside each run), and the encoder per
# format (encode-bench). Skipped with BENCH_CORE=0.
: >"$results/rt.jsonl"; : >"$results/encode.jsonl"
if [ "${BENCH_CORE:-1}" != 0 ]; then
  for _ in 1 2 3 4 5; do
    "$bin/capstan-testsig" rt-bench --ports 256 --frames 128 --cycles 3000 >>"$results/rt.jsonl"
  done
  for cf in "64 1024" "256 1024" "256 128"; do
    set -- $cf
    "$bin/capstan-testsig" encode-bench --channels "$1" --frames "$2" >>"$results/encode.jsonl"
  done
fi
python3 scripts/bench_report.py "$results"
# The off-site upload's CPU at 100 MB/s to a local S3 server, and the
# recorder beside it (scripts/bench-upload.sh). BENCH_UPLOAD=0 skips it.
if [ "${BENCH_UPLOAD:-1}" != 0 ]; then
  if [ -n "${BENCH_QUICK:-}" ]; then
    BENCH_REPS=1 BENCH_UPLOAD_SECONDS=5 bash scripts/bench-upload.sh "$bin" "$results"
  else
    bash scripts/bench-upload.sh "$bin" "$results"
  fi
fi
# What the meters and one open page cost an idle daemon at 256 inputs
# (scripts/bench-web.sh; against $BENCH_BASE_BIN when set). BENCH_WEB=0
# skips it.
if [ "${BENCH_WEB:-1}" != 0 ]; then
  if [ -n "${BENCH_QUICK:-}" ]; then
    bash scripts/bench-web.sh 256 5 1 | tee "$results/web.txt"
  else
    bash scripts/bench-web.sh 256 20 3 | tee "$results/web.txt"
  fi
  # The page in a real browser (headless Chromium): its frames a second,
  # and the daemon's CPU with it attached.
  if command -v chromedriver >/dev/null; then
    python3 scripts/bench-page.py 256 "$([ -n "${BENCH_QUICK:-}" ] && echo 5 || echo 10)" | tee "$results/page.json"
  fi
fi
