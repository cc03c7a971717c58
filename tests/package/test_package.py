"""The amd64 .deb as a package: installed, upgraded, removed and purged under a real
systemd, in a throwaway Debian root.

The root is made once by mmdebstrap from Debian's mirror (bookworm, the package's
dependencies included, so dpkg -i needs no network) and cached in ROOT_CACHE; each run
boots a copy of it with tests/integration/systemd_sandbox.py, which pivots into it, so
the host's dpkg database, /etc and /srv are never touched.

The package tested is dist/deploy-agent_*.<sha7 of HEAD>_amd64.deb (`make deb`), built
here when missing; "a newer build" is the same files repacked with a higher version.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from systemd_sandbox import Sandbox  # noqa: E402

ROOT_CACHE = Path(os.environ.get("DEPLOY_AGENT_TEST_ROOT", "/var/tmp/deploy-agent-package-root"))
ROOT_PACKAGES = "systemd,dbus,libarchive13,libcurl4,libexpat1,libjansson4,libsodium23,libsystemd0"
UNITS = ("deploy-agent.socket", "deploy-agent.service")
APT = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "Dpkg::Use-Pty=0")


def built_deb() -> Path:
    sha7 = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    found = sorted((ROOT / "dist").glob(f"deploy-agent_*.{sha7}_amd64.deb"))
    if found:
        return found[-1]
    r = subprocess.run(["bash", "scripts/deb.sh", "amd64", "dist"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return Path(ROOT / r.stdout.strip().splitlines()[-1])


def newer_build(deb: Path, out: Path) -> Path:
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    version = re.search(r"^Version: (.+)$", text, re.M).group(1)
    control.write_text(text.replace(f"Version: {version}", f"Version: {version}.1"))
    target = out / "newer.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(target)], check=True,
                   capture_output=True)
    return target


def cached_root() -> Path:
    if not (ROOT_CACHE / "usr/lib/systemd/systemd").exists():
        if not shutil.which("mmdebstrap"):
            pytest.skip("mmdebstrap is missing: run scripts/deps.sh")
        tmp = ROOT_CACHE.with_name(ROOT_CACHE.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(["mmdebstrap", "--variant=apt", f"--include={ROOT_PACKAGES}", "bookworm", str(tmp),
                            "http://deb.debian.org/debian"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        shutil.rmtree(ROOT_CACHE, ignore_errors=True)
        tmp.rename(ROOT_CACHE)
    return ROOT_CACHE


@pytest.fixture
def machine():
    """A booted copy of the cached root: (sandbox, root path on the host)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    top = Path(tempfile.mkdtemp(prefix="deploy-agent-pkg-", dir="/var/tmp"))
    root = top / "root"
    subprocess.run(["cp", "-a", str(cached_root()), str(root)], check=True)
    try:
        with Sandbox(top / "work", {}, start=(), root=root, os_units=UNITS, boot_timeout=120) as sb:
            yield sb, root
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)], check=False)


def test_install_upgrade_remove_purge(machine, tmp_path):
    sb, root = machine
    deb = built_deb()
    newer = newer_build(deb, tmp_path)
    (root / "pkgs").mkdir()
    shutil.copy(deb, root / "pkgs" / "first.deb")
    shutil.copy(newer, root / "pkgs" / "newer.deb")
    # A service root with a release the agent deployed before: never the package's to remove.
    (root / "srv/app/releases/abc").mkdir(parents=True)
    (root / "srv/app/releases/abc/index.html").write_text("v1\n")

    sb.run("dpkg", "-i", "/pkgs/first.deb", timeout=300)
    for unit in UNITS:
        assert sb.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
        sb.wait_state(unit, "active", timeout=60)
    version = sb.run("/usr/sbin/deploy-agent", "--version").stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+ \([0-9a-f]{40}(-dirty)?\)", version), version

    # The packaged socket: group deploy may talk to the agent, others may not connect.
    sb.run("useradd", "-m", "-G", "deploy", "ops")
    sb.run("useradd", "-m", "guest")
    st = sb.run("runuser", "-u", "ops", "--", "deployctl", "status", timeout=60)
    assert st.stdout.startswith(f"deploy-agent {version}, pid "), st.stdout
    assert sb.run("runuser", "-u", "guest", "--", "deployctl", "status", check=False).returncode != 0

    # An edited conffile survives an upgrade; the agent runs the new build after it.
    edited = (root / "etc/deploy-agent/deploy.ini").read_text().replace("log_level = info", "log_level = debug")
    (root / "etc/deploy-agent/deploy.ini").write_text(edited)
    sb.run("dpkg", "-i", "/pkgs/newer.deb", timeout=300)
    assert (root / "etc/deploy-agent/deploy.ini").read_text() == edited
    assert sb.run("dpkg-query", "-W", "-f=${Version}", "deploy-agent").stdout.endswith(".1")
    sb.wait_state("deploy-agent.service", "active", timeout=60)
    assert sb.run("runuser", "-u", "ops", "--", "deployctl", "status", timeout=60).stdout.startswith(
        f"deploy-agent {version}, pid ")

    # remove: the agent stops; its state, its config and /srv stay.
    # The root has no procps: the names of the sandbox's processes from its /proc.
    names = "cat /proc/[0-9]*/comm 2>/dev/null || true"
    assert "deploy-agent" in sb.run("sh", "-c", names).stdout.split()
    (root / "var/lib/deploy-agent/app").mkdir(exist_ok=True)
    # apt-get as an admin would; removing downloads nothing, so the root needs no network.
    sb.run(*APT, "remove", "-y", "deploy-agent", timeout=300)
    sb.wait_for(lambda: "deploy-agent" not in sb.run("sh", "-c", names).stdout.split(), timeout=60,
                what="deploy-agent to exit")
    assert sb.show("deploy-agent.service", "ActiveState") in ("inactive", "")
    assert not (root / "usr/sbin/deploy-agent").exists()
    assert (root / "var/lib/deploy-agent/app").is_dir()
    assert (root / "etc/deploy-agent/deploy.ini").read_text() == edited
    assert (root / "srv/app/releases/abc/index.html").read_text() == "v1\n"

    # purge: the agent's own state and config go, the service root stays.
    sb.run(*APT, "purge", "-y", "deploy-agent", timeout=300)
    assert not (root / "var/lib/deploy-agent").exists()
    assert not (root / "etc/deploy-agent").exists()
    assert (root / "srv/app/releases/abc/index.html").read_text() == "v1\n"
