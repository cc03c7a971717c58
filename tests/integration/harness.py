"""Test harness: s3rver behind the SigV4 proxy, artifact publishing with
awscli, and a per-test deploy-agent sandbox (config, root, state).

conftest.py turns these into the `s3` (session) and `agent` (per test)
fixtures; the demo and tests may also use them directly.
"""

import concurrent.futures
import gzip
import hashlib
import http.client
import io
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

from sigv4_proxy import SigV4Proxy

REPO = pathlib.Path(__file__).resolve().parents[2]
AGENT_BIN = pathlib.Path(os.environ.get("DEPLOY_AGENT_BIN", REPO / "build" / "deploy-agent"))
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
REGION = "us-east-1"
BUCKET = "artifacts"


def aws_cli():
    """Debian's awscli (/usr/bin/aws): the pyenv shim on PATH may be another."""
    explicit = os.environ.get("AWS_CLI")
    if explicit:
        return explicit
    if os.path.exists("/usr/bin/aws"):
        return "/usr/bin/aws"
    found = shutil.which("aws")
    if not found:
        raise RuntimeError("awscli not found: run scripts/deps.sh")
    return found


def wait_until(predicate, timeout, what, interval=0.05):
    """predicate() until truthy (returned); TimeoutError naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def make_dir(path, mode=0o755):
    """mkdir -p with an explicit mode on every directory it creates (the
    agent's workers run as nobody; pytest's 0700 tmp dirs would lock them out)."""
    path = pathlib.Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        p.mkdir()
        os.chmod(p, mode)
    return missing[0] if missing else path


def with_manifest(files):
    """files plus a MANIFEST listing "sha256  name" of every file, sorted."""
    lines = []
    for name in sorted(files):
        data = files[name][0] if isinstance(files[name], tuple) else files[name]
        lines.append(f"{sha256_hex(data)}  {name}\n")
    out = dict(files)
    out["MANIFEST"] = "".join(lines).encode()
    return out


def release_is_complete(release_dir):
    """A release is complete when every file its MANIFEST lists exists with
    the listed sha256. Returns (ok, reason)."""
    release_dir = pathlib.Path(release_dir)
    manifest = release_dir / "MANIFEST"
    if not manifest.is_file():
        return False, f"{manifest} missing"
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        f = release_dir / name
        if not f.is_file():
            return False, f"{f} missing"
        if sha256_hex(f.read_bytes()) != digest:
            return False, f"{f} has wrong content"
    return True, "complete"


def make_tar_gz(files, mtime=1700000000):
    """A tar.gz of exactly these files (name -> bytes, or (bytes, mode)),
    in the given order, no directory entries, owner root."""
    buf = io.BytesIO()
    # compresslevel 1: tests publish tens of MiB; level 9 would cost seconds.
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=mtime) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, value in files.items():
                data, mode = value if isinstance(value, tuple) else (value, 0o644)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = mode
                info.mtime = mtime
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def semi_random(size, seed=0):
    """size bytes, the first half random (incompressible), the rest text-like."""
    import random
    rnd = random.Random(seed)
    half = size // 2
    head = rnd.randbytes(half)
    line = b"deploy-agent test payload, compressible half %d\n" % seed
    tail = (line * (((size - half) // len(line)) + 1))[: size - half]
    return head + tail


class S3Server:
    """s3rver on loopback with the SigV4 proxy in front of it."""

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.data_dir = self.workdir / "s3rver-data"
        self.log_path = self.workdir / "s3rver.log"
        self.s3rver_port = None
        self.proc = None
        self.proxy = None
        self.aws_config = self.workdir / "aws-config"
        self._client = None
        self._client_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------

    def start(self):
        bin_js = REPO / "node_modules" / ".bin" / "s3rver"
        if not bin_js.exists():
            raise RuntimeError(f"{bin_js} missing: run `npm ci` (scripts/deps.sh)")
        make_dir(self.data_dir)
        self.s3rver_port = free_port()
        log = open(self.log_path, "ab")
        # --openssl-legacy-provider: s3rver's continuation tokens use DES,
        # which OpenSSL 3 has only there; without it listings > 1000 keys 500.
        self.proc = subprocess.Popen(
            ["node", "--openssl-legacy-provider", str(bin_js), "-d", str(self.data_dir),
             "-a", "127.0.0.1", "-p", str(self.s3rver_port), "--configure-bucket", BUCKET],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=REPO)
        log.close()
        self._wait_up()
        self.proxy = SigV4Proxy("127.0.0.1", self.s3rver_port, region=REGION,
                                credentials={ACCESS_KEY: (SECRET_KEY, None)}).start()
        self.aws_config.write_text(
            "[default]\n"
            f"region = {REGION}\n"
            "s3 =\n"
            "  addressing_style = path\n"
            "  multipart_threshold = 5GB\n"
            "  multipart_chunksize = 5GB\n"
            "  payload_signing_enabled = true\n")
        return self

    def _wait_up(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3rver exited {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.s3rver_port, timeout=2)
                c.request("GET", f"/{BUCKET}?list-type=2&max-keys=1",
                          headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
                r = c.getresponse()
                r.read()
                c.close()
                if r.status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"s3rver did not answer in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    @property
    def endpoint(self):
        """The proxy: what the agent and awscli talk to."""
        return self.proxy.endpoint

    @property
    def port(self):
        return self.proxy.port

    # -- publishing ---------------------------------------------------

    def aws_env(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("AWS_"):
                del env[k]
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key,
                   AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(self.aws_config),
                   AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "no-credentials"),
                   AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")
        return env

    def aws(self, *args, check=True, **kw):
        """Run awscli against the proxy."""
        cmd = [aws_cli(), "--endpoint-url", self.endpoint, *args]
        r = subprocess.run(cmd, env=kw.pop("env", None) or self.aws_env(),
                           capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def put(self, key, data_or_path):
        """Upload one object with `aws s3 cp` through the proxy."""
        if isinstance(data_or_path, (bytes, bytearray)):
            with tempfile.NamedTemporaryFile(dir=self.workdir, delete=False) as f:
                f.write(data_or_path)
                src = f.name
            try:
                self.aws("s3", "cp", "--only-show-errors", src, f"s3://{BUCKET}/{key}")
            finally:
                os.unlink(src)
        else:
            self.aws("s3", "cp", "--only-show-errors", str(data_or_path), f"s3://{BUCKET}/{key}")

    def put_many(self, objects):
        """Upload key -> bytes with one `aws s3 cp --recursive` of a staging
        directory (one awscli start for all of them)."""
        stage = pathlib.Path(tempfile.mkdtemp(dir=self.workdir, prefix="stage-"))
        try:
            for key, data in objects.items():
                p = stage / key
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            self.aws("s3", "cp", "--recursive", "--only-show-errors", str(stage), f"s3://{BUCKET}/")
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @property
    def client(self):
        """A botocore S3 client through the proxy (for bulk work and checks)."""
        with self._client_lock:
            if self._client is None:
                import botocore.config
                import botocore.session
                session = botocore.session.get_session()
                self._client = session.create_client(
                    "s3", region_name=REGION, endpoint_url=self.endpoint,
                    aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                    config=botocore.config.Config(
                        s3={"addressing_style": "path"}, max_pool_connections=32,
                        retries={"max_attempts": 5}))
            return self._client

    def bulk_put(self, objects, workers=16):
        """Upload many small objects (key -> bytes) in parallel with botocore."""
        client = self.client
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            futs = [ex.submit(client.put_object, Bucket=BUCKET, Key=k, Body=v)
                    for k, v in objects.items()]
            for f in futs:
                f.result()

    def delete(self, key):
        self.client.delete_object(Bucket=BUCKET, Key=key)

    def list_keys(self, prefix=""):
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys


class Agent:
    """One test's deploy-agent sandbox: a config for service "app", its
    root and state dir, and helpers to publish artifacts under a unique
    prefix and to run `deploy-agent once`."""

    def __init__(self, s3, tmp, prefix, service="app"):
        self.s3 = s3
        self.tmp = pathlib.Path(tmp)
        self.prefix = prefix
        self.service = service
        self.root = self.tmp / "srv" / service
        self.state_dir = self.tmp / "state"
        self.config_path = self.tmp / "deploy.ini"
        self.suffix = ".tar.gz"
        self._last_publish_sec = 0
        self._requests_start = len(s3.proxy.requests)
        make_dir(self.root.parent)
        make_dir(self.state_dir)
        self.write_config()

    # -- config -------------------------------------------------------

    def base_sections(self):
        agent = {
            "state_dir": str(self.state_dir),
            "socket": str(self.tmp / "control.sock"),
            "worker_user": "nobody",
            "log_level": "debug",
        }
        s3 = {
            "region": REGION,
            "endpoint": self.s3.endpoint,
            "addressing": "path",
            "credentials": "static",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        service = {
            "bucket": BUCKET,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "root": str(self.root),
            "keep_releases": "3",
            "step_timeout": "60s",
        }
        return agent, s3, service

    def write_config(self, _agent=None, _s3=None, **service_overrides):
        """Rewrite deploy.ini. Keyword arguments override keys of
        [service "app"] (None removes the key); _agent and _s3 are dicts of
        overrides for those sections."""
        agent, s3, service = self.base_sections()
        for section, overrides in ((agent, _agent), (s3, _s3), (service, service_overrides)):
            for k, v in (overrides or {}).items():
                if v is None:
                    section.pop(k, None)
                else:
                    section[k] = str(v)
        if "suffix" in service:
            self.suffix = service["suffix"]
        if "prefix" in service:
            self.prefix = service["prefix"]
        out = []
        for header, section in (("[agent]", agent), ("[s3]", s3),
                                (f'[service "{self.service}"]', service)):
            out.append(header)
            out += [f"{k} = {v}" for k, v in section.items()]
            out.append("")
        self.config_path.write_text("\n".join(out))
        return self.config_path

    # -- publishing ---------------------------------------------------

    def key(self, sha, suffix=None):
        return f"{self.prefix}{sha}{self.suffix if suffix is None else suffix}"

    def wait_next_second(self):
        """S3's LastModified has 1 s resolution: make the next upload land in
        a later wall-clock second than the previous publish."""
        while int(time.time()) <= self._last_publish_sec:
            time.sleep(0.02)

    def _mark_published(self):
        self._last_publish_sec = int(time.time())

    def publish(self, sha, files, manifest=False):
        """Build a tar.gz of exactly `files` (name -> bytes or (bytes, mode);
        plus a MANIFEST when manifest=True) and upload it with its .sha256
        sidecar. Returns the archive bytes."""
        if manifest:
            files = with_manifest(files)
        data = make_tar_gz(files)
        self.publish_archive(sha, data)
        return data

    def publish_archive(self, sha, data, suffix=".tar.gz", sidecar=True, sidecar_content=None):
        """Upload raw archive bytes as <prefix><sha><suffix>; with a correct
        sha256sum-format sidecar when sidecar=True, or sidecar_content
        (bytes or str) verbatim. The sidecar goes first, so the artifact is
        never visible without it. Guarantees a strictly newer LastModified
        than this test's previous publish."""
        key = self.key(sha, suffix)
        if sidecar_content is not None:
            side = sidecar_content.encode() if isinstance(sidecar_content, str) else sidecar_content
        elif sidecar:
            side = f"{sha256_hex(data)}  {sha}{suffix}\n".encode()
        else:
            side = None
        if side is not None:
            self.s3.put(key + ".sha256", side)
        self.wait_next_second()
        self.s3.put(key, data)
        self._mark_published()
        return key

    def publish_raw(self, key, data):
        """Upload any object (decoys) under the full key given, newer than
        the previous publish."""
        self.wait_next_second()
        self.s3.put(key, data)
        self._mark_published()

    # -- running ------------------------------------------------------

    def command(self, *args):
        return [str(AGENT_BIN), "-c", str(self.config_path), *args]

    def run(self, *args, timeout=120, env=None):
        """Run deploy-agent with this config; output is echoed for pytest's
        failure report."""
        cmd = self.command(*args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=env, stdin=subprocess.DEVNULL)
        print(f"$ {' '.join(cmd)}\n-> exit {r.returncode}\n--- stdout\n{r.stdout}--- stderr\n{r.stderr}")
        return r

    def once(self, *args, timeout=120, env=None):
        return self.run("once", *args, timeout=timeout, env=env)

    def start_once(self, *args, env=None):
        """`deploy-agent once` in the background, in its own process group."""
        return subprocess.Popen(self.command("once", *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    # -- inspecting ---------------------------------------------------

    def current_sha(self):
        try:
            return os.path.basename(os.readlink(self.root / "current"))
        except FileNotFoundError:
            return None

    def current_target(self):
        try:
            return os.readlink(self.root / "current")
        except FileNotFoundError:
            return None

    def releases(self):
        """Names of complete release dirs (staging dirs excluded)."""
        d = self.root / "releases"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))

    def release_entries(self):
        """Everything in releases/, staging dirs included."""
        d = self.root / "releases"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def state(self):
        p = self.state_dir / self.service / "state.json"
        return json.loads(p.read_text())

    def s3_requests(self):
        """(method, path, status) the proxy saw since this sandbox was made."""
        return self.s3.proxy.requests[self._requests_start:]


def children(pid):
    """Direct children of pid (from /proc/<pid>/task/*/children)."""
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def descendants(pid):
    seen, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            if c not in seen:
                seen.append(c)
                todo.append(c)
    return seen


def cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def find_worker(pid, step):
    """PID of a descendant of pid whose cmdline has `--worker STEP`, or None."""
    for c in descendants(pid):
        if f"--worker {step}" in cmdline(c):
            return c
    return None
