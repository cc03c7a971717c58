"""Self-tests of the systemd sandbox (systemd_sandbox.py) and the sample service
(sample_service.py) the deploy tests build on.

Run: /usr/bin/python3 -m pytest tests/integration/test_sandbox.py
"""

import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import sample_service  # noqa: E402
import systemd_sandbox as sandbox_module  # noqa: E402
from systemd_sandbox import Sandbox, SandboxError, cgroup2_root, free_tcp_port  # noqa: E402

systemd_sandbox = sandbox_module.systemd_sandbox  # the fixture conftest.py may import later

PY = "/usr/bin/python3"


def http_get(port, path="/health", timeout=5):
    """(status, body) of GET http://127.0.0.1:port/path; (None, error) when refused."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        return None, str(e)


def app_unit(release_dir, port, extra=""):
    return (
        "[Unit]\nDescription=sample app\n"
        "[Service]\nType=notify\n"
        f"ExecStart={PY} {release_dir}/server.py --port {port}\n"
        f"{extra}"
    )


def pgrep(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def gone(sb):
    """True when nothing of the sandbox is left on the host."""
    return (not sb.alive() and not os.path.exists(f"/proc/{sb.pid}")
            and sb.proc.poll() is not None and not sb.cgroup.exists())


@pytest.fixture
def workdir(tmp_path_factory):
    # Below /tmp on purpose: the sandbox must bind it through its private /tmp.
    return pathlib.Path(tmp_path_factory.mktemp("sandbox"))


def test_service_lifecycle(workdir):
    port = free_tcp_port()
    rel = sample_service.write_release(workdir / "releases" / "v1", "v1")
    with Sandbox(workdir, {"app.service": app_unit(rel, port)}) as sb:
        assert sb.boot_seconds < 10
        sb.wait_state("app.service", "active")
        assert http_get(port) == (200, "v1")  # VERSION as written, from the host

        first = sb.props("app.service", "InvocationID", "MainPID", "NRestarts")
        assert first["InvocationID"] and first["MainPID"] != "0"
        host_pid = sb.host_pid(first["MainPID"])
        assert host_pid and "server.py" in pathlib.Path(f"/proc/{host_pid}/cmdline").read_text()

        sb.systemctl("restart", "app.service")
        second = sb.props("app.service", "InvocationID", "MainPID", "ActiveState")
        assert second["ActiveState"] == "active"
        assert second["InvocationID"] != first["InvocationID"]
        assert second["MainPID"] != first["MainPID"]
        assert sb.show("app.service", "NRestarts") == "0"  # a manual restart is no auto-restart
        assert http_get(port)[0] == 200
        assert "serving v1 (healthy)" in sb.show("app.service", "StatusText")

        log = sb.journal("app.service")
        assert "listening on 127.0.0.1:%d version v1" % port in log
        assert '"GET /health HTTP/1.1" 200' in log
        assert "Started app.service" in log

        pid = sb.pid
        assert sb.poweroff() is True  # stopped by itself, no forced kill
    assert gone(sb)
    assert not os.path.exists(f"/proc/{pid}") or "systemd" not in pathlib.Path(f"/proc/{pid}/cmdline").read_text()
    assert not os.path.exists(f"/proc/{host_pid}")
    assert pgrep(f"server.py --port {port}") == []
    assert http_get(port, timeout=1)[0] is None


def test_crashing_release_ends_failed_with_restarts(workdir):
    port = free_tcp_port()
    rel = sample_service.write_release(workdir / "bad", "v2", mode="crash")
    unit = app_unit(rel, port, "Restart=on-failure\nRestartSec=50ms\n")
    with Sandbox(workdir, {"app.service": unit}) as sb:
        sb.wait_state("app.service", "failed", timeout=60)
        p = sb.props("app.service", "NRestarts", "Result", "ExecMainStatus")
        assert int(p["NRestarts"]) > 0
        assert p["Result"] in ("exit-code", "start-limit-hit")
        log = sb.journal("app.service")
        assert "mode crash: exiting with status 1" in log
        assert "Scheduled restart job" in log
    assert gone(sb)
    assert pgrep(f"server.py --port {port}") == []


def test_unhealthy_release_answers_500(workdir):
    port = free_tcp_port()
    rel = sample_service.write_release(workdir / "sick", "v3", mode="unhealthy")
    with Sandbox(workdir, {"app.service": app_unit(rel, port)}) as sb:
        sb.wait_state("app.service", "active")
        assert http_get(port) == (500, "unhealthy v3\n")
        assert http_get(port, "/version") == (200, "v3")
        assert sb.show("app.service", "NRestarts") == "0"


def test_host_tmp_survives(workdir):
    marker = pathlib.Path(f"/tmp/sandbox-marker-{os.getpid()}-{time.monotonic_ns()}")
    var_marker = pathlib.Path(f"/var/tmp/sandbox-marker-{os.getpid()}-{time.monotonic_ns()}")
    marker.write_text("keep me")
    var_marker.write_text("keep me too")
    try:
        with Sandbox(workdir, {}) as sb:
            # /tmp and /var/tmp are private inside: the host's files are not even visible ...
            assert sb.run("test", "-e", str(marker), check=False).returncode == 1
            assert sb.run("test", "-e", str(var_marker), check=False).returncode == 1
            sb.run("touch", "/tmp/made-inside")
            # ... but the work dir below /tmp is, both ways.
            sb.run("sh", "-c", f"echo from-inside > {workdir}/inside.txt")
            assert (workdir / "inside.txt").read_text() == "from-inside\n"
            # Nothing that wipes or creates host dirs may even be loadable.
            for unit in ("systemd-tmpfiles-setup.service", "systemd-tmpfiles-clean.timer",
                         "systemd-sysctl.service", "systemd-sysusers.service"):
                assert sb.show(unit, "LoadState") == "not-found", unit
            # Even starting multi-user.target pulls in nothing of the host's.
            before = sb.systemctl("list-units", "--all", "--plain", "--no-legend", "*.service").stdout
            sb.systemctl("start", "multi-user.target")
            after = sb.systemctl("list-units", "--all", "--plain", "--no-legend", "--state=active",
                                 "*.service").stdout.split("\n")
            names = sorted(line.split()[0] for line in after if line.strip())
            assert names == ["dbus.service", "systemd-journald.service"], (before, names)
        assert marker.read_text() == "keep me"
        assert var_marker.read_text() == "keep me too"
        assert not pathlib.Path("/tmp/made-inside").exists()
    finally:
        marker.unlink(missing_ok=True)
        var_marker.unlink(missing_ok=True)


def test_host_untouched(workdir):
    def cgroup_tmpfs_opts():
        for line in open("/proc/self/mountinfo"):
            f = line.split()
            if f[4] == "/sys/fs/cgroup":
                return f[5], line.split(" - ")[1].split()[2]
        return None

    before = (cgroup_tmpfs_opts(), sorted(os.listdir("/sys/fs/cgroup")), os.path.lexists("/dev/log"),
              sorted(os.listdir("/etc/systemd")))
    with Sandbox(workdir, {"t.service": "[Service]\nExecStart=/bin/sleep infinity\n"}) as sb:
        assert sb.cgroup.parent == cgroup2_root()
        assert sb.run("cat", "/proc/1/cgroup").stdout.strip().endswith("0::/init.scope")
        # systemctl enable / set-property write into the sandbox's own /etc/systemd.
        sb.systemctl("set-property", "t.service", "CPUWeight=50")
        assert sb.run("ls", "/etc/systemd/system.control").stdout.strip() == "t.service.d"
        assert sb.run("sh", "-c", "echo x > /proc/sys/kernel/domainname", check=False).returncode != 0
        assert sb.show("t.service", "ActiveState") == "active"
        assert len(sb.processes()) >= 3  # systemd, journald, dbus, sleep
    # The empty hooks dir over the host's system-shutdown/ stays mounted to the end.
    assert "Unmounting usr-lib-systemd-system" not in sb.console()
    assert "Powering off." in sb.console()
    after = (cgroup_tmpfs_opts(), sorted(os.listdir("/sys/fs/cgroup")), os.path.lexists("/dev/log"),
             sorted(os.listdir("/etc/systemd")))
    assert after == before
    assert not os.path.exists("/etc/systemd/system.control/t.service.d")


def test_two_sandboxes_at_once(tmp_path_factory):
    a_dir, b_dir = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    a_port, b_port = free_tcp_port(), free_tcp_port()
    ra, rb = sample_service.write_release(a_dir / "r", "A"), sample_service.write_release(b_dir / "r", "B")
    with Sandbox(a_dir, {"app.service": app_unit(ra, a_port)}) as a, \
            Sandbox(b_dir, {"app.service": app_unit(rb, b_port), "b-only.service":
                            "[Service]\nExecStart=/bin/sleep infinity\n"}) as b:
        a.wait_state("app.service")
        b.wait_state("app.service")
        assert http_get(a_port) == (200, "A") and http_get(b_port) == (200, "B")
        assert a.cgroup != b.cgroup
        assert a.show("b-only.service", "LoadState") == "not-found"
        assert b.show("b-only.service", "ActiveState") == "active"
        a.poweroff()
        assert gone(a)
        assert b.show("app.service", "ActiveState") == "active"
        assert http_get(b_port) == (200, "B")


def test_add_unit_and_journal(workdir):
    with Sandbox(workdir, {}) as sb:
        sb.add_unit("hello.service", "[Service]\nType=oneshot\nExecStart=/bin/echo hello-from-unit\n")
        sb.add_unit("hello.service.d/10-more.conf", "[Service]\nExecStart=/bin/echo and-a-drop-in\n")
        sb.systemctl("start", "hello.service")
        log = sb.journal("hello.service", output="cat")
        assert "hello-from-unit" in log and "and-a-drop-in" in log
        assert "hello-from-unit" in sb.journal()
        with pytest.raises(SandboxError, match="in use"):
            Sandbox(workdir, {})


def test_binds(workdir):
    (workdir / "state").mkdir()
    (workdir / "one.txt").write_text("file from host\n")
    binds = {"/run/app-state": workdir / "state", "/var/tmp/sub/one.txt": workdir / "one.txt"}
    unit = "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'cat /var/tmp/sub/one.txt > /run/app-state/out'\n"
    with Sandbox(workdir, {"w.service": unit}, binds=binds) as sb:
        sb.wait_state("w.service", "inactive")
        assert sb.show("w.service", "Result") == "success"
        assert (workdir / "state" / "out").read_text() == "file from host\n"
        assert sb.run("ls", "/run").stdout.split().count(".sandbox-keep") == 0
    with pytest.raises(ValueError):
        Sandbox(workdir, {}, binds={"/usr/local/bin/not-there": workdir / "one.txt"})
    with pytest.raises(ValueError):
        Sandbox(workdir, {}, shared=["/run/foo"])


def test_factory_fixture_and_hardened_unit(systemd_sandbox):
    """The fixture's default workdir is below the repo, so even a PrivateTmp=yes,
    ProtectSystem=strict unit sees it (one below /tmp it would not)."""
    sb = systemd_sandbox({})
    assert not sb.workdir.is_relative_to("/tmp")
    unit = ("[Service]\nType=oneshot\nRemainAfterExit=yes\nPrivateTmp=yes\nProtectSystem=strict\n"
            "NoNewPrivileges=yes\nProtectKernelTunables=yes\nProtectControlGroups=yes\n"
            "SystemCallFilter=@system-service\nRuntimeDirectory=hard\n"
            f"ReadWritePaths={sb.workdir}\n"
            f"ExecStart=/bin/sh -c 'test ! -e /tmp/x && touch /run/hard/ok && echo ok > {sb.workdir}/hard.txt'\n")
    sb.add_unit("hard.service", unit)
    sb.systemctl("start", "hard.service")
    assert (sb.workdir / "hard.txt").read_text() == "ok\n"
    assert sb.show("hard.service", "ActiveState") == "active"


def test_exception_in_block_cleans_up_and_saves_journal(workdir):
    with pytest.raises(RuntimeError, match="test failure"):
        with Sandbox(workdir, {"s.service": "[Service]\nExecStart=/bin/sh -c 'echo before-fail; exec sleep infinity'\n"}) as sb:
            sb.wait_state("s.service")
            raise RuntimeError("test failure")
    assert gone(sb)
    assert "before-fail" in (workdir / "sandbox-journal.txt").read_text()


def test_poweroff_that_hangs_is_forced(workdir):
    unit = "[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sleep infinity\nTimeoutStopSec=infinity\n"
    with Sandbox(workdir, {"stuck.service": unit}) as sb:
        sb.wait_state("stuck.service")
        t0 = time.monotonic()
        assert sb.poweroff(timeout=1) is False
        assert time.monotonic() - t0 < 8
        assert gone(sb)


def test_run_timeout_kills_the_command(workdir):
    with Sandbox(workdir, {}) as sb:
        with pytest.raises(subprocess.TimeoutExpired):
            sb.run("sleep", "4242", timeout=0.5)
        sb.wait_for(lambda: sb.run("pgrep", "-f", "sleep 4242", check=False).returncode == 1,
                    timeout=30, what="the timed-out command to be gone")


def test_boot_failure_is_reported(workdir):
    with pytest.raises(SandboxError, match="did not come up|exited during boot|boot ended"):
        Sandbox(workdir, {"x.service": "[Service]\nExecStart=/bin/true\n"}, boot_timeout=0.001)
    leftovers = [p for p in cgroup2_root().glob(f"deploy-agent-sandbox-{os.getpid()}-*")]
    assert leftovers == []


def test_sample_service_keeps_the_version_it_started_with(tmp_path):
    """On the host, no systemd: `current` is resolved at start, like a real service."""
    sample_service.write_release(tmp_path / "releases" / "a", "A")
    sample_service.write_release(tmp_path / "releases" / "b", "B")
    (tmp_path / "current").symlink_to("releases/a")
    port = free_tcp_port()
    p = subprocess.Popen([PY, str(tmp_path / "current" / "server.py"), "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening on" in p.stdout.readline()
        (tmp_path / "next").symlink_to("releases/b")
        os.rename(tmp_path / "next", tmp_path / "current")
        assert http_get(port) == (200, "A")
        assert http_get(port, "/nope")[0] == 404
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0
    r = subprocess.run([PY, str(tmp_path / "current" / "server.py"), "--port", str(port), "--mode", "crash"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "version B mode crash" in r.stdout
