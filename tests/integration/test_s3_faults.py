"""A flaky network between the agent and S3: a fault-injecting relay in front
of the SigV4 proxy cuts bodies midway, stalls them, and answers 500 and 503
SlowDown. The artifact must still arrive intact, each byte downloaded (and
hashed) once, with bounded retries; a cut download resumes with Range and
If-Match and starts over when the object changed."""

import os
import threading
import time

import harness
from s3_helpers import (Worker, faults, fetch_stats, is_artifact, run_worker, s3_job,  # noqa: F401
                        use_endpoint)

SHA = "fa017fa017fa017"
MIB = 1 << 20
STALL_ENV = {"DEPLOY_AGENT_STALL_TIMEOUT": "2"}


def big_archive(seed=1, size=8 * MIB):
    return harness.make_tar_gz(harness.with_manifest({"blob": harness.semi_random(size, seed)}))


def env(**kw):
    e = dict(os.environ)
    e.update(STALL_ENV)
    e.update(kw)
    return e


def path_is(agent, key):
    want = f"/{harness.BUCKET}/{key}"
    return lambda m, p: m == "GET" and p.split("?")[0] == want


def listing(m, p):
    return m == "GET" and "list-type=2" in p


def test_cuts_stalls_and_errors_still_deliver_intact(agent, faults):
    data = big_archive()
    agent.publish_archive(SHA, data)
    use_endpoint(agent, faults.endpoint)
    art = path_is(agent, agent.key(SHA))
    faults.inject(listing, status=503, code="SlowDown")
    faults.inject(path_is(agent, agent.key(SHA) + ".sha256"), status=500)
    faults.inject(art, status=500)
    faults.inject(art, cut_after=1 * MIB)
    faults.inject(art, status=503, code="SlowDown")
    faults.inject(art, stall_after=1 * MIB, stall=30)
    faults.inject(art, cut_after=512 * 1024)

    start = time.monotonic()
    r = agent.once(env=env())
    took = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA
    ok, why = harness.release_is_complete(agent.root / "current")
    assert ok, why

    gets = faults.requests(is_artifact(agent, SHA))
    delivered = sum(g.body_bytes for g in gets)
    ranged = [g for g in gets if "range" in g.headers]
    stats = fetch_stats(r.stderr)
    print(f"\nRESUME FIGURES: artifact {len(data)} bytes; delivered to the agent {delivered} bytes; "
          f"artifact GETs {len(gets)} ({len(ranged)} with Range, statuses {[g.status for g in gets]}); "
          f"all requests {len(faults.requests())}; agent says {stats}; {took:.1f} s")
    # Every byte crossed the wire once: resumes pick up where the cut was.
    assert delivered == len(data)
    assert stats["downloaded"] == len(data) and stats["reused"] == 0 and stats["restarts"] == 0
    assert len(gets) == 6 and stats["gets"] == 6
    # After the first cut every request is a resume (the 503 one too).
    assert len(ranged) == 4 and stats["resumed"] == 4
    assert all(g.headers.get("if-match") for g in ranged)
    assert stats["retries"] == 5
    assert agent.s3.proxy.rejections == []


def test_retries_are_bounded(agent, faults):
    agent.publish_archive(SHA, harness.make_tar_gz({"a": b"a"}))
    use_endpoint(agent, faults.endpoint)
    faults.inject(path_is(agent, agent.key(SHA)), status=500, times=None)
    start = time.monotonic()
    r = agent.once(env=env())
    took = time.monotonic() - start
    assert r.returncode != 0
    assert "HTTP 500 InternalError" in r.stderr
    assert len(faults.requests(is_artifact(agent, SHA))) == 5
    assert took < 30
    downloads = agent.state_dir / agent.service / "downloads"
    assert [p.name for p in downloads.iterdir()] == []
    assert agent.state().get("bad", []) == []   # the network's fault, not the build's


def test_object_replaced_midway_starts_over(agent, faults):
    """The cut resume sees another ETag (s3rver ignores If-Match): start over,
    find the object is not the one discover chose, fail without marking it
    bad; the next poll deploys the new upload."""
    agent.publish_archive(SHA, big_archive(seed=2, size=2 * MIB))
    new = big_archive(seed=3, size=2 * MIB)
    use_endpoint(agent, faults.endpoint)
    replaced = threading.Event()

    def replace():
        agent.publish_archive(SHA, new)
        replaced.set()

    faults.inject(path_is(agent, agent.key(SHA)), cut_after=256 * 1024, after=replace)
    faults.inject(path_is(agent, agent.key(SHA)), on_hit=lambda: replaced.wait(60))
    # The resume waits at the proxy while awscli uploads: do not call that a stall.
    r = agent.once(env=env(DEPLOY_AGENT_STALL_TIMEOUT="60"))
    assert r.returncode != 0
    assert "changed during the download" in r.stderr
    assert agent.state().get("bad", []) == []
    gets = faults.requests(is_artifact(agent, SHA))
    assert [("range" in g.headers, g.status) for g in gets] == [(False, 200), (True, 206), (False, 200)]

    r = agent.once(env=env())
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA
    assert (agent.root / "current" / "blob").read_bytes() == harness.semi_random(2 * MIB, 3)


def etag_of(agent, key):
    return agent.s3.client.head_object(Bucket=harness.BUCKET, Key=key)["ETag"].strip('"')


def fetch_job(agent, sha, downloads, resume, etag=True):
    return {
        "etag": etag_of(agent, agent.key(sha)) if etag else None,
        "s3": s3_job(agent),
        "bucket": harness.BUCKET, "key": agent.key(sha), "sha": sha, "suffix": agent.suffix,
        "downloads_dir": str(downloads), "checksum": "required", "resume": resume,
        "max_artifact_size": 1 << 30, "public_key": None,
    }


def test_resume_a_part_left_by_a_killed_worker(agent, faults):
    """A fetch worker killed mid-download leaves its .part; the next one
    (resume: true) re-hashes it from disk and asks only for the rest."""
    data = big_archive(seed=4)
    agent.publish_archive(SHA, data)
    downloads = agent.tmp / "downloads"
    harness.make_dir(downloads)
    job = fetch_job(agent, SHA, downloads, resume=True)
    job["s3"]["endpoint"] = faults.endpoint
    art = path_is(agent, agent.key(SHA))
    faults.inject(art, stall_after=3 * MIB, stall=60)
    w = Worker("fetch", job, env=env(DEPLOY_AGENT_STALL_TIMEOUT="60"))
    part = downloads / f"{SHA}.tar.gz.part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size >= 3 * MIB):
        time.sleep(0.05)
    w.kill()
    assert part.stat().st_size == 3 * MIB
    assert (downloads / f"{SHA}.tar.gz.part.etag").exists()

    before = len(faults.requests())
    result, progress, err = run_worker("fetch", job, env=env())
    assert result["ok"], result
    assert (downloads / f"{SHA}.tar.gz").read_bytes() == data
    assert result["sha256"] == harness.sha256_hex(data)
    assert result["reused"] == 3 * MIB and result["downloaded"] == len(data) - 3 * MIB
    gets = faults.requests(is_artifact(agent, SHA))[-1:]
    assert len(faults.requests()) - before == 2           # the sidecar, the rest of the artifact
    assert gets[0].headers["range"] == f"bytes={3 * MIB}-" and gets[0].headers.get("if-match")
    assert gets[0].body_bytes == len(data) - 3 * MIB
    assert not part.exists() and not (downloads / f"{SHA}.tar.gz.part.etag").exists()


def test_part_of_another_object_or_resume_off_starts_from_zero(agent):
    data = big_archive(seed=5, size=MIB)
    agent.publish_archive(SHA, data)
    downloads = agent.tmp / "downloads"
    harness.make_dir(downloads)
    part = downloads / f"{SHA}.tar.gz.part"
    stale = "0123456789abcdef0123456789abcdef"
    for note, resume, etag in ((stale, True, True), (stale, True, False), (None, False, True)):
        part.write_bytes(b"garbage from an older upload " * 100)
        if note:
            (downloads / f"{SHA}.tar.gz.part.etag").write_text(note)
        job = fetch_job(agent, SHA, downloads, resume=resume, etag=etag)
        result, _, _ = run_worker("fetch", job, env=env())
        assert result["ok"], result
        assert result["reused"] == 0 and result["downloaded"] == len(data)
        assert (downloads / f"{SHA}.tar.gz").read_bytes() == data
        (downloads / f"{SHA}.tar.gz").unlink()
