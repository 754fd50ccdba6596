#!/usr/bin/env python3
"""The timeline stress bed (issue 23, a start): takes of random length on a
private real-time dummy jackd while capstan is stopped (SIGSTOP) for random
5-400 ms at random moments; then every take is checked frame by frame
against the test signal, and every silent run against the manifest's gaps
by position.

A failure is a frame away from its position (misplaced: the signal encodes
its own frame time) or silence the manifest does not report. Prints one
line per failing take and a JSON summary; exits 1 if anything failed.

Usage: scripts/stress.py [--seconds 120] [--period 256] [--channels 4]
                         [--stall-every 1.0] [--keep DIR]
       scripts/stress.py --check-only DIR   (checks the takes a --keep run left)
Needs the release build (make build testbed-release) and jackd.
"""

import argparse
import glob
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
bin_dir = os.path.join(root, "target/release")


def osc_message(path, *args):
    def pad(b):
        return b + b"\0" * (4 - len(b) % 4)
    tags = "," + "".join("s" if isinstance(a, str) else "i" for a in args)
    out = pad(path.encode()) + pad(tags.encode())
    for a in args:
        out += pad(a.encode()) if isinstance(a, str) else struct.pack(">i", a)
    return out


def osc_strings(data):
    """The address and the string arguments of a reply (enough to read
    /reply and /error)."""
    parts, i = [], 0
    while i < len(data):
        j = data.index(b"\0", i)
        parts.append(data[i:j].decode(errors="replace"))
        i = (j // 4 + 1) * 4
        if len(parts) == 2:
            break
    return parts


class Daemon:
    def __init__(self, env, takes_dir, port, channels, log):
        self.port = port
        self.proc = subprocess.Popen(
            [f"{bin_dir}/capstan", "daemon", "-q", "--dir", takes_dir, "--ports", str(channels),
             "--connect", "src:out_*", "--osc-port", str(port), "--no-http", "--min-minutes", "0.1"],
            env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)

    def ask(self, path, timeout=10.0):
        self.sock.sendto(osc_message(path), ("127.0.0.1", self.port))
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            addr = osc_strings(data)
            if addr and addr[0] in ("/reply", "/error"):
                return addr[0]
        return None


def stall_loop(pid, every, stop, counts):
    """Stops capstan for 5-400 ms at random moments until `stop` is set."""
    while not stop.is_set():
        time.sleep(random.uniform(0.2, 2 * every))
        ms = random.uniform(5, 400)
        try:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(ms / 1000)
        finally:
            os.kill(pid, signal.SIGCONT)
        counts["stalls"] += 1


def check(wav, channels):
    """Verdict on one take: (misplaced frames, unreported silent frames,
    the manifest's gaps by cause)."""
    stem = wav[:-4]
    manifest = json.load(open(stem + ".take.json"))
    if manifest.get("state") == "recording":
        # Never finalized (the daemon was killed): its gaps are not in the
        # manifest yet; `capstan recover` would finish it.
        return None, "not finalized (the daemon was killed before the take's end)", {}
    r = subprocess.run([f"{bin_dir}/capstan-testsig", "verify", wav], capture_output=True, text=True)
    if not r.stdout:
        return None, f"cannot verify: {r.stderr.strip()}", {}
    v = json.loads(r.stdout.splitlines()[0])
    gaps = sorted((g["at"], g["frames"]) for g in manifest.get("gaps", []))
    by_cause = {}
    for g in manifest.get("gaps", []):
        by_cause[g["cause"]] = by_cause.get(g["cause"], 0) + g["frames"]
    covered = set()
    for at, n in gaps:
        covered.update(range(at, at + n))
    unreported = 0
    for run in v["silent"]:
        for f in range(run["at"], run["at"] + run["frames"]):
            if f not in covered:
                unreported += 1
    return (v["mismatched"], unreported, by_cause), v.get("first_mismatch"), by_cause


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--period", type=int, default=256)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--stall-every", type=float, default=1.0)
    ap.add_argument("--keep")
    ap.add_argument("--check-only")
    a = ap.parse_args()
    counts = {"stalls": 0, "takes": 0, "refused": 0}
    if a.check_only:
        report(a, os.path.join(a.check_only, "takes"), counts, a.check_only)
    work = a.keep or tempfile.mkdtemp(prefix="capstan-stress.")
    takes_dir = os.path.join(work, "takes")
    os.makedirs(takes_dir, exist_ok=True)
    name = f"capstan-stress-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    procs = []
    stop = threading.Event()
    try:
        procs.append(subprocess.Popen(["jackd", "-n", name, "-R", "-d", "dummy", "-r", "48000", "-p",
                                       str(a.period)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        time.sleep(2)
        procs.append(subprocess.Popen([f"{bin_dir}/capstan-testsig", "source", "--channels", str(a.channels)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        d = Daemon(env, takes_dir, port, a.channels, open(os.path.join(work, "daemon.log"), "w"))
        procs.append(d.proc)
        deadline = time.time() + 15
        while d.ask("/record/status", 0.5) is None:
            if time.time() > deadline:
                sys.exit("the daemon did not answer")
        staller = threading.Thread(target=stall_loop, args=(d.proc.pid, a.stall_every, stop, counts), daemon=True)
        staller.start()
        end = time.time() + a.seconds
        while time.time() < end:
            if d.ask("/record/start") != "/reply":
                counts["refused"] += 1
                d.ask("/record/reset")
                time.sleep(0.5)
                continue
            time.sleep(random.uniform(0.2, 3.0))
            if d.ask("/record/stop") != "/reply":
                counts["refused"] += 1
                d.ask("/record/reset")
            counts["takes"] += 1
        stop.set()
        staller.join()
    finally:
        stop.set()
        for p in reversed(procs):
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=20)
            except Exception:
                p.kill()
    report(a, takes_dir, counts, work if a.keep else None)


def report(a, takes_dir, counts, kept):
    """Checks every take in `takes_dir`, prints the failures and the
    summary, and exits (1 if anything failed)."""
    failures, gap_frames, checked = [], {}, 0
    for wav in sorted(glob.glob(os.path.join(takes_dir, "*.wav"))):
        verdict, first, by_cause = check(wav, a.channels)
        checked += 1
        if verdict is None:
            failures.append((wav, first))
            continue
        misplaced, unreported, _ = verdict
        for c, n in by_cause.items():
            gap_frames[c] = gap_frames.get(c, 0) + n
        if misplaced or unreported:
            failures.append((wav, f"misplaced {misplaced}, unreported silence {unreported}, first {first}"))
    for wav, why in failures:
        print(f"FAIL {os.path.basename(wav)}: {why}")
    print(json.dumps({"period": a.period, "channels": a.channels, "seconds": a.seconds, "takes": checked,
                      "stalls": counts["stalls"], "refused": counts["refused"], "gap_frames": gap_frames,
                      "failures": len(failures), "kept": kept}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
