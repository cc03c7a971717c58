#!/usr/bin/env python3
"""bench/shapes.py (`make bench`): deploy-agent against the awscli pipeline it
replaces and against the floor, on three artifact shapes, plus prune and rollback.

Shapes (generated once, cached under /var/tmp/deploy-agent-bench-cache):
    large  3 large files, ~194 MiB (~66 MB gzip)
    small  12,000 small files, ~99 MiB (~28 MB gzip), like node_modules or a venv
    many   100,000 files, ~120 MiB

For each shape and run (alternating the order, page cache dropped before each):
    agent     `deploy-agent once` (fetch + verify + unpack + syncfs + swap)
    pipeline  `aws s3 cp` (artifact, .sha256) + `sha256sum -c` + `tar xzf` + `sync`
              + symlink swap (ln -s + mv -T)
    download  the download alone (curl to a file)
    unpack    `tar xzf` + `sync` alone, of the same archive on local disk
floor = max(median download, median unpack). Prints medians, agent/floor,
agent/pipeline and each worker's peak RSS.

Then, on the small shape: prune (the prune worker's wall time, removing one
12,000-file release) and rollback (`deployctl rollback --wait`: one swap and a
restart, never an unpack; checked in the agent's log).

Knobs: RUNS (default 3), BENCH_QUICK=1 (1 run, the many shape at 20,000 files),
BENCH_SHAPES=large,small,many, BENCH_DIR (work dir), DEPLOY_AGENT_BIN,
BENCH_OLD_AGENT=/path/to/deploy-agent (another build, its worker beside it: timed
too, in the same rotation).
Not a test: it never fails on speed.
"""

import gzip
import io
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
import hashlib

REPO = pathlib.Path(__file__).resolve().parents[1]
AGENT = pathlib.Path(os.environ.get("DEPLOY_AGENT_BIN", REPO / "build" / "deploy-agent"))
DEPLOYCTL = AGENT.parent / "deployctl"
OLD_AGENT = os.environ.get("BENCH_OLD_AGENT", "")  # another build, timed too (alternating)
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("RUNS", "1" if QUICK else "3"))
SHAPES = [s for s in os.environ.get("BENCH_SHAPES", "large,small,many").split(",") if s in ("large", "small", "many")]
CACHE = pathlib.Path("/var/tmp/deploy-agent-bench-cache")
WORK = pathlib.Path(os.environ.get("BENCH_DIR", "/var/tmp/deploy-agent-bench-shapes"))
MANY_FILES = 20000 if QUICK else 100000
TEXT = b"module.exports = function (a, b) { return a + b; }; // repeats like JS\n" * 300
MTIME = 1700000000


# ---- artifacts ----

def add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, MTIME, 0o755
    tar.addfile(info)


def gen_large(tar, rng):
    add_file(tar, "./random.bin", rng.randbytes(62 << 20))
    for name in ("text-a.txt", "text-b.txt"):
        line = f"deploy-agent bench {name}: compressible text that repeats, like logs\n".encode()
        add_file(tar, f"./{name}", (line * ((66 << 20) // len(line) + 1))[: 66 << 20])


def gen_files(tar, rng, n, lo, hi):
    for i in range(n):
        d = f"./pkg{i // 100:04d}/lib"
        if i % 100 == 0:
            add_dir(tar, f"./pkg{i // 100:04d}")
            add_dir(tar, d)
        size = rng.randint(lo, hi)
        rnd = size // 4
        add_file(tar, f"{d}/f{i:06d}.js", rng.randbytes(rnd) + TEXT[: size - rnd])


def shape_files(shape):
    return {"large": 3, "small": 12000, "many": MANY_FILES}[shape]


def artifact(shape):
    """(path of the cached .tar.gz, its sha256 hex); generated once."""
    path = generate(shape)
    return path, sha256_of(path)


def generate(shape):
    n = shape_files(shape)
    path = CACHE / f"{shape}-{n}-v1.tar.gz"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        rng = random.Random(n)
        with gzip.open(tmp, "wb", compresslevel=6) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            add_dir(tar, ".")
            if shape == "large":
                gen_large(tar, rng)
            elif shape == "small":
                gen_files(tar, rng, n, 1024, 16 * 1024)
            else:
                gen_files(tar, rng, n, 256, 2047)
        tmp.rename(path)
    return path


def unpacked_mib(tarball):
    meta = tarball.with_suffix(".mib")
    if not meta.exists():
        with tarfile.open(tarball) as tar:
            meta.write_text(f"{sum(m.size for m in tar) / 1048576:.0f}\n")
    return meta.read_text().strip()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- S3 ----

class S3:
    def __init__(self, work):
        self.dir = work / "s3"
        self.dir.mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        log = open(work / "s3rver.log", "wb")
        self.proc = subprocess.Popen(
            ["node", "--openssl-legacy-provider", str(REPO / "node_modules/.bin/s3rver"), "-d",
             str(self.dir), "-a", "127.0.0.1", "-p", str(self.port), "--configure-bucket", "bench",
             "--silent"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if subprocess.run(["curl", "-s", "-o", "/dev/null", self.endpoint + "/"]).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("s3rver did not start")

    def put(self, key, path):
        subprocess.run(["curl", "-sf", "-X", "PUT", "--data-binary", f"@{path}",
                        f"{self.endpoint}/bench/{key}", "-o", "/dev/null"], check=True)

    def publish(self, prefix, sha, tarball, digest, work):
        side = work / f"{sha}.tar.gz.sha256"
        side.write_text(f"{digest}  {sha}.tar.gz\n")
        self.put(f"{prefix}{sha}.tar.gz", tarball)
        self.put(f"{prefix}{sha}.tar.gz.sha256", side)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()


# ---- runs ----

def drop_caches():
    subprocess.run(["sync"])
    try:
        pathlib.Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def timed(fn):
    drop_caches()
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def agent_config(d, s3, prefix, keep=5, extra=""):
    ini = d / "deploy.ini"
    ini.write_text(
        f"[agent]\nstate_dir = {d}/state\nsocket = {d}/control.sock\nworker_user = nobody\n"
        f"log_level = debug\npoll_interval = 1h\n\n[s3]\nregion = us-east-1\nendpoint = {s3.endpoint}\n"
        "credentials = static\naccess_key_id = S3RVER\nsecret_access_key = S3RVER\n\n"
        f'[service "app"]\nbucket = bench\nprefix = {prefix}\nroot = {d}/srv\nrestart_mode = none\n'
        f"max_unpacked_size = 4G\nkeep_releases = {keep}\n{extra}")
    return ini


def run_once(ini, log, agent=AGENT):
    with open(log, "ab") as f:
        subprocess.run([str(agent), "-c", str(ini), "once"], stderr=f, check=True)


def run_agent(d, s3, prefix, agent=AGENT):
    d.mkdir(parents=True)
    ini = agent_config(d, s3, prefix)
    return timed(lambda: run_once(ini, d / "log", agent))


PIPELINE = r"""set -e
aws --endpoint-url "$EP" s3 cp --quiet "s3://bench/$PREFIX$SHA.tar.gz" "$D/dl/"
aws --endpoint-url "$EP" s3 cp --quiet "s3://bench/$PREFIX$SHA.tar.gz.sha256" "$D/dl/"
(cd "$D/dl" && sha256sum --quiet -c "$SHA.tar.gz.sha256")
tar -C "$D/srv/releases/$SHA" -xzf "$D/dl/$SHA.tar.gz"
sync
ln -s "releases/$SHA" "$D/srv/current.tmp"
mv -T "$D/srv/current.tmp" "$D/srv/current"
"""


def run_pipeline(d, s3, prefix, sha):
    (d / "dl").mkdir(parents=True)
    (d / "srv" / "releases" / sha).mkdir(parents=True)
    (d / "aws-config").write_text("[default]\ns3 =\n  multipart_threshold = 8GB\n")
    env = dict(os.environ, EP=s3.endpoint, PREFIX=prefix, SHA=sha, D=str(d),
               AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(d / "aws-config"))
    return timed(lambda: subprocess.run(["bash", "-c", PIPELINE], env=env, check=True))


def run_download(d, s3, prefix, sha):
    d.mkdir(parents=True)
    url = f"{s3.endpoint}/bench/{prefix}{sha}.tar.gz"
    return timed(lambda: subprocess.run(["curl", "-sf", "-o", str(d / "a.tar.gz"), url], check=True))


def run_unpack(d, tarball):
    d.mkdir(parents=True)
    return timed(lambda: subprocess.run(f'tar -C "{d}" -xzf "{tarball}" && sync', shell=True,
                                        check=True))


def count_files(root):
    return sum(len(files) for _, _, files in os.walk(root))


def peak_rss(log_text, peaks):
    for step, kib in re.findall(r"app: (\w+) worker: peak RSS (\d+) KiB", log_text):
        peaks[step] = max(peaks.get(step, 0), int(kib))
    for kib in re.findall(r"supervisor: peak RSS (\d+) KiB", log_text):
        peaks["supervisor"] = max(peaks.get("supervisor", 0), int(kib))


def bench_shape(shape, s3, work):
    tarball, digest = artifact(shape)
    sha = hashlib.sha1(shape.encode()).hexdigest()
    prefix = f"{shape}/"
    s3.publish(prefix, sha, tarball, digest, work)
    n = shape_files(shape)
    print(f"{shape}: {n} files, {unpacked_mib(tarball)} MiB unpacked, "
          f"{tarball.stat().st_size / 1e6:.0f} MB gzip, {RUNS} run(s)", flush=True)
    kinds = ["agent", "pipeline", "download", "unpack"] + (["old"] if OLD_AGENT else [])
    times = {k: [] for k in kinds}
    peaks, walls = {}, {}
    for i in range(RUNS):
        order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
        for k in order:
            d = work / f"{shape}-{k}-{i}"
            if k in ("agent", "old"):
                t = run_agent(d, s3, prefix, AGENT if k == "agent" else OLD_AGENT)
                got = count_files(d / "srv" / "current" / "")
                if got != n:
                    raise RuntimeError(f"agent release has {got} files, not {n}")
                if k == "old":
                    times[k].append(t)
                    shutil.rmtree(d)
                    continue
                peak_rss((d / "log").read_text(), peaks)
                for step in ("fetch", "unpack"):
                    walls.setdefault(step, []).extend(step_walls((d / "log").read_text(), step))
            elif k == "pipeline":
                t = run_pipeline(d, s3, prefix, sha)
            elif k == "download":
                t = run_download(d, s3, prefix, sha)
            else:
                t = run_unpack(d, tarball)
            times[k].append(t)
            shutil.rmtree(d)
        print(f"  run {i + 1}: " + "  ".join(f"{k} {times[k][-1]:.2f}s" for k in kinds), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = max(med["download"], med["unpack"])
    print(f"  median: agent {med['agent']:.2f}s  pipeline {med['pipeline']:.2f}s  "
          f"floor {floor:.2f}s (download {med['download']:.2f}s, tar xzf + sync {med['unpack']:.2f}s)")
    if OLD_AGENT:
        print(f"  old agent ({OLD_AGENT}): {med['old']:.2f}s, agent/floor {med['old'] / floor:.2f}, "
              f"agent/pipeline {med['old'] / med['pipeline']:.2f}")
    print(f"  {shape}: agent/floor {med['agent'] / floor:.2f} (target <= 1.3)  "
          f"agent/pipeline {med['agent'] / med['pipeline']:.2f} (target <= 0.5)")
    if walls.get("fetch") and walls.get("unpack"):
        fetch, unpack = statistics.median(walls["fetch"]), statistics.median(walls["unpack"])
        print(f"  agent's workers: fetch {fetch:.2f}s, unpack {unpack:.2f}s (overlapping them "
              f"would save at most {min(fetch, unpack):.2f}s)")
    print("  peak RSS: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in peaks.items()), flush=True)


# ---- prune and rollback ----

def step_walls(log_text, step):
    return [int(ms) / 1000 for ms in re.findall(rf"app: {step} worker: .* wall (\d+) ms", log_text)]


def wait_socket(path, proc):
    for _ in range(600):
        if path.exists():
            return
        if proc.poll() is not None:
            raise RuntimeError("the agent exited")
        time.sleep(0.05)
    raise RuntimeError("no control socket")


def rollback_once(d, ini):
    log = open(d / "run.log", "ab")
    proc = subprocess.Popen([str(AGENT), "-c", str(ini), "run"], stderr=log, stdout=log)
    try:
        wait_socket(d / "control.sock", proc)
        t0 = time.monotonic()
        for _ in range(100):  # the first poll may still hold the service
            r = subprocess.run([str(DEPLOYCTL), "-s", str(d / "control.sock"), "rollback", "app",
                                "--wait"], capture_output=True)
            if r.returncode == 0:
                return time.monotonic() - t0
            t0 = time.monotonic()
            time.sleep(0.1)
        raise RuntimeError(f"rollback failed: {r.stdout!r} {r.stderr!r}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        log.close()


def bench_prune_rollback(s3, work):
    tarball, digest = artifact("small")
    d = work / "churn"
    d.mkdir()
    ini = agent_config(d, s3, "churn/", keep=2)
    shas = iter(f"{0xbe0000 + i:040x}" for i in range(100))

    def deploy():
        s3.publish("churn/", next(shas), tarball, digest, work)
        run_once(ini, d / "log")

    deploy()
    deploy()
    for _ in range(RUNS):  # each prunes the release before previous: 12,000 files
        deploy()
    prunes = step_walls((d / "log").read_text(), "prune")[-RUNS:]
    rollbacks = []
    for _ in range(RUNS):
        deploy()
        before = os.readlink(d / "srv" / "current")
        drop_caches()
        rollbacks.append(rollback_once(d, ini))
        if os.readlink(d / "srv" / "current") == before:
            raise RuntimeError("rollback did not move current")
    runlog = (d / "run.log").read_text()
    if re.search(r"app: unpack worker", runlog):
        raise RuntimeError("a rollback ran an unpack worker")
    if prunes:
        print(f"prune of a 12,000-file release (prune worker, wall): median "
              f"{statistics.median(prunes):.2f}s ({', '.join(f'{t:.2f}' for t in prunes)})")
    else:
        print("prune: this agent does not log the workers' wall time")
    print(f"rollback (deployctl rollback --wait: swap + restart, no unpack): median "
          f"{statistics.median(rollbacks):.3f}s ({', '.join(f'{t:.3f}' for t in rollbacks)})", flush=True)


def main():
    if not AGENT.exists():
        sys.exit(f"{AGENT} missing: make all")
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.chmod(WORK, 0o755)
    s3 = S3(WORK)
    try:
        for shape in SHAPES:
            bench_shape(shape, s3, WORK)
        bench_prune_rollback(s3, WORK)
    finally:
        s3.stop()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
