#!/usr/bin/env python3
"""The timeline stress bed (issue 23): takes of random length on private
real-time servers while capstan, the test source or the server itself is
stopped (SIGSTOP) for random moments, several runs at once beside busy
loops; then every take is checked frame by frame against the test signal,
and every silent run against the manifest's gaps by position.

A failure is a frame away from its position (misplaced: the signal encodes
its own frame time), silence the manifest does not report, or stamps that
disagree (the start reply's first frame, the manifest's, the bext
time_reference against the manifest's, and the audio's own). A witness
client (`capstan-testsig witness`) on each server records what the server
delivered at every frame time, so silence the server itself delivered (a
PipeWire quantum or rate change) is told apart from silence of capstan's
making; only the latter fails.

Prints one line per failing take and a JSON summary (takes, stalls by
victim, gaps by cause, uncertain cycles, failures); exits 1 if anything
failed.

Usage: scripts/stress.py [--seconds 480]
                         [--runs jack2:128,jack2:256,jack2:1024,pipewire:256]
                         [--channels 8] [--stall capstan,source,server]
                         [--stall-every 0.5] [--stall-ms 5,400] [--busy 2]
                         [--source-work 0.3] [--no-changes] [--no-trace]
                         [--keep DIR] [--bin DIR] [--capstan BIN]
       scripts/stress.py --check-only DIR   (checks the takes a --keep run left)
A run is SERVER:PERIOD, SERVER one of jack2 (asynchronous jackd, dummy
driver, real-time) or pipewire (headless, private XDG_RUNTIME_DIR; its
quantum and rate are changed at random during takes). The daemon logs
every cycle it is handed (CAPSTAN_LOG trace of disk::intake), so silence
the server handed to capstan itself is known; the witness's log says what
another client was handed.
Needs the release build (make build testbed-release), jackd and, for
pipewire runs, pipewire and pipewire-jack.
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def osc_message(path, *args):
    def pad(b):
        return b + b"\0" * (4 - len(b) % 4)
    tags = "," + "".join("s" if isinstance(a, str) else "i" for a in args)
    out = pad(path.encode()) + pad(tags.encode())
    for a in args:
        out += pad(a.encode()) if isinstance(a, str) else struct.pack(">i", a)
    return out


def osc_parse(data):
    """An OSC message: (address, [arguments]) for the types capstan sends."""
    def string(i):
        j = data.index(b"\0", i)
        return data[i:j].decode(errors="replace"), (j // 4 + 1) * 4
    addr, i = string(0)
    if i >= len(data) or data[i:i + 1] != b",":
        return addr, []
    tags, i = string(i)
    args = []
    for t in tags[1:]:
        if t == "s":
            v, i = string(i)
        elif t == "i":
            v, i = struct.unpack(">i", data[i:i + 4])[0], i + 4
        elif t == "f":
            v, i = struct.unpack(">f", data[i:i + 4])[0], i + 4
        elif t == "d":
            v, i = struct.unpack(">d", data[i:i + 8])[0], i + 8
        elif t == "h":
            v, i = struct.unpack(">q", data[i:i + 8])[0], i + 8
        else:
            break
        args.append(v)
    return addr, args


def bext_time_reference(wav):
    """The bext chunk's time_reference (samples since midnight), if any."""
    with open(wav, "rb") as f:
        head = f.read(12)
        while True:
            h = f.read(8)
            if len(h) < 8:
                return None
            cid, size = h[:4], struct.unpack("<I", h[4:])[0]
            if cid == b"bext":
                b = f.read(size)
                return struct.unpack("<Q", b[338:346])[0]
            if cid == b"data" and size == 0xFFFFFFFF:
                return None
            f.seek(size + (size & 1), 1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Run:
    """One server with its source, witness and capstan daemon, the stall
    loop and the take loop."""

    def __init__(self, a, kind, period, work, index):
        self.a, self.kind, self.period = a, kind, period
        self.dir = os.path.join(work, f"run{index}-{kind}-{period}")
        self.takes = os.path.join(self.dir, "takes")
        os.makedirs(self.takes, exist_ok=True)
        self.name = f"capstan-stress-{os.getpid()}-{index}"
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1",
                        RUST_BACKTRACE="0")
        self.env.pop("PIPEWIRE_REMOTE", None)
        self.procs = {}
        self.counts = {"takes": 0, "refused": 0, "stalls": {}, "changes": 0, "replies": {}}
        self.stop = threading.Event()
        # Held for each take: a restart of the source (and the wiring of
        # capstan's inputs to it, one port after another) waits for it.
        self.taking = threading.Lock()

    def cmd(self, argv):
        return (["pw-jack"] + argv) if self.kind == "pipewire" else argv

    def spawn(self, key, argv, **kw):
        if key == "capstan" and not self.a.no_trace:
            kw["env"] = dict(self.env, CAPSTAN_LOG="info,capstan::disk::intake=trace")
        kw.setdefault("stdout", subprocess.DEVNULL)
        n = self.counts.get("restarts", {}).get(key, 0)
        kw.setdefault("stderr", open(os.path.join(self.dir, f"{key}{n or ''}.stderr"), "w"))
        kw.setdefault("env", self.env)
        self.procs[key] = subprocess.Popen(self.cmd(argv), **kw)
        return self.procs[key]

    def tool(self, argv):
        return subprocess.run(self.cmd(argv), env=self.env, capture_output=True, text=True, timeout=10)

    def pw_setting(self, key, value):
        subprocess.run(["pw-metadata", "-n", "settings", "0", key, str(value)], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)

    def wait_for(self, what, test, seconds=20):
        deadline = time.time() + seconds
        while not test():
            if time.time() > deadline:
                raise RuntimeError(f"{self.name}: {what}")
            time.sleep(0.1)

    def start(self):
        b = self.a.bin
        if self.kind == "pipewire":
            self.env["XDG_RUNTIME_DIR"] = os.path.join(self.dir, "runtime")
            os.makedirs(self.env["XDG_RUNTIME_DIR"], exist_ok=True)
            self.procs["server"] = subprocess.Popen(["pipewire"], env=self.env, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)
            self.wait_for("pipewire did not come up", lambda: self.tool(["jack_lsp"]).returncode == 0)
            self.pw_setting("clock.force-rate", 48000)
            self.pw_setting("clock.force-quantum", self.period)
        else:
            # JACK2 has 8 server slots per user and other servers may hold
            # them all: a jackd that exits at once is started again until a
            # slot is free (up to 10 minutes).
            deadline = time.time() + 600
            while True:
                self.procs["server"] = p = subprocess.Popen(
                    ["jackd", "-n", self.name, "-R", "-d", "dummy", "-r", "48000", "-p", str(self.period)],
                    env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                up = lambda: p.poll() is not None or self.tool(["jack_lsp"]).returncode == 0
                self.wait_for("jackd did not come up", up)
                if p.poll() is None:
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"{self.name}: no JACK server slot came free in 10 minutes")
                time.sleep(2)
        self.wait_for("period", lambda: self.tool(["jack_bufsize"]).stdout.strip() == str(self.period))
        ch = str(self.a.channels)
        self.start_source()
        self.start_witness()
        self.port = free_port()
        self.spawn("capstan", [self.a.capstan or f"{b}/capstan", "daemon", "-q", "--dir", self.takes, "--ports", ch,
                               "--connect", "src:out_*", "--osc-port", str(self.port), "--no-http",
                               "--min-minutes", "0.1", "--min-free-fraction", "0"],
                   stderr=open(os.path.join(self.dir, "daemon.log"), "w"))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.wait_for("the daemon did not answer", lambda: self.ask("/record/status", 0.5) is not None)

    def start_source(self):
        b, ch, n = self.a.bin, str(self.a.channels), self.counts.get("restarts", {}).get("source", 0)
        self.spawn("source", [f"{b}/capstan-testsig", "source", "--channels", ch, "--work", str(self.a.source_work),
                              "--truth", os.path.join(self.dir, f"source{n or ''}.truth")], stdout=subprocess.PIPE)
        self.procs["source"].stdout.readline()  # "ready src"

    def start_witness(self):
        b, ch, n = self.a.bin, str(self.a.channels), self.counts.get("restarts", {}).get("witness", 0)
        self.spawn("witness", [f"{b}/capstan-testsig", "witness", "--channels", ch, "--from", "src",
                               "--log", os.path.join(self.dir, f"witness{n or ''}.log")], stdout=subprocess.PIPE)
        self.procs["witness"].stdout.readline()  # "ready"

    def revive(self):
        """A source or witness that died (a PipeWire client stopped at
        random was seen to go, twice in three long runs) is started again,
        and capstan's inputs are connected to the new source: the run goes
        on, and the summary counts the restarts. capstan dying fails."""
        for key, start in [("source", self.start_source), ("witness", self.start_witness)]:
            p = self.procs.get(key)
            if p is None or p.poll() is None:
                continue
            with self.taking:
                self.restart(key, p, start)

    def restart(self, key, p, start):
        r = self.counts.setdefault("restarts", {})
        r[key] = r.get(key, 0) + 1
        self.counts.setdefault("exits", []).append(f"{key} exit {p.returncode}")
        start()
        if key == "source":
            for client in ["capstan", "witness"]:
                for i in range(1, self.a.channels + 1):
                    self.tool(["jack_connect", f"src:out_{i}", f"{client}:in_{i}"])

    def ask(self, path, timeout=10.0, want=None):
        """Sends `path`; the reply's address (/reply or /error), and its
        arguments in `want` if given."""
        self.sock.sendto(osc_message(path), ("127.0.0.1", self.port))
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            addr, args = osc_parse(data)
            if addr in ("/reply", "/error") and args[:1] == [path]:
                if want is not None:
                    want.extend(args[1:])
                return addr
        return None

    def stall_loop(self):
        """Stops a victim for a random moment at random times."""
        lo, hi = self.a.stall_ms
        while not self.stop.wait(random.uniform(0.05, 2 * self.a.stall_every)):
            self.revive()
            victims = self.a.pw_stall if self.kind == "pipewire" and self.a.pw_stall else self.a.stall
            victim = random.choice(victims)
            p = self.procs.get(victim)
            if p is None or p.poll() is not None:
                continue
            # pw-jack execs its client: the pid is the client's.
            try:
                os.kill(p.pid, signal.SIGSTOP)
                time.sleep(random.uniform(lo, hi) / 1000)
                if victim == "capstan" and random.random() < 0.5:
                    # Let it run for a moment (its first run after the
                    # stall) and stop it again for 1-3 periods: the run
                    # that would repeat that cycle comes a cycle late.
                    os.kill(p.pid, signal.SIGCONT)
                    time.sleep(random.uniform(0, 0.3) / 1000)
                    os.kill(p.pid, signal.SIGSTOP)
                    time.sleep(random.uniform(1, 3) * self.period / 48000)
            finally:
                os.kill(p.pid, signal.SIGCONT)
            self.counts["stalls"][victim] = self.counts["stalls"].get(victim, 0) + 1

    def change_loop(self):
        """PipeWire: a new quantum or rate at random moments."""
        while not self.stop.wait(random.uniform(0.5, 3.0)):
            if random.random() < 0.5:
                self.pw_setting("clock.force-quantum", random.choice([128, 256, 512, 1024]))
            else:
                self.pw_setting("clock.force-rate", random.choice([44100, 48000, 96000]))
            self.counts["changes"] += 1

    def take_loop(self, end):
        while time.time() < end:
            with self.taking:
                self.one_take()
            time.sleep(0.01)

    def refused(self, what, addr, args):
        """A command not answered with /reply: counted, and what capstan
        said kept for the report."""
        self.counts["refused"] += 1
        said = " ".join(str(x) for x in args) if addr else "no answer within 10 s"
        self.counts.setdefault("refusals", []).append(f"{time.strftime('%H:%M:%S')} {what}: {said}")
        self.ask("/record/reset")

    def one_take(self):
        reply = []
        addr = self.ask("/record/start", want=reply)
        if addr != "/reply":
            self.refused("start", addr, reply)
            time.sleep(0.5)
            return
        if len(reply) >= 2:
            # take id -> the first frame time the reply gave
            self.counts["replies"][str(reply[0])] = int(reply[1])
        time.sleep(random.uniform(0.2, 3.0))
        reply = []
        addr = self.ask("/record/stop", want=reply)
        if addr != "/reply":
            self.refused("stop", addr, reply)
        self.counts["takes"] += 1

    def run(self, end):
        threads = [threading.Thread(target=self.stall_loop, daemon=True)]
        if self.kind == "pipewire" and not self.a.no_changes:
            threads.append(threading.Thread(target=self.change_loop, daemon=True))
        for t in threads:
            t.start()
        self.take_loop(end)
        self.stop.set()
        for t in threads:
            t.join()

    def close(self):
        self.stop.set()
        # A process that died during the run (or hung at its end) makes
        # the run's evidence incomplete: a dead source hands out silence.
        self.counts["died"] = [
            f"{k} (exit {p.returncode})" for k, p in self.procs.items()
            if k in ("capstan", "server") and p.poll() is not None
        ]
        self.counts["killed"] = []
        for key in ["capstan", "witness", "source", "server"]:
            p = self.procs.get(key)
            if p is None:
                continue
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=20)
            except Exception:
                # Every thread's stack first: what it hung in.
                try:
                    with open(os.path.join(self.dir, f"{key}.stacks"), "w") as out:
                        subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex", "thread apply all bt"],
                                       stdout=out, stderr=subprocess.STDOUT, timeout=60)
                except (OSError, subprocess.SubprocessError) as e:
                    print(f"no stacks of {key}: {e}", file=sys.stderr)
                p.kill()
                self.counts["killed"].append(key)
        with open(os.path.join(self.dir, "counts.json"), "w") as f:
            json.dump(self.counts, f)


def read_witness(path):
    """The witness's log: every cycle's frame time, length and what it held."""
    cycles = []
    try:
        for line in open(path):
            t, n, held = line.split()
            cycles.append((int(t), int(n), held))
    except FileNotFoundError:
        pass
    return cycles


def read_trace(path):
    """With --trace, the cycles capstan itself was handed: (frame time,
    length, all zero) per clean cycle, from its log."""
    cycles = []
    try:
        for line in open(path):
            if " cycle " not in line and not line.rstrip().endswith("cycle"):
                continue
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if "t" in f and "zero" in f:
                cycles.append((int(f["t"]), int(f["n"]), f["zero"] == "true"))
    except FileNotFoundError:
        pass
    return cycles


def zero_spans(run_dir):
    """Frame-time spans in which the server handed out silence: what capstan
    was handed (its --trace log) if there is one, else what the witness was."""
    trace = read_trace(os.path.join(run_dir, "daemon.log"))
    if trace:
        spans = [(t, t + n) for t, n, zero in trace if zero]
        return sorted(spans), "capstan"
    witness = [c for f in sorted(glob.glob(os.path.join(run_dir, "witness*.log"))) for c in read_witness(f)]
    return sorted((t, t + n) for t, n, held in witness if held == "zero"), "witness"


def overlap(spans, lo, hi):
    """Frames of [lo, hi) inside the (sorted, possibly overlapping) spans."""
    covered, pos = 0, lo
    for a, b in spans:
        if b <= pos:
            continue
        if a >= hi:
            break
        a = max(a, pos)
        if b > a:
            covered += min(b, hi) - a
            pos = min(b, hi)
    return covered


def stale_spans(run_dir):
    """Frame-time spans in which the witness was handed an earlier cycle's
    audio, by offset: audio the server handed out away from its place."""
    spans = {}
    for f in sorted(glob.glob(os.path.join(run_dir, "witness*.log"))):
        for t, n, held in read_witness(f):
            if held.startswith("off:"):
                spans.setdefault(int(held[4:]), []).append((t, t + n))
    return {off: sorted(v) for off, v in spans.items()}


def check(bin_dir, wav, zeros, stale, replies):
    """Verdict on one take: (misplaced frames and unreported silent frames
    of capstan's making, silent or misplaced frames the server handed out
    as they are in the file), the first
    mismatch, and the manifest's gaps by cause (count, frames)."""
    stem = wav[:-4]
    manifest = json.load(open(stem + ".take.json"))
    if manifest.get("state") == "recording":
        # Never finalized (the daemon was killed): its gaps are not in the
        # manifest yet; `capstan recover` would finish it.
        return None, "never finalized (its manifest still says recording)", {}
    r = subprocess.run([f"{bin_dir}/capstan-testsig", "verify", wav], capture_output=True, text=True)
    if not r.stdout:
        return None, f"cannot verify: {r.stderr.strip()}", {}
    v = json.loads(r.stdout.splitlines()[0])
    # The stamps agree: the start reply (first segment), the manifest, the
    # bext and the audio's own first frame.
    if manifest.get("first_frame_time") != v["first_frame_time"]:
        return None, f"manifest first frame {manifest.get('first_frame_time')} != audio's {v['first_frame_time']}", {}
    want = replies.get(manifest.get("take_id"))
    if want is not None and not manifest.get("continues") and want != v["first_frame_time"]:
        return None, f"the start reply said first frame {want}, the take has {v['first_frame_time']}", {}
    if manifest.get("time_reference") != bext_time_reference(wav):
        return None, f"bext time_reference {bext_time_reference(wav)} != manifest's {manifest.get('time_reference')}", {}
    gaps = sorted((g["at"], g["frames"]) for g in manifest.get("gaps", []))
    by_cause = {}
    for g in manifest.get("gaps", []):
        c = by_cause.setdefault(g["cause"], [0, 0])
        c[0] += 1
        c[1] += g["frames"]
    unreported, servers, first = 0, 0, v["first_frame_time"]
    for run in v["silent"]:
        at, end = run["at"], run["at"] + run["frames"]
        pieces, pos = [], at
        for g_at, g_n in gaps:
            if g_at + g_n <= pos or g_at >= end:
                continue
            if g_at > pos:
                pieces.append((pos, g_at - pos))
            pos = max(pos, g_at + g_n)
        if pos < end:
            pieces.append((pos, end - pos))
        for p_at, p_n in pieces:
            theirs = overlap(zeros, first + p_at, first + p_at + p_n)
            servers += theirs
            unreported += p_n - theirs
    # Misplaced frames the witness was handed too, with the same offset at
    # the same frame times, are the server's; the rest are capstan's.
    misplaced = v["mismatched"]
    for run in v.get("misplaced", []):
        theirs = overlap(stale.get(run["off"], []), first + run["at"], first + run["at"] + run["frames"])
        servers += theirs
        misplaced -= theirs
    return (misplaced, unreported, servers), v.get("first_mismatch"), by_cause


def explain(run_dir):
    """What a failed run's capstan said: its refusals, and its log's
    warnings, errors and panics (not the per-cycle trace), the last 40."""
    try:
        for r in json.load(open(os.path.join(run_dir, "counts.json"))).get("refusals", [])[:20]:
            print(f"  refused {r}")
    except (OSError, ValueError):
        pass
    lines = []
    try:
        with open(os.path.join(run_dir, "daemon.log"), errors="replace") as f:
            for line in f:
                if " cycle" in line and " TRACE " in line:
                    continue
                if any(k in line for k in (" WARN ", " ERROR ", "panicked", "RUST_BACKTRACE")):
                    lines.append(line.rstrip()[:300])
    except OSError:
        return
    for line in lines[-40:]:
        print(f"  log {line}")


def report(a, run_dirs, seconds):
    """Checks every take of every run, prints the failures and the
    summary, and exits (1 if anything failed)."""
    failures, gap_causes, checked, server_silence = [], {}, 0, 0
    stalls, takes, refused, changes, repeated = {}, 0, 0, 0, 0
    witness, restarts = {}, {}
    for d in run_dirs:
        replies = {}
        zeros, _ = zero_spans(d)
        stale = stale_spans(d)
        for f in sorted(glob.glob(os.path.join(d, "witness*.log"))):
            for _, _, held in read_witness(f):
                k = "stale" if held.startswith("off:") else held
                witness[k] = witness.get(k, 0) + 1
        for m in glob.glob(os.path.join(d, "takes", "*.take.json")):
            repeated += json.load(open(m)).get("repeated_frames", 0)
        try:
            counts = json.load(open(os.path.join(d, "counts.json")))
            for k, n in counts["stalls"].items():
                stalls[k] = stalls.get(k, 0) + n
            refused += counts["refused"]
            replies = counts.get("replies", {})
            for k, n in counts.get("restarts", {}).items():
                restarts[k] = restarts.get(k, 0) + n
            for k in counts.get("died", []):
                failures.append((os.path.join(d, k.split()[0]), f"{k} died during the run (see its .log)"))
            for k in counts.get("killed", []):
                failures.append((os.path.join(d, k), f"{k} did not end on SIGTERM within 20 s (killed)"))
            changes += counts["changes"]
        except FileNotFoundError:
            pass
        # capstan recovers from a thread that panicked, but a panic is a
        # defect whatever it cost.
        try:
            with open(os.path.join(d, "daemon.log"), errors="replace") as f:
                panics = [line.strip() for line in f if "panicked at" in line]
            if panics:
                failures.append((os.path.join(d, "daemon.log"), f"capstan panicked: {panics[0]}"))
        except OSError:
            pass
        for wav in sorted(glob.glob(os.path.join(d, "takes", "*.wav"))):
            verdict, first, by_cause = check(a.bin, wav, zeros, stale, replies)
            checked += 1
            if verdict is None:
                failures.append((wav, first))
                continue
            misplaced, unreported, servers = verdict
            server_silence += servers
            for c, (k, n) in by_cause.items():
                g = gap_causes.setdefault(c, [0, 0])
                g[0] += k
                g[1] += n
            if misplaced or unreported:
                failures.append((wav, f"misplaced {misplaced}, unreported silence {unreported}, first {first}"))
        takes += len({os.path.basename(w).split(".")[0] for w in glob.glob(os.path.join(d, "takes", "*.take.json"))})
    for wav, why in failures:
        print(f"FAIL {os.path.relpath(wav, os.path.dirname(os.path.dirname(os.path.dirname(wav))))}: {why}")
    for d in run_dirs:
        if any(w.startswith(d + os.sep) for w, _ in failures):
            explain(d)
    summary = {
        "runs": [os.path.basename(d) for d in run_dirs], "channels": a.channels, "seconds": seconds,
        "files": checked, "takes": takes, "refused": refused, "stalls": stalls, "changes": changes,
        "gaps_by_cause": {c: {"gaps": k, "frames": n} for c, (k, n) in sorted(gap_causes.items())},
        "uncertain_cycles": gap_causes.get("late_uncertain", [0, 0])[0], "repeated_frames": repeated,
        "witness_cycles": witness, "restarts": restarts,
        "server_delivered_frames": server_silence, "failures": len(failures),
    }
    print(json.dumps(summary))
    if checked == 0:
        print("FAIL nothing was recorded: no take to check")
    sys.exit(1 if failures or checked == 0 else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=480)
    ap.add_argument("--runs", default="jack2:128,jack2:256,jack2:1024,pipewire:256")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--stall", default="capstan,source,server")
    ap.add_argument("--pw-stall", default="",
                    help="victims on PipeWire runs, if not --stall's (once in two long runs a PipeWire "
                         "source stopped at random stopped writing for good and had to be killed)")
    ap.add_argument("--stall-every", type=float, default=0.5)
    ap.add_argument("--stall-ms", default="5,400")
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--no-changes", action="store_true", help="PipeWire keeps its quantum and rate")
    ap.add_argument("--source-work", type=float, default=0.3,
                    help="the share of each period the source spins before writing (a heavy upstream)")
    ap.add_argument("--bin", default=os.path.join(root, "target/release"))
    ap.add_argument("--capstan", help="the capstan binary (default: BIN/capstan)")
    ap.add_argument("--no-trace", action="store_true",
                    help="the daemon does not log every cycle it is handed (then the witness tells "
                         "silence the server handed out from capstan's)")
    ap.add_argument("--keep")
    ap.add_argument("--check-only")
    a = ap.parse_args()
    a.stall = [v for v in a.stall.split(",") if v]
    a.pw_stall = [v for v in a.pw_stall.split(",") if v]
    a.stall_ms = [float(x) for x in a.stall_ms.split(",")]
    if a.check_only:
        report(a, sorted(glob.glob(os.path.join(a.check_only, "run*"))), None)
    work = a.keep or tempfile.mkdtemp(prefix="capstan-stress.")
    runs = []
    for i, spec in enumerate(a.runs.split(",")):
        kind, period = spec.split(":")
        runs.append(Run(a, kind, int(period), work, i))
    busy = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(a.busy)]
    try:
        for r in runs:
            r.start()
        end = time.time() + a.seconds
        threads = [threading.Thread(target=r.run, args=(end,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in busy:
            p.kill()
        for r in runs:
            r.close()
    try:
        report(a, [r.dir for r in runs], a.seconds)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
