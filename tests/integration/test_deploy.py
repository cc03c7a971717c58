"""deploy-agent once against s3rver (behind the SigV4-verifying proxy):
what an operator would notice on the host after each run."""

import json
import os
import re
import secrets
import subprocess
import urllib.parse
import uuid

import pytest

import harness


def new_sha():
    return secrets.token_hex(20)


def app_files(version):
    return {
        "VERSION": f"{version}\n".encode(),
        "bin/serve.sh": (f"#!/bin/sh\necho version {version}\n".encode(), 0o755),
        "static/index.html": f"<h1>version {version}</h1>\n".encode(),
    }


def assert_no_staging(agent):
    left = [n for n in agent.release_entries() if n.startswith(".")]
    assert left == [], f"staging dirs left behind: {left}"


def agent_statuses(agent):
    return [status for _, _, status in agent.s3_requests()]


def test_first_deploy_then_upgrade(agent):
    sha1, sha2 = new_sha(), new_sha()
    agent.publish(sha1, app_files("1.0"))

    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha1
    target = agent.current_target()
    assert not os.path.isabs(target), f"current should be a relative link, is {target}"
    assert (agent.root / "current" / "VERSION").read_bytes() == b"1.0\n"
    assert (agent.root / "current" / "static" / "index.html").read_bytes() == b"<h1>version 1.0</h1>\n"
    serve = agent.root / "current" / "bin" / "serve.sh"
    assert subprocess.run([str(serve)], capture_output=True, text=True).stdout == "version 1.0\n"
    for step in ("discover", "fetch", "unpack", "activate"):
        assert step in r.stderr.lower(), f"no '{step}' line on stderr"

    agent.publish(sha2, app_files("2.0"))
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha2
    assert (agent.root / "current" / "VERSION").read_bytes() == b"2.0\n"
    assert sorted(agent.releases()) == sorted([sha1, sha2])
    assert (agent.root / "releases" / sha1 / "VERSION").read_bytes() == b"1.0\n"
    assert_no_staging(agent)

    state = agent.state()
    assert state["current"] == sha2
    assert state["previous"] == sha1
    deployed = [h["sha"] for h in state["history"] if h.get("outcome") == "deployed"]
    assert deployed[-2:] == [sha1, sha2], state["history"]
    assert 403 not in agent_statuses(agent)


def test_short_sha_is_a_valid_name(agent):
    sha = secrets.token_hex(4)[:7]
    agent.publish(sha, app_files("short"))
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha


def test_newest_wins_over_older_and_decoys(agent):
    # The newest sorts first by key, so picking by key would be wrong.
    old = "f" + new_sha()[1:]
    newest = "0" + new_sha()[1:]
    agent.publish(old, app_files("old"))
    agent.publish(newest, app_files("newest"))

    # Decoys, all published later (newer LastModified) and all deployable
    # archives with correct sidecars if the agent took them for artifacts.
    decoy = harness.make_tar_gz(app_files("DECOY"))
    side = lambda name: f"{harness.sha256_hex(decoy)}  {name}\n".encode()  # noqa: E731
    upper = new_sha().upper()
    nested = new_sha()
    wrong_suffix = new_sha()
    sidecar_only = new_sha()
    too_long = new_sha() + "a"
    p = agent.prefix
    decoys = {
        f"{p}{upper}.tar.gz": decoy,                       # upper-case hex
        f"{p}x/{nested}.tar.gz": decoy,                    # nested folder
        f"{p}{wrong_suffix}.tar.zst": decoy,               # wrong suffix
        f"{p}{wrong_suffix}.zip": decoy,
        f"{p}{sidecar_only}.tar.gz.sha256": side("x"),     # a sidecar alone
        f"{p}latest.tar.gz": decoy,                        # other names
        f"{p}release-{nested}.tar.gz": decoy,
        f"{p}abc123.tar.gz": decoy,                        # 6 hex: too short
        f"{p}{too_long}.tar.gz": decoy,                    # 41 hex: too long
        f"{p}{'g' * 40}.tar.gz": decoy,                    # not hex
        f"{p}{nested}.tar.gz.part": decoy,
    }
    for key in list(decoys):
        if key.endswith((".tar.gz", ".tar.zst", ".zip")):
            decoys[key + ".sha256"] = side(key.rsplit("/", 1)[1])
    agent.wait_next_second()
    agent.s3.put_many(decoys)

    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == newest
    assert (agent.root / "current" / "VERSION").read_bytes() == b"newest\n"
    assert agent.releases() == [newest], "nothing but the newest should be fetched"


@pytest.mark.slow
def test_pagination_more_than_1000_keys(agent):
    # 1100 matching keys (junk bodies, no sidecars) then the real newest one,
    # whose key sorts last: it is only on the last page of the listing.
    junk = {agent.key("e" + new_sha()[1:]): b"junk" for _ in range(1100)}
    agent.s3.bulk_put(junk)
    newest = "f" * 8 + new_sha()[8:]
    agent.wait_next_second()
    agent.publish(newest, app_files("paged"))

    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == newest
    lists = [(path, st) for m, path, st in agent.s3_requests()
             if m == "GET" and "list-type=2" in path]
    assert len(lists) >= 2, f"expected several pages, saw {lists}"
    assert all(st == 200 for _, st in lists), lists
    assert any("continuation-token=" in path for path, _ in lists)


def test_prefix_with_space_and_plus(agent):
    tag = uuid.uuid4().hex[:6]
    agent.write_config(prefix=f"my app+x {tag}/")
    sha = new_sha()
    agent.publish(sha, app_files("spaced"))
    # A newer artifact where '+' became a space: a client that sends a raw
    # '+' in the query would list this prefix instead.
    decoy_sha = new_sha()
    agent.publish_raw(f"my app x {tag}/{decoy_sha}.tar.gz", harness.make_tar_gz(app_files("DECOY")))

    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha
    assert (agent.root / "current" / "VERSION").read_bytes() == b"spaced\n"
    assert 403 not in agent_statuses(agent), agent.s3_requests()


def deploy_first(agent, version="1.0"):
    sha = new_sha()
    agent.publish(sha, app_files(version))
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha
    return sha


def test_checksum_mismatch_is_rejected(agent):
    good = deploy_first(agent)
    bad = new_sha()
    data = harness.make_tar_gz(app_files("tampered"))
    agent.publish_archive(bad, data, sidecar_content=f"{'0' * 64}  {bad}.tar.gz\n")

    r = agent.once()
    assert r.returncode != 0
    assert re.search(r"sha-?256.*mismatch", r.stderr, re.I), r.stderr
    assert agent.current_sha() == good
    assert (agent.root / "current" / "VERSION").read_bytes() == b"1.0\n"
    assert bad not in agent.release_entries()
    assert_no_staging(agent)


def test_missing_sidecar_with_checksum_required_is_not_deployed(agent):
    good = deploy_first(agent)
    nosidecar = new_sha()
    agent.publish_archive(nosidecar, harness.make_tar_gz(app_files("2.0")), sidecar=False)

    r = agent.once()
    assert agent.current_sha() == good
    assert nosidecar not in agent.release_entries()
    assert re.search(r"sidecar|\.sha256|not ready", r.stderr, re.I), \
        "the log should say why the build was not deployed"


def test_checksum_off_deploys_without_sidecar(agent):
    agent.write_config(checksum="off")
    sha = new_sha()
    agent.publish_archive(sha, harness.make_tar_gz(app_files("unchecked")), sidecar=False)
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha
    assert (agent.root / "current" / "VERSION").read_bytes() == b"unchecked\n"


def test_already_current_changes_nothing(agent):
    sha = deploy_first(agent)
    link = os.lstat(agent.root / "current")
    releases = agent.releases()
    before = len(agent.s3_requests())

    r = agent.once()
    assert r.returncode == 0, r.stderr
    after = os.lstat(agent.root / "current")
    assert agent.current_sha() == sha
    assert (after.st_ino, after.st_mtime_ns) == (link.st_ino, link.st_mtime_ns), "current was rewritten"
    assert agent.releases() == releases
    artifact = f"/{harness.BUCKET}/" + agent.key(sha)
    refetched = [req for req in agent.s3_requests()[before:]
                 if req[0] == "GET" and urllib.parse.unquote(req[1].split('?')[0]) == artifact]
    assert refetched == [], "the current build was downloaded again"


def test_keep_releases_prunes_old_ones(agent):
    agent.write_config(keep_releases="3")
    shas = []
    for i in range(5):
        sha = new_sha()
        agent.publish(sha, app_files(f"{i}"))
        r = agent.once()
        assert r.returncode == 0, r.stderr
        shas.append(sha)
    assert agent.current_sha() == shas[-1]
    assert sorted(agent.releases()) == sorted(shas[-3:])
    assert agent.state()["previous"] == shas[-2]
    assert_no_staging(agent)


def write_hook(agent, name, body):
    path = agent.tmp / name
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return str(path)


def test_failing_pre_activate_stops_the_deploy(agent):
    good = deploy_first(agent)
    agent.write_config(pre_activate=write_hook(agent, "pre-fail.sh", "echo refusing >&2\nexit 3\n"))
    sha = new_sha()
    agent.publish(sha, app_files("2.0"))

    r = agent.once()
    assert r.returncode != 0
    assert agent.current_sha() == good
    assert (agent.root / "current" / "VERSION").read_bytes() == b"1.0\n"
    assert "pre_activate" in r.stderr, r.stderr


def test_hooks_see_deploy_environment(agent):
    out = agent.tmp / "hooks.log"
    body = (f'{{ echo "== $1"; /usr/bin/env | /bin/grep ^DEPLOY_ | /usr/bin/sort; '
            f'echo "PWD=$(/bin/pwd -P)"; echo "CURRENT=$(/bin/readlink {agent.root}/current)"; }} >> {out}\n')
    pre = write_hook(agent, "pre.sh", body.replace("$1", "pre"))
    post = write_hook(agent, "post.sh", body.replace("$1", "post"))
    agent.write_config(pre_activate=pre, post_activate=post)

    sha1 = new_sha()
    agent.publish(sha1, app_files("1.0"))
    assert agent.once().returncode == 0
    out.write_text("")
    sha2 = new_sha()
    agent.publish(sha2, app_files("2.0"))
    r = agent.once()
    assert r.returncode == 0, r.stderr

    text = out.read_text()
    blocks = {b.split("\n", 1)[0]: b for b in text.split("== ")[1:]}
    assert set(blocks) == {"pre", "post"}, text
    release = os.path.realpath(agent.root / "releases" / sha2)
    for phase, block in blocks.items():
        env = dict(line.split("=", 1) for line in block.splitlines()[1:] if "=" in line)
        assert env["DEPLOY_SERVICE"] == "app"
        assert env["DEPLOY_SHA"] == sha2
        assert os.path.realpath(env["DEPLOY_RELEASE_DIR"]) == release
        assert env["DEPLOY_PREVIOUS_SHA"] == sha1
        assert env["PWD"] == release, f"{phase} hook should run in the new release"
    pre_env = blocks["pre"]
    post_env = blocks["post"]
    assert f"CURRENT=releases/{sha1}" in pre_env, "pre_activate runs before the swap"
    assert f"CURRENT=releases/{sha2}" in post_env, "post_activate runs after the swap"


def test_wrong_credentials_fail_clearly(agent):
    good = deploy_first(agent)
    agent.write_config(_s3={"secret_access_key": "not-the-secret"})
    agent.publish(new_sha(), app_files("2.0"))
    before = len(agent.s3_requests())

    r = agent.once()
    assert r.returncode != 0
    assert agent.current_sha() == good
    assert len(agent.releases()) == 1
    statuses = [st for _, _, st in agent.s3_requests()[before:]]
    assert statuses and set(statuses) == {403}, agent.s3_requests()[before:]
    assert "SignatureDoesNotMatch" in r.stderr or "403" in r.stderr, r.stderr


def test_version_is_the_git_sha(agent_bin):
    r = subprocess.run([str(agent_bin), "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    m = re.search(r"\b([0-9a-f]{40})(-dirty)?\b", r.stdout)
    assert m, f"--version printed {r.stdout!r}"
    exists = subprocess.run(["git", "-C", str(harness.REPO), "cat-file", "-e", m.group(1) + "^{commit}"])
    assert exists.returncode == 0, f"{m.group(1)} is not a commit of this repository"


def test_check_config_names_file_line_and_key(agent):
    r = agent.run("check-config")
    assert r.returncode == 0, r.stderr

    text = agent.config_path.read_text().splitlines()
    line = text.index("keep_releases = 3") + 1
    text[line - 1] = "keep_releases = lots"
    agent.config_path.write_text("\n".join(text) + "\n")
    r = agent.run("check-config")
    assert r.returncode == 2
    assert f"{agent.config_path}:{line}" in r.stderr, r.stderr
    assert "keep_releases" in r.stderr

    text[line - 1] = "colour = blue"
    agent.config_path.write_text("\n".join(text) + "\n")
    r = agent.run("check-config")
    assert r.returncode == 2
    assert f"{agent.config_path}:{line}" in r.stderr, r.stderr
    assert "colour" in r.stderr

    r = agent.once()
    assert r.returncode == 2, "the agent must not run on a bad file"


def test_check_config_reports_every_problem_sorted_by_line(agent, agent_bin):
    """Every problem at once, sorted by line, one per line as FILE:LINE: [section]
    key: problem; a problem later in the file does not hide an earlier one."""
    not_minisign = "RW" + "A" * 54                       # 56 base64 characters, not "Ed"
    state = agent.tmp / "state-x"
    path = agent.tmp / "bad.ini"
    path.write_bytes("\n".join([
        '[service "web"]',                                # 1: bucket missing
        f"root = {state}/web",                           # 2: inside state_dir (set on line 13)
        "owner = root",                                  # 3
        "",
        '[service "api"]',
        "bucket = acme-artifacts",
        f"root = {agent.tmp}/srv/./api/",                # 7: fine
        f"public_key = {not_minisign}",                  # 8
        "step_timeout = 400d",                           # 9
        "prefix = caf\udcff/",                           # 10: not UTF-8
        "",
        "[agent]",
        f"state_dir = {state}",
        "worker_user = 0",                               # 14
        "max_workers = lots",                            # 15
        '[service "etc"]',
        "bucket = acme-artifacts",
        "root = /etc/.",                                 # 18
        "", ""]).encode("utf-8", "surrogateescape"))
    r = subprocess.run([str(agent_bin), "-c", str(path), "check-config"], capture_output=True, text=True,
                       errors="replace")
    assert r.returncode == 2, r
    assert r.stdout == ""
    problems = [re.sub(r"^deploy-agent: (error: )?", "", line) for line in r.stderr.splitlines()]
    expected = [
        (1, '[service "web"] bucket: required'),
        (2, f'[service "web"] root: "{state}/web" is inside state_dir "{state}"'),
        (3, '[service "web"] owner: must not be root (uid 0)'),
        (8, '[service "api"] public_key: must be one or more'),
        (9, '[service "api"] step_timeout: must be at most 365d'),
        (10, "line is not valid UTF-8"),
        (14, "[agent] worker_user: must not be root (uid 0)"),
        (15, '[agent] max_workers: must be a whole number, got "lots"'),
        (18, '[service "etc"] root: must be a directory of its own, not the system directory "/etc"'),
    ]
    assert len(problems) == len(expected), r.stderr
    for got, (line, text) in zip(problems, expected):
        assert got.startswith(f"{path}:{line}: {text}"), (got, line, text)

    # the same file fixed loads, and -v prints what loads back the same
    fixed = path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
    fixed[0:3] = ['[service "web"]', "bucket = acme-artifacts", f"root = {agent.tmp}/srv/web"]
    fixed[7:10] = ["", "step_timeout = 4d", 'health_command = "  # not a comment  "']
    fixed[13:15] = ["worker_user = nobody", ""]
    fixed[17] = f"root = {agent.tmp}/srv/etc"
    path.write_text("\n".join(fixed) + "\n")
    r = subprocess.run([str(agent_bin), "-c", str(path), "check-config", "-v"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'health_command = "  # not a comment  "\n' in r.stdout
    printed = agent.tmp / "printed.ini"
    printed.write_text(r.stdout)
    again = subprocess.run([str(agent_bin), "-c", str(printed), "check-config", "-v"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 1)[1] == r.stdout.split("\n", 1)[1]


def test_example_config_passes_check_config(agent_bin):
    r = subprocess.run([str(agent_bin), "-c", str(harness.REPO / "deploy.ini.example"), "check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def env_without_aws(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


def test_env_credentials_with_session_token(agent):
    agent.s3.proxy.add_credentials("ASIAENVTEST0001", "env-secret", "env-session-token")
    agent.write_config(_s3={"credentials": "env", "access_key_id": None, "secret_access_key": None})
    sha = new_sha()
    agent.publish(sha, app_files("env"))

    wrong = env_without_aws(AWS_ACCESS_KEY_ID="ASIAENVTEST0001", AWS_SECRET_ACCESS_KEY="env-secret",
                            AWS_SESSION_TOKEN="stale-token")
    r = agent.once(env=wrong)
    assert r.returncode != 0
    assert agent.current_sha() is None

    right = dict(wrong, AWS_SESSION_TOKEN="env-session-token")
    r = agent.once(env=right)
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha


def test_static_credentials_with_session_token(agent):
    agent.s3.proxy.add_credentials("ASIASTATIC00001", "static-secret", "static-token")
    agent.write_config(_s3={"access_key_id": "ASIASTATIC00001", "secret_access_key": "static-secret",
                            "session_token": "static-token"})
    sha = new_sha()
    agent.publish(sha, app_files("static"))
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha


def test_once_on_a_paused_service_ends_and_changes_nothing(agent):
    """A pause (kept in state.json, set by `deployctl pause`) stops automatic
    deploys, `once` included: it must end at once, not wait forever."""
    good = deploy_first(agent)
    state_path = agent.state_dir / "app" / "state.json"
    state = json.loads(state_path.read_text())
    state["paused"] = True
    state_path.write_text(json.dumps(state))
    agent.publish(new_sha(), app_files("2.0"))

    r = agent.once(timeout=60)
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == good
