"""S3 and the network misbehaving under a running agent (`deploy-agent run`),
through the fault proxy: an HTML page where a listing was expected, bodies
shorter and longer than their Content-Length, a listing whose continuation
token comes back forever, redirect loops, slow lorises on a listing and on
a download, a connection that is accepted and never answered, and an
endpoint whose name does not resolve.

Each fault must end in bounded time with an error that names it, in
`deployctl status` and in the agent's log (its journal under systemd); the
agent retries with backoff (status says "failures" >= 2); the release that
runs keeps running and nothing is marked bad; once the fault is gone the
next poll deploys the new build without anyone's help.

The low-speed time is cut to 2 s by config ([s3] low_speed_time) so that a
stall costs seconds; the deadlines below are generous on purpose: they say
"it ends", not how fast.
"""

import os
import re
import signal
import time

import pytest

import harness
from control_harness import ctl_daemon  # noqa: F401 (fixture)
from s3_helpers import faults  # noqa: F401 (fixture)

V1 = "0001f1e1d0001f1e1d"
V2 = "0002f2e2d0002f2e2d"
DEADLINE = 180.0
S3_FAST = {"low_speed_time": "2s"}
AGENT = {"poll_interval": "1s"}
FIGURES = []


def files(n):
    return {"app.txt": f"version {n}\n".encode(), "blob": harness.semi_random(64 * 1024, n)}


def listing(m, p):
    return m == "GET" and "list-type=2" in p


def artifact(agent, sha):
    want = f"/{harness.BUCKET}/{agent.key(sha)}"
    return lambda m, p: m == "GET" and p.split("?")[0] == want


def html_page(rec):
    return 200, [("Content-Type", "text/html; charset=utf-8")], b"<html><body>Please sign in to the Wi-Fi</body></html>"


def endless_listing(rec):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{harness.BUCKET}</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
            "<IsTruncated>true</IsTruncated><NextContinuationToken>c2FtZS1hZ2Fpbg==</NextContinuationToken>"
            "</ListBucketResult>").encode()
    return 200, [("Content-Type", "application/xml")], body


def redirect_to_itself(status):
    def answer(rec):
        return status, [("Location", f"http://{rec.headers['host']}{rec.path}")], b""
    return answer


# name: (where, fault keyword arguments, what the error must say)
FAULTS = {
    "html-listing": ("list", dict(respond=html_page), r"ListObjectsV2 returned text/html, not XML"),
    "short-listing": ("list", dict(cut_after=40), r"LIST s3://\S+: transfer closed with \d+ bytes remaining"),
    "short-download": ("get", dict(cut_after=0), r"GET s3://\S+: transfer closed with \d+ bytes remaining"),
    "token-loop": ("list", dict(respond=endless_listing), r"continuation token repeated"),
    "redirect-loop-301": ("list", dict(respond=redirect_to_itself(301)),
                          r"LIST s3://\S+: HTTP 301 redirect to http://\S+: not followed"),
    "redirect-loop-307": ("get", dict(respond=redirect_to_itself(307)),
                          r"GET s3://\S+: HTTP 307 redirect to http://\S+: not followed"),
    "slow-loris-listing": ("list", dict(dribble=1.0),
                           r"LIST s3://\S+: transfer slower than 1024 bytes/s for 2 s"),
    "slow-loris-download": ("get", dict(dribble=1.0),
                            r"GET s3://\S+: transfer slower than 1024 bytes/s for 2 s"),
    "never-answers": ("list", dict(hang=True), r"LIST s3://\S+: connected, but no answer in 2 s"),
}


def wait_failed(d, pattern):
    """Until a poll failed with the error."""
    rx = re.compile(pattern)

    def failed():
        st = d.status()
        return st["failures"] >= 1 and st["last_error"] and rx.search(st["last_error"])
    try:
        harness.wait_until(failed, DEADLINE, f"a failed poll with /{pattern}/", interval=0.1)
    except TimeoutError as e:
        raise TimeoutError(f"{e}\nstatus: {d.status()}\n--- agent log ---\n{d.log()[-4000:]}") from None
    return d.status()


def check_failed_but_running(agent, d, pattern):
    st = wait_failed(d, pattern)
    assert st["current"] == V1 and agent.current_sha() == V1
    ok, why = harness.release_is_complete(agent.root / "current")
    assert ok, why
    assert st["bad"] == [] and agent.state().get("bad", []) == []
    assert (agent.root / "current" / "app.txt").read_bytes() == b"version 1\n"
    text = d.ctl("status")
    assert re.search(pattern, text.stdout), text.stdout
    assert re.search(pattern, d.log(since_start=True))
    return st


def deployed_v1(agent, ctl_daemon, s3=None):
    agent.publish(V1, files(1), manifest=True)
    d = ctl_daemon(agent_overrides=AGENT, s3_overrides={**S3_FAST, **(s3 or {})})
    d.wait_current(V1, timeout=DEADLINE)
    return d


def recovered(agent, d, cleared_at, name, started):
    d.wait_current(V2, timeout=DEADLINE)
    took = time.monotonic() - cleared_at
    assert (agent.root / "current" / "app.txt").read_bytes() == b"version 2\n"
    assert d.status()["failures"] == 0 and d.status()["bad"] == []
    FIGURES.append((name, cleared_at - started, took))
    print(f"\nFAULT FIGURES: {name}: error after {cleared_at - started:.1f} s, "
          f"recovered {took:.1f} s after the fault cleared")


@pytest.mark.parametrize("name", FAULTS)
def test_fault_ends_in_a_clear_error_and_clears(agent, ctl_daemon, faults, name):
    where, kw, pattern = FAULTS[name]
    d = deployed_v1(agent, ctl_daemon, {"endpoint": faults.endpoint})
    started = time.monotonic()
    faults.inject(listing if where == "list" else artifact(agent, V2), times=None, **kw)
    agent.publish(V2, files(2), manifest=True)
    check_failed_but_running(agent, d, pattern)
    # tried again: by the S3 client after a backoff (a transient fault), or
    # by the next poll, backed off (poll_interval doubled per failure)
    harness.wait_until(lambda: len(faults.requests(lambda r: r.fault)) >= 2, DEADLINE, "the fault hit twice")
    cleared = time.monotonic()
    faults.clear()
    recovered(agent, d, cleared, name, started)


def test_longer_body_than_content_length_is_cut_at_its_length(agent, ctl_daemon, faults):
    """Bytes after the Content-Length never reach a parser or the artifact:
    curl stops at the length and drops that connection. The listing and the
    artifact are taken as they were framed (the sidecar's hash still checks
    the artifact), and the next request on a new connection goes well."""
    d = deployed_v1(agent, ctl_daemon, {"endpoint": faults.endpoint})
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\njunk!" * 20
    faults.inject(listing, times=None, extra=junk)
    faults.inject(artifact(agent, V2), times=None, extra=junk)
    agent.publish(V2, files(2), manifest=True)
    published = time.monotonic()
    d.wait_current(V2, timeout=DEADLINE)
    print(f"\nFAULT FIGURES: longer-body: no error, {V2} deployed {time.monotonic() - published:.1f} s "
          "after it was published")
    ok, why = harness.release_is_complete(agent.root / "current")
    assert ok, why
    assert (agent.root / "current" / "app.txt").read_bytes() == b"version 2\n"
    assert [r for r in faults.requests() if r.fault == "extra"]
    assert d.status()["bad"] == []


def test_endpoint_name_that_does_not_resolve(agent, ctl_daemon, faults):
    """`.invalid` never resolves (RFC 6761): the fetch worker's resolver
    runs under its seccomp filter, fails, is retried with backoff; fixing
    the endpoint and reloading deploys at the next poll."""
    d = deployed_v1(agent, ctl_daemon, {"endpoint": faults.endpoint})
    started = time.monotonic()
    d.write_config(_s3={"endpoint": f"http://s3.invalid:{faults.port}"})
    os.kill(d.pid, signal.SIGHUP)
    agent.publish(V2, files(2), manifest=True)
    check_failed_but_running(agent, d, r"LIST s3://\S+: Could not resolve host: s3\.invalid")
    cleared = time.monotonic()
    d.write_config(_s3={"endpoint": faults.endpoint})
    os.kill(d.pid, signal.SIGHUP)
    recovered(agent, d, cleared, "dns", started)
