"""pytest fixtures for the deploy-agent integration tests.

  s3     (session)  s3rver on loopback behind the SigV4-verifying proxy.
                    s3.endpoint, s3.put(key, bytes|path), s3.put_many({key: bytes}),
                    s3.bulk_put({key: bytes}), s3.aws(*args), s3.client (botocore),
                    s3.proxy.requests [(method, path, status)] (whole session),
                    s3.proxy.rejections [(method, path, code, detail)] (cleared per test
                    by the agent fixture),
                    s3.proxy.throttle_bps, s3.proxy.inject(...).
  agent  (per test) a sandbox for service "app" under a unique prefix:
                    publish(sha, files), publish_archive(sha, data, suffix=".tar.gz",
                    sidecar=True, sidecar_content=None), write_config(**overrides),
                    once(*args, timeout=120), current_sha(), state(), root, tmp,
                    config_path, prefix. See harness.Agent.

Run with /usr/bin/python3 -m pytest (Debian's pytest and botocore).
Test dirs live under /tmp/deploy-agent-it-*/ with mode 0755; a passing
test's dir is removed, a failing one's is kept and its path printed.

`make test` runs this suite with pytest-xdist (`-n TEST_JOBS --dist loadgroup`):
each worker is a session of its own (its own s3rver, proxy and /tmp dir) and
takes tests one at a time, so tests of different files run at the same time.
What a test must share with no other test gets a group, and a group's tests
run one after another on one worker:
  @pytest.mark.xdist_group("etc-passwd")  it adds or removes users or groups of
        the host, or asserts that /etc/passwd did not change while it ran.
  A module with a module- or class-scoped fixture is a group of its own (below).
Everything else must keep to its own dirs and ask for free ports (free_port()).
Systemd sandboxes may run side by side; each worker gets its own default work
root below systemd_sandbox's (a helper removes the root when it is empty, which
must not race with another worker's mkdtemp in it).
"""

import contextlib
import os
import pathlib
import re
import shutil
import sys
import tempfile
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402
import systemd_sandbox  # noqa: E402

os.environ.setdefault("PYTHONHASHSEED", "0")

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0"..., set only in xdist workers
SANDBOX_WORK_BASE = systemd_sandbox.DEFAULT_WORK_ROOT
if XDIST_WORKER:
    SANDBOX_WORK_BASE.mkdir(mode=0o755, exist_ok=True)
    systemd_sandbox.DEFAULT_WORK_ROOT = SANDBOX_WORK_BASE / XDIST_WORKER


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes tens of seconds (still in the default run)")
    config.addinivalue_line("markers", "xdist_group(name): tests of one group run one after "
                            "another on one xdist worker (see conftest.py)")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under --dist loadgroup every test without a group is a unit of work of its own.
    A module-scoped fixture (test_confine's daemon) would then be set up again on each
    worker, and the tests that share it would see each other's effects in another order:
    a module that has one is a group of its own, so it runs on one worker, in order."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d.scope in ("package", "module", "class") for ds in defs for d in ds):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def pytest_sessionfinish(session, exitstatus):
    if XDIST_WORKER is None and not hasattr(session.config, "workerinput"):
        with contextlib.suppress(OSError):
            SANDBOX_WORK_BASE.rmdir()  # the workers' roots are gone when empty


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def session_dir():
    d = pathlib.Path(tempfile.mkdtemp(prefix="deploy-agent-it-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    if not os.environ.get("KEEP_TEST_DIRS"):
        shutil.rmtree(d / "s3rver-data", ignore_errors=True)
        try:
            leftovers = [p for p in d.iterdir() if p.name.startswith("t-")]
        except OSError:
            leftovers = []
        if not leftovers:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(session_dir):
    server = harness.S3Server(session_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def agent_bin():
    if not harness.AGENT_BIN.exists():
        pytest.fail(f"{harness.AGENT_BIN} not built: run `make` first", pytrace=False)
    return harness.AGENT_BIN


@pytest.fixture
def test_dir(request, session_dir):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:28]
    d = session_dir / f"t-{name}-{uuid.uuid4().hex[:6]}"
    harness.make_dir(d)
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed and not os.environ.get("KEEP_TEST_DIRS"):
        shutil.rmtree(d, ignore_errors=True)
    else:
        print(f"\n[test dir kept: {d}]")


@pytest.fixture
def agent(request, s3, test_dir, agent_bin):
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40]
    prefix = f"{base}-{uuid.uuid4().hex[:6]}/"
    with s3.proxy.lock:  # rejections are per test (requests: slice agent.s3_requests())
        s3.proxy.rejections.clear()
    a = harness.Agent(s3, test_dir, prefix)
    yield a
    s3.proxy.reset()
