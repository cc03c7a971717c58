"""The control socket and deployctl (docs/design.md, "Control protocol"): every command and
exit code, human and --json output, pins, rollbacks, pauses, permissions, hostile and
slow clients, memory, and the socket file's life cycle.

The agent runs as a plain daemon (`deploy-agent -c CONFIG run`, no systemd) with its
socket in the test dir, poll_interval 2s and restart_mode none; see control_harness.py.
Run: /usr/bin/python3 -m pytest -v tests/integration/test_control.py   (needs `make`)
"""

import json
import os
import pathlib
import pty
import random
import re
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

import harness
from control_harness import (  # noqa: F401 - fixtures
    DEPLOYCTL_BIN, EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_UNKNOWN, EXIT_UNREACHABLE,
    EXIT_USAGE, Connection, as_user, ctl_daemon, throwaway_admin, wait_until)

COMMANDS = ("status", "version", "deploy", "rollback", "pause", "resume", "check", "history", "reload")
CHANGES = ("deploy", "rollback", "pause", "resume", "check", "reload")
NOBODY = as_user("nobody", "nogroup")
SHA_RE = re.compile(r"^[0-9a-f]{40}(-dirty)?$")
# `--version`: the project version, then the git sha it was built from.
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+ \([0-9a-f]{40}(-dirty)?\)$")


def new_sha():
    return secrets.token_hex(20)


def files(version):
    return {"VERSION": f"{version}\n".encode(), "bin/run.sh": (b"#!/bin/sh\necho hi\n", 0o755)}


def big_files(size, seed):
    return {"VERSION": b"big\n", "data.bin": random.Random(seed).randbytes(size)}


def deployed(agent, ctl_daemon, n=1, **kw):
    """An agent that deployed n builds in turn: (daemon, [sha...])."""
    shas = [new_sha() for _ in range(n)]
    agent.publish(shas[0], files(1))
    d = ctl_daemon(**kw)
    d.wait_current(shas[0])
    for i, sha in enumerate(shas[1:], 2):
        agent.publish(sha, files(i))
        d.wait_current(sha)
    return d, shas


def stays_at(d, sha, seconds):
    """current stays sha for seconds (several poll intervals), with a forced check too."""
    d.ctl("check", "app")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert d.agent.current_sha() == sha, f"moved off {sha}:\n{d.log()[-3000:]}"
        time.sleep(0.2)


# ---------------------------------------------------------------- reads


def test_version_status_history(agent, ctl_daemon):
    d, (a, b) = deployed(agent, ctl_daemon, 2)

    r = d.ctl("version", "app")
    assert (r.returncode, r.stdout, r.stderr) == (0, b + "\n", "")
    sh = subprocess.run(["sh", "-c", f'v=$({DEPLOYCTL_BIN} -s {shlex.quote(str(d.socket))} version app) '
                         f'&& test "$v" = {b} && echo same'], capture_output=True, text=True)
    assert sh.stdout == "same\n", sh
    code, v = d.ctl_json("version", "app")
    assert code == 0 and v["ok"] is True and v["changed"] is False and v["sha"] == b and v["service"] == "app"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", v["since"]), v

    # status: the agent's own version (project version and git sha) and uptime
    built = subprocess.run([str(harness.AGENT_BIN), "--version"], capture_output=True, text=True).stdout.strip()
    assert VERSION_RE.match(built), built
    wait_until(lambda: d.ctl_json("status")[1]["agent"]["uptime_sec"] >= 1, 30, "status: uptime_sec >= 1")
    code, st = d.ctl_json("status")
    assert code == 0 and st["ok"] and st["changed"] is False
    assert st["agent"]["version"] == built and st["agent"]["pid"] == d.pid and st["agent"]["uptime_sec"] >= 1
    (svc,) = st["services"]
    assert svc["name"] == "app" and svc["current"] == b and svc["previous"] == a
    assert svc["paused"] is False and svc["pinned"] is None and svc["bad"] == [] and svc["last_error"] is None
    assert svc["step"] is None and svc["activity"].startswith("idle at ")
    assert svc["last_poll"] and svc["since"]

    r = d.ctl("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    m = re.match(r"^deploy-agent (.+), pid (\d+), up (\d+)d (\d\d)h(\d\d)m$", lines[0])
    assert m and m.group(1) == built and int(m.group(2)) == d.pid, lines[0]
    text = "\n".join(lines[1:])
    assert lines[1] == "app"
    assert re.search(rf"^  current  {b[:12]}  since \d{{4}}-", text, re.M), text
    assert re.search(rf"^  previous {a[:12]}$", text, re.M), text
    assert re.search(rf"^  state    idle at {b}$", text, re.M), text
    assert re.search(r"^  polled   \d{4}-\d\d-\d\dT", text, re.M), text

    code, st1 = d.ctl_json("status", "app")
    assert code == 0 and [s["name"] for s in st1["services"]] == ["app"]

    code, h = d.ctl_json("history", "app")
    assert code == 0 and h["service"] == "app"
    assert [(e["sha"], e["previous"], e["outcome"]) for e in h["history"]] == [(a, None, "deployed"),
                                                                                (b, a, "deployed")]
    r = d.ctl("history", "app")
    assert r.returncode == 0
    assert re.search(rf"deployed\s+{a[:12]}  \(was nothing\)", r.stdout), r.stdout
    assert re.search(rf"deployed\s+{b[:12]}  \(was {a[:12]}\)", r.stdout), r.stdout


def test_exit_codes_and_usage(agent, ctl_daemon):
    """Nothing published yet: the first poll fails; every exit code but 4 and 6 (tested
    below) shows up here."""
    d = ctl_daemon()
    d.wait_log(r"no build published yet")

    # 3: nothing deployed / unknown service
    r = d.ctl("version", "app")
    assert (r.returncode, r.stdout) == (EXIT_UNKNOWN, "") and "nothing deployed" in r.stderr
    code, v = d.ctl_json("version", "app")
    assert code == EXIT_UNKNOWN and v["ok"] is False and v["error"]["code"] == "not_deployed"
    for args in (("version", "nope"), ("status", "nope"), ("history", "nope"), ("deploy", "nope"),
                 ("pause", "nope"), ("rollback", "nope"), ("check", "nope")):
        r = d.ctl(*args)
        assert r.returncode == EXIT_UNKNOWN and 'unknown service "nope"' in r.stderr, args
    code, v = d.ctl_json("rollback", "app")
    assert code == EXIT_UNKNOWN and v["error"]["code"] == "not_deployed"

    # the last error shows in status
    r = d.ctl("status")
    assert r.returncode == 0 and re.search(r"^  error    no build published yet", r.stdout, re.M), r.stdout
    assert d.status()["last_error"].startswith("no build published yet")

    # 2: usage
    for args in ((), ("bogus",), ("deploy",), ("deploy", "app", "extra"), ("deploy", "app", "--sha", "XYZ"),
                 ("deploy", "app", "--sha", "abc"), ("deploy", "app", "--timeout", "soon"),
                 ("deploy", "app", "--bogus"), ("rollback", "app", "--to", "12"), ("version",),
                 ("version", "a", "b"), ("history",), ("pause",), ("resume",), ("reload", "app"),
                 ("check", "a", "b"), ("status", "a", "b"), ("--bogus", "status")):
        r = d.ctl(*args)
        assert r.returncode == EXIT_USAGE and r.stderr, args
    # --help, and --help per command
    r = d.ctl("--help")
    assert r.returncode == 0
    for cmd in COMMANDS + ("publish",):
        assert re.search(rf"^  {cmd}\b", r.stdout, re.M), cmd
    for cmd in COMMANDS:
        r = d.ctl(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"Usage: deployctl [-s SOCKET] [--json] {cmd}"), cmd
    assert subprocess.run([str(DEPLOYCTL_BIN), "--version"], capture_output=True,
                          text=True).stdout.strip() == d.ctl_json("status")[1]["agent"]["version"]

    # 5: unreachable
    for path in (d.agent.tmp / "nothing-here.sock", d.agent.tmp):
        r = d.ctl("status", socket_path=path)
        assert r.returncode == EXIT_UNREACHABLE and "unreachable" in r.stderr, path
    r = d.ctl("--json", "version", "app", socket_path=d.agent.tmp / "nothing-here.sock")
    assert r.returncode == EXIT_UNREACHABLE
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["changed"] is False and out["error"]["code"] == "unreachable"

    # 1: a failed operation (a build that is not in S3)
    sha = new_sha()
    r = d.ctl("deploy", "app", "--sha", sha, "--wait")
    assert r.returncode == EXIT_FAILED and r.stderr.startswith("deployctl: "), r.stderr
    assert d.status()["pinned"] is None


def test_deploy_sha_pins_until_resume_or_deploy(agent, ctl_daemon):
    d, (a, b) = deployed(agent, ctl_daemon, 2)

    # an older build, by an operator: changed, then (again) unchanged; pinned there
    code, res = d.ctl_json("deploy", "app", "--sha", a, "--wait")
    assert code == 0 and res == {"ok": True, "changed": True, "service": "app", "sha": a, "previous": b}
    assert agent.current_sha() == a
    code, res = d.ctl_json("deploy", "app", "--sha", a, "--wait")
    assert code == 0 and res["changed"] is False and res["sha"] == a
    r = d.ctl("deploy", "app", "--sha", a, "--wait")
    assert (r.returncode, r.stdout) == (0, f"app: unchanged, at {a[:12]}\n")
    st = d.status()
    assert st["pinned"] == a and st["current"] == a
    assert agent.state()["pinned"] == a
    assert ", pinned" in d.ctl("status").stdout

    # pinned: a newer build is not deployed
    c = new_sha()
    agent.publish(c, files(3))
    stays_at(d, a, 6)

    # resume unpins: the newest build goes out
    code, res = d.ctl_json("resume", "app")
    assert code == 0 and res["changed"] is True
    d.wait_current(c)
    assert d.status()["pinned"] is None

    # pin again (a release on disk: no download), then `deploy` without --sha unpins
    r = d.ctl("deploy", "app", "--sha", b, "--wait")
    assert (r.returncode, r.stdout) == (0, f"app: now at {b[:12]} (was {c[:12]})\n")
    e = new_sha()
    agent.publish(e, files(4))
    stays_at(d, b, 5)
    code, res = d.ctl_json("deploy", "app", "--wait")
    assert code == 0 and res["changed"] is True and res["sha"] == e and res["previous"] == b
    assert d.status()["pinned"] is None and agent.current_sha() == e

    # without --wait: accepted at once; the deploy follows
    r = d.ctl("deploy", "app", "--sha", c)
    assert r.returncode == 0 and r.stdout == "app: accepted; follow it with 'deployctl status app'\n"
    d.wait_current(c)
    code, res = d.ctl_json("deploy", "app", "--sha", c)
    assert code == 0 and res["changed"] is False and res["accepted"] is True
    hist = d.ctl_json("history", "app")[1]["history"]
    assert [h["message"] for h in hist if h["sha"] == a] == [None, "deploy by an operator"]


def test_deploy_of_a_build_not_in_s3_fails_and_does_not_pin(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1)
    missing = new_sha()
    code, res = d.ctl_json("deploy", "app", "--sha", missing, "--wait")
    assert code == EXIT_FAILED and res["ok"] is False and res["changed"] is False
    assert res["sha"] == a and res["error"]["code"] == "failed" and res["error"]["message"]
    st = d.status()
    assert st["pinned"] is None and st["current"] == a and st["last_error"]
    assert agent.state().get("pinned") is None
    r = d.ctl("status")
    assert re.search(r"^  error    \S", r.stdout, re.M) and ", pinned" not in r.stdout
    # automatic deploys go on
    b = new_sha()
    agent.publish(b, files(2))
    d.wait_current(b)
    assert d.status()["last_error"] is None


def test_rollback(agent, ctl_daemon):
    d, (a, b, c) = deployed(agent, ctl_daemon, 3, service_overrides={"keep_releases": "5"})

    # to the previous good release; the one left is bad, by uid 0
    r = d.ctl("rollback", "app", "--wait")
    assert (r.returncode, r.stdout) == (0, f"app: now at {b[:12]} (was {c[:12]})\n"), r.stderr
    assert agent.current_sha() == b
    st = d.status()
    assert [(x["sha"], x["reason"]) for x in st["bad"]] == [(c, "rolled back by uid 0")]
    d.wait_log(rf"{c} marked bad: rolled back by uid 0")
    assert re.search(rf"^  bad      {c[:12]}  rolled back by uid 0$", d.ctl("status").stdout, re.M)
    # the bad build stays out; the next newer one goes out
    stays_at(d, b, 4)
    e = new_sha()
    agent.publish(e, files(5))
    d.wait_current(e)

    # --to a release on disk
    code, res = d.ctl_json("rollback", "app", "--to", a, "--wait")
    assert code == 0 and res["changed"] is True and res["sha"] == a and res["previous"] == e
    assert {x["sha"] for x in d.status()["bad"]} == {c, e}
    code, res = d.ctl_json("deploy", "app", "--sha", e, "--wait")  # an operator's word un-marks it
    assert code == 0 and res["changed"] is True and {x["sha"] for x in d.status()["bad"]} == {c}
    code, res = d.ctl_json("rollback", "app", "--wait")
    assert code == 0 and res["sha"] == a and {x["sha"] for x in d.status()["bad"]} == {c, e}
    # --to what is current, or what is not on disk
    code, res = d.ctl_json("rollback", "app", "--to", a)
    assert code == EXIT_USAGE and res["error"]["code"] == "bad_request"
    r = d.ctl("rollback", "app", "--to", "1234567", "--wait")
    assert r.returncode == EXIT_FAILED and "not on disk" in r.stderr
    assert agent.current_sha() == a and len(d.status()["bad"]) == 2
    hist = d.ctl_json("history", "app")[1]["history"]
    assert [(h["sha"], h["message"]) for h in hist][-2:] == [(e, "deploy by an operator"),
                                                             (a, "rollback by an operator")]


def test_refused_rollback_marks_nothing_bad(agent, ctl_daemon):
    """A rollback refused as busy (another operator request already waits behind a
    running deploy) must not leave the current release marked bad, nor a deploy
    refused as busy unpin the service."""
    d, (a, b) = deployed(agent, ctl_daemon, 2)
    assert d.ctl("deploy", "app", "--sha", b, "--wait").returncode == 0  # pins b
    c = slow_build(agent, d, size=2 << 20, bps=384 << 10)
    assert d.ctl("deploy", "app", "--sha", c).returncode == 0            # runs (slowly)
    wait_until(lambda: harness.find_worker(d.pid, "fetch"), 30, "the fetch worker", interval=0.02)
    assert d.ctl("deploy", "app", "--sha", a).returncode == 0            # waits behind it
    code, res = d.ctl_json("rollback", "app")
    assert code == EXIT_FAILED and res["error"]["code"] == "busy", res
    code, res = d.ctl_json("deploy", "app", "--sha", b)
    assert code == EXIT_FAILED and res["error"]["code"] == "busy", res
    code, res = d.ctl_json("deploy", "app")                              # would unpin: refused, unpins nothing
    assert code == EXIT_FAILED and res["error"]["code"] == "busy", res
    assert d.status()["pinned"] == b
    assert d.status()["bad"] == [] and agent.current_sha() == b
    agent.s3.proxy.throttle_bps = None
    d.wait_current(a, timeout=90)  # c went out, then a
    assert [h["sha"] for h in d.ctl_json("history", "app")[1]["history"]][-2:] == [c, a]
    assert d.status()["bad"] == []


def test_pause_survives_a_restart(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1)
    r = d.ctl("pause", "app")
    assert (r.returncode, r.stdout) == (0, "app: paused\n")
    code, res = d.ctl_json("pause", "app")
    assert code == 0 and res == {"ok": True, "changed": False, "service": "app", "paused": True}
    assert d.ctl("pause", "app").stdout == "app: already paused\n"
    b = new_sha()
    agent.publish(b, files(2))
    stays_at(d, a, 5)

    assert d.stop() == 0
    assert agent.state()["paused"] is True
    d.start()
    st = d.status()
    assert st["paused"] is True and st["current"] == a
    assert ", paused" in d.ctl("status").stdout
    stays_at(d, a, 5)

    r = d.ctl("resume", "app")
    assert (r.returncode, r.stdout) == (0, "app: resumed\n")
    d.wait_current(b)
    code, res = d.ctl_json("resume", "app")
    assert code == 0 and res["changed"] is False


def test_check_and_reload(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1, agent_overrides={"poll_interval": "1h"})
    b = new_sha()
    agent.publish(b, files(2))
    time.sleep(2)
    assert agent.current_sha() == a  # the next poll is an hour away
    code, res = d.ctl_json("check", "app")
    assert code == 0 and res == {"ok": True, "changed": False}
    d.wait_current(b)
    c = new_sha()
    agent.publish(c, files(3))
    r = d.ctl("check")
    assert (r.returncode, r.stdout) == (0, "")
    d.wait_current(c)

    # reload: a good file is taken, a bad one refused with its error, the old one kept
    d.write_config(keep_releases="4")
    r = d.ctl("reload")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    code, res = d.ctl_json("reload")
    assert code == 0 and res["changed"] is True
    d.write_config(keep_releases="many")
    code, res = d.ctl_json("reload")
    assert code == EXIT_FAILED and res["error"]["code"] == "bad_config"
    assert "keep_releases" in res["error"]["message"] and "deploy.ini" in res["error"]["message"]
    assert d.status()["current"] == c
    d.write_config(keep_releases="3")


# ---------------------------------------------------------------- --wait


def slow_build(agent, d, size=3 << 20, bps=768 << 10):
    """Publish a build of size random bytes and slow S3's answers down to bps. The
    service is paused first: its next poll must not deploy the build before the test's
    own request does (operator requests work while paused)."""
    assert d.ctl("pause", "app").returncode == 0
    sha = new_sha()
    agent.s3.proxy.throttle_bps = bps
    agent.publish(sha, big_files(size, sha))
    return sha


def test_deploy_wait_survives_the_client_going_away(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1)
    b = slow_build(agent, d)
    p = subprocess.Popen([str(DEPLOYCTL_BIN), "-s", str(d.socket), "deploy", "app", "--sha", b, "--wait"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: harness.find_worker(d.pid, "fetch"), 30, "the fetch worker", interval=0.02)
        time.sleep(0.5)
        assert p.poll() is None, "deployctl ended before the deploy did"
        p.kill()
    finally:
        p.kill()
        p.communicate()
    assert harness.find_worker(d.pid, "fetch"), "the fetch stopped with its client"
    d.wait_current(b, timeout=90)
    assert d.status()["pinned"] == b
    agent.s3.proxy.throttle_bps = None
    # a raw client that closes mid-deploy: the same
    c = slow_build(agent, d, size=1 << 20, bps=256 << 10)
    with d.connect() as conn:
        conn.send({"cmd": "deploy", "service": "app", "sha": c, "wait": True})
        assert conn.recv()["event"] == "step"
    d.wait_current(c, timeout=90)
    assert d.request({"cmd": "version", "service": "app"})["sha"] == c


def test_wait_streams_progress_events_and_times_out(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1)
    b = slow_build(agent, d, size=2 << 20, bps=1 << 20)
    events = []
    with d.connect(timeout=60) as conn:
        conn.send({"cmd": "deploy", "service": "app", "sha": b, "wait": True})
        while True:
            msg = conn.recv(timeout=60)
            if "event" not in msg:
                break
            events.append(msg)
    assert msg == {"ok": True, "changed": True, "service": "app", "sha": b, "previous": a}
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps[:3] == ["fetch", "unpack", "activate"] and "prune" in steps, events
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e["service"] == "app" and e["step"] == "fetch" for e in progress), events
    assert all(0 <= e["bytes"] <= e["total"] for e in progress)
    assert progress[-1]["total"] > 2 << 20 and progress[-1]["bytes"] > 0

    # a TTY gets a progress line on stderr; --timeout gives exit 6; the deploy goes on
    c = slow_build(agent, d, size=3 << 20, bps=512 << 10)
    master, slave = pty.openpty()
    p = subprocess.Popen([str(DEPLOYCTL_BIN), "-s", str(d.socket), "deploy", "app", "--sha", c, "--wait",
                          "--timeout", "3s"], stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    out = p.communicate(timeout=30)[0]
    assert p.returncode == EXIT_TIMEOUT and out == "", (p.returncode, out, tty)
    text = tty.decode(errors="replace")
    assert "\r\x1b[Kapp: fetch" in text and "% (" in text and "MiB)" in text, text
    assert "timed out" in text
    d.wait_current(c, timeout=90)
    # --json: no progress line, one object
    agent.s3.proxy.throttle_bps = None
    code, res = d.ctl_json("deploy", "app", "--sha", b, "--wait", "--timeout", "60s")
    assert code == 0 and res["changed"] is True


# ---------------------------------------------------------------- who may do what


def test_non_admin_may_read_but_not_change(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1, agent_overrides={"socket_mode": "0666"})
    assert stat.S_IMODE(d.socket.stat().st_mode) == 0o666
    for args in (("status",), ("status", "app"), ("version", "app"), ("history", "app")):
        r = d.ctl(*args, user=NOBODY)
        assert r.returncode == 0 and r.stdout, args
    assert d.ctl("version", "app", user=NOBODY).stdout == a + "\n"
    for args in (("deploy", "app"), ("deploy", "app", "--sha", a, "--wait"), ("rollback", "app"),
                 ("rollback", "app", "--to", a), ("pause", "app"), ("resume", "app"), ("check",),
                 ("check", "app"), ("reload",)):
        r = d.ctl(*args, user=NOBODY)
        assert r.returncode == EXIT_DENIED and "needs root or the admin group" in r.stderr, args
        code, res = d.ctl_json(*args, user=NOBODY)
        assert code == EXIT_DENIED and res["error"]["code"] == "permission_denied", args
    # logged with the peer's uid and pid
    p = subprocess.Popen([*NOBODY, str(DEPLOYCTL_BIN), "-s", str(d.socket), "pause", "app"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.communicate(timeout=30)
    assert p.returncode == EXIT_DENIED
    d.wait_log(rf"control: pause refused to uid 65534 \(pid {p.pid}\)")
    assert len(re.findall(r"refused to uid 65534", d.log())) == 2 * 9 + 1
    st = d.status()
    assert st["paused"] is False and st["current"] == a and st["bad"] == [] and st["pinned"] is None
    # the raw protocol says the same
    out = subprocess.run([*NOBODY, "/usr/bin/python3", "-c", (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
        "s.sendall(b'{\"cmd\":\"reload\"}\\n'); print(s.makefile().readline(), end='')"), str(d.socket)],
        capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout)["error"]["code"] == "permission_denied", out


@pytest.mark.xdist_group("etc-passwd")  # adds a user and a group to the host (conftest.py)
def test_admin_group_may_change(agent, ctl_daemon, throwaway_admin):
    user, group = throwaway_admin
    import grp
    import pwd
    gid, uid = grp.getgrnam(group).gr_gid, pwd.getpwnam(user).pw_uid
    d, (a, b) = deployed(agent, ctl_daemon, 2, agent_overrides={"admin_group": group})
    st = d.socket.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, gid)
    admin = as_user(user, "nogroup", init_groups=True)
    r = d.ctl("pause", "app", user=admin)
    assert r.returncode == 0, r.stderr
    d.wait_log(rf"control: pause app by uid {uid} \(pid \d+\)")
    assert d.status()["paused"] is True
    assert d.ctl("resume", "app", user=admin).returncode == 0
    code, res = d.ctl_json("rollback", "app", "--wait", user=admin)
    assert code == 0 and res["sha"] == a
    assert d.status()["bad"][0]["reason"] == f"rolled back by uid {uid}"
    assert d.ctl("version", "app", user=admin).stdout == a + "\n"
    # outside the group: the socket's mode keeps it out altogether
    r = d.ctl("status", user=NOBODY)
    assert r.returncode == EXIT_DENIED and "may not connect" in r.stderr
    code, res = d.ctl_json("version", "app", user=NOBODY)
    assert code == EXIT_DENIED and res["ok"] is False and res["error"]["code"] == "permission_denied"
    # primary group only (no supplementary groups) counts as well
    r = d.ctl("pause", "app", user=as_user("nobody", group))
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- hostile and slow clients


def timed_request(d, obj, limit=1.0):
    t0 = time.monotonic()
    res = d.request(obj, timeout=limit + 5)
    took = time.monotonic() - t0
    assert took < limit, f"answered after {took:.2f}s"
    return res


def test_silent_and_slow_clients_never_stall_the_loop(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1)
    held = []
    try:
        for _ in range(200):
            held.append(d.connect())
        half = d.connect()
        half.send(b'{"cmd":"sta')
        held.append(half)
        # sends requests without ever reading the answers
        deaf = d.connect()
        deaf.sock.setblocking(False)
        sent = 0
        with pytest.raises((BlockingIOError, BrokenPipeError, ConnectionResetError)):
            for _ in range(100000):
                sent += deaf.sock.send(b'{"cmd":"status"}\n' * 64)
        held.append(deaf)
        for _ in range(3):
            assert timed_request(d, {"cmd": "version", "service": "app"})["sha"] == a
        t0 = time.monotonic()
        r = d.ctl("version", "app", timeout=10)
        assert r.stdout == a + "\n" and time.monotonic() - t0 < 1.0
        # the half line still completes into a request
        half.send(b'tus"}\n')
        assert half.recv()["ok"] is True
        # a deaf client past the output cap is dropped, not buffered forever
        assert sent > 0 and deaf.at_eof(timeout=15)
    finally:
        for c in held:
            c.close()
    assert timed_request(d, {"cmd": "status"})["ok"]


def test_client_cap_drops_the_idlest(agent, ctl_daemon):
    d = ctl_daemon()
    held = [d.connect() for _ in range(300)]
    try:
        assert timed_request(d, {"cmd": "status"})["ok"]
        def closed_ones():
            closed = [i for i, c in enumerate(held) if c.closed_now()]
            return closed if len(closed) >= 300 + 1 - 256 else None
        closed = wait_until(closed_ones, 30, f"the agent to drop {300 + 1 - 256} of the 300 silent clients")
        assert len(closed) >= 300 + 1 - 256, len(closed)
        assert closed[: 300 - 256] == list(range(300 - 256)), closed[:60]
        # the newest silent ones are still there, and may talk
        assert held[-1].request({"cmd": "status"})["ok"]
    finally:
        for c in held:
            c.close()


def test_a_flood_of_connections_costs_little_memory(agent, ctl_daemon):
    """256 silent connections (the cap), then each sending a 30 KB request: the
    supervisor's RSS must not jump by a 64 KiB buffer per connection, and must not stay
    grown after they are gone."""
    d = ctl_daemon()
    before = d.rss_kib()
    for _ in range(2):
        held = [d.connect() for _ in range(256)]
        try:
            # accepted in order: once the last one is answered, all 256 are in
            assert held[-1].request({"cmd": "status"}, timeout=30)["ok"]
            silent = d.rss_kib()
            for c in held:
                c.send(b'{"cmd":"status"' + b" " * 30000 + b"}\n")
            for c in held:
                assert c.recv()["ok"] is True
        finally:
            for c in held:
                c.close()
    after = d.rss_kib()
    print(f"RSS: {before} KiB, with 256 silent connections {silent} KiB, after {after} KiB")
    assert silent - before < 2048 and after - before < 4096, (before, silent, after)


@pytest.mark.slow
def test_idle_clients_are_closed_after_30s(agent, ctl_daemon):
    d = ctl_daemon()
    silent, half = d.connect(), d.connect()
    half.send(b'{"cmd":"version","service":')
    t0 = time.monotonic()
    assert silent.at_eof(timeout=45) and half.at_eof(timeout=5)
    took = time.monotonic() - t0
    assert 25 < took < 45, took
    assert d.request({"cmd": "status"})["ok"]


def bad_requests():
    rnd = random.Random(7)
    garbage = bytes(b for b in rnd.randbytes(4096) if b != 0x0A)
    return [
        (b"this is not json\n", "bad_request", "not a JSON object"),
        (b"{\"cmd\":\n", "bad_request", "not a JSON object"),
        (b"[1,2,3]\n", "bad_request", "not a JSON object"),
        (b"\"status\"\n", "bad_request", "not a JSON object"),
        (b'{"cmd":"status","cmd":"status"}\n', "bad_request", "duplicate"),
        (b'{"cmd":"sta\x00tus"}\n', "bad_request", "not a JSON object"),
        (b"\x00\x00\x00\n", "bad_request", "not a JSON object"),
        (b"\xff\xfe{\"cmd\":\"status\"}\n", "bad_request", "not a JSON object"),
        (garbage + b"\n", "bad_request", "not a JSON object"),
        (b"{}\n", "unknown_command", 'no "cmd"'),
        (b'{"cmd":7}\n', "unknown_command", 'no "cmd"'),
        (b'{"cmd":"launch"}\n', "unknown_command", 'unknown command "launch"'),
        (('{"cmd":"' + "x" * 63 + '\u00e9\u00e9"}\n').encode(), "unknown_command", "unknown command"),
        (b'{"cmd":"status","verbose":true}\n', "bad_request", 'unknown field "verbose"'),
        (b'{"cmd":"reload","service":"app"}\n', "bad_request", 'unknown field "service"'),
        (b'{"cmd":"version","service":"app","sha":"abc1234"}\n', "bad_request", 'unknown field "sha"'),
        (b'{"cmd":"version","service":7}\n', "bad_request", "wrong type"),
        (b'{"cmd":"status","service":null}\n', "bad_request", "wrong type"),
        (b'{"cmd":"deploy","service":"app","wait":"yes"}\n', "bad_request", "wrong type"),
        (b'{"cmd":"deploy","service":"app","sha":40}\n', "bad_request", "wrong type"),
        (b'{"cmd":"deploy","service":"app","sha":"HEAD"}\n', "bad_request", "7 to 40 lowercase hex"),
        (b'{"cmd":"rollback","service":"app","to":"../../etc"}\n', "bad_request", "7 to 40 lowercase hex"),
        (b'{"cmd":"version"}\n', "bad_request", 'needs "service"'),
        (('{"cmd":"version","service":"' + "s" * 63 + '\u00e9"}\n').encode(), "unknown_service",
         "unknown service"),
        (('{"cmd":"status","' + "f" * 63 + '\u00e9":1}\n').encode(), "bad_request", "unknown field"),
    ]


def test_bad_requests_get_clear_errors(agent, ctl_daemon):
    d = ctl_daemon()
    with d.connect() as conn:
        for data, code, text in bad_requests():
            conn.send(data)
            line = conn.recv_line()
            assert line is not None, f"connection closed after {data[:80]!r}"
            res = json.loads(line)
            assert res["ok"] is False and res["error"]["code"] == code, (data[:80], res)
            assert text in res["error"]["message"], (data[:80], res)
            # the same connection goes on
            assert conn.request({"cmd": "status"})["ok"] is True, data[:80]
        # several requests in one write, answered in order; empty lines ignored
        conn.send(b'\n{"cmd":"status"}\n\r\n{"cmd":"nope"}\n{"cmd":"version","service":"app"}\n')
        assert conn.recv()["ok"] is True
        assert conn.recv()["error"]["code"] == "bad_request"  # "\r" is not JSON
        assert conn.recv()["error"]["code"] == "unknown_command"
        assert conn.recv()["error"]["code"] == "not_deployed"
    assert d.running()


def hostile_keys():
    """(request, the key the reply names): keys that are not whole allowed names."""
    return [
        ({"cmd": "status", "": "x"}, ""),                           # looped forever once
        ({"cmd": "version", "service": "app", "": "x"}, ""),
        ({"cmd": "deploy", "service": "app", "service sha": "abc1234"}, "service sha"),  # matched 2
        ({"cmd": "rollback", "service": "app", "to wait": "abc1234"}, "to wait"),
        ({"cmd": "deploy", "service": "app", "sha wait": "abc1234"}, "sha wait"),
        ({"cmd": "deploy", "service": "app", " sha": "abc1234"}, " sha"),
        ({"cmd": "deploy", "service": "app", "sha ": "abc1234"}, "sha "),
        ({"cmd": "status", " ": "x"}, " "),
        ({"cmd": "status", "servic": "app"}, "servic"),             # a prefix
        ({"cmd": "status", "ervice": "app"}, "ervice"),             # a suffix
        ({"cmd": "deploy", "service": "app", "sh": "abc1234"}, "sh"),
        ({"cmd": "deploy", "service": "app", "ha": "abc1234"}, "ha"),
        ({"cmd": "deploy", "service": "app", "wai": True}, "wai"),
        ({"cmd": "status", "cmdx": "x"}, "cmdx"),
        ({"cmd": "reload", "s": "x"}, "s"),
    ]


def test_keys_that_are_not_whole_field_names_are_refused(agent, ctl_daemon):
    """An empty key, a key with blanks, a prefix or suffix of an allowed name: each
    gets an error naming it, nothing is acted on, other clients go on being answered,
    and SIGTERM still stops the agent (an empty key once spun the loop for good)."""
    d = ctl_daemon()
    with d.connect() as other:
        for req, key in hostile_keys():
            with d.connect() as conn:
                res = conn.request(req, timeout=20)
            assert res["ok"] is False and res["error"]["code"] == "bad_request", (req, res)
            assert f'unknown field "{key}"' in res["error"]["message"], (req, res)
            assert other.request({"cmd": "status"}, timeout=20)["ok"] is True, req
    st = d.status()
    assert st["current"] is None and st["paused"] is False and st["pinned"] is None, st
    assert d.stop(timeout=30) == 0


def test_pipelined_requests_are_answered_in_order_and_others_go_on(agent, ctl_daemon):
    """3000 requests in one write (more than the 64 KiB input buffer holds) are all
    answered, in order, while another client is answered at once."""
    d, (a,) = deployed(agent, ctl_daemon, 1)
    n = 3000
    data = b"".join(b'{"cmd":"version","service":"app"}\n' if i % 2 else b'{"cmd":"history","service":"app"}\n'
                    for i in range(n))
    assert len(data) > 64 * 1024
    answers, errors = [], []
    with d.connect(timeout=60) as flood:
        def read():
            try:
                for _ in range(n):
                    answers.append(flood.recv(timeout=60))
            except Exception as e:  # noqa: BLE001 - checked below
                errors.append(e)
        reader = threading.Thread(target=read)
        reader.start()
        flood.send(data)
        worst = 0.0
        while reader.is_alive() and len(answers) < n:
            t0 = time.monotonic()
            assert d.request({"cmd": "status"})["ok"]
            worst = max(worst, time.monotonic() - t0)
        reader.join(60)
    assert not errors and len(answers) == n, errors
    assert all(x["ok"] and ("history" in x if i % 2 == 0 else x["sha"] == a) for i, x in enumerate(answers))
    assert worst < 0.5, worst


def test_oversized_requests_are_refused(agent, ctl_daemon):
    d = ctl_daemon()
    limit = 64 * 1024
    # just under the limit: fine (blanks are valid JSON)
    with d.connect() as conn:
        line = b'{"cmd":"status"' + b" " * (limit - 17) + b"}\n"
        assert len(line) == limit
        assert conn.request(line)["ok"] is True
    for data in (b"{" + b" " * limit,                                  # no newline at all
                 b'{"cmd":"status"' + b" " * limit + b"}\n",            # a line too long
                 os.urandom(3 * limit)):                                 # garbage
        with d.connect() as conn:
            try:
                conn.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            res = conn.recv()
            assert res["ok"] is False and res["error"]["code"] in ("too_large", "bad_request"), res
            if res["error"]["code"] == "bad_request":  # random bytes may hold newlines first
                continue
            assert "65536" in res["error"]["message"]
            assert conn.at_eof(timeout=30)
    assert d.request({"cmd": "status"})["ok"] is True
    r = d.ctl("status")
    assert r.returncode == 0


def test_request_then_eof_still_gets_its_answer(agent, ctl_daemon):
    """`echo '{"cmd":"status"}' | socat - UNIX-CONNECT:...` half-closes after sending."""
    d = ctl_daemon()
    with d.connect() as conn:
        conn.send(b'{"cmd":"status"}\n{"cmd":"version","service":"nope"}\n')
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.recv()["ok"] is True
        assert conn.recv()["error"]["code"] == "unknown_service"
        assert conn.at_eof(timeout=30)
    # the last request may lack its newline (printf '{...}' | socat ...)
    with d.connect() as conn:
        conn.send(b'{"cmd":"status"}\n{"cmd":"version","service":"app"}')
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.recv()["ok"] is True
        assert conn.recv()["error"]["code"] == "not_deployed"
        assert conn.at_eof(timeout=30)
    # a client that goes away altogether right after a request: it still runs
    with d.connect() as conn:
        conn.send(b'{"cmd":"pause","service":"app"}\n')
    wait_until(lambda: d.status()["paused"], 30, "app paused")
    assert d.request({"cmd": "status"})["ok"]


def test_status_bigger_than_64k(agent, ctl_daemon):
    """A long-lived host: 100 bad releases with long reasons make status far bigger than
    64 KiB; deployctl reads it whole."""
    d, (a,) = deployed(agent, ctl_daemon, 1)
    assert d.stop() == 0
    st = agent.state()
    reason = "fetch: sha256 mismatch: " + "the reason is long " * 40
    st["bad"] = [{"sha": new_sha(), "etag": None, "reason": reason, "when_usec": st["history"][0]["when_usec"]}
                 for _ in range(100)]
    (agent.state_dir / "app" / "state.json").write_text(json.dumps(st))
    d.start()
    code, res = d.ctl_json("status")
    assert code == 0 and len(res["services"][0]["bad"]) == 100
    assert len(json.dumps(res)) > 80 * 1024
    r = d.ctl("status")
    assert r.returncode == 0 and r.stdout.count("\n  bad      ") == 100


def test_rss_unchanged_after_10000_requests(agent, ctl_daemon):
    d, (a,) = deployed(agent, ctl_daemon, 1)
    reqs = [b'{"cmd":"status"}\n', b'{"cmd":"version","service":"app"}\n',
            b'{"cmd":"history","service":"app"}\n', b'{"cmd":"nope"}\n']

    def run(n, conns):
        per = n // len(conns)
        for c in conns:
            for i in range(per):
                c.send(reqs[i % len(reqs)])
                assert c.recv_line() is not None

    def burst(n):
        with d.connect() as one:
            run(n // 2, [one])
        conns = [d.connect() for _ in range(20)]
        try:
            run(n // 4, conns)
        finally:
            for c in conns:
                c.close()
        for _ in range(n // 4 // 10):  # a fresh connection per 10 requests
            with d.connect() as c:
                run(10, [c])

    burst(2000)  # warm up: allocator pools, jansson, the client table
    before = d.rss_kib()
    t0 = time.monotonic()
    burst(10000)
    took = time.monotonic() - t0
    after = d.rss_kib()
    print(f"RSS before {before} KiB, after 10,000 requests {after} KiB ({took:.1f}s)")
    assert after - before < 1024, (before, after)
    assert d.request({"cmd": "version", "service": "app"})["sha"] == a


# ---------------------------------------------------------------- the socket file


def test_stale_socket_is_taken_over(agent, ctl_daemon):
    d = ctl_daemon()
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    assert stat.S_ISSOCK(d.socket.lstat().st_mode)  # left behind
    d.start()
    assert d.request({"cmd": "status"})["ok"]
    assert "already running" not in d.log(since_start=True)


def test_second_agent_refuses_to_start(agent, ctl_daemon):
    d = ctl_daemon()
    ino = d.socket.stat().st_ino
    r = agent.run("run", timeout=30)
    assert r.returncode != 0 and "already running" in r.stderr
    assert d.socket.stat().st_ino == ino
    assert d.request({"cmd": "status"})["ok"] and d.running()
    assert d.ctl("status").returncode == 0


def test_socket_path_that_is_not_a_socket_is_left_alone(agent, ctl_daemon):
    d = ctl_daemon(start=False)
    d.socket.write_text("precious\n")
    d.start(wait=False)
    try:
        code = d.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the agent started over a regular file:\n{d.log()}")
    assert code != 0 and "not a socket" in d.log(), d.log()
    assert d.socket.read_text() == "precious\n"


def test_socket_from_systemd_activation(agent, ctl_daemon):
    d = ctl_daemon(start=False)
    sock = agent.tmp / "activated.sock"
    d.start(wait=False, argv_prefix=["systemd-socket-activate", "-l", str(sock)])
    d.socket = sock
    d.wait_ready()
    d.wait_log(r"control: listening on .*\(from systemd\)")
    assert not (agent.tmp / "control.sock").exists()
    assert d.ctl("status").returncode == 0
    assert d.stop() == 0
