"""Faults of the host under the running daemon (the shipped unit under a real systemd,
daemon_harness.py): full and read-only file systems under a service root and under
state_dir, a service root or state dir removed, a unit that is masked or missing.

For each fault: the agent keeps running (same MainPID, NRestarts unchanged), `current`
keeps pointing at a complete release, the error is clear in `deployctl status` and the
journal, the other services keep deploying (except when state_dir itself is hit: it is
shared by every service), and the next poll after the fault clears deploys without any
operator action.

One daemon serves every case (a boot costs seconds): the cases run in file order and
each leaves the daemon healthy for the next. The file systems are tmpfs mounts made in
the sandbox's own mount namespace before the agent starts (the agent's unit gets its
own namespace at start and sees them; a later remount changes the superblock, which it
shares): nothing is mounted on the host.

  srv/disk               tmpfs 16M: the "disk" service's root
  /var/lib/deploy-agent  tmpfs 16M: state_dir (state.json and downloads of every service)

Run: /usr/bin/python3 -m pytest -v tests/integration/test_host_faults.py  (needs `make all debug`)
"""

import gzip
import os
import pathlib
import secrets
import time

import pytest

import daemon_harness as dh
import harness
import sample_service
from daemon_harness import AGENT, STATE_DIR, wait_until

SERVICES = ("ok", "disk", "gone", "unit")
FS_SIZE = 16 << 20
BLOB = 6 << 20           # incompressible: needs 6M wherever it is written
TIMES = {}               # case -> seconds from the fault's end to the recovered deploy


def new_sha():
    return secrets.token_hex(20)


def tar_of(sha, extra=None):
    files = dict(sample_service.release_files(sha))
    files.update(extra or {})
    return gzip.decompress(harness.make_tar_gz(harness.with_manifest(files)))


def two_member_gzip(tar):
    """A valid .tar.gz whose recorded size (its last member's) is not the tar's: the
    unpack step cannot know the size beforehand, so the write path itself meets ENOSPC."""
    return gzip.compress(tar[:-4096], 1) + gzip.compress(tar[-4096:], 1)


class Host:
    """The shared daemon plus the helpers every case uses."""

    def __init__(self, d):
        self.d = d
        self.sb = d.sb
        self.pid = None
        self.restarts = None

    # ---- inside the sandbox's mount namespace ----

    def sh(self, script, check=True):
        return self.sb.run("sh", "-c", script, check=check, timeout=60)

    def fill(self, where, leave):
        """Fill the file system of `where` so that about `leave` bytes stay free."""
        self.sh(f"dd if=/dev/zero of={where}/.filler bs=1M status=none 2>/dev/null; "
                f"truncate -s -{leave} {where}/.filler", check=False)
        self.sync_df(where)

    def unfill(self, where):
        self.sh(f"rm -f {where}/.filler")

    def sync_df(self, where):
        return self.sh(f"stat -f -c '%a %S' {where}").stdout

    def remount(self, where, mode):
        self.sb.run("mount", "-o", f"remount,{mode}", str(where))

    # ---- what an operator sees ----

    def status(self):
        return self.sb.run(str(dh.REPO / "build" / "deployctl"), "status", check=False).stdout

    def journal_has(self, text, since=0):
        return text in self.d.agent_log()[since:]

    def publish_bytes(self, svc, sha, data):
        """Publish an archive as given (sidecar first), in a later second than the last."""
        key = svc.key(sha)
        client = self.d.s3.client
        client.put_object(Bucket=harness.BUCKET, Key=key + ".sha256",
                          Body=f"{harness.sha256_hex(data)}  {sha}.tar.gz\n".encode())
        while int(time.time()) <= self.d._last_publish:
            time.sleep(0.02)
        client.put_object(Bucket=harness.BUCKET, Key=key, Body=data)
        self.d._last_publish = int(time.time())

    def wait_error(self, svc, *texts, timeout=dh.DEPLOY_TIMEOUT):
        """Until `deployctl status` and the journal both show an error of svc holding texts."""
        def seen():
            st = svc.state() if svc.daemon.state_dir.exists() else {}
            status = self.status()
            err = [line for line in status.splitlines() if "error" in line]
            in_status = all(t in status for t in texts)
            in_journal = all(t in self.d.agent_log() for t in texts)
            return (status, st) if in_status and in_journal and err else None
        try:
            return wait_until(seen, timeout, f"{svc.name}: error with {texts} in status and journal",
                              interval=0.3)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\nstatus:\n{self.status()}\n{self.d.describe(svc)}") from None

    def agent_unchanged(self):
        assert self.d.main_pid() == self.pid, "the agent restarted"
        assert self.d.n_restarts() == self.restarts

    def complete(self, *svcs):
        for svc in svcs:
            ok, why = svc.current_is_complete()
            assert ok, f"{svc.name}: {why}"

    def ok_keeps_deploying(self):
        sha = new_sha()
        self.d.publish(self.d["ok"], sha)
        self.d["ok"].wait_settled(sha)

    def recover(self, case, svc, sha, clear):
        """Clear the fault and time the recovered deploy of sha."""
        t0 = time.monotonic()
        clear()
        svc.wait_settled(sha)
        TIMES[case] = time.monotonic() - t0
        self.agent_unchanged()
        self.complete(*self.d.services.values())


@pytest.fixture(scope="module")
def host(request, s3):
    d = dh.Daemon(s3, dh.new_workdir("hostfaults"), SERVICES)
    d["disk"].root.mkdir(mode=0o755)
    d.start(start_agent=False)
    failed = True
    try:
        d.sb.run("mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "tmpfs", str(d["disk"].root))
        d.sb.run("mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "tmpfs", STATE_DIR)
        d.sb.systemctl("start", AGENT, timeout=60)
        # the harness reads state.json where the agent writes it: in the sandbox's tmpfs
        d.state_dir = pathlib.Path(f"/proc/{d.sb.pid}/root{STATE_DIR}")
        # and the disk service's root too; its own path is the one in messages
        disk = d["disk"]
        disk.real_root, disk.root = disk.root, pathlib.Path(f"/proc/{d.sb.pid}/root{disk.root}")
        h = Host(d)
        first = {name: new_sha() for name in d.services}
        for name, svc in d.services.items():
            d.publish(svc, first[name])
        for name, svc in d.services.items():
            svc.wait_settled(first[name])
        d.wait_agent_running()
        h.pid, h.restarts = d.main_pid(), d.n_restarts()
        yield h
        failed = request.session.testsfailed > 0
    finally:
        if failed or os.environ.get("KEEP_TEST_DIRS"):
            try:
                (d.workdir / "journal.txt").write_text(d.sb.journal(None, check=False))
            except Exception:  # noqa: BLE001 - best effort for the post-mortem
                pass
            print(f"\n[daemon work dir kept: {d.workdir}]")
        d.close()
        if not failed and not os.environ.get("KEEP_TEST_DIRS"):
            dh.remove_workdir(d.workdir)
        print("\nrecovery times (fault cleared -> deployed): " +
              ", ".join(f"{k} {v:.1f}s" for k, v in TIMES.items()))


# ---- a full file system ----

def test_root_full_before_unpack_is_refused_by_the_preflight_check(host):
    d, disk = host.d, host.d["disk"]
    before = disk.current()
    host.fill(disk.real_root, 2 << 20)
    sha = new_sha()
    d.publish(disk, sha, extra={"data/blob.bin": os.urandom(BLOB)})
    _, st = host.wait_error(disk, "pre-flight check", "No space left on device",
                            f"tmpfs at {disk.real_root}", "free of 16.0M", "needs 6.0M")
    assert disk.current() == before
    assert not any(n.startswith(".staging-") for n in disk.releases())
    host.ok_keeps_deploying()
    host.agent_unchanged()
    host.complete(disk)
    host.recover("root full (pre-flight)", disk, sha, lambda: host.unfill(disk.real_root))


def test_root_fills_during_unpack_names_file_dir_and_space(host):
    disk = host.d["disk"]
    before = disk.current()
    host.fill(disk.real_root, 3 << 20)
    sha = new_sha()
    host.publish_bytes(disk, sha, two_member_gzip(tar_of(sha, {"data/blob.bin": os.urandom(BLOB)})))
    host.wait_error(disk, 'unpack: writing "data/blob.bin" under '
                    f"{disk.real_root}/releases/.staging-{sha}-", ": No space left on device (tmpfs at "
                    f"{disk.real_root}: ", "free before the unpack")
    assert disk.current() == before
    # the staging dir is gone: freeing the filler alone is enough
    wait_until(lambda: not any(n.startswith(".staging-") for n in disk.releases()), 30,
               "the failed unpack's staging dir removed")
    host.ok_keeps_deploying()
    host.agent_unchanged()
    host.complete(disk)
    host.recover("root fills during unpack", disk, sha, lambda: host.unfill(disk.real_root))


def test_state_dir_fills_during_fetch(host):
    d, ok = host.d, host.d["ok"]
    before = ok.current()
    host.fill(STATE_DIR, 2 << 20)
    sha = new_sha()
    d.publish(ok, sha, extra={"data/blob.bin": os.urandom(BLOB)})
    host.wait_error(ok, f"fetch: writing {STATE_DIR}/ok/downloads/{sha}.tar.gz.part after ",
                    # the unprivileged worker cannot look above its own dir: it names that
                    f": No space left on device (tmpfs holding {STATE_DIR}/ok/downloads: ",
                    "free of 16.0M; needs 6.0M")
    assert ok.current() == before
    # the .part is discarded, not kept for a resume that would hold the space
    parts = lambda: [p.name for p in (d.state_dir / "ok" / "downloads").iterdir() if ".part" in p.name]
    wait_until(lambda: not parts(), 30, "no .part left in ok/downloads")
    host.agent_unchanged()
    host.complete(ok)
    host.recover("state_dir fills during fetch", ok, sha, lambda: host.unfill(STATE_DIR))


def test_state_dir_full_when_writing_state_json(host):
    d, ok = host.d, host.d["ok"]
    before = ok.current()
    host.fill(STATE_DIR, 0)
    sha = new_sha()
    d.publish(ok, sha)
    host.wait_error(ok, "fetch: not started, the in-flight record cannot be saved: writing "
                    f"{STATE_DIR}/ok/state.json: No space left on device (tmpfs at {STATE_DIR}: ")
    assert ok.current() == before
    host.agent_unchanged()
    host.complete(ok)
    host.recover("state_dir full at state.json", ok, sha, lambda: host.unfill(STATE_DIR))


# ---- read-only file systems ----

def test_root_read_only(host):
    d, disk = host.d, host.d["disk"]
    before = disk.current()
    host.remount(disk.real_root, "ro")
    sha = new_sha()
    d.publish(disk, sha)
    host.wait_error(disk, "Read-only file system", f"tmpfs at {disk.real_root}")
    assert disk.current() == before
    host.ok_keeps_deploying()
    host.agent_unchanged()
    host.complete(disk)
    host.recover("root read-only", disk, sha, lambda: host.remount(disk.real_root, "rw"))


def test_state_dir_read_only(host):
    d, ok = host.d, host.d["ok"]
    before = ok.current()
    host.remount(STATE_DIR, "ro")
    sha = new_sha()
    d.publish(ok, sha)
    host.wait_error(ok, f"writing {STATE_DIR}/ok/state.json: Read-only file system (tmpfs at "
                    f"{STATE_DIR}: ", "read-only")
    assert ok.current() == before
    host.agent_unchanged()
    host.complete(ok)
    host.recover("state_dir read-only", ok, sha, lambda: host.remount(STATE_DIR, "rw"))


# ---- removed while the agent runs ----

def test_service_root_removed_is_an_error_and_not_made_again(host):
    d, gone = host.d, host.d["gone"]
    host.sh(f"rm -rf {gone.root}")
    sha = new_sha()
    d.publish(gone, sha)
    host.wait_error(gone, f"mkdir {gone.root}/releases: the service root is gone (No such file or directory)")
    assert not gone.root.exists(), "the agent made a root the operator removed"
    host.ok_keeps_deploying()
    host.agent_unchanged()
    host.recover("service root removed", gone, sha, lambda: gone.root.mkdir(mode=0o755))


def test_state_dir_removed_is_made_again(host):
    d, ok = host.d, host.d["ok"]
    host.sh(f"rm -rf {STATE_DIR}/ok")
    sha = new_sha()
    t0 = time.monotonic()
    d.publish(ok, sha)
    ok.wait_settled(sha)
    TIMES["state dir removed (no fault to clear)"] = time.monotonic() - t0
    assert host.journal_has(f"ok: {STATE_DIR}/ok/state.json is gone: making its directory again")
    host.agent_unchanged()
    host.complete(ok)


# ---- the unit to restart ----

def mask(host, unit, how):
    """Mask (a /dev/null link) or remove the unit, in the sandbox's highest unit dir."""
    target = "/dev/null" if how == "mask" else "/nonexistent"
    host.sh(f"mkdir -p /run/systemd/system.control && ln -sfn {target} /run/systemd/system.control/{unit}"
            if how == "mask" else f"mv /run/systemd/system/{unit} /run/systemd/{unit}.away")
    host.sb.systemctl("daemon-reload")


def unmask(host, unit, how):
    host.sh(f"rm -f /run/systemd/system.control/{unit}" if how == "mask"
            else f"mv /run/systemd/{unit}.away /run/systemd/system/{unit}")
    host.sb.systemctl("daemon-reload")


@pytest.mark.parametrize("how,state,reason", [("mask", "masked", "is masked"),
                                              ("remove", "not-found", "not found")])
def test_unit_masked_or_missing(host, how, state, reason):
    """A unit systemd cannot restart is a fault of the host, not of the build
    ("Failure handling"): the activate step asks systemd for the unit's LoadState
    before the swap and, the unit masked or missing, does not swap and does not mark
    the build bad; it says which unit and why, and the poll is retried with backoff.
    The service keeps serving the old build. Once the unit is back, the next poll
    deploys that same build, with no operator action."""
    d, unit = host.d, host.d["unit"]
    before = unit.current()
    mask(host, unit.unit, how)
    sha = new_sha()
    since = len(d.agent_log())
    d.publish(unit, sha)
    error = f"activate: unit {unit.unit} cannot be restarted: LoadState={state} (Unit {unit.unit} {reason}"
    host.wait_error(unit, error)
    # retried, and refused again before any swap
    wait_until(lambda: d.agent_log()[since:].count(error) >= 2, 60, f"unit: {error!r} a second time")
    assert unit.current() == before, "swapped to a release whose unit cannot be restarted"
    assert unit.bad_entry(sha) is None, "a fault of the host marked the build bad"
    assert unit.health() == (200, before), "the old build stopped serving"
    assert not host.journal_has(f"RestartUnit {unit.unit}", since), "RestartUnit was tried: the check did not hold"
    host.ok_keeps_deploying()
    host.agent_unchanged()
    host.complete(unit)

    # the same build, once the unit is back: nothing published, nothing asked of an operator
    host.recover(f"unit {how} (restored -> same build deployed)", unit, sha,
                 lambda: unmask(host, unit.unit, how))
    assert unit.health() == (200, sha)
    assert unit.bad_entry(sha) is None
    assert [h["outcome"] for h in unit.history() if h.get("sha") == sha] == ["deployed"], \
        "the build was rolled back or marked on its way"
    assert not host.journal_has(f"marking {sha} bad", since)


def reconfigure(host, svc, **config):
    """Set (or, with None, drop) keys of svc's config and wait for the agent's reload."""
    d = host.d
    for k, v in config.items():
        if v is None:
            svc.config.pop(k, None)
        else:
            svc.config[k] = v
    n = len(d.journal_json(f"MESSAGE_ID={dh.MID_RELOADED}"))
    d.write_config()
    d.sb.systemctl("reload", AGENT)
    wait_until(lambda: len(d.journal_json(f"MESSAGE_ID={dh.MID_RELOADED}")) > n, 30, "the reloaded event")


def test_unit_masked_between_the_check_and_the_restart(host):
    """The race the check before the swap leaves: the unit is masked after activate
    checked it (here while pre_activate runs) and RestartUnit is refused with
    UnitMasked. The release is rolled back as after any failed restart, but systemd's
    refusal is the host's fault: the build is not marked bad, the next poll is refused
    before the swap, and once the unit is back that same build deploys by itself."""
    d, unit = host.d, host.d["unit"]
    before = unit.current()
    waiting, go = unit.root / ".race-waiting", unit.root / ".race-go"
    hook = unit.root / "race-hook.sh"
    # the hook says it runs, then waits for the test to have masked the unit
    hook.write_text(f"#!/bin/sh\ntouch {waiting}\ni=0\n"
                    f"while [ ! -e {go} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n")
    hook.chmod(0o755)
    reconfigure(host, unit, pre_activate=str(hook))
    since = len(d.agent_log())
    sha = new_sha()
    d.publish(unit, sha)
    wait_until(waiting.exists, dh.DEPLOY_TIMEOUT, "unit: pre_activate running (after the check)")
    mask(host, unit.unit, "mask")
    go.touch()
    host.wait_error(unit, f"restart: RestartUnit {unit.unit}: Unit {unit.unit} is masked")
    wait_until(lambda: [h for h in unit.history("rolled-back") if h.get("sha") == sha]
               and unit.current() == before and not (unit.state().get("in_flight") or {}).get("step"),
               60, f"unit: {sha} rolled back to {before}")
    assert unit.bad_entry(sha) is None, "systemd's refusal of a masked unit marked the build bad"
    assert not host.journal_has(f"marking {sha} bad", since)
    # the hook goes (it would mask nothing more: the check refuses first while masked)
    reconfigure(host, unit, pre_activate=None)
    for f in (waiting, go, hook):
        f.unlink()
    # the next poll: refused before the swap
    host.wait_error(unit, f"activate: unit {unit.unit} cannot be restarted: LoadState=masked")
    assert unit.current() == before
    host.agent_unchanged()
    host.complete(unit)
    host.recover("unit masked after the check (unmasked -> same build deployed)", unit, sha,
                 lambda: unmask(host, unit.unit, "mask"))
    assert unit.bad_entry(sha) is None
    assert not waiting.exists(), "pre_activate ran again"


# ---- the wall clock jumps ----

HOURS5 = 5 * 3600
MIN_AGE = 20


def polls(d, svc):
    return d.agent_log().count(f"{svc.name}: discover: newest is ")


def test_wall_clock_jumps_forward_and_back(request, s3):
    """The debug build's fake wall clock (DEPLOY_AGENT_DEBUG_FAKE_CLOCK_FILE, see
    now_usec() in agent/common/util.c) jumps +5h, then -5h, while the agent runs. The
    real clock of this shared machine is never touched. Polls keep their 1s schedule
    (CLOCK_MONOTONIC timers), a min_age build seen before the jumps waits min_age of real
    time whatever the wall clock does, and history keeps the order deploys happened in
    (its timestamps go back; deployctl shows it in deploy order)."""
    workdir = dh.new_workdir("clock")
    clock = workdir / "fake-clock-offset"
    clock.write_text("0\n")
    d = dh.Daemon(s3, workdir, ("ok", "aged"), debug=True,
                  environment={"DEPLOY_AGENT_DEBUG_FAKE_CLOCK_FILE": clock})
    ok, aged = d["ok"], d["aged"]
    aged.config["min_age"] = f"{MIN_AGE}s"
    failed = True
    try:
        d.start()
        shas = [new_sha()]
        d.publish(ok, shas[0])
        ok.wait_settled(shas[0])
        pid = d.main_pid()

        def polls_go_on(what):
            n = polls(d, ok)
            wait_until(lambda: polls(d, ok) >= n + 3, 30, f"3 more polls of ok after {what}")

        def deploy_ok(what):
            shas.append(new_sha())
            t0 = time.monotonic()
            d.publish(ok, shas[-1])
            ok.wait_settled(shas[-1])
            TIMES[f"deploy after {what}"] = time.monotonic() - t0

        # a min_age build first seen now: held for min_age of real time
        aged_sha = new_sha()
        t0 = time.monotonic()
        d.publish(aged, aged_sha)
        wait_until(lambda: f"aged: {aged_sha} is younger than min_age" in d.agent_log(), 30,
                   "aged: the build seen and held for min_age")

        # +5h: timers neither fire early nor stall, deploys go on, and the held build
        # is not taken early (its age is counted on CLOCK_MONOTONIC once seen)
        clock.write_text(f"{HOURS5}\n")
        polls_go_on("+5h")
        deploy_ok("+5h jump")
        if time.monotonic() - t0 < MIN_AGE - 2:  # only while it is surely still too young
            assert aged.current() != aged_sha, "aged taken early after the +5h jump"

        # -5h (back to the real time): the held build is not held 5h longer
        clock.write_text("0\n")
        polls_go_on("-5h")
        deploy_ok("-5h jump")
        aged.wait_settled(aged_sha, timeout=MIN_AGE + 60)
        waited = time.monotonic() - t0
        assert waited >= MIN_AGE, f"aged taken after {waited:.1f}s, before its min_age of {MIN_AGE}s"
        TIMES[f"min_age build across +5h/-5h (min_age {MIN_AGE}s)"] = waited

        clock.write_text(f"{-HOURS5}\n")              # another -5h: history goes back in time
        deploy_ok("a second -5h jump")

        assert d.main_pid() == pid and d.n_restarts() == 0
        hist = [h["sha"] for h in ok.history()]
        pos = [hist.index(sha) for sha in shas]
        assert pos == sorted(pos), f"history {hist} is not in deploy order {shas}"
        shown = d.sb.run(str(dh.REPO / "build" / "deployctl"), "history", "ok").stdout
        at = [shown.find(sha[:12]) for sha in shas]
        assert -1 not in at and at == sorted(at), f"deployctl history is not in deploy order:\n{shown}"
        print(shown)
        failed = False
    finally:
        d.close()
        if failed or os.environ.get("KEEP_TEST_DIRS"):
            print(f"\n[daemon work dir kept: {workdir}]")
        else:
            dh.remove_workdir(workdir)
