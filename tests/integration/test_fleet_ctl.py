"""The operator's side of a staged rollout: `deployctl publish --waves` and
`deployctl fleet pause|resume|abort|status`, against real s3rver through
the SigV4 proxy, which enforces If-Match / If-None-Match on PUT as S3 does
(s3rver alone ignores them). Status objects and bad markers are written
here in the format of the fleet spec, as the agents write them."""

import hashlib
import json
import os
import subprocess
import time

import pytest

import harness
from s3_helpers import DEPLOYCTL_BIN, deployctl, faults, publish, use_endpoint  # noqa: F401
from test_fleet import Fleet, bucket, started_fleet

SHA_A = "a1a1a1a1a1a1a"
SHA_B = "b2b2b2b2b2b2b"
SHA_C = "c3c3c3c3c3c3c"
CONFLICT = "pointer changed since it was read (another operator?); nothing written"
EXIT_CONFLICT = 7
EXIT_REFUSED = 8


def build(agent, name="build.tar.gz"):
    p = agent.tmp / name
    if not p.exists():
        p.write_bytes(harness.make_tar_gz(harness.with_manifest({"app": b"v\n"})))
    return p


def pointer_key(agent):
    return agent.prefix + "LATEST"


def fleet_prefix(agent):
    return agent.prefix + "fleet/"


def configure(agent, endpoint=None):
    kw = {"_s3": {"endpoint": endpoint}} if endpoint else {}
    agent.write_config(select="pointer", pointer_key=pointer_key(agent), fleet_prefix=fleet_prefix(agent), **kw)


def read(agent, key):
    return agent.s3.client.get_object(Bucket=harness.BUCKET, Key=key)["Body"].read().decode()


def parse_pointer(text):
    """(sha, [(key, value), ...] in order)."""
    assert text.endswith("\n"), repr(text)
    first, *rest = text[:-1].split("\n")
    return first, [tuple(line.split("=", 1)) for line in rest]


def fields(text):
    return dict(parse_pointer(text)[1])


def fleetctl(agent, *args, env=None):
    return deployctl("-c", agent.config_path, *args[:1], "fleet", *args[1:], env=env) \
        if args and args[0] == "--json" else deployctl("-c", agent.config_path, "fleet", *args, env=env)


def put_json(agent, key, obj):
    agent.s3.client.put_object(Bucket=harness.BUCKET, Key=key, Body=json.dumps(obj).encode(),
                               ContentType="application/json")


def pointer_puts(agent):
    return [st for m, p, st in agent.s3_requests() if m == "PUT" and p.split("?")[0].endswith("/LATEST")]


def publish_waves(agent, sha, *extra, waves="5%,25%,100%", interval="15m"):
    return publish(agent, sha, build(agent), "--pointer", pointer_key(agent), "--waves", waves,
                   "--wave-interval", interval, *extra)


# -- publish --waves ----------------------------------------------------------

def test_publish_with_waves_writes_the_specs_pointer(agent, faults):  # noqa: F811
    configure(agent, faults.endpoint)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert read(agent, pointer_key(agent)) == SHA_A + "\n"          # without --waves: as before
    etag = agent.s3.client.head_object(Bucket=harness.BUCKET, Key=pointer_key(agent))["ETag"].strip('"')

    before = int(time.time())
    r = publish_waves(agent, SHA_B, "--max-failures", "2")
    after = int(time.time())
    assert r.returncode == 0, r.stderr
    sha, kv = parse_pointer(read(agent, pointer_key(agent)))
    assert sha == SHA_B
    keys = [k for k, _ in kv]
    order = ["started", "waves", "wave_interval", "max_failures", "paused", "previous"]
    assert keys == [k for k in order if k in keys] and {"started", "waves", "wave_interval",
                                                        "max_failures", "previous"} <= set(keys)
    d = dict(kv)
    assert before <= int(d["started"]) <= after
    assert d["waves"] == "500,2500,10000" and d["wave_interval"] == "900"
    assert d["max_failures"] == "2" and d.get("paused", "no") == "no" and d["previous"] == SHA_A
    # Read-modify-write: the PUT named the ETag the GET returned.
    puts = faults.requests(lambda q: q.method == "PUT" and q.path.endswith("/LATEST"))
    assert puts[-1].headers.get("if-match", "").strip('"') == etag
    assert "if-match" not in puts[0].headers         # the bare publish is unconditional, as before


def test_publish_with_waves_creates_a_pointer_with_if_none_match(agent, faults):  # noqa: F811
    configure(agent, faults.endpoint)
    r = publish_waves(agent, SHA_B, waves="0.5%,12.25%,100%", interval="90s")
    assert r.returncode == 0, r.stderr
    d = fields(read(agent, pointer_key(agent)))
    assert d["waves"] == "50,1225,10000" and d["wave_interval"] == "90" and "previous" not in d
    put = faults.requests(lambda q: q.method == "PUT" and q.path.endswith("/LATEST"))[-1]
    assert put.headers.get("if-none-match") == "*"


@pytest.mark.parametrize("args,why", [
    (["--waves", "5%,3%,100%", "--wave-interval", "1m"], "ascending"),
    (["--waves", "5%,50%", "--wave-interval", "1m"], "100%"),
    (["--waves", "5%,100%"], "--wave-interval"),
    (["--waves", "0.001%,100%", "--wave-interval", "1m"], "two decimals"),
    (["--waves", "5%,100%", "--wave-interval", "0s"], "--wave-interval"),
    (["--waves", "5%,100%", "--wave-interval", "1m", "--max-failures", "0"], "--max-failures"),
])
def test_publish_refuses_bad_rollout_options_before_uploading(agent, args, why):
    configure(agent)
    r = publish(agent, SHA_B, build(agent), "--pointer", pointer_key(agent), *args)
    assert r.returncode == 2 and why in r.stderr
    assert [m for m, _, _ in agent.s3_requests() if m == "PUT"] == []


# -- pause, resume, abort -----------------------------------------------------

def test_pause_and_resume_edit_only_the_paused_field(agent):
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B).returncode == 0
    original = fields(read(agent, pointer_key(agent)))

    n = len(agent.s3_requests())
    r = fleetctl(agent, "--json", "pause", "app")
    assert r.returncode == 0, r.stderr
    assert [(m, st) for m, _, st in agent.s3_requests()[n:]] == [("GET", 200), ("PUT", 200)]
    out = json.loads(r.stdout)
    assert out["ok"] and out["changed"] and out["paused"] and out["sha"] == SHA_B
    paused = fields(read(agent, pointer_key(agent)))
    assert paused == {**original, "paused": "yes"}

    n = len(pointer_puts(agent))
    r = fleetctl(agent, "--json", "pause", "app")                # again: nothing to write
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is False
    assert len(pointer_puts(agent)) == n

    r = fleetctl(agent, "resume", "app")
    assert r.returncode == 0 and "resumed" in r.stdout
    resumed = fields(read(agent, pointer_key(agent)))
    assert resumed.get("paused", "no") == "no"
    assert {k: v for k, v in resumed.items() if k != "paused"} == \
        {k: v for k, v in original.items() if k != "paused"}


def test_abort_marks_the_build_bad_and_points_back(agent):
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B).returncode == 0

    r = fleetctl(agent, "abort", "--reason", "errors in the canary", "app")
    assert r.returncode == 0, r.stderr
    sha, kv = parse_pointer(read(agent, pointer_key(agent)))
    d = dict(kv)
    assert sha == SHA_A and d["previous"] == SHA_B
    assert not {"started", "waves", "wave_interval"} & set(d)     # every host moves back at once
    assert d.get("paused", "no") == "no"
    marker = json.loads(read(agent, f"{fleet_prefix(agent)}bad/{SHA_B}/_abort"))
    assert marker["reason"] == "errors in the canary" and marker["time"].endswith("Z")


def test_abort_without_previous_is_a_clear_error(agent):
    configure(agent)
    assert publish_waves(agent, SHA_B).returncode == 0
    before = read(agent, pointer_key(agent))
    n = len(agent.s3_requests())
    r = fleetctl(agent, "abort", "app")
    assert r.returncode == EXIT_REFUSED
    assert "no previous build" in r.stderr and SHA_B in r.stderr
    assert read(agent, pointer_key(agent)) == before
    assert [q for q in agent.s3_requests()[n:] if q[0] == "PUT"] == []
    assert agent.s3.list_keys(fleet_prefix(agent)) == []


def test_verbs_need_a_known_pointer_service(agent):
    configure(agent)
    r = fleetctl(agent, "pause", "nosuch")
    assert r.returncode == 3 and "nosuch" in r.stderr
    r = fleetctl(agent, "pause", "app")                           # nothing published yet
    assert r.returncode == 3 and "no pointer" in r.stderr
    agent.write_config()                                       # select = newest
    r = fleetctl(agent, "pause", "app")
    assert r.returncode == 2 and "select = pointer" in r.stderr
    r = fleetctl(agent, "frobnicate", "app")
    assert r.returncode == 2


def test_a_retry_that_meets_its_own_write_is_success(agent, faults):  # noqa: F811
    """The PUT lands but its answer is lost (faked: the fault writes what
    deployctl sends, then answers 500): the retry's 412 is our own write."""
    configure(agent, faults.endpoint)
    assert publish_waves(agent, SHA_B).returncode == 0
    sha, kv = parse_pointer(read(agent, pointer_key(agent)))
    order = ["started", "waves", "wave_interval", "max_failures", "paused", "previous"]
    d = {**dict(kv), "paused": "yes"}
    want = sha + "\n" + "".join(f"{k}={d[k]}\n" for k in order if k in d)

    def land():
        agent.s3.client.put_object(Bucket=harness.BUCKET, Key=pointer_key(agent), Body=want.encode())
    fault = faults.inject(lambda m, p: m == "PUT" and p.endswith("/LATEST"), status=500, on_hit=land)
    r = fleetctl(agent, "pause", "app")
    assert r.returncode == 0, r.stderr
    assert fault.hits == 1 and read(agent, pointer_key(agent)) == want
    statuses = [q.status for q in faults.requests(lambda q: q.method == "PUT" and q.path.endswith("/LATEST"))]
    assert statuses[-2:] == [500, 412]


# -- two operators at once ----------------------------------------------------

def held(agent, hold, *args):
    """Start deployctl with the test hook that holds it between its read of
    the pointer and its write, until `hold` exists."""
    env = {**os.environ, "DEPLOYCTL_TEST_HOLD_AFTER_READ": str(hold)}
    return subprocess.Popen([str(DEPLOYCTL_BIN), "-c", str(agent.config_path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def wait_read(hold, proc, timeout=120):
    """Until proc has read the pointer (the hook's hold.read.<pid> exists)."""
    path = hold.parent / f"{hold.name}.read.{proc.pid}"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_an_edit_on_a_stale_etag_loses_and_writes_nothing(agent):
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B).returncode == 0
    hold = agent.tmp / "hold"
    slow = held(agent, hold, "fleet", "pause", "app")
    wait_read(hold, slow)                                    # it has read the pointer and its ETag
    r = publish_waves(agent, SHA_C, waves="10%,100%")        # another operator, start to end
    assert r.returncode == 0, r.stderr
    winner = read(agent, pointer_key(agent))
    hold.touch()
    out, err = slow.communicate(timeout=120)
    assert slow.returncode == EXIT_CONFLICT, (out, err)
    assert CONFLICT in err
    assert read(agent, pointer_key(agent)) == winner          # nothing written over it
    assert parse_pointer(winner)[0] == SHA_C and fields(winner)["previous"] == SHA_B


def test_an_abort_that_loses_the_race_leaves_the_build_halted(agent):
    """abort writes bad/<sha>/_abort before the pointer (a crash between
    the two must leave the build halted): when the pointer write then loses,
    the marker stays, and the message says so."""
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B).returncode == 0
    hold = agent.tmp / "hold"
    slow = held(agent, hold, "fleet", "abort", "--reason", "first", "app")
    wait_read(hold, slow)
    assert publish_waves(agent, SHA_C).returncode == 0
    winner = read(agent, pointer_key(agent))
    hold.touch()
    _, err = slow.communicate(timeout=120)
    assert slow.returncode == EXIT_CONFLICT and CONFLICT in err and f"{SHA_B} stays halted" in err
    assert read(agent, pointer_key(agent)) == winner
    assert json.loads(read(agent, f"{fleet_prefix(agent)}bad/{SHA_B}/_abort"))["reason"] == "first"
    # Aborting C (previous B) works; aborting B again keeps its first marker.
    assert fleetctl(agent, "abort", "--reason", "second", "app").returncode == 0
    assert parse_pointer(read(agent, pointer_key(agent)))[0] == SHA_B
    assert json.loads(read(agent, f"{fleet_prefix(agent)}bad/{SHA_C}/_abort"))["reason"] == "second"
    r = fleetctl(agent, "abort", "--reason", "third", "app")
    assert r.returncode == 0 and r.stderr == ""
    assert parse_pointer(read(agent, pointer_key(agent)))[0] == SHA_C
    assert json.loads(read(agent, f"{fleet_prefix(agent)}bad/{SHA_B}/_abort"))["reason"] == "first"


def test_racing_edits_have_exactly_one_winner(agent):
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B).returncode == 0
    for rnd in range(4):
        hold = agent.tmp / f"go-{rnd}"
        verb = "resume" if fields(read(agent, pointer_key(agent))).get("paused") == "yes" else "pause"
        procs = [held(agent, hold, "fleet", verb, "app"),
                 held(agent, hold, "publish", "--bucket", harness.BUCKET, "--prefix", agent.prefix,
                      "--sha", SHA_C if rnd % 2 == 0 else SHA_B, "--pointer", pointer_key(agent),
                      "--waves", "50%,100%", "--wave-interval", "1m", str(build(agent)))]
        for p in procs:                  # both have read the same ETag
            wait_read(hold, p)
        hold.touch()
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        assert sorted(code for code, _ in results) == [0, EXIT_CONFLICT], results
        loser = [err for code, err in results if code == EXIT_CONFLICT][0]
        assert CONFLICT in loser


# -- fleet status -------------------------------------------------------------

def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def host_status(host, current, state="idle", bad=(), age=0, interval=3600, last_error=None, zone="us-east-1a"):
    return {"host_id": host, "zone": zone, "service": "app", "agent_version": "0123abc",
            "current": current, "previous": SHA_A if current != SHA_A else None, "state": state,
            "last_error": last_error, "bad": list(bad),
            "rollout": {"sha": SHA_B, "status": "taken" if current == SHA_B else "waiting", "wave": 0},
            "time": iso(time.time() - age), "status_interval_sec": interval}


def write_fleet(agent):
    fp = fleet_prefix(agent)
    hosts = [host_status("web-1", SHA_B), host_status("web-2", SHA_B), host_status("web-3", SHA_A),
             host_status("web-4", SHA_A, zone=None), host_status("web-5", SHA_A),
             host_status("web-6", SHA_A, state="failed", bad=[SHA_B], last_error="health check failed"),
             host_status("web-7", SHA_A, age=3 * 3600)]                  # missed two heartbeats
    for h in hosts:
        put_json(agent, f"{fp}status/{h['host_id']}.json", h)
    put_json(agent, f"{fp}bad/{SHA_B}/web-6", {"host_id": "web-6", "sha": SHA_B,
                                               "reason": "health check failed", "time": iso(time.time())})
    agent.s3.client.put_object(Bucket=harness.BUCKET, Key=f"{fp}status/garbage.json", Body=b"{not json")
    return hosts


def test_fleet_status_json_over_status_objects(agent):
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B, "--max-failures", "2").returncode == 0
    write_fleet(agent)

    n = len(agent.s3_requests())
    r = fleetctl(agent, "--json", "status", "app")
    assert r.returncode == 0, r.stderr
    # What status costs: the pointer, one LIST and one GET per status
    # object (8: 7 hosts and a broken one), one LIST of bad/ and a GET per marker.
    assert sorted((m, "list" if "?list-type=2" in p else "object")
                  for m, p, _ in agent.s3_requests()[n:]) == [("GET", "list")] * 2 + [("GET", "object")] * 10
    s = json.loads(r.stdout)
    assert s["ok"] and s["service"] == "app" and s["hosts_total"] == 7
    assert s["pointer"]["sha"] == SHA_B and s["pointer"]["previous"] == SHA_A
    assert s["pointer"]["waves"] == [5, 25, 100] and s["pointer"]["wave_interval_sec"] == 900
    ro = s["rollout"]
    assert (ro["wave"], ro["waves"], ro["wave_percent"]) == (1, 3, 5)
    assert (ro["hosts_on_build"], ro["hosts"]) == (2, 7)
    assert abs(ro["share_percent"] - 200 / 7) < 0.01
    assert ro["next_wave"] is not None
    assert s["builds"] == {SHA_B: {"idle": 2}, SHA_A: {"idle": 4, "failed": 1}}
    assert [h["host_id"] for h in s["failed"]] == ["web-6"]
    assert s["failed"][0]["last_error"] == "health check failed"
    assert [h["host_id"] for h in s["stale"]] == ["web-7"] and s["stale"][0]["age_sec"] >= 3 * 3600 - 5
    assert [u["key"].rsplit("/", 1)[1] for u in s["unreadable"]] == ["garbage.json"]
    # One marker, max_failures 2: not halted yet.
    assert s["halted"] is False and s["paused"] is False
    assert s["breaker"]["failures"] == 1 and s["breaker"]["max_failures"] == 2
    assert s["breaker"]["hosts"] == [{"host_id": "web-6", "reason": "health check failed",
                                      "time": s["breaker"]["hosts"][0]["time"]}]

    put_json(agent, f"{fleet_prefix(agent)}bad/{SHA_B}/web-1", {"host_id": "web-1", "sha": SHA_B,
                                                                "reason": "exit 3", "time": iso(time.time())})
    assert fleetctl(agent, "pause", "app").returncode == 0
    s = json.loads(fleetctl(agent, "--json", "status", "app").stdout)
    assert s["halted"] is True and s["paused"] is True and s["breaker"]["failures"] == 2
    assert sorted((h["host_id"], h["reason"]) for h in s["breaker"]["hosts"]) == \
        [("web-1", "exit 3"), ("web-6", "health check failed")]


def test_fleet_status_after_abort_and_as_text(agent):
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    assert publish_waves(agent, SHA_B).returncode == 0
    write_fleet(agent)
    assert fleetctl(agent, "abort", "--reason", "bad canary", "app").returncode == 0
    s = json.loads(fleetctl(agent, "--json", "status", "app").stdout)
    assert s["pointer"]["sha"] == SHA_A and s["pointer"]["waves"] is None
    assert s["rollout"]["wave_percent"] == 100 and s["rollout"]["hosts_on_build"] == 5
    assert s["bad"][SHA_B]["aborted"] is True and s["bad"][SHA_B]["abort_reason"] == "bad canary"
    assert [h["host_id"] for h in s["bad"][SHA_B]["hosts"]] == ["web-6"]
    assert s["halted"] is False                               # A is not halted: B is

    r = fleetctl(agent, "status", "app")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert f"pointer   {pointer_key(agent)} -> {SHA_A} (previous {SHA_B})" in text
    assert "waves     none: every host takes it at once" in text
    assert "hosts     7 reporting, 1 stale, 1 failed" in text
    assert "web-6" in text and "health check failed" in text and "web-7" in text


def test_fleet_status_with_waves_as_text(agent):
    configure(agent)
    assert publish_waves(agent, SHA_B).returncode == 0
    write_fleet(agent)
    text = fleetctl(agent, "status", "app").stdout
    assert "waves     5% 25% 100%, one every 900s" in text
    assert "open      wave 1 of 3 (5%)" in text
    assert "on build  2 of 7 hosts (28.6%) against 5% open" in text
    assert "halted    yes: 1 hosts rolled it back (max_failures 1)" in text


def test_fleet_status_lists_wrong_typed_status_objects_as_unreadable(agent):
    """Valid JSON that is not a status object (no host_id, a field of the
    wrong type) is one unreadable entry, never a crash of the whole status."""
    configure(agent)
    assert publish(agent, SHA_A, build(agent), "--pointer", pointer_key(agent)).returncode == 0
    fp = fleet_prefix(agent)
    good = host_status("web-1", SHA_A)
    wrong = {"empty": {}, "int-id": {**good, "host_id": 5}, "null-id": {**good, "host_id": None},
             "state": {**good, "host_id": "web-s", "state": 7},
             "current": {**good, "host_id": "web-c", "current": ["x"]},
             "last-error": {**good, "host_id": "web-e", "last_error": {"a": 1}},
             "time": {**good, "host_id": "web-t", "time": 12},
             "bad": {**good, "host_id": "web-b", "bad": "x"},
             "bad-item": {**good, "host_id": "web-i", "bad": [1]},
             "rollout": {**good, "host_id": "web-r", "rollout": "x"},
             "interval": {**good, "host_id": "web-n", "status_interval_sec": "1"}}
    put_json(agent, f"{fp}status/web-1.json", good)
    for name, obj in wrong.items():
        put_json(agent, f"{fp}status/{name}.json", obj)
    for args in (("--json", "status", "app"), ("status", "app")):
        r = fleetctl(agent, *args)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    s = json.loads(fleetctl(agent, "--json", "status", "app").stdout)
    assert [h["host_id"] for h in s["hosts"]] == ["web-1"]
    assert sorted(u["key"].rsplit("/", 1)[1] for u in s["unreadable"]) == sorted(f"{n}.json" for n in wrong)


def test_fleet_status_without_fleet_prefix_is_a_clear_error(agent):
    agent.write_config(select="pointer", pointer_key=pointer_key(agent))
    r = fleetctl(agent, "status", "app")
    assert r.returncode == 2 and "fleet_prefix" in r.stderr


# -- end to end: 5 agents -----------------------------------------------------

def test_pause_resume_abort_with_five_agents(fleet_of):  # noqa: F811
    """pause stops the spread, resume continues it, abort brings every host
    back and none takes the aborted build again, even when the pointer names
    it once more. Time passing is played by moving the pointer's `started`
    back, which is all a clock would change."""
    fleet = fleet_of(5)
    base = started_fleet(fleet)
    cfg = fleet.hosts[0].config
    waves = (2000, 10000)
    sha = next(s for s in (hashlib.sha1(f"ctl-{i}".encode()).hexdigest()[:12] for i in range(1000))
               if 1 <= sum(bucket(h, s) < waves[0] for h in fleet.ids) <= 3)
    first = [h for h in fleet.hosts if bucket(h.host_id, sha) < waves[0]]
    later = [h for h in fleet.hosts if h not in first]
    art = fleet.dir / "build.tar.gz"
    art.write_bytes(harness.make_tar_gz({"app": f"{sha}\n".encode(), "healthy": b"yes\n"}))
    r = deployctl("-c", cfg, "publish", "--bucket", harness.BUCKET, "--prefix", f"{fleet.prefix}builds/",
                  "--sha", sha, "--pointer", f"{fleet.prefix}LATEST", "--waves", "20%,100%",
                  "--wave-interval", "1h", art)
    assert r.returncode == 0, r.stderr
    fleet.wait_all_on(sha, first)

    def rollout(h):
        return h.ctl_status()["rollout"] or {}
    fleet.wait(lambda: all(rollout(h).get("status") == "waiting" for h in later), "later hosts waiting")
    assert fleetctl_at(cfg, "pause").returncode == 0
    # An hour later: every wave open, but paused.
    text = fleet.object("LATEST").decode()
    started = int(fields(text)["started"])
    fleet.s3.client.put_object(Bucket=harness.BUCKET, Key=f"{fleet.prefix}LATEST",
                               Body=text.replace(f"started={started}", f"started={started - 7200}").encode())
    fleet.wait(lambda: all(rollout(h).get("status") == "paused" and rollout(h).get("wave") == 1 for h in later),
               "later hosts see the paused rollout with every wave open")
    assert all(h.current() == base and not h.ever_activated(sha) for h in later)
    s = json.loads(fleetctl_at(cfg, "--json", "status").stdout)
    assert s["paused"] and s["rollout"]["wave"] == 2 and s["rollout"]["wave_percent"] == 100
    assert s["rollout"]["hosts_on_build"] == len(first) and s["hosts_total"] == 5

    assert fleetctl_at(cfg, "resume").returncode == 0
    fleet.wait_all_on(sha)
    fleet.wait(lambda: all(h.activations(sha) for h in fleet.hosts), "every host's record of the deploy")
    taken = {h.host_id: len(h.activations(sha)) for h in fleet.hosts}

    r = fleetctl_at(cfg, "abort", "--reason", "errors after the rollout")
    assert r.returncode == 0, r.stderr
    fleet.wait_all_on(base)
    assert fields(fleet.object("LATEST").decode()) == {"previous": sha}
    # The pointer names the aborted build again (a stale CI job, say): the
    # _abort marker halts it on every host.
    fleet.point(sha)
    fleet.wait(lambda: all(rollout(h).get("sha") == sha and rollout(h).get("status") == "halted"
                           for h in fleet.hosts), "every host halted on the aborted build")
    assert all(h.current() == base for h in fleet.hosts)
    assert {h.host_id: len(h.activations(sha)) for h in fleet.hosts} == taken
    s = json.loads(fleetctl_at(cfg, "--json", "status").stdout)
    assert s["halted"] and s["breaker"]["aborted"] and s["breaker"]["abort_reason"] == "errors after the rollout"
    fleet.wait(lambda: all(fleet.status_object(h)["current"] == base for h in fleet.hosts), "status objects")
    s = json.loads(fleetctl_at(cfg, "--json", "status").stdout)
    assert s["builds"] == {base: {"ok": 5}} and s["stale"] == [] and s["failed"] == []


def fleetctl_at(cfg, *args):
    args = list(args)
    pre = [args.pop(0)] if args and args[0] == "--json" else []
    return deployctl("-c", cfg, *pre, "fleet", *args, "app")


@pytest.fixture
def fleet_of(s3, test_dir):
    """test_fleet's Fleet (agents on this machine), cut to n hosts."""
    made = []

    def make(n):
        f = Fleet(s3, test_dir)
        f.hosts = f.hosts[:n]
        f.ids = f.ids[:n]
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()
