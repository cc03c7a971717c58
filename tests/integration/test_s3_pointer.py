"""Cheap polling. With select = pointer an idle poll is one conditional GET
of the pointer object answered 304 Not Modified; with select = newest it is
a ListObjectsV2 of the prefix (one request per 1000 keys), which also shows
the newest artifact's sidecars. The numbers printed here are the
ones README.md quotes ("S3 requests and cost per idle poll")."""


import harness
import pytest
from s3_helpers import faults, run_worker, s3_job  # noqa: F401

SHA1 = "b0b0b0b0b0b0b01"
SHA2 = "b0b0b0b0b0b0b02"


def discover_job(agent, endpoint, pointer_etag=None, select="pointer"):
    return {"s3": s3_job(endpoint), "bucket": harness.BUCKET, "prefix": agent.prefix,
            "suffix": agent.suffix, "select": select, "pointer_key": agent.prefix + "LATEST",
            "pointer_etag": pointer_etag,
            "fleet": {"prefix": None, "host_id": None, "canary": False, "settled": []}}


def publish_build(agent, sha, tag):
    agent.publish(sha, {"app": f"{tag}\n".encode()}, manifest=True)


def test_pointer_discover_conditional_get(agent, faults):
    publish_build(agent, SHA1, "one")
    agent.s3.put(agent.prefix + "LATEST", f"{SHA1}\n".encode())

    res, _, _ = run_worker("discover", discover_job(agent, faults.endpoint))
    assert res["ok"] and res["found"] and res["sha"] == SHA1
    assert res["pointer_etag"]
    assert res["sidecars"] == {"sha256": True, "minisig": False}
    first = faults.requests()
    assert [(r.method, r.status) for r in first] == [("GET", 200), ("GET", 200)]   # pointer, listing

    # Idle poll: the pointer did not change.
    n = len(faults.requests())
    res2, _, err = run_worker("discover", discover_job(agent, faults.endpoint, res["pointer_etag"]))
    assert res2 == {"ok": True, "found": False, "not_modified": True, "pointer_etag": res["pointer_etag"],
                    "sha": None, "key": None, "etag": None, "last_modified": 0, "size": 0,
                    "sidecars": {"sha256": False, "minisig": False}, "reason": None,
                    "host_id": None, "zone": None, "rollout": None}
    idle = faults.requests()[n:]
    assert [(r.method, r.path.split("?")[0], r.status) for r in idle] == \
        [("GET", f"/{harness.BUCKET}/{agent.prefix}LATEST", 304)]
    assert idle[0].headers["if-none-match"] == f'"{res["pointer_etag"]}"'
    assert idle[0].body_bytes == 0
    print(f"\nIDLE POLL pointer: 1 request (GET 304), {idle[0].request_bytes} bytes up, "
          f"{idle[0].response_bytes} bytes down, 0 body bytes")

    # CI moves the pointer: the old ETag no longer matches.
    publish_build(agent, SHA2, "two")
    agent.s3.put(agent.prefix + "LATEST", f"{SHA2}\n".encode())
    res3, _, _ = run_worker("discover", discover_job(agent, faults.endpoint, res["pointer_etag"]))
    assert res3["found"] and res3["sha"] == SHA2 and res3["not_modified"] is False
    assert res3["pointer_etag"] != res["pointer_etag"]


def test_pointer_to_a_missing_build_gives_no_pointer_etag(agent):
    """Otherwise the next poll would get a 304 and never see the build
    arrive."""
    agent.s3.put(agent.prefix + "LATEST", f"{SHA1}\n".encode())
    res, _, _ = run_worker("discover", discover_job(agent, agent.s3.endpoint))
    assert res["ok"] and res["found"] is False
    assert res["pointer_etag"] is None
    assert "does not exist (yet)" in res["reason"]


def test_newest_idle_poll_requests_and_bytes(agent, faults):
    """20 builds with their sidecars under the prefix (60 keys)."""
    objects = {}
    for i in range(20):
        sha = f"{i:07x}aaaaaaa"
        objects[agent.key(sha)] = b"x" * 100
        objects[agent.key(sha) + ".sha256"] = b"0" * 64 + b"\n"
        objects[agent.key(sha) + ".minisig"] = b"sig\n"
    agent.s3.bulk_put(objects)
    res, _, _ = run_worker("discover", discover_job(agent, faults.endpoint, select="newest"))
    assert res["ok"] and res["found"]
    reqs = faults.requests()
    # One listing says which build is the newest and which sidecars it has.
    assert [(r.method, "list-type=2" in r.path, r.status) for r in reqs] == [("GET", True, 200)]
    assert res["sidecars"] == {"sha256": True, "minisig": True}
    up = sum(r.request_bytes for r in reqs)
    down = sum(r.response_bytes + r.body_bytes for r in reqs)
    print(f"\nIDLE POLL newest (60 keys): {len(reqs)} LIST requests, {up} bytes up, {down} bytes down "
          f"(listing bodies {[r.body_bytes for r in reqs]})")


def test_idle_once_in_pointer_mode_is_one_304(agent):
    """Two `deploy-agent once` runs: the second, with nothing new, costs one
    conditional GET (needs the supervisor to keep the pointer's ETag)."""
    publish_build(agent, SHA1, "one")
    agent.s3.put(agent.prefix + "LATEST", f"{SHA1}\n".encode())
    agent.write_config(select="pointer", pointer_key=agent.prefix + "LATEST")
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA1
    if not agent.state().get("pointer_etag"):
        pytest.skip("the supervisor does not keep the pointer's ETag in state.json yet")
    # The proxy records a request before it sends the answer's body: once
    # `once` has exited, every request it made is listed.
    before = len(agent.s3_requests())
    r = agent.once()
    assert r.returncode == 0, r.stderr
    idle = agent.s3_requests()[before:]
    assert [(m, p.split("?")[0], st) for m, p, st in idle] == \
        [("GET", f"/{harness.BUCKET}/{agent.prefix}LATEST", 304)]


def test_pointer_retried_after_a_failed_fetch(agent, faults):
    """A poll whose fetch failed (network) must not leave the pointer's
    ETag behind as "seen": the next poll would get a 304 and never retry."""
    publish_build(agent, SHA1, "one")
    agent.s3.put(agent.prefix + "LATEST", f"{SHA1}\n".encode())
    agent.write_config(_s3={"endpoint": faults.endpoint}, select="pointer", pointer_key=agent.prefix + "LATEST")
    art = f"/{harness.BUCKET}/{agent.key(SHA1)}"
    faults.inject(lambda m, p: m == "GET" and p.split("?")[0] == art, status=500, times=5)
    r = agent.once()
    assert r.returncode != 0
    assert agent.current_sha() is None
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA1
