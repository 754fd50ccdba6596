#!/usr/bin/env bash
# make run: records a 5-second demo take of capstan's 8-channel test signal.
# Uses the running JACK server, or starts a dummy one (and stops it after).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
dir=${DEMO_DIR:-demo-takes}
started=""
cleanup() {
  [ -n "${src_pid:-}" ] && kill "$src_pid" 2>/dev/null || true
  [ -n "$started" ] && kill "$started" 2>/dev/null || true
}
trap cleanup EXIT
if ! JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1; then
  export JACK_DEFAULT_SERVER=capstan-demo
  echo "demo: no JACK server running; starting a dummy one ($JACK_DEFAULT_SERVER)"
  jackd -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 >/dev/null 2>&1 &
  started=$!
  for _ in $(seq 50); do JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$bin/capstan-testsig" source --channels 8 --name capstan-demo-src >/dev/null &
src_pid=$!
sleep 0.5
"$bin/capstan" record --name capstan-demo --connect 'capstan-demo-src:out_*' --duration 5 --dir "$dir"
echo
echo "demo: your take is in $(cd "$dir" && pwd)/"
ls -1 "$dir" | tail -n 3
