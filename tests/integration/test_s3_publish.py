"""`deployctl publish`: what CI runs. It uploads through the SigV4-checking
proxy; what it publishes, the agent deploys, and awscli reads back."""

import os
import subprocess
import time

import harness
from s3_helpers import MinisignKey, deployctl, faults, publish, use_endpoint  # noqa: F401

SHA = "c0ffee1234567"
SHA2 = "c0ffee7654321"


def build(tmp, name, files):
    p = tmp / name
    p.write_bytes(harness.make_tar_gz(harness.with_manifest(files)))
    return p


def aws_read(s3, key):
    """`aws s3 cp s3://BUCKET/KEY -`: the bytes awscli reads back."""
    r = subprocess.run([harness.aws_cli(), "--endpoint-url", s3.endpoint, "s3", "cp",
                        f"s3://{harness.BUCKET}/{key}", "-"], env=s3.aws_env(), capture_output=True,
                       timeout=120, check=True)
    return r.stdout


def puts(agent, settle=0.5):
    """The PUTs the SigV4 proxy recorded. It records a request after
    relaying its answer, so wait until the list stops growing."""
    def now():
        return [(m, p.split("?")[0]) for m, p, st in agent.s3_requests() if m == "PUT"]
    seen = now()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(settle)
        again = now()
        if again == seen:
            break
        seen = again
    return seen


def test_publish_then_deploy_and_read_back(agent):
    art = build(agent.tmp, "build.tar.gz", {"bin/app": b"#!/bin/sh\necho v1\n", "README": b"one\n"})
    r = publish(agent, SHA, art)
    assert r.returncode == 0, r.stderr
    key = agent.key(SHA)
    assert sorted(agent.s3.list_keys(agent.prefix)) == [key, key + ".sha256"]
    # The sidecar first, the artifact after it: never listed without it.
    assert puts(agent) == [("PUT", f"/{harness.BUCKET}/{key}.sha256"), ("PUT", f"/{harness.BUCKET}/{key}")]
    assert agent.s3.proxy.rejections == []

    assert aws_read(agent.s3, key) == art.read_bytes()
    side = aws_read(agent.s3, key + ".sha256").decode()
    assert side == f"{harness.sha256_hex(art.read_bytes())}  {SHA}.tar.gz\n"

    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA
    ok, why = harness.release_is_complete(agent.root / "current")
    assert ok, why


def test_publish_signed_with_pointer_deploys_in_pointer_mode(agent):
    key = MinisignKey(agent.tmp)
    art = build(agent.tmp, f"{SHA}.tar.gz", {"app": b"signed v1\n"})
    sig = agent.tmp / "sig.minisig"
    key.sign(art, out=sig)
    pointer = agent.prefix + "LATEST"
    r = publish(agent, SHA, art, "--minisig", sig, "--pointer", pointer)
    assert r.returncode == 0, r.stderr
    k = f"/{harness.BUCKET}/{agent.key(SHA)}"
    assert puts(agent) == [("PUT", k + ".sha256"), ("PUT", k + ".minisig"), ("PUT", k),
                           ("PUT", f"/{harness.BUCKET}/{pointer}")]
    assert aws_read(agent.s3, pointer) == (SHA + "\n").encode()
    assert aws_read(agent.s3, agent.key(SHA) + ".minisig") == sig.read_bytes()

    agent.write_config(select="pointer", pointer_key=pointer, public_key=key.public)
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA


def test_publish_refuses_a_signature_of_another_file(agent):
    key = MinisignKey(agent.tmp)
    art = build(agent.tmp, "build.tar.gz", {"app": b"x\n"})
    sig = agent.tmp / "build.minisig"
    key.sign(art, out=sig)                      # trusted comment: file:build.tar.gz
    r = publish(agent, SHA, art, "--minisig", sig)
    assert r.returncode == 1
    assert f"file:{SHA}.tar.gz" in r.stderr
    assert puts(agent) == []

    legacy = agent.tmp / "legacy.minisig"
    named = agent.tmp / f"{SHA}.tar.gz"
    named.write_bytes(art.read_bytes())
    key.sign(named, out=legacy, legacy=True)
    r = publish(agent, SHA, named, "--minisig", legacy)
    assert r.returncode == 1
    assert "legacy" in r.stderr
    assert puts(agent) == []


def test_publish_usage_and_config_errors(agent):
    art = build(agent.tmp, "a.tar.gz", {"x": b"x"})
    assert deployctl("-c", agent.config_path, "publish", "--bucket", harness.BUCKET, art).returncode == 2
    assert publish(agent, "NOT-A-SHA", art).returncode == 2
    assert publish(agent, SHA, art, "--suffix", "a/b").returncode == 2
    assert deployctl("-c", agent.config_path, "publish", "--bucket", harness.BUCKET, "--sha", SHA).returncode == 2
    bad = agent.tmp / "bad.ini"
    bad.write_text("[s3]\nregion = us-east-1\nbogus = 1\n")
    r = deployctl("-c", bad, "publish", "--bucket", harness.BUCKET, "--sha", SHA, art)
    assert r.returncode == 2 and "bogus" in r.stderr
    r = publish(agent, SHA, agent.tmp / "missing.tar.gz")
    assert r.returncode == 1 and "missing.tar.gz" in r.stderr
    assert puts(agent) == []


def test_publish_refuses_more_than_5_gib(agent):
    big = agent.tmp / "big.tar.gz"
    with open(big, "wb") as f:
        f.truncate((5 << 30) + 1)              # sparse: no disk used
    r = publish(agent, SHA, big)
    assert r.returncode == 1
    assert "5 GiB" in r.stderr and "multipart" in r.stderr
    assert puts(agent) == []


def test_publish_retries_slowdown_and_reset(agent, faults):
    art = build(agent.tmp, "a.tar.gz", {"x": os.urandom(300_000)})
    use_endpoint(agent, faults.endpoint)
    key = f"/{harness.BUCKET}/{agent.key(SHA)}"
    faults.inject(lambda m, p: m == "PUT" and p == key, status=503, code="SlowDown")
    faults.inject(lambda m, p: m == "PUT" and p == key + ".sha256", status=500)
    r = publish(agent, SHA, art)
    assert r.returncode == 0, r.stderr
    statuses = [(r.path, r.status) for r in faults.requests(lambda r: r.method == "PUT")]
    assert statuses == [(key + ".sha256", 500), (key + ".sha256", 200), (key, 503), (key, 200)]
    assert aws_read(agent.s3, agent.key(SHA)) == art.read_bytes()


def test_publish_without_config_uses_the_environment(agent):
    art = build(agent.tmp, "a.tar.gz", {"x": b"env\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=harness.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=harness.SECRET_KEY,
               AWS_REGION=harness.REGION, AWS_ENDPOINT_URL_S3=agent.s3.endpoint)
    if os.path.exists("/etc/deploy-agent/deploy.ini"):
        import pytest
        pytest.skip("a default config exists on this machine")
    r = deployctl("publish", "--bucket", harness.BUCKET, "--prefix", agent.prefix, "--sha", SHA, art, env=env)
    assert r.returncode == 0, r.stderr
    assert agent.key(SHA) in agent.s3.list_keys(agent.prefix)


def test_publish_with_an_s3_only_config(agent):
    """A CI runner's deploy.ini: only [s3], no [agent], no service. Publish needs
    no service, so it is not refused; the artifact and its .sha256 land."""
    _, s3, _ = agent.base_sections()
    ci = agent.tmp / "ci.ini"
    ci.write_text("[s3]\n" + "".join(f"{k} = {v}\n" for k, v in s3.items()))
    art = build(agent.tmp, "ci.tar.gz", {"bin/app": b"#!/bin/sh\necho ci-only\n"})
    r = deployctl("-c", ci, "publish", "--bucket", harness.BUCKET, "--prefix", agent.prefix,
                  "--sha", SHA2, art)
    assert r.returncode == 0, r.stderr
    assert "nothing to deploy" not in r.stderr
    key = agent.key(SHA2)
    assert sorted(agent.s3.list_keys(agent.prefix)) == [key, key + ".sha256"]
    assert aws_read(agent.s3, key) == art.read_bytes()
    side = aws_read(agent.s3, key + ".sha256").decode()
    assert side == f"{harness.sha256_hex(art.read_bytes())}  {SHA2}.tar.gz\n"


def test_ci_example_publishes_what_the_agent_deploys(agent):
    """examples/ci/publish.sh, run as CI would, with deployctl on PATH."""
    key = MinisignKey(agent.tmp)
    dist = agent.tmp / "dist"
    for name, data in harness.with_manifest({"bin/app": b"#!/bin/sh\necho ci\n", "etc/app.conf": b"x=1\n"}).items():
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_bytes(data)
    sha = "0123456789abcdef0123456789abcdef01234567"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(BUCKET=harness.BUCKET, PREFIX=agent.prefix, BUILD_DIR=str(dist), GIT_SHA=sha,
               POINTER_KEY=agent.prefix + "LATEST", MINISIGN_SECRET_KEY=str(key.sec_path),
               DEPLOY_CONFIG=str(agent.config_path),
               PATH=f"{harness.REPO / 'build'}:{env.get('PATH', '/usr/bin:/bin')}")
    r = subprocess.run(["bash", str(harness.REPO / "examples" / "ci" / "publish.sh")], env=env,
                       capture_output=True, text=True, timeout=300, cwd=agent.tmp)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    agent.write_config(select="pointer", pointer_key=agent.prefix + "LATEST", public_key=key.public)
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == sha
    ok, why = harness.release_is_complete(agent.root / "current")
    assert ok, why


def test_ci_publishes_the_agent_packages_of_a_commit(agent):
    """examples/ci/publish-agent.sh on a runner: the dist/<sha>/ of `make dist`
    (stand-in .debs, their sha256sum files) goes up with an [s3]-only config, one
    key per architecture, each with its .sha256; a .deb that does not match its
    .sha256 publishes nothing."""
    repo = agent.tmp / "checkout"
    repo.mkdir()
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    dist = repo / "dist" / sha
    dist.mkdir(parents=True)
    debs = {}
    for arch in ("amd64", "arm64"):
        name = f"deploy-agent_0.3.0+git20260101.{sha[:7]}_{arch}.deb"
        debs[arch] = f"!<arch>\n{arch}\n".encode()
        (dist / name).write_bytes(debs[arch])
        (dist / (name + ".sha256")).write_text(f"{harness.sha256_hex(debs[arch])}  {name}\n")
    _, s3, _ = agent.base_sections()
    ci = agent.tmp / "ci.ini"
    ci.write_text("[s3]\n" + "".join(f"{k} = {v}\n" for k, v in s3.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(BUCKET=harness.BUCKET, PREFIX=agent.prefix, DEPLOY_CONFIG=str(ci), SKIP_BUILD="1",
               PATH=f"{harness.REPO / 'build'}:{env.get('PATH', '/usr/bin:/bin')}")
    script = str(harness.REPO / "examples" / "ci" / "publish-agent.sh")

    bad = dist / f"deploy-agent_0.3.0+git20260101.{sha[:7]}_arm64.deb"
    bad.write_bytes(b"tampered\n")
    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300, cwd=repo)
    assert r.returncode != 0, r.stdout + r.stderr
    assert agent.s3.list_keys(agent.prefix) == []
    bad.write_bytes(debs["arm64"])

    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300, cwd=repo)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    keys = [agent.prefix + f"{sha}_{arch}.deb" for arch in ("amd64", "arm64")]
    assert sorted(agent.s3.list_keys(agent.prefix)) == sorted(keys + [k + ".sha256" for k in keys])
    for arch, key in zip(("amd64", "arm64"), keys):
        assert aws_read(agent.s3, key) == debs[arch]
        side = aws_read(agent.s3, key + ".sha256").decode()
        assert side == f"{harness.sha256_hex(debs[arch])}  {sha}_{arch}.deb\n"
