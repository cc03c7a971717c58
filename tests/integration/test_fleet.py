"""Fleet rollouts (docs/design.md, "Fleet"): 30 agents on this machine,
each `deploy-agent run` with its own host_id, state_dir, root and control
socket, against s3rver behind the SigV4 proxy.

No assertion here is a deadline on the rollout: every wait is on the thing
itself with a generous bound, and the wave check is "no host activated
before its wave opened", computed from the pointer's own `started` and the
activation times the agents record (same machine, same clock). A host
decides with now >= started + k * wave_interval before it fetches, and
records the activation after the health check, so the check cannot fail
because the machine is slow or fast."""

import hashlib
import json
import os
import socket
import signal
import subprocess
import time

import pytest

import harness
from control_harness import DEPLOYCTL_BIN
from s3_helpers import env_with, imds, run_worker, s3_job  # noqa: F401

N_HOSTS = 30
WAVES = (1000, 5000, 10000)          # basis points: 10%, 50%, 100%
WAVE_INTERVAL = 15                   # seconds; see test_waves_reach_hosts_in_order
SETTLE = 240.0                       # generous bound on any fleet-wide wait


def bucket(host_id, sha):
    """rollout_bucket() of agent/artifact/rollout.c."""
    d = hashlib.sha256(f"{host_id}\n{sha}".encode()).digest()
    return int.from_bytes(d[:8], "big") % 10000


def wave_of(host_id, sha, waves=WAVES):
    b = bucket(host_id, sha)
    return next(k for k, w in enumerate(waves) if b < w)


def pick_sha(hosts, tag, need_each_wave=True):
    """A sha whose first wave has hosts (and, when asked, every wave adds
    some): with 30 hosts a 10% wave is empty for about 4% of shas.

    40 hex digits, longer than the first pointer's whole body: s3rver (not
    S3) can answer a GET racing a PUT with the old Content-Length and the new
    bytes, and a 12-byte prefix of "<12-digit sha>\nstarted=..." would be a
    pointer without policy. A prefix of a 40-digit sha names no build."""
    for i in range(1000):
        sha = hashlib.sha1(f"{tag}-{i}".encode()).hexdigest()
        per_wave = [sum(1 for h in hosts if wave_of(h, sha) == k) for k in range(len(WAVES))]
        if per_wave[0] > 0 and (not need_each_wave or all(per_wave)):
            return sha
    raise AssertionError("no sha found")


class Host:
    def __init__(self, fleet, i, host_id=True):
        self.fleet = fleet
        self.host_id = f"host-{i:02d}" if host_id else None
        self.name = f"host-{i:02d}"
        self.dir = fleet.dir / self.name
        self.root = self.dir / "srv" / "app"
        self.state_dir = self.dir / "state"
        self.socket = self.dir / "control.sock"
        self.config = self.dir / "deploy.ini"
        self.proc = None
        harness.make_dir(self.root.parent)
        harness.make_dir(self.state_dir)
        self.config.write_text(self.config_text())

    def config_text(self):
        f = self.fleet
        return "\n".join([
            "[agent]", f"state_dir = {self.state_dir}", f"socket = {self.socket}", "admin_group =",
            "worker_user = nobody", "log_level = info", "poll_interval = 1s", "poll_jitter = 0%",
            f"host_id = {self.host_id or ''}", "",
            "[s3]", f"region = {harness.REGION}", f"endpoint = {f.s3.endpoint}", "addressing = path",
            "credentials = static", f"access_key_id = {harness.ACCESS_KEY}",
            f"secret_access_key = {harness.SECRET_KEY}", "",
            '[service "app"]', f"bucket = {harness.BUCKET}", f"prefix = {f.prefix}builds/",
            "select = pointer", f"pointer_key = {f.prefix}LATEST", f"fleet_prefix = {f.prefix}fleet/",
            f"root = {self.root}", "restart_mode = none", "health_command = test -e healthy",
            "health_settle = 0s", "health_timeout = 2s", "keep_releases = 3", "step_timeout = 60s", ""])

    def start(self, env=None):
        log = open(self.dir / "agent.log", "ab")
        self.proc = subprocess.Popen([str(harness.AGENT_BIN), "-c", str(self.config), "run"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        log.close()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def state(self):
        try:
            return json.loads((self.state_dir / "app" / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def current(self):
        try:
            return os.path.basename(os.readlink(self.root / "current"))
        except FileNotFoundError:
            return None

    def activations(self, sha):
        """Realtime seconds of every activation of sha this host recorded."""
        return [h["when_usec"] / 1e6 for h in self.state().get("history", [])
                if h["sha"] == sha and h["outcome"] == "deployed"]

    def ever_activated(self, sha):
        """Any trace of sha going live here: history, bad marks, or a release."""
        st = self.state()
        return (any(h["sha"] == sha for h in st.get("history", []))
                or any(b["sha"] == sha for b in st.get("bad", []))
                or (self.root / "releases" / sha).exists())

    def ctl_status(self):
        r = subprocess.run([str(DEPLOYCTL_BIN), "-s", str(self.socket), "--json", "status"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["services"][0]


class Fleet:
    def __init__(self, s3, test_dir):
        self.s3 = s3
        self.dir = test_dir
        self.prefix = f"fleet-{os.getpid()}-{int(time.time() * 1000) % 10**9}/"
        self.hosts = [Host(self, i) for i in range(N_HOSTS)]
        self.ids = [h.host_id for h in self.hosts]

    def publish(self, sha, healthy=True):
        files = {"app": f"{sha}\n".encode()}
        if healthy:
            files["healthy"] = b"yes\n"
        data = harness.make_tar_gz(files)
        key = f"{self.prefix}builds/{sha}.tar.gz"
        self.s3.put(key + ".sha256", f"{harness.sha256_hex(data)}  {sha}.tar.gz\n".encode())
        self.s3.put(key, data)

    def point(self, sha, **policy):
        """The pointer as deployctl publish --waves writes it (docs/design.md, "Fleet")."""
        lines = [sha] + [f"{k}={v}" for k, v in policy.items()]
        self.s3.put(f"{self.prefix}LATEST", ("\n".join(lines) + "\n").encode())

    def wait(self, predicate, what, timeout=SETTLE):
        harness.wait_until(predicate, timeout, what, interval=0.2)

    def wait_all_on(self, sha, hosts=None):
        hosts = self.hosts if hosts is None else hosts
        self.wait(lambda: all(h.current() == sha for h in hosts),
                  f"{len(hosts)} hosts on {sha}: {[h.host_id for h in hosts if h.current() != sha]} not yet")

    def object(self, key):
        return self.s3.client.get_object(Bucket=harness.BUCKET, Key=self.prefix + key)["Body"].read()

    def keys(self, under):
        return self.s3.list_keys(self.prefix + under)

    def status_object(self, host):
        return json.loads(self.object(f"fleet/status/{host.host_id}.json"))

    def stop(self):
        for h in self.hosts:
            if h.proc and h.proc.poll() is None:
                os.killpg(h.proc.pid, signal.SIGTERM)
        for h in self.hosts:
            h.stop()


@pytest.fixture
def fleet(s3, test_dir):
    f = Fleet(s3, test_dir)
    yield f
    f.stop()


def started_fleet(fleet):
    """Every host on a first build, deployed at once (a pointer without a
    policy behaves as it always did)."""
    base = "ba5e0000001"
    fleet.publish(base)
    fleet.point(base)
    for h in fleet.hosts:
        h.start()
    fleet.wait_all_on(base)
    fleet.wait(lambda: all(h.activations(base) for h in fleet.hosts), "every host's record of the deploy")
    return base


def request_counts(fleet, requests):
    """The fleet's S3 requests by kind (the proxy's log)."""
    counts = {}
    for method, path, status in requests:
        p = path.split("?")[0]
        if "list-type=2" in path:
            kind = "LIST bad/" if "fleet%2Fbad%2F" in path or "fleet/bad/" in path else "LIST artifact"
        elif p.endswith("/LATEST"):
            kind = f"GET pointer {status}"
        elif "/fleet/status/" in p:
            kind = f"{method} status"
        elif "/fleet/bad/" in p:
            kind = f"{method} bad marker"
        else:
            kind = f"{method} artifact"
        if p.startswith(f"/{harness.BUCKET}/{fleet.prefix}") or "list-type=2" in path:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def timeline(fleet, sha, started, interval):
    """Per wave: the hosts on sha and the latest activation, from the
    hosts' own records."""
    out = []
    for k in range(len(WAVES)):
        hosts = [h for h in fleet.hosts if wave_of(h.host_id, sha) == k]
        acts = [min(h.activations(sha)) - started for h in hosts if h.activations(sha)]
        out.append((k, len(hosts), f"opens +{k * interval}s",
                    f"activated +{min(acts):.1f}s..+{max(acts):.1f}s" if acts else "none"))
    return out


@pytest.mark.slow
def test_waves_reach_hosts_in_order(fleet):
    """(a) 10%, 50%, 100%: no host takes the build before its wave opens,
    and all 30 end on it. WAVE_INTERVAL only has to be long enough for the
    waves to be told apart; a slow machine makes waves overlap in time, never
    a host early."""
    t0 = time.monotonic()
    base = started_fleet(fleet)
    sha = pick_sha(fleet.ids, "waves")
    fleet.publish(sha)
    n_requests = len(fleet.s3.proxy.requests)
    started = int(time.time())
    fleet.point(sha, started=started, waves=",".join(map(str, WAVES)), wave_interval=WAVE_INTERVAL,
                max_failures=1, paused="no", previous=base)
    fleet.wait_all_on(sha)
    # the symlink moves before the health check; the record comes after it
    fleet.wait(lambda: all(h.activations(sha) for h in fleet.hosts), "every host's record of the deploy")
    for h in fleet.hosts:
        k = wave_of(h.host_id, sha)
        first = min(h.activations(sha))
        assert first >= started + k * WAVE_INTERVAL, \
            f"{h.host_id} (bucket {bucket(h.host_id, sha)}, wave {k}) took {sha} at +{first - started:.2f}s"
    # every status object says so (written after the deploy settled)
    fleet.wait(lambda: all(fleet.status_object(h)["current"] == sha for h in fleet.hosts),
               "status objects on the new build")
    st = fleet.status_object(fleet.hosts[0])
    assert st["host_id"] == "host-00" and st["service"] == "app" and st["previous"] == base
    assert st["rollout"] == {"sha": sha, "status": "taken", "wave": st["rollout"]["wave"]}
    assert st["status_interval_sec"] == 3600 and st["state"] == "ok"
    counts = request_counts(fleet, fleet.s3.proxy.requests[n_requests:])
    # one breaker LIST per host per build, whatever the number of polls waited
    assert counts["LIST bad/"] == N_HOSTS, counts
    print(f"\nROLLOUT TIMELINE {sha} ({N_HOSTS} hosts, waves {WAVES} bp, interval {WAVE_INTERVAL}s):")
    for row in timeline(fleet, sha, started, WAVE_INTERVAL):
        print("  wave %d: %2d hosts, %s, %s" % row)
    print(f"  S3 requests per host for this build: " +
          ", ".join(f"{k} {v / N_HOSTS:.1f}" for k, v in sorted(counts.items())))
    print(f"  test time {time.monotonic() - t0:.1f}s")


@pytest.mark.slow
def test_breaker_halts_a_build_that_fails_health(fleet):
    """(b) and (c). The first wave rolls a broken build back and writes bad
    markers; once every later wave is open, no other host activates it: each
    lists bad/<sha>/ once and stays. One first-wave agent is killed in the
    middle of its deploy and started again, and the first marker PUTs fail
    (an S3 outage for the writes): the markers still get written, so no
    breaker misreads the fleet."""
    t0 = time.monotonic()
    base = started_fleet(fleet)
    sha = pick_sha(fleet.ids, "broken", need_each_wave=False)
    first = [h for h in fleet.hosts if wave_of(h.host_id, sha) == 0]
    later = [h for h in fleet.hosts if h not in first]
    fleet.publish(sha, healthy=False)
    outage = fleet.s3.proxy.inject(lambda m, p: m == "PUT" and "/fleet/bad/" in p, status=503,
                                   code="ServiceUnavailable", times=len(first) * 6)
    # Wave 1 opens only when the test moves `started` back below.
    started = int(time.time())
    policy = dict(waves=",".join(map(str, WAVES)), wave_interval=3600, max_failures=1, paused="no", previous=base)
    fleet.point(sha, started=started, **policy)

    victim = first[0]
    fleet.wait(lambda: victim.state().get("in_flight", {}).get("sha") == sha or victim.ever_activated(sha),
               f"{victim.host_id} deploying {sha}")
    victim.stop(signal.SIGKILL)
    victim.start()

    fleet.wait(lambda: all(sha in [b["sha"] for b in h.state().get("bad", [])] for h in first),
               "first wave rolled back")
    fleet.wait_all_on(base, first)
    fleet.wait(lambda: sorted(fleet.keys(f"fleet/bad/{sha}/")) ==
               sorted(f"{fleet.prefix}fleet/bad/{sha}/{h.host_id}" for h in first), "every bad marker written")
    assert outage.hits > 0
    for h in first:
        marker = json.loads(fleet.object(f"fleet/bad/{sha}/{h.host_id}"))
        assert marker["host_id"] == h.host_id and marker["sha"] == sha and "health" in marker["reason"]
        assert not any(b.get("fleet_unreported") for b in h.state()["bad"])

    # Every wave open now: the later hosts are admitted and the breaker stops
    # them, even through an S3 outage of the breaker's LIST (the first host to
    # list meets 10 failures: its client's retries end, its discover fails,
    # it takes nothing, and lists again at a later poll).
    list_outage = fleet.s3.proxy.inject(lambda m, p: m == "GET" and "list-type=2" in p and ("%2Fbad%2F" in p or "/bad/" in p),
                                        status=503, code="SlowDown", times=10)
    fleet.point(sha, started=started - 3 * 3600, **policy)
    fleet.wait(lambda: all(h.ctl_status()["rollout"] and h.ctl_status()["rollout"]["status"] == "halted"
                           for h in later), "every later host sees the halt")
    for h in later:
        ro = h.ctl_status()["rollout"]
        assert ro["sha"] == sha and first[0].host_id in ro["halted"], ro
        assert h.current() == base and not h.ever_activated(sha), h.host_id
    fleet.wait(lambda: all(fleet.status_object(h)["rollout"]["status"] == "halted" for h in later),
               "status objects say halted")
    assert list_outage.hits == 10
    # "failed" says the last pass failed: once a first-wave host has polled
    # again (the pointer names a build bad here, so it stays on base, a pass
    # that succeeds), its status says "ok" and its bad list names the build
    fleet.wait(lambda: all(fleet.status_object(h)["state"] == "ok" for h in first),
               "first-wave hosts report ok after a pass that succeeded")
    for h in first:
        st = fleet.status_object(h)
        assert st["current"] == base and sha in st["bad"] and st["state"] == "ok"
    retried = sum((h.dir / "agent.log").read_text().count("fleet report: ") for h in first)
    print(f"\nHALT {sha}: {len(first)} first-wave hosts rolled back "
          f"({', '.join(h.host_id for h in first)}), {len(later)} later hosts halted, "
          f"{outage.hits} marker PUTs failed ({retried} reports retried at a later poll); "
          f"test time {time.monotonic() - t0:.1f}s")


def test_pointer_follows_to_an_older_sha_unless_bad_here(fleet):
    """How abort works: the pointer names the previous build again, and
    every host goes back; a host where that build is marked bad stays."""
    hosts = fleet.hosts[:3]
    fleet.hosts = hosts
    old, new = "01d0000000a", "0e40000000b"
    fleet.publish(old)
    fleet.publish(new)
    fleet.point(old)
    for h in hosts:
        h.start()
    fleet.wait_all_on(old)
    fleet.point(new)
    fleet.wait_all_on(new)
    # host 2 learns old is bad (an operator's rollback would mark it so)
    hosts[2].stop()
    st = hosts[2].state()
    st["bad"].append({"sha": old, "etag": None, "reason": "broken here", "when_usec": int(time.time() * 1e6)})
    (hosts[2].state_dir / "app" / "state.json").write_text(json.dumps(st))
    hosts[2].start()
    fleet.point(old, previous=new)
    fleet.wait_all_on(old, hosts[:2])
    fleet.wait(lambda: "marked bad" in (hosts[2].dir / "agent.log").read_text(), "host 2 saw the pointer")
    assert hosts[2].current() == new


def identity_job(s3, prefix):
    return {"s3": s3_job(s3.endpoint), "bucket": harness.BUCKET, "prefix": prefix + "builds/",
            "suffix": ".tar.gz", "select": "pointer", "pointer_key": prefix + "LATEST", "pointer_etag": None,
            "fleet": {"prefix": prefix + "fleet/", "host_id": None, "canary": False, "settled": []}}


def test_host_identity_from_imds_else_machine_id(s3, imds):
    """A job without a host id: the worker asks IMDSv2 for the instance id
    and zone, and off EC2 falls back to /etc/machine-id (no zone)."""
    prefix = f"ident-{os.getpid()}-{time.monotonic_ns() % 10**9}/"
    res, _, _ = run_worker("discover", identity_job(s3, prefix), env=imds.env())
    assert res["ok"] and res["host_id"] == imds.instance_id and res["zone"] == "us-east-1a", res
    assert ("GET", "/latest/meta-data/instance-id", 200) in [(m, p, st) for m, p, st, _ in imds.log]
    imds.instance_id = None     # IMDS answers, but not with an instance id
    res, _, _ = run_worker("discover", identity_job(s3, prefix), env=imds.env())
    machine_id = open("/etc/machine-id").read().strip()
    assert res["ok"] and res["host_id"] == machine_id and res["zone"] is None, res
    res, _, _ = run_worker("discover", identity_job(s3, prefix), env=env_with(AWS_EC2_METADATA_DISABLED="true"))
    assert res["ok"] and res["host_id"] == machine_id, res


def test_host_identity_not_renamed_by_a_busy_imds(s3, imds):
    """IMDS answering 500 is there but busy: the discover fails and says
    so (the next poll asks again) instead of naming the host by its
    machine id for one poll. IMDS gone (connection refused) is no EC2."""
    prefix = f"ident-busy-{os.getpid()}-{time.monotonic_ns() % 10**9}/"
    imds.outage("500")
    res, _, _ = run_worker("discover", identity_job(s3, prefix), env=imds.env())
    assert not res["ok"] and "IMDS" in res["error"] and "next poll" in res["error"], res
    imds.outage(None)
    res, _, _ = run_worker("discover", identity_job(s3, prefix), env=imds.env())
    assert res["ok"] and res["host_id"] == imds.instance_id, res
    env = imds.env()
    imds.outage("refuse")
    res, _, _ = run_worker("discover", identity_job(s3, prefix), env=env)
    assert res["ok"] and res["host_id"] == open("/etc/machine-id").read().strip(), res
    imds.outage(None)


def test_host_identity_without_imds_answering_syn(s3):
    """Off EC2 the link-local IMDS address often drops packets silently: a
    connection that never opens is no IMDS, so the machine id is used (a
    busy IMDS, above, is one that accepted the connection)."""
    prefix = f"ident-drop-{os.getpid()}-{time.monotonic_ns() % 10**9}/"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)      # never accepted: once the queue is full, SYNs are dropped
        fillers = []
        try:
            for _ in range(4):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(listener.getsockname())
                fillers.append(c)
            port = listener.getsockname()[1]
            env = env_with(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{port}/")
            res, _, _ = run_worker("discover", identity_job(s3, prefix), env=env)
        finally:
            for c in fillers:
                c.close()
    assert res["ok"] and res["host_id"] == open("/etc/machine-id").read().strip(), res


def test_host_identity_resolved_once_and_shown(fleet, imds):
    """The supervisor keeps the id a worker resolved and passes it in later
    jobs: IMDS is asked once, not at every poll; deployctl status shows it."""
    host = Host(fleet, 0, host_id=False)
    fleet.hosts = [host]
    sha = "1d0000000c1"
    fleet.publish(sha)
    fleet.point(sha)
    host.start(env=imds.env())
    fleet.wait_all_on(sha)
    fleet.wait(lambda: host.ctl_status()["host_id"] == imds.instance_id, "status shows the host id")
    st = host.ctl_status()
    assert st["zone"] == "us-east-1a" and st["rollout"]["status"] == "taken"
    fleet.wait(lambda: fleet.keys(f"fleet/status/{imds.instance_id}.json"), "the status object under the id")
    pointer = f"/{harness.BUCKET}/{fleet.prefix}LATEST"
    polls = lambda: sum(1 for m, p, st in list(fleet.s3.proxy.requests)  # noqa: E731
                        if p.split("?")[0] == pointer and st == 304)
    fleet.wait(lambda: polls() >= 3, "three idle polls")
    asked = [p for m, p, st, _ in imds.log if p == "/latest/meta-data/instance-id"]
    assert len(asked) == 1, imds.log
    r = subprocess.run([str(DEPLOYCTL_BIN), "-s", str(host.socket), "status"], capture_output=True, text=True,
                       timeout=30)
    assert f"host     {imds.instance_id} in us-east-1a" in r.stdout, r.stdout


def halted_text(fleet, markers, name):
    """The halt a one-host fleet reports for a build with these bad markers
    (name -> reason) under it."""
    fleet.hosts = fleet.hosts[:1]
    base = started_fleet(fleet)
    sha = hashlib.sha1(name.encode()).hexdigest()[:12]
    fleet.publish(sha)
    for marker, reason in markers.items():
        fleet.s3.put(f"{fleet.prefix}fleet/bad/{sha}/{marker}",
                     json.dumps({"host_id": marker, "sha": sha, "reason": reason}).encode())
    fleet.point(sha, started=int(time.time()), waves="10000", wave_interval=60, max_failures=1, paused="no",
                previous=base)
    h = fleet.hosts[0]
    fleet.wait(lambda: (h.ctl_status()["rollout"] or {}).get("status") == "halted", f"{sha} halted")
    assert h.current() == base and not h.ever_activated(sha)
    return h.ctl_status()["rollout"]["halted"]


def test_halt_text_counts_the_hosts_it_does_not_name(fleet):
    """_abort sorts before lowercase host ids: the reasons shown and the
    "and N more hosts" add up to every host marker."""
    hosts = [f"m-{i}" for i in range(1, 7)]
    text = halted_text(fleet, {"_abort": "operator", **{m: f"broke {m}" for m in hosts}}, "count")
    named = [m for m in hosts if f"{m}: broke {m}" in text]
    assert "_abort: operator" in text and text.endswith("; and 1 more hosts"), text
    assert len(named) == 5, text


def test_halt_text_from_hostile_reasons_is_printable(fleet):
    """Reasons are other hosts' words: a cut inside a UTF-8 character must
    not make the discover result unencodable (the halt would never be
    seen), and no terminal escape reaches the journal or deployctl."""
    text = halted_text(fleet, {"m-1": "a" + "\u00e9" * 150, "m-2": "red\x1b[31m\x07bell"}, "hostile")
    assert all(0x20 <= ord(c) <= 0x7e for c in text), repr(text)
    assert "m-1: a???" in text and "m-2: red?[31m?bell" in text, text
