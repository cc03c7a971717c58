"""Hostile artifacts (hostile.py) published after a good release: the agent,
running as root with a real drop to `nobody` for unpack, must refuse each
one, stay on the good release, leave no trace of it, write nothing outside
the release tree, and mark the build bad so it never tries it again."""

import os
import pathlib
import pwd
import secrets
import subprocess
import uuid

import pytest

import harness
import hostile

GOOD_FILES = {
    "VERSION": b"good\n",
    "bin/serve.sh": (b"#!/bin/sh\necho good\n", 0o755),
    "static/index.html": b"<h1>good</h1>\n",
}

# Places an escaped file could land, besides the test's own directory.
WATCHED_DIRS = [pathlib.Path(p) for p in ("/", "/tmp", "/etc", "/srv", "/var/tmp")]


def new_sha():
    return secrets.token_hex(20)


def file_fingerprint(path):
    st = os.lstat(path)
    return (pathlib.Path(path).read_bytes(), st.st_mtime_ns, st.st_nlink, st.st_ino, st.st_mode)


def tree(path, skip=()):
    """Every path below `path` (relative), with its type and size, except
    under the `skip` subtrees. Symlinks are listed, never followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) not in skip]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            out[os.path.normpath(os.path.join(rel_dir, name))] = (st.st_mode, st.st_size)
    return out


def marker_hits(marker, tmp):
    hits = [str(p) for p in pathlib.Path(tmp).rglob(f"*{marker}*")]
    for d in WATCHED_DIRS:
        try:
            hits += [str(d / n) for n in os.listdir(d) if marker in n]
        except OSError:
            pass
    return hits


def assert_good_release_intact(agent, sha):
    release = agent.root / "releases" / sha
    for name, value in GOOD_FILES.items():
        data = value[0] if isinstance(value, tuple) else value
        assert (release / name).read_bytes() == data, f"{name} of the good release changed"
        assert (agent.root / "current" / name).read_bytes() == data


def configure(agent, **overrides):
    """No unit to restart here: unpack is what is under test."""
    agent.write_config(restart_mode="none", **overrides)


def deploy_good(agent):
    configure(agent)
    sha = new_sha()
    agent.publish(sha, GOOD_FILES)
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha
    return sha


def outside_snapshot(agent):
    """The test dir minus what the agent may legitimately change: its state
    dir and ROOT/releases (staging comes and goes)."""
    rel_state = os.path.relpath(agent.state_dir, agent.tmp)
    rel_releases = os.path.relpath(agent.root / "releases", agent.tmp)
    return tree(agent.tmp, skip={rel_state, rel_releases})


# etc-passwd: /etc/passwd must not change while these run; tests that add users
# run in the same xdist group, so never at the same time (see conftest.py).
@pytest.mark.xdist_group("etc-passwd")
@pytest.mark.parametrize("case", hostile.CASES, ids=lambda c: c.name)
def test_refused(agent, case):
    good = deploy_good(agent)
    configure(agent, **case.config)
    marker = f"pwned-{uuid.uuid4().hex[:12]}"
    data = case.build(marker=marker, tmp=agent.tmp)
    passwd_before = file_fingerprint("/etc/passwd")
    outside_before = outside_snapshot(agent)
    releases_before = agent.release_entries()

    bad = new_sha()
    agent.publish_archive(bad, data, suffix=case.suffix)
    r = agent.once()

    assert r.returncode != 0, "a hostile archive was deployed"
    assert case.expect in r.stderr, f"stderr does not say {case.expect!r}"
    assert agent.current_sha() == good
    assert_good_release_intact(agent, good)
    assert bad not in agent.release_entries()
    assert agent.release_entries() == releases_before, "staging or partial release left behind"
    assert marker_hits(marker, agent.tmp) == [], "a file escaped the release"
    assert outside_snapshot(agent) == outside_before, "something changed outside the release tree"
    assert file_fingerprint("/etc/passwd") == passwd_before
    assert not (agent.root / "etc").exists()

    state = agent.state()
    assert state["current"] == good
    assert bad in [b["sha"] for b in state["bad"]], "the hostile build was not marked bad"

    # Marked bad: the next pass leaves it alone instead of retrying.
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert "marked bad" in r.stderr
    assert agent.current_sha() == good
    assert agent.release_entries() == releases_before


@pytest.mark.xdist_group("etc-passwd")
def test_stale_staging_is_removed(agent):
    """A run killed mid-unpack leaves .staging-*; the next unpack clears it,
    removing symlinks inside it without following them."""
    good = deploy_good(agent)
    releases = agent.root / "releases"
    stale = releases / f".staging-{good}-AbC123"
    (stale / "deep" / "er").mkdir(parents=True)
    (stale / "deep" / "er" / "half-written").write_bytes(b"x" * 1000)
    os.symlink("/etc", stale / "etc-link")
    os.symlink("/etc/passwd", stale / "passwd-link")
    passwd_before = file_fingerprint("/etc/passwd")

    nxt = new_sha()
    agent.publish(nxt, {"VERSION": b"next\n"})
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == nxt
    assert not os.path.lexists(stale)
    assert file_fingerprint("/etc/passwd") == passwd_before
    assert [n for n in agent.release_entries() if n.startswith(".")] == []
    st = os.stat(releases / nxt)
    assert st.st_mode & 0o7777 == 0o755
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid, "the release should belong to the worker user"
    assert (releases / nxt / "VERSION").read_bytes() == b"next\n"


def test_existing_release_dir_is_reused(agent):
    """releases/<sha> only ever appears complete (rename after syncfs), so an
    existing one, from a run killed after unpack, is used as is."""
    deploy_good(agent)
    sha = new_sha()
    pre = agent.root / "releases" / sha
    pre.mkdir()
    (pre / "VERSION").write_bytes(b"unpacked earlier\n")

    agent.publish(sha, {"VERSION": b"from s3\n"})
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha
    assert (agent.root / "current" / "VERSION").read_bytes() == b"unpacked earlier\n"


# ---- a compromised fetch worker -------------------------------------------

DEBUG_AGENT_BIN = harness.REPO / "build-debug" / "deploy-agent"


def root_only_archive(agent, marker):
    """A root-only (0600) file that is a valid tar.gz holding `marker`: what a
    fetch worker running as nobody must never get root to unpack."""
    path = agent.tmp / "root-only.tar.gz"
    path.write_bytes(harness.make_tar_gz({"SECRET": marker.encode()}))
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    return path


def releases_holding(agent, marker):
    """Every file under ROOT/releases whose content holds marker."""
    hits = []
    for p in (agent.root / "releases").rglob("*"):
        if p.is_file() and not p.is_symlink() and marker.encode() in p.read_bytes():
            hits.append(str(p))
    return hits


@pytest.mark.parametrize("mode,expect", [
    ("report-path", "fetch: invalid result"),
    ("symlink", "is not a regular file"),
])
def test_hostile_fetch_worker_cannot_make_root_read_a_file(agent, mode, expect):
    """The fetch worker runs as nobody on untrusted bytes (a libcurl bug away
    from an attacker). A debug-build hook makes it report a root-only file as
    the download, or leave a symlink to that file in its place: root (unpack,
    before it drops privileges) must never read it, the deploy must fail
    clearly, and the running release must stay."""
    if not DEBUG_AGENT_BIN.exists():
        pytest.fail(f"{DEBUG_AGENT_BIN} not built: run `make debug`", pytrace=False)
    good = deploy_good(agent)
    marker = f"root-only-{uuid.uuid4().hex}"
    secret = root_only_archive(agent, marker)

    nxt = new_sha()
    agent.publish(nxt, {"VERSION": b"next\n"})
    env = dict(os.environ, DEPLOY_AGENT_DEBUG_HOSTILE_FETCH=f"{mode}:{secret}")
    cmd = [str(DEBUG_AGENT_BIN), "-c", str(agent.config_path), "once"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    print(f"$ {' '.join(cmd)}\n-> exit {r.returncode}\n--- stderr\n{r.stderr}")

    assert "debug: hostile fetch" in r.stderr, "the hostile hook did not run"
    assert releases_holding(agent, marker) == [], "root unpacked a file the fetch worker chose"
    assert r.returncode != 0, "a deploy with a hostile fetch worker succeeded"
    assert expect in r.stderr
    assert agent.current_sha() == good
    assert_good_release_intact(agent, good)
    assert nxt not in agent.releases()
    assert [n for n in agent.release_entries() if n.startswith(".")] == [], "staging left behind"
    assert os.stat(secret).st_mode & 0o777 == 0o600


def test_hostile_fetch_hook_is_not_in_the_release_build():
    worker = harness.REPO / "build" / "deploy-agent-worker"
    assert b"DEPLOY_AGENT_DEBUG_HOSTILE_FETCH" not in worker.read_bytes()
    assert b"DEPLOY_AGENT_DEBUG_HOSTILE_FETCH" in (harness.REPO / "build-debug" / "deploy-agent-worker").read_bytes()
