"""Fixtures and helpers of the S3 tests (test_s3_*.py): the fault proxy, the
fake IMDS, minisign keys and signatures, `deployctl publish`, and a way to
run one worker step directly (`deploy-agent --worker STEP` with its job on
fd 3), for behaviour the supervisor does not drive yet.

Import the fixtures into a test module: `from s3_helpers import faults, imds`.
"""

import json
import os
import pathlib
import re
import socket
import subprocess

import pytest

import harness
from fake_imds import FakeIMDS
from fault_proxy import FaultProxy

DEPLOYCTL_BIN = pathlib.Path(os.environ.get("DEPLOYCTL_BIN", harness.REPO / "build" / "deployctl"))


@pytest.fixture
def faults(s3):
    """A fault proxy in front of the SigV4 proxy, for this test."""
    fp = FaultProxy(s3.proxy.host, s3.proxy.port).start()
    yield fp
    fp.stop()


@pytest.fixture
def imds(s3):
    """A fake IMDSv2 whose credentials the SigV4 proxy accepts."""
    fake = FakeIMDS(proxy=s3.proxy).start()
    yield fake
    fake.stop()
    with s3.proxy.lock:
        for gen in fake.generations:
            s3.proxy.credentials.pop(gen.access_key, None)


def artifact_get(path, agent, sha):
    """Predicate: is this request path a GET of the artifact itself?"""
    key = "/" + harness.BUCKET + "/" + agent.key(sha)
    return path.split("?")[0] == key


def is_artifact(agent, sha):
    return lambda r: r.method == "GET" and artifact_get(r.path, agent, sha)


def use_endpoint(agent, endpoint, **service):
    agent.write_config(_s3={"endpoint": endpoint}, **service)


def use_imds(agent, endpoint=None, **service):
    s3 = {"credentials": "imds", "access_key_id": None, "secret_access_key": None}
    if endpoint:
        s3["endpoint"] = endpoint
    agent.write_config(_s3=s3, **service)


def env_with(**kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()}
    env.update({k: str(v) for k, v in kw.items()})
    return env


# -- minisign ----------------------------------------------------------------

class MinisignKey:
    def __init__(self, directory, name="key"):
        d = pathlib.Path(directory)
        self.pub_path = d / f"{name}.pub"
        self.sec_path = d / f"{name}.key"
        subprocess.run(["minisign", "-G", "-W", "-f", "-p", str(self.pub_path), "-s", str(self.sec_path)],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        self.public = self.pub_path.read_text().splitlines()[1].strip()
        self.key_id = self.pub_path.read_text().splitlines()[0].split()[-1]

    def sign(self, path, legacy=False, out=None, comment=None):
        """minisign -S of path (the trusted comment names path's basename),
        returns the .minisig bytes."""
        path = pathlib.Path(path)
        out = pathlib.Path(out or str(path) + ".minisig")
        cmd = ["minisign", "-S", "-W", "-s", str(self.sec_path), "-m", str(path), "-x", str(out)]
        if legacy:
            cmd.append("-l")
        if comment is not None:
            cmd += ["-t", comment]
        subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        return out.read_bytes()


def sign_as(key, tmp, data, file_name, **kw):
    """Sign data as if it were the file file_name (that name lands in the
    trusted comment); returns the .minisig bytes."""
    d = pathlib.Path(tmp) / "sign"
    d.mkdir(exist_ok=True)
    p = d / file_name
    p.write_bytes(data)
    sig = key.sign(p, **kw)
    p.unlink()
    return sig


# -- deployctl publish --------------------------------------------------------

def deployctl(*args, env=None, timeout=300):
    cmd = [str(DEPLOYCTL_BIN), *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    print(f"$ {' '.join(cmd)}\n-> exit {r.returncode}\n--- stdout\n{r.stdout}--- stderr\n{r.stderr}")
    return r


def publish(agent, sha, path, *extra, env=None):
    return deployctl("-c", agent.config_path, "publish", "--bucket", harness.BUCKET,
                     "--prefix", agent.prefix, "--sha", sha, *extra, path, env=env)


# -- one worker, run directly -------------------------------------------------

def s3_job(agent_or_endpoint, credentials="static", access_key=harness.ACCESS_KEY,
           secret_key=harness.SECRET_KEY):
    endpoint = getattr(agent_or_endpoint, "s3", None)
    endpoint = endpoint.endpoint if endpoint else agent_or_endpoint
    static = credentials == "static"
    return {"region": harness.REGION, "endpoint": endpoint, "addressing": "path",
            "credentials": credentials, "access_key_id": access_key if static else None,
            "secret_access_key": secret_key if static else None, "session_token": None,
            "low_speed_limit": 1024, "low_speed_time_usec": 30_000_000}


def worker_job(step, fields):
    """The whole job message (protocol/worker-job.h) around the step's own
    fields: no limits, the test's own user (no run_as)."""
    return {"step": step, "service": "app", "log_level": 7,
            "limits": {"cpu_sec": 0, "as_bytes": 0, "fsize_bytes": 0, "nofile": 0},
            "run_as": None, step: fields}


def flat_reply(m):
    """A reply as one dict: {"ok": true} plus the step's result fields, or
    the failure as sent ({"ok": false, "error": ..., "bad": ...})."""
    if m.get("ok") is True and isinstance(m.get("result"), dict):
        return dict(m["result"], ok=True)
    return m


class Worker:
    """`deploy-agent --worker STEP` started with job on fd 3, as the
    supervisor does it. The reply comes back flattened (flat_reply)."""

    def __init__(self, step, job, env=None):
        self.step = step
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        job = worker_job(step, job)
        # bash puts the socket on fd 3, where the worker expects it.
        fd = child.fileno()
        self.proc = subprocess.Popen(["/bin/bash", "-c", f'exec "$0" --worker {step} 3<&{fd} {fd}<&-',
                                      str(harness.AGENT_BIN)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, pass_fds=(fd,))
        child.close()
        self.sock.sendall(json.dumps(job).encode())

    def kill(self):
        self.proc.kill()
        self.proc.communicate()
        self.sock.close()

    def wait(self, timeout=120):
        """(result, progress messages, stderr)."""
        self.sock.settimeout(timeout)
        progress, result = [], None
        try:
            while result is None:
                msg = self.sock.recv(65536)
                if not msg:
                    break
                m = json.loads(msg)
                if "progress" in m:
                    progress.append(m["progress"])
                else:
                    result = flat_reply(m)
        finally:
            self.sock.close()
            _, err = self.proc.communicate(timeout=timeout)
        err = err.decode(errors="replace")
        print(f"worker {self.step} -> {result}\n--- stderr\n{err}")
        return result, progress, err


def run_worker(step, job, env=None, timeout=120):
    return Worker(step, job, env).wait(timeout)


def fetch_stats(output):
    """The numbers of the fetch worker's "fetched ..." log line."""
    m = re.search(r"fetched \S+: (\d+) bytes, (\d+) downloaded, (\d+) re-hashed from an earlier \.part; "
                  r"artifact GETs (\d+) \((\d+) resumed, (\d+) restarts, (\d+) retries\)", output)
    if not m:
        return None
    keys = ("size", "downloaded", "reused", "gets", "resumed", "restarts", "retries")
    return dict(zip(keys, map(int, m.groups())))
