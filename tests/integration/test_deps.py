"""scripts/deps.sh, the first step of `make test` and `make demo`: with everything
installed it is a check that needs no root and runs no apt-get; run by another user on a
machine that lacks something, it names what is missing and the command to run as root."""

import os
import pathlib
import subprocess
import tempfile

import pytest

import harness

DEPS = harness.REPO / "scripts" / "deps.sh"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def stub(dirpath, name, script):
    p = pathlib.Path(dirpath) / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(0o755)


@pytest.fixture
def tmp_path():
    """A directory nobody can read (pytest's own is below a 0700 one)."""
    with tempfile.TemporaryDirectory(prefix="deploy-agent-deps-") as d:
        os.chmod(d, 0o755)
        yield pathlib.Path(d)


def run_deps(tmp_path, *args, path_first=None):
    """deps.sh as nobody, with an apt-get that only records that it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    called = tmp_path / "apt-get-called"
    os.chmod(tmp_path, 0o777)   # nobody's apt-get stub writes there
    stub(bin_dir, "apt-get", f"touch {called}\nexit 1\n")
    env = {**os.environ, "PATH": f"{path_first or bin_dir}:{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run([*NOBODY, "bash", str(DEPS), *args], capture_output=True, text=True, env=env,
                       timeout=120, stdin=subprocess.DEVNULL)
    print(f"$ deps.sh {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r, called.exists()


def test_everything_installed_is_a_silent_check_without_root_or_apt(tmp_path):
    for args in ((), ("--arm64",)) if os.path.exists("/usr/bin/aarch64-linux-gnu-gcc") else ((),):
        r, apt_called = run_deps(tmp_path, *args)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r
        assert not apt_called


def test_missing_packages_are_named_with_the_command_to_run(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir(mode=0o755)
    stub(stubs, "dpkg-query", "exit 0\n")      # a machine with nothing installed
    r, apt_called = run_deps(tmp_path, path_first=stubs)
    assert r.returncode == 1 and r.stdout == "", r
    assert "deps.sh: missing Debian packages: build-essential clang" in r.stderr, r.stderr
    assert "libcurl4-openssl-dev" in r.stderr and "python3-botocore" in r.stderr, r.stderr
    assert "install them as root (apt-get): sudo bash scripts/deps.sh\n" in r.stderr, r.stderr
    assert not apt_called


def test_make_test_and_make_demo_start_with_deps_sh():
    # run by `make test` itself, make -n would inherit its flags and say which directory it enters
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    for target, first in (("test", "bash scripts/deps.sh"), ("demo", "bash scripts/demo.sh")):
        r = subprocess.run(["make", "--no-print-directory", "-n", target], capture_output=True, text=True,
                           cwd=harness.REPO, timeout=60, env=env)
        assert r.returncode == 0 and r.stdout.splitlines()[0] == first, r
    assert "bash scripts/deps.sh" in (harness.REPO / "scripts" / "demo.sh").read_text()


def test_node_modules_missing_in_a_checkout_this_user_cannot_write(tmp_path):
    """Packages all there, s3rver not installed yet, and a checkout owned by root: say
    so, and who can run it, rather than show npm's EACCES."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True, mode=0o755)
    os.chmod(checkout, 0o755)
    (checkout / "scripts" / "deps.sh").write_text(DEPS.read_text())
    (checkout / "package-lock.json").write_text((harness.REPO / "package-lock.json").read_text())
    r = subprocess.run([*NOBODY, "bash", str(checkout / "scripts" / "deps.sh")], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stdout == "", r
    assert f"node_modules is missing or older than package-lock.json, and nobody cannot write to {checkout}" \
        in r.stderr, r.stderr
    assert "run it as the owner of the checkout or as root: sudo bash scripts/deps.sh\n" in r.stderr, r.stderr
