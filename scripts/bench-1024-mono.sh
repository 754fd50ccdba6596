#!/usr/bin/env bash
# Issue 26's long run: 1024 inputs in the mono layout (1024 files), float32,
# period 1024, for SECONDS (default 600), on a private dummy jackd. Ten
# minutes of it are 118 GB, more than most test disks hold, so the daemon
# rotates every minute and each finished minute is checked and removed:
# its manifest (state, gaps and their causes), and inputs 1, 512 and 1024
# verified frame by frame at their JACK frame time (capstan-testsig
# verify). Prints one line per minute and a summary; exit 1 if a frame was
# lost where the source saw no xrun.
# Usage: scripts/bench-1024-mono.sh [SECONDS] [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
bin=${2:-target/release}
out=$(mktemp -d "${BENCH_DIR:-/tmp}/capstan-1024.XXXXXX")
jack= src= daemon=
stop_pid() { if [ -n "$1" ]; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() { stop_pid "$daemon"; stop_pid "$src"; stop_pid "$jack"; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$out"; }
trap cleanup EXIT

export JACK_DEFAULT_SERVER="capstan-1024-$$"
jackd -n "$JACK_DEFAULT_SERVER" -R -p 4096 -d dummy -r 48000 -p 1024 >"$out/jackd.log" 2>&1 &
jack=$!
for _ in $(seq 100); do JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/capstan-testsig" source --channels 1024 --name src --xrun-file "$out/src.xruns" >"$out/src.log" 2>&1 &
src=$!
sleep 2
port=$((20000 + RANDOM % 5000))
mkdir -p "$out/takes"
"$bin/capstan" daemon -q --ports 1024 --layout mono --connect 'src:out_*' --dir "$out/takes" \
  --osc-port "$port" --no-http --rotate-every 1m --min-minutes 0.1 --min-free-fraction 0.02 2>"$out/daemon.err" &
daemon=$!
sleep 5
oscsend localhost "$port" /record/start
t0=$(date +%s)

# Checks and removes every finished take; appends a JSON line per take.
check() {
  python3 - "$out/takes" "$bin" "$out/checked.jsonl" <<'PY'
import glob, json, os, subprocess, sys
takes, bin_, log = sys.argv[1:]
for m in sorted(glob.glob(f"{takes}/*.take.json")):
    j = json.load(open(m))
    if j.get("state") == "recording":
        continue
    stem = m[: -len(".take.json")]
    row = {"take": os.path.basename(stem), "state": j["state"], "frames": j["frames"],
           "first_frame_time": j.get("first_frame_time"),
           "files": len(j["files"]), "xruns": j.get("xruns", 0),
           "gaps": [{"cause": g["cause"], "frames": g["frames"]} for g in j.get("gaps", [])]}
    for ch in (1, 512, 1024):
        f = f"{stem}_in_{ch}.wav"
        r = subprocess.run([f"{bin_}/capstan-testsig", "verify", f, "--first-channel", str(ch - 1)],
                           capture_output=True, text=True)
        v = json.loads(r.stdout.splitlines()[0]) if r.stdout else {"error": r.stderr.strip()}
        row[f"in_{ch}"] = {k: v.get(k) for k in ("frames", "mismatched", "skipped", "error")} | {
            "silent": sum(s["frames"] for s in v.get("silent", []))}
    open(log, "a").write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    for f in [m] + [os.path.join(os.path.dirname(m), n) for n in j["files"]] + glob.glob(f"{stem}.png"):
        try:
            os.remove(f)
        except FileNotFoundError:
            pass
PY
}

while [ $(( $(date +%s) - t0 )) -lt "$secs" ]; do
  sleep 15
  check
done
oscsend localhost "$port" /record/stop
sleep 5
check
rss=$(grep -i vmhwm /proc/$daemon/status | awk '{print $2}')
# The daemon's CPU (user + system, s) over the whole run.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' /proc/$daemon/stat)
stop_pid "$daemon"; daemon=
python3 - "$out/checked.jsonl" "$out/src.xruns" "$rss" "$cpu" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
src_xruns = int(open(sys.argv[2]).read().strip() or 0) if sys.argv[2] else 0
frames = sum(r["frames"] for r in rows)
lost = {}
for r in rows:
    for g in r["gaps"]:
        lost[g["cause"]] = lost.get(g["cause"], 0) + g["frames"]
bad = [r["take"] for r in rows if any((r[k].get("mismatched") or r[k].get("skipped") or r[k].get("error"))
                                      for k in ("in_1", "in_512", "in_1024"))]
print(f"1024 inputs mono: {len(rows)} takes, {frames} frames ({frames / 48000:.1f} s) each input; "
      f"gaps by cause {lost}; source xruns {src_xruns}; takes with a misplaced frame: {bad}; "
      f"daemon peak RSS {int(sys.argv[3]) // 1024} MiB, CPU {sys.argv[4]} s")
# The minutes chain exactly: each begins at the frame after the last.
breaks = [b["take"] for a, b in zip(rows, rows[1:])
          if b["first_frame_time"] != a["first_frame_time"] + a["frames"]]
print(f"chain breaks between minutes: {breaks}")
own = sum(v for k, v in lost.items() if k in ("disk_overrun", "overflow"))
sys.exit(1 if bad or own or breaks or (lost and src_xruns == 0) else 0)
PY
