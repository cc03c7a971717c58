#!/usr/bin/env python3
"""bench/daemon.py (part of `make bench`): what the daemon costs while idle,
and how fast a new build reaches a healthy service.

1. idle: 20 services polling every second (nothing new to deploy) for
   BENCH_IDLE_SECONDS (default 300): the supervisor's RSS and CPU, and the
   CPU of its workers (one discover worker per poll), as % of one core.
   Targets: supervisor under 4 MiB RSS and under 1% of one core.
2. latency: a 10 MiB artifact uploaded with awscli; the time until the
   service answers /health with the new version (the agent's health_url
   check passes at the same moment). Target: poll interval + under 2 s.

S3 is s3rver behind the test suite's SigV4-verifying proxy, on loopback.
Run with Debian's python3 (it needs python3-botocore): /usr/bin/python3.
"""

import hashlib
import http.server
import io
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import harness  # noqa: E402

AGENT = REPO / "build" / "deploy-agent"
TICK = os.sysconf("SC_CLK_TCK")


def tar_gz(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def publish(s3, prefix, sha, files):
    data = tar_gz(files)
    key = f"{prefix}{sha}.tar.gz"
    s3.put(key + ".sha256", f"{hashlib.sha256(data).hexdigest()}  {sha}.tar.gz\n".encode())
    s3.put(key, data)


def new_sha(i):
    return hashlib.sha1(f"bench-{i}-{time.time_ns()}".encode()).hexdigest()


def write_config(path, work, s3, services, interval, extra=""):
    lines = [f"[agent]\nstate_dir = {work}/state\nsocket = {work}/control.sock\n"
             f"worker_user = nobody\npoll_interval = {interval}\npoll_jitter = 20%\nmax_workers = 4\n"
             f"log_level = warning\n\n[s3]\nregion = us-east-1\nendpoint = {s3.endpoint}\n"
             "credentials = static\naccess_key_id = S3RVER\nsecret_access_key = S3RVER\n"]
    for name, prefix in services:
        lines.append(f'\n[service "{name}"]\nbucket = {harness.BUCKET}\nprefix = {prefix}\n'
                     f"root = {work}/srv/{name}\nrestart_mode = none\n{extra}")
    path.write_text("".join(lines))


def proc_cpu(pid):
    """(own CPU seconds, reaped children's CPU seconds) from /proc/PID/stat."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def proc_status(pid, key):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def start_agent(config, log):
    return subprocess.Popen([str(AGENT), "-c", str(config), "run"], stdout=log, stderr=subprocess.STDOUT)


def stop_agent(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_idle(s3, work, n_services, seconds):
    services = [(f"svc{i:02d}", f"idle/svc{i:02d}/") for i in range(n_services)]
    for i, (_, prefix) in enumerate(services):
        publish(s3, prefix, new_sha(i), {"VERSION": b"1\n"})
    config = work / "idle.ini"
    write_config(config, work, s3, services, "1s")
    with open(work / "idle.log", "w") as log:
        agent = start_agent(config, log)
        try:
            wait_for(lambda: all((work / "srv" / n / "current").exists() for n, _ in services), 120,
                     "the first deploys")
            time.sleep(2)
            own0, kids0 = proc_cpu(agent.pid)
            t0 = time.monotonic()
            rss_max = 0
            while time.monotonic() - t0 < seconds:
                time.sleep(1)
                rss_max = max(rss_max, proc_status(agent.pid, "VmRSS"))
            own1, kids1 = proc_cpu(agent.pid)
            wall = time.monotonic() - t0
            hwm = proc_status(agent.pid, "VmHWM")
        finally:
            stop_agent(agent)
    print(f"idle: {n_services} services polling every 1s for {wall:.0f}s")
    print(f"  supervisor RSS: max {rss_max / 1024:.2f} MiB while idle, peak since start {hwm / 1024:.2f} MiB"
          " (target < 4 MiB)")
    print(f"  supervisor CPU: {100 * (own1 - own0) / wall:.2f}% of one core (target < 1%)")
    print(f"  workers' CPU:   {100 * (kids1 - kids0) / wall:.2f}% of one core "
          f"({n_services / 1.0:.0f} discover workers a second)")


class VersionServer(http.server.BaseHTTPRequestHandler):
    root = None

    def do_GET(self):
        try:
            body = (self.root / "current" / "VERSION").read_bytes()
            self.send_response(200)
        except OSError:
            body = b"none\n"
            self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def bench_latency(s3, work, runs, size_mib, interval_s):
    root = work / "srv" / "lat"
    VersionServer.root = root
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), VersionServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    config = work / "lat.ini"
    write_config(config, work, s3, [("lat", "lat/")], f"{interval_s}s",
                 f"health_url = {url}\nhealth_settle = 0s\nhealth_timeout = 30s\n")
    publish(s3, "lat/", new_sha(0), {"VERSION": b"v0\n"})
    payload = os.urandom(size_mib << 20)
    results = []
    with open(work / "lat.log", "w") as log:
        agent = start_agent(config, log)
        try:
            wait_for(lambda: (root / "current").exists(), 120, "the first deploy")
            for i in range(1, runs + 1):
                version = f"v{i}\n".encode()
                publish(s3, "lat/", new_sha(i), {"VERSION": version, "payload.bin": payload})
                t0 = time.monotonic()
                wait_for(lambda: urllib.request.urlopen(url, timeout=5).read() == version,
                         interval_s * 4 + 120, f"version {i}")
                results.append(time.monotonic() - t0)
        finally:
            stop_agent(agent)
            server.shutdown()
    print(f"latency: {size_mib} MiB artifact, poll_interval {interval_s}s, {runs} uploads")
    print(f"  upload done -> healthy on the new version: median {statistics.median(results):.2f}s, "
          f"max {max(results):.2f}s (target: poll interval + < 2 s = {interval_s + 2}s)")
    print(f"  beyond the poll interval: median {statistics.median(results) - interval_s:+.2f}s "
          "(the wait for the next poll is uniform in [0, interval], so this is pessimistic)")


def main():
    seconds = int(os.environ.get("BENCH_IDLE_SECONDS", "300"))
    work = pathlib.Path(tempfile.mkdtemp(prefix="deploy-agent-bench-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    s3 = harness.S3Server(work).start()
    try:
        bench_idle(s3, work, 20, seconds)
        bench_latency(s3, work, runs=5, size_mib=10, interval_s=5)
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
