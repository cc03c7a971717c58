"""Two builds of one commit give byte-identical .debs.

Each build runs scripts/deb.sh from its own clone of HEAD (another path),
with another time zone and umask, a minute or so after the other; the
commit alone (SOURCE_DATE_EPOCH, the changelog date, GIT_SHA) may reach the
package. Builds of the committed HEAD: uncommitted changes are not tested.
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCH = os.environ.get("ARCH") or subprocess.run(
    ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def build(clone: Path, out: Path, tz: str, umask: int) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, TZ=tz, TMPDIR=str(clone.parent))
    old = os.umask(umask)
    try:
        r = subprocess.run(["bash", "scripts/deb.sh", ARCH, str(out)], cwd=clone, env=env,
                           capture_output=True, text=True)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


def listing(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout


def test_two_builds_are_identical(tmp_path):
    if subprocess.run(["which", "dpkg-buildpackage"], capture_output=True).returncode != 0:
        pytest.skip("dpkg-dev is missing: run scripts/deps.sh")
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    first = build(tmp_path / "a" / "src", tmp_path / "out-a", "UTC", 0o022)
    second = build(tmp_path / "b" / "deeper" / "checkout", tmp_path / "out-b", "Pacific/Auckland", 0o077)
    assert first.name == second.name
    a, b = first.read_bytes(), second.read_bytes()
    assert a == b, "the .debs differ:\n" + "\n".join(
        l for l in __import__("difflib").unified_diff(listing(first).splitlines(), listing(second).splitlines(),
                                                      lineterm=""))
