#!/usr/bin/env python3
"""bench/control.py (`make bench-control`, part of `make bench`): the control socket's
request latency (p50/p99) and requests per second, and the agent's RSS before and after.

    bench/control.py                     start a private agent and measure it
    bench/control.py --socket PATH       measure a running agent (RSS when its pid is
                                         visible from here: status tells it)

Requests: `status` and `version`, N each (default 10,000) over one connection, then
over C connections at once (default 8, one thread each, one request at a time per
connection as deployctl does); then N/10 `version` requests with a new connection each,
and 200 `deployctl version` processes (what a script pays). Latency is measured at the
client, from the first byte sent to the whole answer line read; it includes Python's own
overhead (some tens of microseconds).

The private agent needs no S3: its one service has a release on disk (a `current`
symlink), its first poll fails at once (nothing listens on the endpoint) and the next is
an hour away, so nothing but the socket keeps it busy.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
AGENT = pathlib.Path(os.environ.get("DEPLOY_AGENT_BIN", REPO / "build" / "deploy-agent"))
DEPLOYCTL = pathlib.Path(os.environ.get("DEPLOYCTL_BIN", REPO / "build" / "deployctl"))
SHA = "3f2c9a1e5b7d4c6f8a0b2d4e6f8a0c2e4b6d8f0a"
REQUESTS = {
    "status": b'{"cmd":"status"}\n',
    "version": b'{"cmd":"version","service":"app"}\n',
}


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def call(self, request):
        self.sock.sendall(request)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the agent closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def close(self):
        self.sock.close()


def timed_calls(path, request, n, check):
    """n requests over one connection: list of latencies (seconds)."""
    c = Client(path)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            line = c.call(request)
            out.append(time.perf_counter() - t0)
            if check and b'"ok":true' not in line:
                raise RuntimeError(f"unexpected answer: {line[:200]!r}")
    finally:
        c.close()
    return out


def run_parallel(path, request, n, conns):
    per = n // conns
    results, errors = [None] * conns, []

    def worker(i):
        try:
            results[i] = timed_calls(path, request, per, check=True)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return [x for r in results for x in r], wall


def run_reconnect(path, request, n):
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        c = Client(path)
        c.call(request)
        c.close()
        lat.append(time.perf_counter() - t)
    return lat, time.perf_counter() - t0


def run_deployctl(path, n):
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        r = subprocess.run([str(DEPLOYCTL), "-s", path, "version", "app"], capture_output=True)
        lat.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise RuntimeError(f"deployctl failed: {r.stderr!r}")
    return lat, time.perf_counter() - t0


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def rss_kib(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def start_agent(work):
    root = work / "srv" / "app"
    (root / "releases" / SHA).mkdir(parents=True)
    (root / "releases" / SHA / "VERSION").write_text(SHA + "\n")
    os.symlink(f"releases/{SHA}", root / "current")
    sock = work / "control.sock"
    cfg = work / "deploy.ini"
    cfg.write_text(
        "[agent]\n"
        f"state_dir = {work}/state\nsocket = {sock}\nadmin_group =\nworker_user = nobody\n"
        "poll_interval = 1h\npoll_jitter = 0%\nlog_level = warning\n"
        "[s3]\nendpoint = http://127.0.0.1:9\ncredentials = static\n"
        "access_key_id = BENCH\nsecret_access_key = BENCH\n"
        '[service "app"]\nbucket = bench\nprefix = app/\n'
        f"root = {root}\nrestart_mode = none\n")
    os.chmod(work, 0o755)
    log = open(work / "agent.log", "wb")
    proc = subprocess.Popen([str(AGENT), "-c", str(cfg), "run"], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            c = Client(str(sock))
            c.call(REQUESTS["status"])
            c.close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"the agent did not come up:\n{(work / 'agent.log').read_text()}")
            time.sleep(0.05)
    # let the first (failing) poll pass, so its worker is not part of the measurement
    time.sleep(1.0)
    return proc, str(sock)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", help="measure the agent listening here instead of starting one")
    ap.add_argument("-n", "--requests", type=int, default=int(os.environ.get("BENCH_REQUESTS", 10000)))
    ap.add_argument("-c", "--connections", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()

    work, proc = None, None
    if args.socket:
        path = args.socket
    else:
        work = pathlib.Path(tempfile.mkdtemp(prefix="deploy-agent-bench-control-"))
        proc, path = start_agent(work)
    try:
        c = Client(path)
        status = json.loads(c.call(REQUESTS["status"]))
        c.close()
        pid = status["agent"]["pid"] if proc is None else proc.pid
        print(f"deploy-agent {status['agent']['version']}, pid {pid}, socket {path}")

        timed_calls(path, REQUESTS["status"], 500, check=True)  # warm up
        rss_before = rss_kib(pid)
        rows = []
        total = 0
        for name, req in REQUESTS.items():
            t0 = time.perf_counter()
            lat = timed_calls(path, req, args.requests, check=True)
            rows.append((f"{name}, 1 connection", lat, time.perf_counter() - t0))
            total += len(lat)
        for name, req in REQUESTS.items():
            lat, wall = run_parallel(path, req, args.requests, args.connections)
            rows.append((f"{name}, {args.connections} connections", lat, wall))
            total += len(lat)
        lat, wall = run_reconnect(path, REQUESTS["version"], max(1, args.requests // 10))
        rows.append(("version, connect each time", lat, wall))
        total += len(lat)
        rss_after = rss_kib(pid)
        if shutil.which(str(DEPLOYCTL)) or DEPLOYCTL.exists():
            lat, wall = run_deployctl(path, 200)
            rows.append(("deployctl version (process)", lat, wall))

        print(f"\n{'requests':<32}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'req/s':>10}")
        results = []
        for label, lat, wall in rows:
            p50, p99, mx = (percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3, max(lat) * 1e3)
            rps = len(lat) / wall
            print(f"{label:<32}{len(lat):>7}{p50:>10.3f}{p99:>10.3f}{mx:>10.3f}{rps:>10.0f}")
            results.append({"requests": label, "n": len(lat), "p50_ms": p50, "p99_ms": p99, "max_ms": mx,
                            "rps": rps})
        if rss_before is not None and rss_after is not None:
            print(f"\nagent RSS: {rss_before} KiB before, {rss_after} KiB after {total:,} requests "
                  f"({rss_after - rss_before:+d} KiB)")
        else:
            print("\nagent RSS: not visible from here (another PID namespace?)")
        if args.json:
            print(json.dumps({"results": results, "rss_before_kib": rss_before, "rss_after_kib": rss_after,
                              "requests": total}))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
