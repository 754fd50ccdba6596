#!/usr/bin/env bash
# The off-site tier's cost (issue 27), measured side by side in one run:
#  - `capstan tiers push` of one take (128 inputs, float32) to a local S3
#    server (s3s-fs), paced at 100 MB/s: its CPU (user+sys) as a share of
#    one core over the upload, and unpaced: MB/s and CPU-s per 100 MB;
#  - the recorder (`capstan record`, 64 inputs, period 1024) alone and with
#    that paced upload running beside it, alternating: callback p99 and
#    max, ring high-water, lost frames.
# Usage: scripts/bench-upload.sh [BIN_DIR] [RESULTS_DIR]
#   BENCH_UPLOAD_SECONDS  length of the uploaded take (default 20: ~490 MB)
#   BENCH_REPS            repetitions (default 3)
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."
bin=${1:-target/release}
results=${2:-target/bench}
secs=${BENCH_UPLOAD_SECONDS:-20}
reps=${BENCH_REPS:-3}
command -v s3s-fs >/dev/null || { echo "bench-upload: s3s-fs is not installed (scripts/setup.sh); skipped" >&2; exit 0; }
mkdir -p "$results"
out=$(mktemp -d "${BENCH_DIR:-/tmp}/capstan-upload.XXXXXX")
jack= src= src64= s3= push=
stop_pid() { if [ -n "$1" ]; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() { stop_pid "$push"; stop_pid "$src"; stop_pid "$src64"; stop_pid "$s3"; stop_pid "$jack"; rm -rf "$out"; }
trap cleanup EXIT

export JACK_DEFAULT_SERVER="capstan-upload-$$"
jackd -n "$JACK_DEFAULT_SERVER" -R -d dummy -r 48000 -p 1024 >"$out/jackd.log" 2>&1 &
jack=$!
for _ in $(seq 100); do JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/capstan-testsig" source --channels 128 --name src >"$out/src.log" 2>&1 &
src=$!
"$bin/capstan-testsig" source --channels 64 --name src64 >"$out/src64.log" 2>&1 &
src64=$!
sleep 1
mkdir -p "$out/up"
"$bin/capstan" record -q --connect 'src:out_*' --duration "$secs" --dir "$out/up" >/dev/null 2>"$out/rec.err"
bytes=$(cat "$out"/up/*.wav | wc -c)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$out/s3/capstan"
s3s-fs --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret "$out/s3" >"$out/s3.log" 2>&1 &
s3=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
  AWS_ENDPOINT="http://127.0.0.1:$port"

# One push of the take to a fresh prefix; prints "wall user sys".
push_once() { # prefix [--max-mbps N]
  local prefix=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$out/push.time" \
    "$bin/capstan" tiers push "$out/up" --offsite "s3://capstan/$prefix" "$@" >/dev/null 2>"$out/push.err" \
    || { cat "$out/push.err" >&2; exit 1; }
  cat "$out/push.time"
}
# One 8 s take of 64 inputs; prints "p99_us max_us ring_hw_% lost".
record_once() {
  rm -rf "$out/rec"; mkdir -p "$out/rec"
  "$bin/capstan" record -q --json --connect 'src64:out_*' --ports 64 --duration 8 --dir "$out/rec" \
    >"$out/rec.json" 2>"$out/rec.err" || { cat "$out/rec.err" >&2; exit 1; }
  python3 - "$out/rec.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lost = sum(g["frames"] for g in s["take"]["gaps"])
print(f'{s["callback"]["p99_us"]:.0f} {s["callback"]["max_us"]:.0f} '
      f'{s["disk"]["ring_high_water_percent"]:.2f} {lost}')
PY
}

: >"$results/upload.tsv"
printf '%-22s %3s %8s %8s %8s %10s\n' what rep wall_s cpu_s MB/s 'core@100MB/s' >&2
for rep in $(seq "$reps"); do
  for mode in paced unpaced; do
    args=(); [ "$mode" = paced ] && args=(--max-mbps 100)
    read -r wall user sys < <(push_once "$mode-$rep" "${args[@]}")
    rm -rf "$out/s3/capstan/$mode-$rep"
    python3 - "$mode" "$rep" "$wall" "$user" "$sys" "$bytes" "$results/upload.tsv" <<'PY'
import sys
mode, rep, wall, user, sys_, nbytes, tsv = sys.argv[1:]
wall, cpu, nbytes = float(wall), float(user) + float(sys_), int(nbytes)
mbps = nbytes / 1e6 / wall
# The share of one core an upload at 100 MB/s takes: CPU-s per 100 MB.
row = [f"push-{mode}", rep, f"{wall:.2f}", f"{cpu:.2f}", f"{mbps:.0f}", f"{cpu / (nbytes / 1e8):.3f}"]
open(tsv, "a").write("\t".join(map(str, row)) + "\n")
print(f"{'push ' + mode:<22} {rep:>3} {wall:>8.2f} {cpu:>8.2f} {mbps:>8.0f} {100 * cpu / (nbytes / 1e8):>9.1f}%",
      file=sys.stderr)
PY
  done
  for beside in none upload; do
    if [ "$beside" = upload ]; then
      "$bin/capstan" tiers push "$out/up" --offsite "s3://capstan/beside-$rep" --max-mbps 100 >/dev/null 2>&1 &
      push=$!
      sleep 0.5
    fi
    read -r p99 mx hw lost < <(record_once)
    stop_pid "$push"; push=
    rm -rf "$out/s3/capstan/beside-$rep"
    printf 'record-%s\t%s\t%s\t%s\t%s\t%s\n' "$beside" "$rep" "$p99" "$mx" "$hw" "$lost" >>"$results/upload.tsv"
    printf '%-22s %3s  callback p99 %5s us  max %6s us  ring high-water %5s%%  lost %s\n' \
      "record, beside: $beside" "$rep" "$p99" "$mx" "$hw" "$lost" >&2
  done
done
echo "bench-upload: take of $bytes bytes; rows in $results/upload.tsv" >&2
