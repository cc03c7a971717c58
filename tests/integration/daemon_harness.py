"""deploy-agent as a daemon under a real systemd, for test_daemon.py.

A Daemon is one throwaway systemd (systemd_sandbox.Sandbox) running:

  deploy-agent.service   the SHIPPED unit (systemd/deploy-agent.service, @SBINDIR@ -> the
                         repo's build dir) plus one drop-in that changes only what a test
                         must: ExecStartPre/ExecStart with `-c WORKDIR/deploy.ini`,
                         ReadWritePaths= for the services' roots, and optionally
                         WatchdogSec=. All the hardening stays.
  <svc>.service          the deployed sample HTTP service (sample_service.py), started
                         from ROOT/current/server.py on its own loopback port.

Layout of the work dir (below tests/integration/.tmp, not /tmp: the agent's unit has
PrivateTmp=yes and would not see /tmp):

  WORKDIR/deploy.ini         the agent's config (poll_interval 1s, health_settle 1s, ...)
  WORKDIR/state/             bound over /var/lib/deploy-agent (the unit's StateDirectory=)
  WORKDIR/srv/<svc>/         the service roots: releases/<sha>/, current

Artifacts are published with botocore through the SigV4-verifying proxy (faster than one
awscli start per object), sidecar first, each in a later wall-clock second than the one
before (S3's LastModified has 1 s resolution and discover picks the newest).
"""

import contextlib
import http.client
import json
import os
import pathlib
import shutil
import signal
import tempfile
import time

import harness
from harness import wait_until  # noqa: F401 (re-exported for the tests)
import sample_service
import systemd_sandbox

REPO = harness.REPO


def private_tmp_exemption():
    """Drop-in lines for a checkout below /tmp or /var/tmp (a CI clone may be
    there): the shipped unit's PrivateTmp=yes would hide the agent's own
    binary and the test's dirs from it. Only then, and saying why."""
    if not str(REPO.resolve()).startswith(("/tmp/", "/var/tmp/")):
        return []
    return ["# the checkout lives in a temporary directory that PrivateTmp=yes would hide",
            "PrivateTmp=no"]
SHIPPED_UNIT = REPO / "systemd" / "deploy-agent.service"
AGENT = "deploy-agent.service"
STATE_DIR = "/var/lib/deploy-agent"

# MESSAGE_IDs of agent/common/log.h
MID_STARTED = "6d3c1b6e8f0e4d0f9a51c7a2b5e0d101"
MID_RELOADED = "6d3c1b6e8f0e4d0f9a51c7a2b5e0d103"
MID_DEPLOYED = "6d3c1b6e8f0e4d0f9a51c7a2b5e0d110"
MID_FAILED = "6d3c1b6e8f0e4d0f9a51c7a2b5e0d111"
MID_ROLLBACK = "6d3c1b6e8f0e4d0f9a51c7a2b5e0d112"
MID_BAD = "6d3c1b6e8f0e4d0f9a51c7a2b5e0d113"

# Generous: the machine may be slow (2 cores, other test suites running).
DEPLOY_TIMEOUT = 90.0


def http_get(port, path="/health", timeout=3):
    """(status, body) of GET http://127.0.0.1:port/path, or (None, error text)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode(errors="replace").strip()
        c.close()
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


def cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


class Service:
    """One deployed service: its S3 prefix, root, unit and port."""

    def __init__(self, daemon, name):
        self.daemon = daemon
        self.name = name
        self.unit = f"{name}.service"
        self.port = systemd_sandbox.free_tcp_port()
        self.prefix = f"{daemon.workdir.name}-{name}/"
        self.root = daemon.workdir / "srv" / name
        self.config = {
            "bucket": harness.BUCKET,
            "prefix": self.prefix,
            "suffix": ".tar.gz",
            "root": str(self.root),
            "unit": self.unit,
            "health_url": f"http://127.0.0.1:{self.port}/health",
            "health_settle": "1s",
            "health_timeout": "10s",
            "auto_rollback": "yes",
            "keep_releases": "3",
            "step_timeout": "60s",
        }

    def unit_text(self):
        return (
            "[Unit]\n"
            f"Description=sample service {self.name}, deployed by deploy-agent\n"
            "[Service]\n"
            "Type=notify\n"
            f"ExecStart=/usr/bin/python3 {self.root}/current/server.py --port {self.port}\n"
        )

    def key(self, sha):
        return f"{self.prefix}{sha}.tar.gz"

    # ---- inspecting ----

    def current(self):
        """The sha `current` points at, or None."""
        try:
            return os.path.basename(os.readlink(self.root / "current"))
        except OSError:
            return None

    def state(self):
        """state.json as the agent last wrote it ({} before the first write)."""
        p = self.daemon.state_dir / self.name / "state.json"
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return {}

    def health(self):
        return http_get(self.port)

    def bad_entry(self, sha):
        for b in self.state().get("bad", []):
            if b.get("sha") == sha:
                return b
        return None

    def releases(self):
        d = self.root / "releases"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def current_is_complete(self):
        """(ok, why): current is None, or a release whose MANIFEST checks out."""
        if self.current() is None:
            return True, "no current"
        return harness.release_is_complete(self.root / "current")

    def settled_at(self, sha):
        """True when sha is current, state.json agrees with nothing in flight, the unit is
        active and /health answers sha (the old process may still answer for a moment)."""
        st = self.state()
        in_flight = (st.get("in_flight") or {}).get("step")
        return (self.current() == sha and st.get("current") == sha and in_flight is None
                and self.health() == (200, sha)
                and self.daemon.sb.show(self.unit, "ActiveState") == "active")

    def wait_settled(self, sha, timeout=DEPLOY_TIMEOUT):
        try:
            return wait_until(lambda: self.settled_at(sha), timeout,
                              f"{self.name} settled at {sha}", interval=0.2)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.daemon.describe(self)}") from None

    def history(self, outcome=None):
        return [h for h in self.state().get("history", [])
                if outcome is None or h.get("outcome") == outcome]

    def fetches_of(self, sha, since=0):
        """Proxy requests since index `since` that read the artifact of sha (not its
        sidecar, not listings)."""
        path = f"/{harness.BUCKET}/{self.key(sha)}"
        return [r for r in self.daemon.s3.proxy.requests[since:]
                if r[0] in ("GET", "HEAD") and r[1].split("?", 1)[0] == path]


class Daemon:
    """A systemd sandbox running the shipped deploy-agent unit for some sample services.
    Not started until start()."""

    def __init__(self, s3, workdir, services=("app",), *, debug=False, watchdog_sec=None,
                 agent_overrides=None, environment=None):
        self.s3 = s3
        self.workdir = pathlib.Path(workdir)
        self.build_dir = REPO / ("build-debug" if debug else "build")
        self.binary = self.build_dir / "deploy-agent"
        if not self.binary.exists():
            raise RuntimeError(f"{self.binary} not built: run `make{' debug' if debug else ''}`")
        self.watchdog_sec = watchdog_sec
        self.environment = dict(environment or {})  # Environment= of the agent's drop-in
        self.config_path = self.workdir / "deploy.ini"
        self.state_dir = self.workdir / "state"
        harness.make_dir(self.workdir / "srv")
        self.state_dir.mkdir(mode=0o750, exist_ok=True)
        self.agent = {
            "state_dir": STATE_DIR,
            "poll_interval": "1s",
            "poll_jitter": "10%",
            "max_workers": "4",
            "worker_user": "nobody",
            "log_level": "debug",
        }
        self.agent.update(agent_overrides or {})
        self.s3_section = {
            "region": harness.REGION,
            "endpoint": s3.endpoint,
            "addressing": "path",
            "credentials": "static",
            "access_key_id": harness.ACCESS_KEY,
            "secret_access_key": harness.SECRET_KEY,
        }
        self.services = {}
        for name in services:
            self.services[name] = Service(self, name)
        self.sb = None
        self._last_publish = 0

    def __getitem__(self, name):
        return self.services[name]

    # ---- config and units ----

    def config_text(self, services=None):
        out = ["[agent]"] + [f"{k} = {v}" for k, v in self.agent.items()] + [""]
        out += ["[s3]"] + [f"{k} = {v}" for k, v in self.s3_section.items()] + [""]
        for svc in (services if services is not None else self.services.values()):
            out += [f'[service "{svc.name}"]'] + [f"{k} = {v}" for k, v in svc.config.items()] + [""]
        return "\n".join(out)

    def write_config(self, text=None):
        """Write deploy.ini atomically (the agent may read it at any moment)."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(self.config_text() if text is None else text)
        os.replace(tmp, self.config_path)

    def shipped_unit(self):
        text = SHIPPED_UNIT.read_text()
        assert "@SBINDIR@" in text, "the shipped unit lost its @SBINDIR@ placeholder"
        return text.replace("@SBINDIR@", str(self.build_dir))

    def dropin(self):
        cfg = self.config_path
        lines = [
            "[Service]",
            "ExecStartPre=",
            f"ExecStartPre={self.binary} -c {cfg} check-config",
            "ExecStart=",
            f"ExecStart={self.binary} -c {cfg} run",
            f"ReadWritePaths={self.workdir / 'srv'}",
            *private_tmp_exemption(),
        ]
        if self.watchdog_sec:
            lines.append(f"WatchdogSec={self.watchdog_sec}")
        lines += [f"Environment={k}={v}" for k, v in self.environment.items()]
        return "\n".join(lines) + "\n"

    def add_service(self, name):
        """A new Service (not yet in the config), with its unit loaded into the sandbox."""
        svc = Service(self, name)
        self.services[name] = svc
        if self.sb is not None:
            self.sb.add_unit(svc.unit, svc.unit_text())
        return svc

    def start(self, boot_timeout=60.0, start_agent=True):
        """Boot the sandbox; with start_agent=False the agent is left stopped (a test
        mounts something in the sandbox first, then sb.systemctl("start", AGENT))."""
        self.write_config()
        units = {AGENT: self.shipped_unit(), f"{AGENT}.d/50-test.conf": self.dropin()}
        for svc in self.services.values():
            units[svc.unit] = svc.unit_text()
        # Only the agent starts at boot: the services have nothing to run before their
        # first deploy; the agent's RestartUnit starts them.
        self.sb = systemd_sandbox.Sandbox(self.workdir, units, start=(AGENT,) if start_agent else (),
                                          binds={STATE_DIR: self.state_dir},
                                          boot_timeout=boot_timeout)
        return self

    def close(self):
        if self.sb is not None:
            self.sb.close()

    # ---- publishing ----

    def publish(self, svc, sha, mode="healthy", extra=None):
        """Upload a release of the sample service (VERSION = sha, MODE = mode, plus
        `extra` files and a MANIFEST) with its .sha256 sidecar; returns the archive size."""
        files = dict(sample_service.release_files(sha, mode))
        files.update(extra or {})
        data = harness.make_tar_gz(harness.with_manifest(files))
        key = svc.key(sha)
        client = self.s3.client
        client.put_object(Bucket=harness.BUCKET, Key=key + ".sha256",
                          Body=f"{harness.sha256_hex(data)}  {sha}.tar.gz\n".encode())
        while int(time.time()) <= self._last_publish:
            time.sleep(0.02)
        client.put_object(Bucket=harness.BUCKET, Key=key, Body=data)
        self._last_publish = int(time.time())
        return len(data)

    # ---- the agent ----

    def agent_props(self):
        return self.sb.props(AGENT, "MainPID", "NRestarts", "ActiveState", "SubState", "StatusText",
                             "InvocationID", "Result")

    def main_pid(self):
        return int(self.sb.show(AGENT, "MainPID"))

    def n_restarts(self):
        return int(self.sb.show(AGENT, "NRestarts") or 0)

    def wait_agent_running(self, timeout=60.0):
        """Active and running with a MainPID (after a start or an automatic restart)."""
        def ok():
            p = self.agent_props()
            return p if (p["ActiveState"] == "active" and p["SubState"] == "running"
                         and p["MainPID"] != "0") else None
        return wait_until(ok, timeout, "deploy-agent.service active (running)", interval=0.1)

    def kill_agent(self, sig=signal.SIGKILL):
        """Signal the agent's main process only (as the OOM killer or an operator's kill -9
        would); its workers die by PR_SET_PDEATHSIG, the rest is systemd's business."""
        self.sb.systemctl("kill", f"--signal={int(sig)}", "--kill-whom=main", AGENT)

    def agent_pids(self):
        """Host PIDs in the agent's cgroup (supervisor and workers)."""
        procs = self.sb.cgroup / "system.slice" / AGENT / "cgroup.procs"
        try:
            return [int(x) for x in procs.read_text().split()]
        except OSError:
            return []

    def worker_pid(self, step):
        """Host PID of the agent's `--worker STEP` process, or None."""
        for pid in self.agent_pids():
            argv = cmdline(pid)
            if b"--worker" in argv and argv[-1] == step.encode():
                return pid
        return None

    def wait_worker(self, step, timeout=60.0, interval=0.005, svc=None):
        try:
            return wait_until(lambda: self.worker_pid(step), timeout, f"a `--worker {step}` process",
                              interval=interval)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.describe(svc or next(iter(self.services.values())))}") from None

    def journal(self, *matches, output="short"):
        """The sandbox's journal, filtered by journalctl matches such as DEPLOY_SERVICE=app."""
        return self.sb.journal(None, *matches, output=output)

    def journal_json(self, *matches):
        return [json.loads(line) for line in self.journal(*matches, output="json").splitlines()
                if line.startswith("{")]

    def agent_log(self):
        return self.sb.journal(AGENT)

    def describe(self, svc=None):
        """What to print when a wait times out."""
        out = []
        with contextlib.suppress(Exception):
            out.append(f"agent: {self.agent_props()}")
        if svc is not None:
            with contextlib.suppress(Exception):
                out.append(f"{svc.name}: current={svc.current()} health={svc.health()} "
                           f"unit={self.sb.show(svc.unit, 'ActiveState')}")
                out.append(f"state.json: {json.dumps(svc.state(), indent=1)[:3000]}")
            with contextlib.suppress(Exception):
                listing = self.s3.client.list_objects_v2(Bucket=harness.BUCKET, Prefix=svc.prefix)
                out.append("S3: " + "; ".join(f"{o['Key'][len(svc.prefix):]} {o['LastModified']} {o['Size']}"
                                              for o in listing.get("Contents", [])))
        with contextlib.suppress(Exception):
            out.append("--- journal (last 60) ---\n" + self.sb.journal(None, "-n", "60", check=False))
        return "\n".join(out)


def new_workdir(tag):
    """A fresh 0755 dir below the sandbox work root (tests/integration/.tmp by default)."""
    root = systemd_sandbox.DEFAULT_WORK_ROOT
    root.mkdir(mode=0o755, exist_ok=True)
    d = pathlib.Path(tempfile.mkdtemp(prefix=f"daemon-{tag}-", dir=root))
    os.chmod(d, 0o755)
    return d


def remove_workdir(d):
    shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(OSError):
        systemd_sandbox.DEFAULT_WORK_ROOT.rmdir()  # only when empty
