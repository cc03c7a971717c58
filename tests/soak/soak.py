#!/usr/bin/python3
"""tests/soak/soak.py (`make soak`, not part of `make test`): the daemon for
SOAK_SECONDS (default 3600) under its shipped unit, with load and faults.

What runs: the test suite's throwaway systemd (tests/integration/
systemd_sandbox.py via daemon_harness.py) running systemd/deploy-agent.service
with 20 services polling every second, each a sample HTTP service restarted and
health-checked on every deploy. S3 is s3rver behind the SigV4-verifying proxy,
with the fault-injecting proxy (tests/integration/fault_proxy.py) in front.

What happens, at random (seeded: SOAK_SEED replays a run):
  - a new build of a random service every SOAK_BUILD_SECONDS (default 3); one in
    eight crashes at start, which the agent must roll back and mark bad;
  - every 5-15 s a random worker of the agent is SIGKILLed;
  - every 20-40 s an S3 fault for 5 s: 503 SlowDown or 500 on every request,
    artifact downloads cut short or stalled, every request delayed 2 s.

What it reports: deploys, rollbacks, failures by cause (the journal's
"failed" events), the lag from an upload (or from the end of the fault that
delayed it) to the service running it, and the supervisor's anonymous RSS,
open file descriptors and CPU in a window after warm-up and in the last one.

It fails when
  - the agent restarts: NRestarts or MainPID changes;
  - a service stays behind its newest build longer than its backoff at the end
    of the last fault (poll_interval doubled per failure in a row) plus
    SOAK_GRACE_SECONDS (default 60: a few polls, and a deploy on a loaded
    2-core machine, where one took up to 41 s after a fault here; a service
    that stopped deploying never catches up, whatever the grace), counted from that build's upload or the end of the last
    fault or kill, whichever is later;
  - a healthy build is marked bad, or a `current` is not a complete release;
  - RssAnon grows: the median of the last window exceeds the median of the first
    by more than 256 KiB (twice glibc's M_TRIM_THRESHOLD, the free heap top
    malloc may keep; a leak of 4 bytes a poll shows within the hour);
  - open fds grow at all: counted with every service paused and no worker
    running, after warm-up and at the end (exact: the set must be the same);
  - CPU grows: the supervisor's CPU time per S3 request the agent made (each
    poll is one; faults and backoff change how many a window has) is in the last
    window more than 1.5 x what it was in the first (the mix of idle polls,
    deploys and rollbacks in a window is random).

Run as root with Debian's python3, after `make`. KEEP_SOAK=1 keeps the work dir
(kept anyway when the soak fails).
"""

import collections
import contextlib
import json
import os
import pathlib
import random
import re
import signal
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import daemon_harness as dh  # noqa: E402
import harness  # noqa: E402
import systemd_sandbox  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "3600"))
BUILD_SECONDS = float(os.environ.get("SOAK_BUILD_SECONDS", "3"))
GRACE = float(os.environ.get("SOAK_GRACE_SECONDS", "60"))
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()) % 1000000)))
N_SERVICES = 20
POLL = 1.0
# A window after warm-up and the last one, each 1/12 of the run, at least 30 s.
WINDOW = max(30.0, SECONDS / 12)
RSS_TOLERANCE_KIB = 256
TICK = os.sysconf("SC_CLK_TCK")
DEPLOYCTL = REPO / "build" / "deployctl"


class SoakFailed(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- the supervisor, seen from the host ------------------------------------------------

def proc_status(pid):
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()[0] if v.split() else ""
    return out


def proc_cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def fd_targets(pid):
    out = []
    d = pathlib.Path(f"/proc/{pid}/fd")
    for fd in sorted(d.iterdir(), key=lambda p: int(p.name)):
        with contextlib.suppress(OSError):
            # socket:[inode] and pipe:[inode] name a new object each time: keep the kind
            target = re.sub(r":\[\d+\]", "", os.readlink(fd))
            out.append(f"{fd.name} {target}")
    return out


class Supervisor:
    """The agent's main process: host PID, systemd's view, samples."""

    def __init__(self, d):
        self.d = d
        self.host_pid = self.find_host_pid()
        props = d.agent_props()
        self.main_pid, self.n_restarts = props["MainPID"], props["NRestarts"]
        self.samples = []   # (t, rss_anon_kib, vm_rss_kib, cpu_s, s3_requests)

    def find_host_pid(self):
        for pid in self.d.agent_pids():
            if b"--worker" not in dh.cmdline(pid):
                return pid
        raise SoakFailed("no supervisor process in the agent's cgroup")

    def workers(self):
        return [p for p in self.d.agent_pids() if p != self.host_pid]

    def check_alive(self):
        if not pathlib.Path(f"/proc/{self.host_pid}").exists() or self.find_host_pid() != self.host_pid:
            raise SoakFailed(f"the supervisor (host pid {self.host_pid}) is gone: the agent restarted\n"
                             f"{self.d.describe()}")

    def check_not_restarted(self):
        props = self.d.agent_props()
        if (props["MainPID"], props["NRestarts"]) != (self.main_pid, self.n_restarts):
            raise SoakFailed(f"the agent restarted: MainPID {self.main_pid} -> {props['MainPID']}, "
                             f"NRestarts {self.n_restarts} -> {props['NRestarts']}")

    def sample(self, t, requests):
        st = proc_status(self.host_pid)
        self.samples.append((t, int(st["RssAnon"]), int(st["VmRSS"]), proc_cpu_seconds(self.host_pid), requests))

    def window(self, t0, t1):
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        if len(s) < 2:
            raise SoakFailed(f"too few samples between {t0:.0f}s and {t1:.0f}s")
        cpu = s[-1][3] - s[0][3]
        return {"rss_anon_kib": statistics.median(x[1] for x in s), "vm_rss_kib": statistics.median(x[2] for x in s),
                "cpu_pct": 100 * cpu / (s[-1][0] - s[0][0]), "requests": s[-1][4] - s[0][4],
                "cpu_ms_per_request": 1000 * cpu / max(s[-1][4] - s[0][4], 1), "from": t0, "to": t1}


def seed_state(state_dir):
    """A state.json whose history and bad list are full (STATE_HISTORY_MAX,
    STATE_BAD_MAX of agent/supervisor/state.h), as on an agent that has run for
    weeks: these lists are bounded, so from the start on any growth is a leak,
    not a list filling up. The shas are made up; none is ever published."""
    state_dir.mkdir(mode=0o750, exist_ok=True)
    when = int(time.time() - 86400) * 1000000
    fake = ["%040x" % (0xdead << 140 | i) for i in range(150)]
    reason = "restart: app.service: RestartUnit job failed (ActiveState=failed SubState=failed Result=exit-code)"
    state = {
        "version": 1, "current": None, "previous": None, "pointer_etag": None, "paused": False,
        "pinned": None, "last_error": None,
        "in_flight": {"step": None, "sha": None, "previous": None, "etag": None},
        "bad": [{"sha": fake[i], "etag": f'"{i:032x}"', "reason": reason, "when_usec": when + i}
                for i in range(100)],
        "history": [{"sha": fake[100 + i], "previous": fake[99 + i], "outcome": "deployed" if i % 4 else "rolled-back",
                     "message": None if i % 4 else reason, "when_usec": when + 100 + i} for i in range(50)],
    }
    (state_dir / "state.json").write_text(json.dumps(state, indent=2))
    return set(fake[:100])


# ---- faults ----------------------------------------------------------------------------

FAULTS = {
    "503 SlowDown on every request": dict(status=503),
    "500 InternalError on every request": dict(status=500),
    "artifact downloads cut after 100 bytes": dict(cut_after=100, artifact_only=True),
    "artifact downloads stalled 5 s after 100 bytes": dict(stall_after=100, stall=5.0, artifact_only=True),
    "every request delayed 2 s": dict(delay=2.0),
}


class FaultWindow:
    """One S3 fault on every matching request until clear()."""

    def __init__(self, fp, name):
        kw = dict(FAULTS[name])
        artifact_only = kw.pop("artifact_only", False)
        self.fp, self.name = fp, name
        self.fault = fp.inject(lambda m, p: m == "GET" and (not artifact_only or p.endswith(".tar.gz")),
                               times=None, **kw)

    def clear(self):
        with self.fp.lock:
            self.fp.faults.remove(self.fault)


# ---- the soak --------------------------------------------------------------------------

class Soak:
    def __init__(self, rng):
        self.rng = rng
        self.workdir = dh.new_workdir("soak")
        self.s3 = self.fp = self.d = self.sup = None
        self.latest = {}          # service -> (sha, mode, upload time)
        self.crash_shas = set()
        self.seeded_bad = set()
        self.settled_at = {}      # service -> sha it was last seen settled at
        self.lags = []            # upload (or fault end) -> running it, seconds
        self.published = self.kills = 0
        self.kills_by_step = collections.Counter()
        self.faults_by_kind = collections.Counter()
        self.disturbed = collections.defaultdict(float)  # service -> end of the last fault, kill or pause
        self.backoff_at = {}          # service -> failures in a row when the last fault ended
        self.max_behind = 0.0
        self.tightest = (float("inf"), 0.0, 0.0)   # (allowed - behind, behind, allowed) at the closest call
        self.fds = {}
        self.requests_trimmed = 0     # S3 requests the fault proxy saw, before its last trim

    # -- setup

    def start(self):
        self.t0 = time.monotonic()
        self.s3 = harness.S3Server(self.workdir / "s3").start()
        self.fp = FaultProxy(self.s3.proxy.host, self.s3.proxy.port).start()
        names = [f"svc{i:02d}" for i in range(N_SERVICES)]
        self.d = dh.Daemon(self.s3, self.workdir, names, agent_overrides={"log_level": "info"})
        self.d.s3_section["endpoint"] = self.fp.endpoint
        # Each port is free when picked, but not held: two services can get the
        # same one, and then one health check answers for both.
        used = set()
        for svc in self.d.services.values():
            while svc.port in used:
                svc.port = systemd_sandbox.free_tcp_port()
            svc.config["health_url"] = f"http://127.0.0.1:{svc.port}/health"
            used.add(svc.port)
        for svc in self.d.services.values():
            self.seeded_bad |= seed_state(self.d.state_dir / svc.name)
            self.publish(svc, "healthy")
        self.d.start()
        self.d.wait_agent_running(timeout=120)
        log(f"agent running under systemd; waiting for the first deploy of {N_SERVICES} services")
        for svc in self.d.services.values():
            svc.wait_settled(self.latest[svc.name][0], timeout=300)
        self.sup = Supervisor(self.d)
        log(f"all {N_SERVICES} services deployed; supervisor host pid {self.sup.host_pid}, "
            f"MainPID {self.sup.main_pid}, NRestarts {self.sup.n_restarts}")

    def requests_seen(self):
        """S3 requests since the start: the work the agent was given (each poll is one)."""
        with self.fp.lock:
            return self.requests_trimmed + len(self.fp.records)

    def now(self):
        return time.monotonic() - self.t0

    def publish(self, svc, mode):
        sha = "%040x" % self.rng.getrandbits(160)
        self.d.publish(svc, sha, mode=mode)
        self.latest[svc.name] = (sha, mode, self.now())
        if mode == "crash":
            self.crash_shas.add(sha)
        self.published += 1

    # -- control socket

    def ctl(self, *args):
        r = self.d.sb.run(str(DEPLOYCTL), *args, timeout=120)
        return r.stdout

    def status(self):
        """Every service's status entry, asked one service at a time: one status
        of all 20 services with full bad lists is a reply of about a megabyte,
        whose heap the allocator keeps, and which would then read as growth."""
        script = "; ".join(f"{DEPLOYCTL} --json status {n}" for n in self.d.services)
        out = self.d.sb.run("sh", "-ec", script, timeout=300).stdout
        return {s["name"]: s for line in out.splitlines() for s in json.loads(line)["services"]}

    def for_all(self, cmd):
        script = "; ".join(f"{DEPLOYCTL} {cmd} {n} >/dev/null" for n in self.d.services)
        self.d.sb.run("sh", "-ec", script, timeout=300)

    def quiet(self):
        """Every service paused, no worker process left, no step in flight, and
        the fds the same twice in a row (a worker just reaped, a state.json
        being written are not the steady state)."""
        if self.sup.workers() or any((svc.state().get("in_flight") or {}).get("step")
                                     for svc in self.d.services.values()):
            return None
        fds = fd_targets(self.sup.host_pid)
        time.sleep(1)
        return fds if fds == fd_targets(self.sup.host_pid) and not self.sup.workers() else None

    def count_fds_quiet(self, when):
        """The supervisor's fds with every service paused and nothing running."""
        self.for_all("pause")
        fds = dh.wait_until(self.quiet, 300, "every service paused, nothing running, fds steady", interval=0.1)
        self.for_all("resume")
        self.fds[when] = fds
        self.disturb_all()
        log(f"open fds ({when}), every service paused and nothing running: {len(fds)}")

    # -- disturbances

    def kill_a_worker(self):
        """SIGKILL a random worker. The services running that step when it died
        (deployctl status) are the ones it may have set back: their clocks restart."""
        # state.json names the step in flight (written before the step runs)
        running = {n: (svc.state().get("in_flight") or {}).get("step") for n, svc in self.d.services.items()}
        workers = self.sup.workers()
        if not workers:
            return
        pid = self.rng.choice(workers)
        argv = dh.cmdline(pid)
        # a child forked but not yet exec'd still has the supervisor's argv
        step = argv[-1].decode() if argv and b"--worker" in argv else "forked, before exec"
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.kills += 1
        self.kills_by_step[step] += 1
        hit = [n for n, st in running.items() if st == step] or list(running)
        for n in hit:
            self.disturbed[n] = self.now()

    def disturb_all(self):
        for n in self.d.services:
            self.disturbed[n] = self.now()

    def end_fault(self, window):
        window.clear()
        self.disturb_all()
        self.backoff_at = {n: s.get("failures", 0) for n, s in self.status().items()}

    # -- checks

    def settled(self, svc):
        sha, mode, _ = self.latest[svc.name]
        if mode == "crash":
            return svc.bad_entry(sha) is not None and (svc.state().get("in_flight") or {}).get("step") is None
        return svc.current() == sha and svc.state().get("current") == sha

    def check_progress(self):
        now = self.now()
        for svc in self.d.services.values():
            sha, mode, uploaded = self.latest[svc.name]
            since = max(uploaded, self.disturbed[svc.name])
            if self.settled_at.get(svc.name) == sha:
                continue
            if self.settled(svc):
                self.settled_at[svc.name] = sha
                self.lags.append(now - since)
                continue
            behind = now - since
            self.max_behind = max(self.max_behind, behind)
            allowed = POLL * 2 ** min(self.backoff_at.get(svc.name, 0) + 1, 10) * 1.1 + GRACE
            self.tightest = min(self.tightest, (allowed - behind, behind, allowed), key=lambda x: x[0])
            if behind > allowed:
                raise SoakFailed(f"{svc.name} is still not running {sha} ({mode}) {behind:.0f}s after "
                                 f"its upload or the last fault (allowed {allowed:.0f}s)\n{self.d.describe(svc)}")

    def check_end_state(self):
        for svc in self.d.services.values():
            expected = self.crash_shas | self.seeded_bad
            wrongly_bad = [b["sha"] for b in svc.state().get("bad", []) if b["sha"] not in expected]
            if wrongly_bad:
                raise SoakFailed(f"{svc.name}: healthy builds marked bad: {wrongly_bad}\n{self.d.describe(svc)}")
            ok, why = svc.current_is_complete()
            if not ok:
                raise SoakFailed(f"{svc.name}: current is not a complete release: {why}")

    # -- the run

    def run(self):
        self.start()
        begin = self.now()
        self.begin_epoch = int(time.time())
        first = (begin + WINDOW, begin + 2 * WINDOW)     # after warm-up
        end = begin + max(SECONDS, 3 * WINDOW)
        log(f"soak: {end - begin:.0f}s, a build every {BUILD_SECONDS:g}s, windows of {WINDOW:.0f}s, seed {SEED}")
        rng, now = self.rng, self.now()
        next_sample = next_build = next_trim = next_restart_check = now
        next_kill, next_fault = now + rng.uniform(5, 15), now + rng.uniform(20, 40)
        fault, fault_end = None, 0.0
        while now < end:
            self.sup.check_alive()
            if now >= next_sample:
                self.sup.sample(now, self.requests_seen())
                next_sample += 1.0
                if len(self.sup.samples) % int(WINDOW / 2) == 0:
                    self.log_sample()
            if fault and now >= fault_end:
                self.end_fault(fault)
                fault, next_fault = None, now + rng.uniform(20, 40)
            if "after warm-up" not in self.fds and now >= first[1] and not fault:
                self.count_fds_quiet("after warm-up")
            elif not fault and now >= next_fault and now < end - 2 * WINDOW / 3:
                kind = rng.choice(sorted(FAULTS))
                fault, fault_end = FaultWindow(self.fp, kind), now + 5.0
                self.faults_by_kind[kind] += 1
            if now >= next_kill:
                self.kill_a_worker()
                next_kill = now + rng.uniform(5, 15)
            if now >= next_build:
                svc = rng.choice(list(self.d.services.values()))
                self.publish(svc, "crash" if rng.random() < 1 / 8 else "healthy")
                next_build = self.now() + BUILD_SECONDS
            self.check_progress()
            if now >= next_restart_check:
                self.sup.check_not_restarted()
                next_restart_check = now + 10
            if now >= next_trim:   # the proxies keep every request: keep the soak's own RSS flat
                with self.fp.lock:
                    self.requests_trimmed += len(self.fp.records)
                    self.fp.records.clear()
                with self.s3.proxy.lock:
                    self.s3.proxy.requests.clear()
                next_trim = now + 60
            time.sleep(0.2)
            now = self.now()
        if fault:
            self.end_fault(fault)
        last = (now - WINDOW, now)
        log("load stopped; waiting for every service to run its newest build")
        dh.wait_until(lambda: self.check_progress() or all(self.settled_at.get(n) == self.latest[n][0]
                                                           for n in self.d.services), 600,
                      "every service at its newest build", interval=0.5)
        self.count_fds_quiet("end")
        self.sup.check_not_restarted()
        self.sup.check_alive()
        self.check_end_state()
        return self.report(self.sup.window(*first), self.sup.window(*last), end - begin)

    def log_sample(self):
        t, rss_anon, vm_rss, cpu, _ = self.sup.samples[-1]
        t0, _, _, cpu0, _ = self.sup.samples[max(0, len(self.sup.samples) - int(WINDOW / 2) - 1)]
        log(f"t={t:.0f}s RssAnon {rss_anon} KiB, VmRSS {vm_rss} KiB, CPU {100 * (cpu - cpu0) / max(t - t0, 1):.2f}%, "
            f"fds {len(fd_targets(self.sup.host_pid))} with {len(self.sup.workers())} workers running, "
            f"{self.published} builds published, {self.kills} workers killed")

    # -- the report

    def journal_count(self, mid):
        return len(self.d.sb.journal(None, f"MESSAGE_ID={mid}", f"--since=@{self.begin_epoch}", output="cat",
                                     timeout=300).splitlines())

    def failure_causes(self):
        causes = collections.Counter()
        out = self.d.sb.journal(None, f"MESSAGE_ID={dh.MID_FAILED}", f"--since=@{self.begin_epoch}", output="cat",
                                timeout=300)
        for msg in out.splitlines():
            msg = re.sub(r"^svc\d\d: ", "", msg)
            msg = re.sub(r"daemon-soak-\w+-svc\d\d/", "<prefix>/", msg)
            msg = re.sub(r"\bsvc\d\d\.service", "<unit>", msg)
            msg = re.sub(r"\b[0-9a-f]{40}\b", "<sha>", msg)
            msg = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", msg)
            msg = re.sub(r"\d+\.\d+|\d{4,}", "N", msg)
            causes[msg[:140]] += 1
        return causes

    def report(self, a, b, seconds):
        deployed, rollbacks, bad = (self.journal_count(m) for m in (dh.MID_DEPLOYED, dh.MID_ROLLBACK, dh.MID_BAD))
        causes = self.failure_causes()
        lags = sorted(self.lags)
        print(f"\n== soak report: {seconds:.0f}s, {N_SERVICES} services polling every {POLL:g}s, seed {SEED}")
        print(f"builds published: {self.published} ({len(self.crash_shas)} crashing at start)")
        print(f"deploys done: {deployed}; rollbacks: {rollbacks}; builds marked bad: {bad}")
        print(f"upload (or end of the fault/kill that delayed it) -> running: median {statistics.median(lags):.1f}s, "
              f"p95 {lags[int(len(lags) * 0.95)]:.1f}s, max {lags[-1]:.1f}s over {len(lags)} builds")
        print(f"closest to the limit: {self.tightest[1]:.1f}s behind of {self.tightest[2]:.1f}s allowed "
              "(backoff at the end of the last fault, plus SOAK_GRACE_SECONDS)")
        print(f"workers killed: {self.kills} ({', '.join(f'{k} {v}' for k, v in sorted(self.kills_by_step.items()))})")
        print("S3 fault windows (5 s each): " + ", ".join(f"{k}: {v}" for k, v in sorted(self.faults_by_kind.items())))
        print(f"failures by cause ({sum(causes.values())} in all):")
        for msg, n in causes.most_common(20):
            print(f"  {n:6d}  {msg}")
        print(f"agent restarts: none (MainPID {self.sup.main_pid}, NRestarts {self.sup.n_restarts} throughout)")
        print("supervisor           first window ({:.0f}-{:.0f}s)   last window ({:.0f}-{:.0f}s)".format(
            a["from"], a["to"], b["from"], b["to"]))
        print(f"  RssAnon (median)   {a['rss_anon_kib']:8.0f} KiB            {b['rss_anon_kib']:8.0f} KiB")
        print(f"  VmRSS (median)     {a['vm_rss_kib']:8.0f} KiB            {b['vm_rss_kib']:8.0f} KiB")
        print(f"  CPU                {a['cpu_pct']:8.2f} % of a core     {b['cpu_pct']:8.2f} % of a core")
        print(f"  CPU per S3 request {a['cpu_ms_per_request']:8.3f} ms ({a['requests']:5d})  "
              f"{b['cpu_ms_per_request']:8.3f} ms ({b['requests']:5d})")
        print(f"  open fds (quiet)   {len(self.fds['after warm-up']):8d}                {len(self.fds['end']):8d}")
        return self.verdict(a, b)

    def verdict(self, a, b):
        problems = []
        grew = b["rss_anon_kib"] - a["rss_anon_kib"]
        if grew > RSS_TOLERANCE_KIB:
            problems.append(f"RssAnon grew by {grew:.0f} KiB (tolerance {RSS_TOLERANCE_KIB} KiB)")
        if self.fds["after warm-up"] != self.fds["end"]:
            gone = sorted(set(self.fds["after warm-up"]) - set(self.fds["end"]))
            new = sorted(set(self.fds["end"]) - set(self.fds["after warm-up"]))
            problems.append(f"open fds changed: new {new}, gone {gone}")
        if b["cpu_ms_per_request"] > 1.5 * a["cpu_ms_per_request"]:
            problems.append(f"CPU per S3 request grew from {a['cpu_ms_per_request']:.3f} ms to "
                            f"{b['cpu_ms_per_request']:.3f} ms (tolerance 1.5 x)")
        for p in problems:
            print(f"FAIL: {p}")
        if not problems:
            print("PASS: no restart, every service kept deploying, no growth of RSS, fds or CPU")
        return not problems


def main():
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if os.geteuid() != 0:
        sys.exit("soak: run as root (it boots a throwaway systemd)")
    soak = Soak(random.Random(SEED))
    ok = False
    try:
        ok = soak.run()
    except (SoakFailed, TimeoutError) as e:
        print(f"FAIL: {e}", flush=True)
    finally:
        keep = not ok or os.environ.get("KEEP_SOAK")
        if soak.d is not None and soak.d.sb is not None and keep:
            with contextlib.suppress(Exception):
                (soak.workdir / "journal.txt").write_text(soak.d.sb.journal(None, timeout=300))
        for stop in (soak.d and soak.d.close, soak.fp and soak.fp.stop, soak.s3 and soak.s3.stop):
            if stop:
                with contextlib.suppress(Exception):
                    stop()
        if keep:
            if soak.sup is not None:
                with contextlib.suppress(OSError):
                    (soak.workdir / "samples.csv").write_text(
                        "t,rss_anon_kib,vm_rss_kib,cpu_s,s3_requests\n" +
                        "".join(f"{t:.1f},{a},{v},{c:.2f},{n}\n" for t, a, v, c, n in soak.sup.samples))
            print(f"work dir kept: {soak.workdir} (journal.txt, samples.csv)")
        else:
            dh.remove_workdir(soak.workdir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
