#!/usr/bin/env bash
# What the meters and the web page cost an idle daemon: CPU of `capstan
# daemon` with N inputs fed by the test source, idle (no take) for S seconds,
# in three cases measured side by side, R rounds in alternating order:
#   base     an older capstan without meters ($BENCH_BASE_BIN; skipped if unset)
#   meters   this capstan, meters running, no page open
#   page     this capstan with one page's event stream attached (curl -N)
# Prints one row per run and the medians as % of one core.
# Usage: scripts/bench-web.sh [inputs=256] [seconds=20] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
inputs=${1:-256}
secs=${2:-20}
rounds=${3:-3}
bin=${BENCH_BIN:-target/release/capstan}
testsig=${BENCH_TESTSIG:-target/release/capstan-testsig}
base=${BENCH_BASE_BIN:-}
name="capstan-bench-web-$$"
out=$(mktemp -d /tmp/capstan-bench-web.XXXXXX)
export JACK_DEFAULT_SERVER=$name JACK_NO_START_SERVER=1
jackd -n "$name" -R -d dummy -r 48000 -p 1024 >"$out/jackd.log" 2>&1 &
jack=$!
trap 'kill ${daemon:-} ${curl_pid:-} ${src:-} 2>/dev/null || true; kill $jack 2>/dev/null || true; wait 2>/dev/null; rm -rf "$out"' EXIT
for _ in $(seq 100); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
"$testsig" source --channels "$inputs" --name src >"$out/src.log" 2>&1 &
src=$!
sleep 1

# CPU seconds (user+sys) of a process so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }

run() { # case exe extra-args...
  local case=$1 exe=$2; shift 2
  local port=$((20000 + RANDOM % 20000)) dir="$out/takes-$case"
  "$exe" daemon --dir "$dir" --ports "$inputs" --connect 'src:out_*' --osc-port "$port" --min-minutes 0 "$@" \
    >"$out/$case.log" 2>&1 &
  daemon=$!
  sleep 3 # connected, rings warm
  curl_pid=
  if [ "$case" = page ]; then
    local http
    http=$(grep -o 'web page http://127.0.0.1:[0-9]*' "$out/$case.log" | grep -o '[0-9]*$' | head -1)
    curl -sN "http://127.0.0.1:$http/api/events" >/dev/null &
    curl_pid=$!
    sleep 1
  fi
  local a b
  a=$(cpu $daemon)
  sleep "$secs"
  b=$(cpu $daemon)
  [ -n "$curl_pid" ] && kill "$curl_pid" 2>/dev/null
  kill $daemon; wait $daemon 2>/dev/null || true
  daemon=
  awk -v a="$a" -v b="$b" -v s="$secs" -v c="$case" 'BEGIN { printf "%-7s %6.2f %% of a core\n", c, 100*(b-a)/s }' |
    tee -a "$out/rows"
}

echo "# idle daemon, $inputs inputs, period 1024, ${secs}s per run, $rounds rounds"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="base meters page"; else order="page meters base"; fi
  for c in $order; do
    case $c in
      base) [ -n "$base" ] && run base "$base" ;;
      meters) run meters "$bin" ;;
      page) run page "$bin" ;;
    esac
  done
done
echo "# medians (% of one core):"
for c in base meters page; do
  awk -v c="$c" '$1 == c { print $2 }' "$out/rows" | sort -n | awk -v c="$c" \
    '{ v[NR] = $1 } END { if (NR) printf "%-7s %6.2f\n", c, v[int((NR + 1) / 2)] }'
done
