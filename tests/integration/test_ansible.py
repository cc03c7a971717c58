"""examples/ansible/ with the real ansible-playbook (Debian's ansible-core, local
connection) inside a real systemd (systemd_sandbox.py): the playbook templates
deploy.ini, enables and starts the SHIPPED deploy-agent.socket and deploy-agent.service,
deploys a pinned SHA of the sample HTTP service with `deployctl --json deploy ... --wait`
and asserts the version. The first run reports changed, the second changed=0.

The units get one drop-in each, changing only what a test must: the agent's -c path
and a ReadWritePaths= for the service root (as daemon_harness does), and SocketGroup=root
(the shipped "deploy" group is made by sysusers.d, which the sandbox does not run, and
must not be added to this host's /etc/group).

One adjustment of the sandbox: its systemd loads units from a curated path without
/etc/systemd/system, where `systemctl enable` (and so Ansible's systemd module) puts its
symlinks; enabled units would look disabled forever and every run would enable them
again. The sandbox's private /etc/systemd/system is bound onto /run/systemd/system.control,
which is in that path (`is-enabled` then says "enabled-runtime", exit 0).

Run: /usr/bin/python3 -m pytest -v tests/integration/test_ansible.py   (needs root, `make`)
"""

import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import tempfile

import pytest

import harness
from daemon_harness import private_tmp_exemption
import sample_service
import systemd_sandbox

REPO = harness.REPO
EXAMPLE = REPO / "examples" / "ansible"
BUILD = REPO / "build"
STATE_DIR = "/var/lib/deploy-agent"
SOCKET = "/run/deploy-agent/control.sock"


def new_sha():
    return secrets.token_hex(20)


@pytest.fixture
def workdir(request):
    """A 0755 dir below the sandbox work root (the agent's unit has PrivateTmp=yes: not
    /tmp); removed when the test passed."""
    root = systemd_sandbox.DEFAULT_WORK_ROOT
    root.mkdir(mode=0o755, exist_ok=True)
    d = pathlib.Path(tempfile.mkdtemp(prefix="ansible-", dir=root))
    os.chmod(d, 0o755)
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed and not os.environ.get("KEEP_TEST_DIRS"):
        shutil.rmtree(d, ignore_errors=True)
        try:
            root.rmdir()
        except OSError:
            pass
    else:
        print(f"\n[ansible work dir kept: {d}]")


def units(wd, app_port):
    service = (REPO / "systemd" / "deploy-agent.service").read_text()
    assert "@SBINDIR@" in service
    config = wd / "deploy.ini"
    return {
        "deploy-agent.service": service.replace("@SBINDIR@", str(BUILD)),
        "deploy-agent.service.d/50-test.conf": (
            "[Service]\n"
            "ExecStartPre=\n"
            f"ExecStartPre={BUILD}/deploy-agent -c {config} check-config\n"
            "ExecStart=\n"
            f"ExecStart={BUILD}/deploy-agent -c {config} run\n"
            f"ReadWritePaths={wd / 'srv'}\n"
            + "".join(line + "\n" for line in private_tmp_exemption())),
        "deploy-agent.socket": (REPO / "systemd" / "deploy-agent.socket").read_text(),
        "deploy-agent.socket.d/50-test.conf": "[Socket]\nSocketGroup=root\n",
        "app.service": (
            "[Unit]\nDescription=sample service deployed by deploy-agent\n"
            "[Service]\nType=notify\n"
            f"ExecStart=/usr/bin/python3 {wd}/srv/app/current/server.py --port {app_port}\n"),
    }


def playbook_vars(agent, wd, sha, app_port):
    s3 = agent.s3
    return {
        "deploy_agent_become": False,
        "deploy_agent_bin": str(BUILD / "deploy-agent"),
        "deployctl": str(BUILD / "deployctl"),
        "deploy_agent_config": str(wd / "deploy.ini"),
        "deploy_agent_socket": SOCKET,
        "deploy_agent_deploy_timeout": "3m",
        "deploy_agent_settings": {"state_dir": STATE_DIR, "worker_user": "nobody", "admin_group": "",
                                  "poll_interval": "2s", "poll_jitter": "0%", "log_level": "debug"},
        "deploy_agent_s3": {"region": harness.REGION, "endpoint": s3.endpoint, "addressing": "path",
                            "credentials": "static", "access_key_id": harness.ACCESS_KEY,
                            "secret_access_key": harness.SECRET_KEY},
        "deploy_agent_services": [{
            "name": "app", "bucket": harness.BUCKET, "prefix": agent.prefix, "root": str(wd / "srv" / "app"),
            "unit": "app.service", "health_url": f"http://127.0.0.1:{app_port}/health",
            "health_settle": "1s", "health_timeout": "20s", "auto_rollback": True, "keep_releases": 3,
            "sha": sha,
        }],
    }


def run_playbook(sb, wd):
    home = wd / "home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),                      # not the host's /root/.ansible
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_CONFIG": str(wd / "no-ansible.cfg"),  # not one from the cwd or /etc
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    }
    r = sb.run("sh", "-c", f'cd "$1" && exec ansible-playbook -i inventory.ini deploy-agent.yml -e @"$2"',
               "sh", EXAMPLE, wd / "vars.json", env=env, check=False, timeout=300)
    print(f"--- ansible-playbook (exit {r.returncode})\n{r.stdout}\n{r.stderr}")
    return r


def recap(output):
    m = re.search(r"^localhost\s+:\s+(.*)$", output, re.M)
    assert m, f"no PLAY RECAP line:\n{output}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def task_result(output, title):
    """The status line ("ok", "changed", ...) of the task whose header contains title."""
    block = output.split(f"TASK [{title}", 1)[1].split("\nTASK [", 1)[0]
    return re.findall(r"^(ok|changed|failed|fatal|skipping): \[localhost\]", block, re.M)


DEPLOY_TASK = "Deploy the pinned release"


def test_playbook_deploys_a_pinned_sha_idempotently(agent, workdir):
    pinned, newer = new_sha(), new_sha()
    for sha in (pinned, newer):  # newer is the newest: only the pin can put `pinned` there
        agent.publish(sha, sample_service.release_files(sha))
    app_port = systemd_sandbox.free_tcp_port()
    harness.make_dir(workdir / "srv")
    (workdir / "state").mkdir(mode=0o750)
    (workdir / "vars.json").write_text(json.dumps(playbook_vars(agent, workdir, pinned, app_port)))
    sb = systemd_sandbox.Sandbox(workdir, units(workdir, app_port), start=(),
                                 binds={STATE_DIR: workdir / "state"}, boot_timeout=60)
    try:
        sb.run("sh", "-c", "mkdir -p /etc/systemd/system /run/systemd/system.control && "
               "mount --bind /etc/systemd/system /run/systemd/system.control")
        sb.systemctl("daemon-reload")
        assert sb.show("deploy-agent.service", "ActiveState") == "inactive"
        assert sb.systemctl("is-enabled", "deploy-agent.service", check=False).returncode != 0
        first = run_playbook(sb, workdir)
        assert first.returncode == 0, first.stdout[-4000:]
        counts = recap(first.stdout)
        assert counts["failed"] == 0 and counts["changed"] >= 3, counts
        assert task_result(first.stdout, DEPLOY_TASK) == ["changed"], first.stdout
        assert task_result(first.stdout, "Each service runs its pinned release") == ["ok"]

        # what systemd and the agent say now
        props = sb.props("deploy-agent.service", "ActiveState", "MainPID")
        assert props["ActiveState"] == "active", props
        assert sb.show("deploy-agent.socket", "ActiveState") == "active"
        for unit in ("deploy-agent.service", "deploy-agent.socket"):
            assert sb.systemctl("is-enabled", unit).stdout.strip().startswith("enabled"), unit
        assert "(from systemd)" in sb.journal("deploy-agent.service")
        assert (workdir / "deploy.ini").read_text().count('[service "app"]') == 1
        assert oct((workdir / "deploy.ini").stat().st_mode & 0o777) == "0o600"
        st = json.loads((workdir / "state" / "app" / "state.json").read_text())
        assert st["current"] == pinned and st["pinned"] == pinned
        assert os.readlink(workdir / "srv" / "app" / "current") == f"releases/{pinned}"
        r = sb.run(BUILD / "deployctl", "version", "app")
        assert r.stdout == pinned + "\n"
        assert sb.show("app.service", "ActiveState") == "active"
        assert sb.run("python3", "-c", "import urllib.request,sys; print(urllib.request.urlopen("
                      f"'http://127.0.0.1:{app_port}/health').read().decode())").stdout.strip() == pinned

        second = run_playbook(sb, workdir)
        assert second.returncode == 0, second.stdout[-4000:]
        counts = recap(second.stdout)
        assert counts["changed"] == 0 and counts["failed"] == 0, counts
        assert task_result(second.stdout, DEPLOY_TASK) == ["ok"]
        st = json.loads((workdir / "state" / "app" / "state.json").read_text())
        assert st["current"] == pinned and st["pinned"] == pinned
        assert sb.props("deploy-agent.service", "MainPID")["MainPID"] == props["MainPID"]  # not restarted

        # a new pin: changed again, and the newer build runs
        (workdir / "vars.json").write_text(json.dumps(playbook_vars(agent, workdir, newer, app_port)))
        third = run_playbook(sb, workdir)
        assert third.returncode == 0, third.stdout[-4000:]
        assert recap(third.stdout)["changed"] == 1 and task_result(third.stdout, DEPLOY_TASK) == ["changed"]
        st = json.loads((workdir / "state" / "app" / "state.json").read_text())
        assert st["current"] == newer and st["pinned"] == newer and st["previous"] == pinned
    finally:
        if sb.alive():
            (workdir / "journal.txt").write_text(sb.journal(None, check=False))
        sb.close()


def test_playbook_syntax_and_package_architectures(tmp_path):
    """`ansible-playbook --syntax-check`, with and without deploy_agent_dist, and the
    map from ansible_architecture to the Debian architecture of `make dist`'s .debs."""
    yaml = pytest.importorskip("yaml")
    env = {**os.environ, "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "ANSIBLE_CONFIG": str(tmp_path / "no-ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    for extra in ([], ["-e", f"deploy_agent_dist={tmp_path}"]):
        r = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "inventory.ini", "deploy-agent.yml",
                            *extra], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    play = yaml.safe_load((EXAMPLE / "deploy-agent.yml").read_text())[0]
    assert play["vars"]["deploy_agent_deb_archs"] == {"x86_64": "amd64", "aarch64": "arm64"}
    install = play["tasks"][0]
    assert install["when"] == "deploy_agent_dist is defined"
    assert [t["name"] for t in install["block"]][-1] == "Install it"
    assert play["tasks"][1]["name"] == "Configuration directory"   # installed before configured
