#!/usr/bin/python3
"""make demo, second half: deploy-agent as a daemon under a real (throwaway) systemd.

scripts/demo.sh installs the dependencies and builds, then runs this. It:

  - starts s3rver on loopback behind the SigV4-verifying proxy the tests use;
  - boots a real systemd as PID 1 of a PID/mount/cgroup namespace (the test suite's
    tests/integration/systemd_sandbox.py) running the SHIPPED systemd/deploy-agent.service
    (plus a drop-in for its config path, as tests/integration/daemon_harness.py does) and
    app.service, a tiny HTTP service (tests/integration/sample_service.py) whose /health
    answers its release's VERSION;
  - publishes three builds with awscli as CI would, and shows what an operator sees:
      v1: the first deploy          (current -> releases/<sha>, app active, /health = v1)
      v2: the upgrade               (app restarted: new InvocationID, /health = v2)
      v3: a release that crashes at start: the agent restarts app, the restart fails,
          it rolls back to v2 by itself, marks v3 bad and never tries it again;
  - powers the sandbox off and stops s3rver, always (failure, Ctrl-C, SIGTERM included).

Exits non-zero when any step does not behave. The work dir is below tests/integration/.tmp
(the agent's unit has PrivateTmp=yes, so not /tmp); it is removed at the end unless the
demo failed (then it holds journal.txt) or KEEP_DEMO=1.
"""

import contextlib
import hashlib
import os
import pathlib
import shlex
import signal
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import daemon_harness as dh  # noqa: E402
import harness  # noqa: E402
import sample_service  # noqa: E402
import systemd_sandbox  # noqa: E402

BUILD = REPO / "build"
TIMEOUT = 60.0  # per step; a step normally takes a few seconds

if sys.stdout.isatty():
    BOLD, RED, GREEN, OFF = "\033[1m", "\033[31m", "\033[32m", "\033[0m"
else:
    BOLD = RED = GREEN = OFF = ""


class DemoFailed(Exception):
    pass


def say(text):
    print(f"\n{BOLD}== {text}{OFF}", flush=True)


def note(text):
    print(text, flush=True)


def ok(text):
    print(f"{GREEN}ok{OFF}: {text}", flush=True)


def indent(text, prefix="    "):
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


class Demo:
    def __init__(self):
        self.workdir = dh.new_workdir("demo")
        self.s3 = None
        self.d = None
        self.app = None
        self.published = {}  # version -> sha
        self.last_publish = 0
        self.keep = bool(os.environ.get("KEEP_DEMO"))  # also set when the demo fails

    # ---- running what an operator would run -------------------------------------------

    def sh(self, cmd, show=True, check=True, max_lines=None):
        """Run a shell command inside the sandbox, as root, with build/ on PATH (so
        `deployctl` is the one just built) and ROOT = app's service root. Prints
        `$ cmd` and its output; returns the output."""
        env = {"PATH": f"{BUILD}:{systemd_sandbox.RUN_ENV['PATH']}", "ROOT": str(self.app.root)}
        r = self.d.sb.run("sh", "-c", cmd, env=env, check=False, timeout=30)
        out = (r.stdout + r.stderr).rstrip("\n")
        if show:
            note(f"$ {cmd}")
            lines = out.splitlines()
            if max_lines is not None and len(lines) > max_lines:
                lines = lines[:max_lines] + ["    ..."]
            if lines:
                note(indent("\n".join(lines)))
        if check and r.returncode != 0:
            raise DemoFailed(f"`{cmd}` exited {r.returncode}:\n{out}")
        return out

    def aws(self, *args):
        cmd = ["aws", *args]
        note("$ " + shlex.join(cmd))
        self.s3.aws(*args)

    # ---- setup ----------------------------------------------------------------------

    def start(self):
        say("Starting s3rver on loopback, behind the SigV4-verifying proxy")
        self.s3 = harness.S3Server(self.workdir / "s3").start()
        note(f"S3 endpoint {self.s3.endpoint} (every request's signature is checked), "
             f"bucket '{harness.BUCKET}'")

        self.d = dh.Daemon(self.s3, self.workdir, ("app",), agent_overrides={"log_level": "info"})
        self.app = self.d["app"]
        self.app.prefix = self.app.config["prefix"] = "app/"
        self.app.config["health_timeout"] = "10s"

        say("Booting a throwaway systemd (PID 1 of its own PID/mount/cgroup namespace)")
        note("Units: the shipped systemd/deploy-agent.service with this drop-in "
             "(deploy-agent.service.d/50-test.conf):")
        note(indent(self.d.dropin()))
        note("and app.service, the service deploy-agent deploys (it runs the release's server.py):")
        note(indent(self.app.unit_text()))
        note("deploy.ini ([s3]: the endpoint above with the test credentials):")
        note(indent("[agent]\n" + "\n".join(f"{k} = {v}" for k, v in self.d.agent.items()) +
                    '\n[service "app"]\n' + "\n".join(f"{k} = {v}" for k, v in self.app.config.items())))
        t0 = time.monotonic()
        self.d.start()
        self.d.wait_agent_running(timeout=TIMEOUT)
        note(f"booted in {time.monotonic() - t0:.1f}s; the agent is up and polls S3 every second")
        self.sh("systemctl status deploy-agent --no-pager -n 0 | sed -n '1,6p'")

    # ---- publishing -----------------------------------------------------------------

    def publish(self, version, mode="healthy"):
        """What CI does: tar the build, name it by its commit's SHA, upload the sha256
        sidecar, then the artifact (awscli, through the proxy). Returns the SHA."""
        sha = hashlib.sha1(f"demo app {version}".encode()).hexdigest()
        files = harness.with_manifest(sample_service.release_files(version, mode))
        data = harness.make_tar_gz(files)
        stage = self.workdir / "ci"
        harness.make_dir(stage)
        art = stage / f"{sha}.tar.gz"
        art.write_bytes(data)
        (stage / f"{sha}.tar.gz.sha256").write_text(f"{harness.sha256_hex(data)}  {sha}.tar.gz\n")
        # S3's LastModified has 1 s resolution and discover picks the newest: each build
        # must land in a later second than the one before.
        while int(time.time()) <= self.last_publish:
            time.sleep(0.05)
        os.chdir(stage)
        try:
            self.aws("s3", "cp", "--only-show-errors", f"{sha}.tar.gz.sha256",
                     f"s3://{harness.BUCKET}/{self.app.key(sha)}.sha256")
            self.aws("s3", "cp", "--only-show-errors", f"{sha}.tar.gz",
                     f"s3://{harness.BUCKET}/{self.app.key(sha)}")
        finally:
            os.chdir(REPO)
        self.last_publish = int(time.time())
        self.published[version] = sha
        note(f"published {version} as {self.app.key(sha)} (MODE {mode}, {len(data)} bytes)")
        return sha

    # ---- waiting and checking -------------------------------------------------------

    def wait(self, predicate, what, timeout=TIMEOUT):
        t0 = time.monotonic()
        try:
            dh.wait_until(predicate, timeout, what, interval=0.2)
        except TimeoutError as e:
            raise DemoFailed(f"{e}\n{self.d.describe(self.app)}") from None
        return time.monotonic() - t0

    def settled_at(self, version):
        """current is version's release, state.json agrees with nothing in flight, app is
        active and /health answers the version."""
        sha = self.published[version]
        st = self.app.state()
        return (self.app.current() == sha and st.get("current") == sha
                and (st.get("in_flight") or {}).get("step") is None
                and self.app.health() == (200, version)
                and self.d.sb.show(self.app.unit, "ActiveState") == "active")

    def check(self, cond, what):
        if not cond:
            raise DemoFailed(f"{what}\n{self.d.describe(self.app)}")
        ok(what)

    def invocation(self):
        return self.d.sb.props(self.app.unit, "InvocationID", "MainPID")

    # ---- the story ------------------------------------------------------------------

    def step1_deploy(self):
        say("1. CI publishes v1: the agent deploys it")
        sha = self.publish("v1")
        took = self.wait(lambda: self.settled_at("v1"), "v1 deployed, app active, /health = v1")
        note(f"... the agent found it, fetched, verified, unpacked, swapped `current`, started "
             f"app.service and checked its health ({took:.1f}s after the upload)")
        self.sh("readlink $ROOT/current")
        self.check(os.readlink(self.app.root / "current") == f"releases/{sha}",
                   f"current -> releases/{sha}")
        self.sh("systemctl status app --no-pager -n 0 | sed -n '1,5p'")
        self.sh(f"curl -s http://127.0.0.1:{self.app.port}/health; echo")
        self.check(self.app.health() == (200, "v1"), "app.service active, /health answers v1")
        self.sh("deployctl status app")

    def step2_upgrade(self):
        say("2. CI publishes v2: the agent upgrades")
        before = self.invocation()
        self.sh("systemctl show -p InvocationID -p MainPID app")
        sha = self.publish("v2")
        took = self.wait(lambda: self.settled_at("v2"), "v2 deployed, app active, /health = v2")
        note(f"... upgraded {took:.1f}s after the upload")
        self.sh("systemctl show -p InvocationID -p MainPID app")
        after = self.invocation()
        self.check(after["InvocationID"] != before["InvocationID"] and after["MainPID"] != before["MainPID"],
                   "app.service was restarted (new InvocationID and MainPID)")
        self.sh("readlink $ROOT/current")
        self.check(self.app.current() == sha, f"current -> releases/{sha}")
        self.sh(f"curl -s http://127.0.0.1:{self.app.port}/health; echo")
        self.check(self.app.health() == (200, "v2"), "/health answers v2")

    def step3_rollback(self):
        say("3. CI publishes v3, which crashes at start: the agent rolls back by itself")
        v2 = self.published["v2"]
        bad = self.publish("v3", mode="crash")
        took = self.wait(lambda: self.app.bad_entry(bad) and self.settled_at("v2"),
                         "v3 marked bad and app back at v2, healthy")
        note(f"... v3 was deployed, app.service failed to start, and the agent swapped back to v2 "
             f"and restarted it ({took:.1f}s after the upload)")
        self.sh("deployctl status app")
        entry = self.app.bad_entry(bad)
        self.check(entry and "app.service" in (entry.get("reason") or ""),
                   f"v3 ({bad[:12]}) is marked bad: {entry and entry.get('reason')}")
        self.sh("readlink $ROOT/current")
        self.check(self.app.current() == v2, "current -> v2's release again")
        self.sh(f"curl -s http://127.0.0.1:{self.app.port}/health; echo")
        self.check(self.app.health() == (200, "v2"), "/health answers v2")
        last = self.app.history()[-1]
        self.check((last.get("sha"), last.get("outcome")) == (bad, "rolled-back"),
                   "the history records v3 as rolled-back")

        note("\nWhat the agent logged about v3 (journal fields DEPLOY_SERVICE, DEPLOY_SHA, DEPLOY_STEP):")
        self.sh(f"journalctl DEPLOY_SERVICE=app DEPLOY_SHA={bad} -o cat --no-pager "
                f"| grep -v -e '^worker' -e 'progress'")
        self.check(f"rolling back from {bad} to {v2}" in self.d.journal("DEPLOY_SERVICE=app"),
                   "the journal has the rollback")
        note("\nand what app.service said when v3 started:")
        self.sh("journalctl -u app -o cat --no-pager | grep -e 'mode crash' -e 'Failed' | tail -n 3")

        say("The bad build stays the newest in S3; later polls skip it")
        mark = len(self.s3.proxy.requests)
        said = f"newest build {bad} is marked bad"
        self.wait(lambda: self.d.journal("DEPLOY_SERVICE=app").count(said) >= 2,
                  "two more polls that skip v3", timeout=30)
        self.sh("journalctl DEPLOY_SERVICE=app -o cat --no-pager | grep 'is marked bad' | tail -n 2")
        self.check(not self.app.fetches_of(bad, since=mark), "v3 is not downloaded again")
        self.check(self.d.n_restarts() == 0, "the agent itself never restarted (NRestarts=0)")

        say("The whole story, as the agent keeps it")
        note("(" + ", ".join(f"{v} = {sha[:12]}" for v, sha in self.published.items()) + ")")
        self.sh("deployctl history app")

    def run(self):
        t0 = time.monotonic()
        self.start()
        self.step1_deploy()
        self.step2_upgrade()
        self.step3_rollback()
        return time.monotonic() - t0

    def close(self):
        """Power the sandbox off, stop s3rver, remove the work dir (KEEP_DEMO=1 keeps it)."""
        errors = []
        if self.d is not None and self.d.sb is not None:
            try:
                clean = self.d.sb.poweroff()
                note(f"sandbox powered off{'' if clean else ' (forced)'}")
            except Exception as e:  # noqa: BLE001 - stop the rest anyway
                errors.append(e)
        if self.s3 is not None:
            try:
                self.s3.stop()
                note("s3rver stopped")
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        if self.keep:
            note(f"demo files kept in {self.workdir}")
        else:
            dh.remove_workdir(self.workdir)
        if errors:
            raise errors[0]


class Terminated(BaseException):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


def main():
    if os.geteuid() != 0:
        print("demo.py: run as root (it boots a systemd in its own namespaces)", file=sys.stderr)
        return 1
    for binary in ("deploy-agent", "deploy-agent-worker", "deployctl"):
        if not (BUILD / binary).exists():
            print(f"demo.py: {BUILD / binary} missing: run `make`", file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    demo = Demo()
    status = 1
    try:
        took = demo.run()
        status = 0
    except DemoFailed as e:
        print(f"\n{RED}DEMO FAILED{OFF}: {e}", file=sys.stderr)
        demo.keep = True
        with contextlib.suppress(Exception):
            (demo.workdir / "journal.txt").write_text(demo.d.sb.journal(None, check=False))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    except Terminated as e:
        print(f"\nterminated by {e}", file=sys.stderr)
        status = 128 + e.signum
    except Exception:
        import traceback
        traceback.print_exc()
        demo.keep = True
    finally:
        say("Cleaning up")
        # A second Ctrl-C must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            demo.close()
        except Exception as e:  # noqa: BLE001
            print(f"cleanup: {e}", file=sys.stderr)
            status = status or 1
    if status == 0:
        print(f"\n{BOLD}Done{OFF} in {took:.0f}s: deploy, upgrade and automatic rollback, "
              "by deploy-agent running as its shipped systemd unit.")
    return status


if __name__ == "__main__":
    sys.exit(main())
