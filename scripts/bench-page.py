#!/usr/bin/env python3
"""The web page's own speed in headless Chromium: a daemon with N inputs fed
by the test source, the page open for S seconds; counts the events the page
handled and the frames Chromium drew a second, and the time one update
takes. Also the daemon's CPU (% of one core) for S seconds without a page,
then for the S seconds with the real browser attached. Needs chromium and
chromium-driver; prints one JSON line.

Usage: scripts/bench-page.py [inputs=256] [seconds=10]
(the release build: target/release/capstan and capstan-testsig)"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

inputs = int(sys.argv[1]) if len(sys.argv) > 1 else 256
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
bin_dir = os.path.join(root, "target/release")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wd(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["value"]


procs = []
tmp = tempfile.mkdtemp(prefix="capstan-bench-page.")
env = dict(os.environ, JACK_DEFAULT_SERVER=f"capstan-bench-page-{os.getpid()}", JACK_NO_START_SERVER="1")
try:
    procs.append(subprocess.Popen(["jackd", "-n", env["JACK_DEFAULT_SERVER"], "-R", "-d", "dummy", "-r", "48000",
                                   "-p", "1024"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(2)
    procs.append(subprocess.Popen([f"{bin_dir}/capstan-testsig", "source", "--channels", str(inputs), "--tone", "-20"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1)
    http, osc = free_port(), free_port()
    procs.append(subprocess.Popen([f"{bin_dir}/capstan", "daemon", "-q", "--dir", f"{tmp}/takes", "--ports",
                                   str(inputs), "--connect", "src:out_*", "--osc-port", str(osc), "--http-port",
                                   str(http)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    daemon = procs[-1].pid
    time.sleep(3)
    c0 = cpu_seconds(daemon)
    time.sleep(secs)
    idle_pct = (cpu_seconds(daemon) - c0) / secs * 100
    dport = free_port()
    # Its own process group: the browser it starts goes with it.
    procs.append(subprocess.Popen(["chromedriver", f"--port={dport}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True))
    time.sleep(3)
    session = wd(dport, "POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1600,1000"]}}}})["sessionId"]
    wd(dport, "POST", f"/session/{session}/url", {"url": f"http://127.0.0.1:{http}/"})
    time.sleep(2)
    # Count frames, events and the time update() takes, for `secs`.
    wd(dport, "POST", f"/session/{session}/execute/sync", {"args": [], "script": """
        window.__b = {frames: 0, events: 0, busy: 0, meters: document.querySelectorAll('.m').length};
        const f = () => { window.__b.frames++; requestAnimationFrame(f); }; requestAnimationFrame(f);
        const orig = update; update = (s) => { const t = performance.now(); orig(s);
            window.__b.busy += performance.now() - t; window.__b.events++; };
        return true;"""})
    c0 = cpu_seconds(daemon)
    time.sleep(secs)
    page_pct = (cpu_seconds(daemon) - c0) / secs * 100
    b = wd(dport, "POST", f"/session/{session}/execute/sync",
           {"args": [], "script": "return Object.assign({}, window.__b, {meters: document.querySelectorAll('.m').length});"})
    wd(dport, "DELETE", f"/session/{session}")
    print(json.dumps({"inputs": inputs, "seconds": secs, "meters_on_page": b["meters"],
                      "frames_per_s": round(b["frames"] / secs, 1), "events_per_s": round(b["events"] / secs, 1),
                      "update_ms_mean": round(b["busy"] / max(b["events"], 1), 2),
                      "daemon_cpu_pct_no_page": round(idle_pct, 2),
                      "daemon_cpu_pct_page_open": round(page_pct, 2)}))
finally:
    for p in reversed(procs):
        if p.args[0] == "chromedriver":
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
