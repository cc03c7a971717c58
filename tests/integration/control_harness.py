"""deploy-agent as a plain background daemon (`deploy-agent -c CONFIG run`, no
systemd) with its control socket in the test dir, and deployctl to drive it,
for test_control.py and test_docs.py.

    def test_x(ctl_daemon):             # a factory fixture
        d = ctl_daemon()                # agent fixture's sandbox, started
        r = d.ctl("--json", "status")   # deployctl -s SOCKET ... -> CompletedProcess
        d.request({"cmd": "status"})    # one raw JSON line over the socket
        d.stop()                        # SIGTERM, bounded wait (also at teardown)

Every daemon started by the fixture is stopped at teardown (SIGTERM, then
SIGKILL of its process group): no process outlives its test.
"""

import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import wait_until  # noqa: F401 (re-exported for the tests)

DEPLOYCTL_BIN = pathlib.Path(os.environ.get("DEPLOYCTL_BIN", harness.REPO / "build" / "deployctl"))

# The agent runs every test service with these, besides the harness's defaults.
AGENT_DEFAULTS = {"poll_interval": "2s", "poll_jitter": "0%", "admin_group": ""}
SERVICE_DEFAULTS = {"restart_mode": "none"}

# Exit codes of deployctl (docs/design.md, "Control protocol").
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_DENIED, EXIT_UNREACHABLE, EXIT_TIMEOUT = range(7)


def as_user(user, group=None, init_groups=False):
    """setpriv argv prefix that runs a command as user (and group), no other groups
    unless init_groups (then the user's groups from /etc/group)."""
    argv = ["setpriv", f"--reuid={user}", f"--regid={group or user}"]
    argv += ["--init-groups"] if init_groups else ["--clear-groups"]
    return argv + ["--"]


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Connection:
    """A raw client of the control socket: JSON lines, with deadlines."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, data):
        if isinstance(data, dict):
            data = (json.dumps(data) + "\n").encode()
        self.sock.sendall(data)

    def recv_line(self, timeout=10.0):
        """The next line (bytes, without the newline); None at EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line in {timeout}s (have {self.buf[:200]!r})")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def recv(self, timeout=10.0):
        line = self.recv_line(timeout)
        if line is None:
            raise EOFError("the agent closed the connection")
        return json.loads(line)

    def request(self, obj, timeout=10.0):
        self.send(obj)
        return self.recv(timeout)

    def at_eof(self, timeout=10.0):
        """True when the agent closes the connection within timeout (data before it is
        dropped); False if it is still open then."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except (socket.timeout, TimeoutError):
                return False

    def closed_now(self):
        """True when the agent has closed the connection (data waiting does not count)."""
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)  # with a timeout, Python would poll before recv
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CtlDaemon:
    """`deploy-agent -c CONFIG run` for the agent fixture's sandbox (service "app")."""

    def __init__(self, agent, agent_overrides=None, service_overrides=None, s3_overrides=None):
        self.agent = agent
        self.s3 = agent.s3
        self.s3_cfg = dict(s3_overrides or {})
        self.agent_cfg = {**AGENT_DEFAULTS, **(agent_overrides or {})}
        self.service_cfg = {**SERVICE_DEFAULTS, **(service_overrides or {})}
        self.socket = pathlib.Path(self.agent_cfg.get("socket", agent.tmp / "control.sock"))
        self.log_path = agent.tmp / "agent.log"
        self.proc = None
        self.write_config()

    def write_config(self, _s3=None, **service_overrides):
        self.s3_cfg.update(_s3 or {})
        self.service_cfg.update(service_overrides)
        return self.agent.write_config(_agent=self.agent_cfg, _s3=self.s3_cfg, **self.service_cfg)

    # ---- life cycle ----

    def start(self, wait=True, extra_env=None, argv_prefix=()):
        """Start the agent; with wait, until its socket answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        env = {**os.environ, **(extra_env or {})}
        env.pop("LISTEN_FDS", None)
        self.proc = subprocess.Popen([*argv_prefix, *self.agent.command("run")], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        def answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited {self.proc.returncode}:\n{self.log()}")
            try:
                with Connection(self.socket, timeout=2) as c:
                    return c.request({"cmd": "status"}).get("ok")
            except (OSError, EOFError, TimeoutError, ValueError):
                return False
        wait_until(answers, timeout, f"the agent's socket {self.socket}")

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal the agent and wait; kill its process group if it hangs. Returns the
        exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError(f"the agent did not stop in {timeout}s after {sig!r}")
        # its workers are in its process group; none may stay behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def log(self, since_start=False):
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if since_start:
            data = data[self._log_offset:]
        return data.decode(errors="replace")

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    # ---- clients ----

    def connect(self, timeout=10.0):
        return Connection(self.socket, timeout)

    def request(self, obj, timeout=10.0):
        with self.connect(timeout) as c:
            return c.request(obj, timeout)

    def ctl(self, *args, user=None, timeout=120, socket_path=None, **kw):
        """Run deployctl -s SOCKET ARGS (as user: a setpriv argv prefix); prints what it
        did for pytest's failure report."""
        cmd = [*(user or []), str(DEPLOYCTL_BIN), "-s", str(socket_path or self.socket), *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, **kw)
        print(f"$ {' '.join(cmd)}\n-> exit {r.returncode}\n--- stdout\n{r.stdout}--- stderr\n{r.stderr}")
        return r

    def ctl_json(self, *args, **kw):
        """deployctl --json ARGS: (exit code, parsed object)."""
        r = self.ctl("--json", *args, **kw)
        assert r.stdout.count("\n") == 1, f"--json printed not one line: {r.stdout!r}"
        return r.returncode, json.loads(r.stdout)

    def status(self, service="app"):
        """The service's entry of a status request."""
        res = self.request({"cmd": "status", "service": service})
        assert res["ok"], res
        return res["services"][0]

    def wait_current(self, sha, timeout=60):
        """Until `current` points at sha and the agent is idle there."""
        def settled():
            st = self.status()
            return self.agent.current_sha() == sha and st["current"] == sha and st["step"] is None
        try:
            return wait_until(settled, timeout, f"app at {sha}", interval=0.1)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\nstatus: {self.status()}\n--- agent log ---\n{self.log()[-4000:]}") from None

    def wait_idle(self, timeout=60):
        return wait_until(lambda: self.status()["step"] is None, timeout, "the agent idle", interval=0.1)

    def wait_log(self, pattern, timeout=30, since_start=True):
        """Until the agent's log matches the regex; returns the match."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log(since_start)), timeout, f"log line /{pattern}/")

    def polls(self):
        """How many discover passes the agent started (from its log)."""
        return len(re.findall(r"worker discover|discover: ", self.log()))


@pytest.fixture
def ctl_daemon(agent):
    """Factory: ctl_daemon(agent_overrides=None, service_overrides=None, start=True,
    s3_overrides=None) -> a CtlDaemon for the test's agent sandbox. Stopped at teardown."""
    made = []

    def make(agent_overrides=None, service_overrides=None, start=True, s3_overrides=None):
        d = CtlDaemon(agent, agent_overrides, service_overrides, s3_overrides)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        with contextlib.suppress(Exception):
            d.stop(timeout=20)
        if d.proc is not None and d.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)
    # the log is kept in the test dir (removed with it when the test passed)


@pytest.fixture
def throwaway_admin():
    """A system user and a group (created here, removed at teardown) with the user in
    the group: (user, group)."""
    tag = os.urandom(3).hex()
    user, group = f"dactl-u{tag}", f"dactl-g{tag}"
    subprocess.run(["groupadd", "-r", group], check=True, capture_output=True)
    try:
        subprocess.run(["useradd", "-r", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                        "-g", "nogroup", "-G", group, user], check=True, capture_output=True)
        try:
            yield user, group
        finally:
            subprocess.run(["userdel", user], capture_output=True)
    finally:
        subprocess.run(["groupdel", group], capture_output=True)
