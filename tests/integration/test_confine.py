"""The confinement of the workers that read untrusted bytes (agent/worker/confine.c),
proved one layer at a time under the SHIPPED unit (so its own hardening is in force too).

The debug build's hook DEPLOY_AGENT_DEBUG_FORBIDDEN=STEP:ACTION[:ARG] makes the STEP
worker try something forbidden once it is confined: `exec`, `socket` (AF_INET) and
`syscall` (one on no list) must die of SIGSYS (seccomp); `write:PATH` must get EACCES
(Landlock: the path is writable as far as mounts and file modes go); `connect:PORT` must
get ENETUNREACH in unpack (its own network namespace; tried before Landlock and seccomp
so that the namespace alone is proved). In each case the deploy fails with a clear error,
the agent keeps running (same MainPID, no restart) and the current release keeps serving.

One daemon for the module: each case arms the hook with a drop-in and restarts the agent.
The error-path tests at the end run `deploy-agent once` (full disks, DNS) and check that an
error stays an error, not a SIGSYS.

Run: /usr/bin/python3 -m pytest -v tests/integration/test_confine.py  (needs `make && make debug`)
"""

import os
import secrets
import socket
import subprocess

import pytest

import daemon_harness as dh
import harness
from daemon_harness import AGENT, wait_until

DROPIN = f"{AGENT}.d/60-forbidden.conf"


def new_sha():
    return secrets.token_hex(20)


@pytest.fixture(scope="module")
def deployed(s3):
    """A daemon (debug build) whose app runs a first good release, deployed by confined
    workers under the shipped unit; and a directory that only Landlock keeps them out of."""
    d = dh.Daemon(s3, dh.new_workdir("confine"), debug=True)
    open_dir = d.workdir / "srv" / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o1777)  # inside ReadWritePaths=, writable by any user
    failed = True
    try:
        d.start()
        sha = new_sha()
        d.publish(d["app"], sha)
        d["app"].wait_settled(sha)
        yield d, sha, open_dir
        failed = False
    finally:
        if failed and d.sb is not None and d.sb.alive():
            (d.workdir / "journal.txt").write_text(d.sb.journal(None, check=False))
        d.close()
        if failed:
            print(f"\n[daemon work dir kept: {d.workdir}]")
        else:
            dh.remove_workdir(d.workdir)
        s3.proxy.reset()


def arm(d, spec):
    """Restart the agent with the hook set to spec (None: unset)."""
    d.sb.add_unit(DROPIN, "[Service]\n" + (f"Environment=DEPLOY_AGENT_DEBUG_FORBIDDEN={spec}\n" if spec else ""))
    d.sb.systemctl("restart", AGENT, timeout=60)
    return d.wait_agent_running()


def attempt(deployed, spec, expect_error, expect_log):
    """Arm spec, publish a new build, wait for its deploy to fail with expect_error in
    last_error; check the agent and the running release are untouched. Returns the journal."""
    d, good, _ = deployed
    app = d["app"]
    before = arm(d, spec)
    restarts = d.n_restarts()
    sha = new_sha()
    d.publish(app, sha)
    try:
        wait_until(lambda: expect_error in (app.state().get("last_error") or ""), dh.DEPLOY_TIMEOUT,
                   f"last_error with {expect_error!r}", interval=0.2)
    except TimeoutError as e:
        raise TimeoutError(f"{e}\n{d.describe(app)}") from None
    # The worker's own lines reach journald by another socket than the agent's: wait.
    log = wait_until(lambda: (lambda text: text if expect_log in text else None)(d.agent_log()), 30,
                     f"{expect_log!r} in the journal")
    after = d.agent_props()
    assert (after["ActiveState"], after["MainPID"]) == ("active", before["MainPID"]), after
    assert d.n_restarts() == restarts
    assert app.current() == good and app.health() == (200, good)
    assert sha not in app.releases(), app.releases()
    return log


@pytest.mark.parametrize("step,action", [
    ("discover", "syscall"),
    ("fetch", "exec"),
    ("fetch", "syscall"),
    ("unpack", "socket"),
    ("unpack", "exec"),
])
def test_seccomp_kills_what_is_not_on_the_list(deployed, step, action):
    attempt(deployed, f"{step}:{action}", f"{step} worker killed by SIGSYS",
            f"debug: trying the forbidden {action}")


@pytest.mark.parametrize("step", ["discover", "fetch", "unpack"])
def test_landlock_keeps_writes_in_the_steps_own_directory(deployed, step):
    _, _, open_dir = deployed
    target = open_dir / f"{step}-was-here"
    attempt(deployed, f"{step}:write:{target}", "Permission denied",
            "debug: forbidden write stopped: Permission denied")
    assert not target.exists()


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


def accepted(s):
    try:
        s.accept()[0].close()
        return True
    except BlockingIOError:
        return False


def test_unpack_has_no_network(deployed):
    with listener() as s:
        attempt(deployed, f"unpack:connect:{s.getsockname()[1]}", "Network is unreachable",
                "debug: forbidden connect stopped: Network is unreachable")
        assert not accepted(s), "unpack reached the host's loopback"


def test_hook_control_fetch_may_connect(deployed):
    """The same connect from fetch (which needs the network) goes through: the hook
    itself works, so the unpack case above proves the namespace."""
    with listener() as s:
        attempt(deployed, f"fetch:connect:{s.getsockname()[1]}", "dropping privileges",
                "debug: forbidden connect was NOT stopped")
        wait_until(lambda: accepted(s), 30, "fetch's connection on the listener")


def test_disarmed_deploys_again(deployed):
    d, _, _ = deployed
    arm(d, None)
    sha = new_sha()
    d.publish(d["app"], sha)
    d["app"].wait_settled(sha)


# ---- error paths stay inside the allow-lists ----------------------------------------------
# A syscall that only an error path makes (fstatfs to explain a full disk, the resolver's
# thread and sockets for a host name) must not turn a clear error into a SIGSYS. These run
# `deploy-agent once` (build/, confined the same way) outside systemd.

def once_with_tmpfs(agent, path, size):
    """`deploy-agent once` in a private mount namespace with a tmpfs of `size` at path."""
    harness.make_dir(path)
    script = 'mount -t tmpfs -o "size=$1,mode=0755" tmpfs "$2" && shift 2 && exec "$@"'
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", size, str(path),
           *agent.command("once")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    print(f"$ {' '.join(cmd)}\n-> exit {r.returncode}\n--- stderr\n{r.stderr}")
    return r


def test_full_disk_during_fetch_is_an_error_not_a_kill(agent):
    agent.publish(new_sha(), {"big.bin": os.urandom(1 << 20)})
    r = once_with_tmpfs(agent, agent.state_dir / agent.service / "downloads", "256k")
    assert r.returncode != 0
    assert "No space left on device" in r.stderr and "SIGSYS" not in r.stderr, r.stderr
    assert agent.current_sha() is None


def test_full_disk_during_unpack_is_an_error_not_a_kill(agent):
    agent.publish(new_sha(), {"big.bin": os.urandom(1 << 20)})
    r = once_with_tmpfs(agent, agent.root / "releases", "256k")
    assert r.returncode != 0 and "SIGSYS" not in r.stderr, r.stderr
    # libarchive's own words for ENOSPC
    assert "app: unpack: " in r.stderr and ("Write failed" in r.stderr or "No space left" in r.stderr), r.stderr
    assert agent.current_sha() is None


def test_endpoint_by_host_name_resolves_inside_the_allow_list(agent):
    """libcurl's threaded resolver: a thread (clone3 -> ENOSYS -> clone), NSS, sockets."""
    port = agent.s3.port
    agent.write_config(_s3={"endpoint": f"http://localhost:{port}"})
    sha = new_sha()
    agent.publish(sha, {"VERSION": b"1\n"})
    r = agent.once()
    assert r.returncode == 0 and agent.current_sha() == sha, r.stderr
    agent.write_config(_s3={"endpoint": f"http://deploy-agent-confine.invalid:{port}"})
    r = agent.once()
    assert r.returncode != 0 and "SIGSYS" not in r.stderr, r.stderr
    assert "resolve" in r.stderr, r.stderr


def test_only_the_worker_maps_libseccomp():
    """The supervisor parses nothing untrusted and confines nothing: it must not load
    libseccomp (nor libcurl or libarchive)."""
    def libs(binary):
        return subprocess.run(["ldd", str(harness.REPO / "build" / binary)], capture_output=True,
                              text=True, check=True).stdout
    assert "libseccomp" not in libs("deploy-agent")
    assert "libseccomp" in libs("deploy-agent-worker")
