"""Credentials: environment, static, and EC2 role credentials over IMDSv2,
against a fake IMDS (the real one cannot run here). The SigV4 proxy knows
each generation of role credentials, session token included, and refuses
requests signed with a retired one, so a passing deploy shows that the
agent signed with the credentials of the moment and sent their token."""

import os
import socket

import harness
import pytest
from fake_imds import BASE, ROLE, FakeIMDS
from s3_helpers import env_with, faults, imds, is_artifact, use_imds  # noqa: F401

SHA = "cafe0cafe0cafe0"
MIB = 1 << 20


def publish(agent, size=2 * MIB, seed=7):
    data = harness.make_tar_gz(harness.with_manifest({"blob": harness.semi_random(size, seed)}))
    agent.publish_archive(SHA, data)
    return data


def artifact_path(agent):
    want = f"/{harness.BUCKET}/{agent.key(SHA)}"
    return lambda m, p: m == "GET" and p.split("?")[0] == want


def no_secrets(r, imds_):
    out = r.stdout + r.stderr
    for gen in imds_.generations:
        assert gen.secret_key not in out
        assert gen.token not in out


def imds_calls(imds_):
    return [(m, p, st) for m, p, st, _ in imds_.log]


def test_imds_role_credentials_deploy(agent, imds):
    publish(agent)
    rejections = len(agent.s3.proxy.rejections)
    use_imds(agent)
    r = agent.once(env=imds.env())
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA
    # Per worker that talks to S3 (discover, fetch): token, role, credentials.
    per_worker = [("PUT", "/latest/api/token", 200), ("GET", BASE, 200), ("GET", BASE + ROLE, 200)]
    assert imds_calls(imds) == per_worker * 2
    assert all(tok for m, p, st, tok in imds.log if m == "GET")     # never a GET without token
    assert agent.s3.proxy.rejections[rejections:] == []
    no_secrets(r, imds)


def test_fake_imds_enforces_v2(imds):
    import http.client
    c = http.client.HTTPConnection(imds.host, imds.port, timeout=5)
    c.request("GET", BASE)
    assert c.getresponse().status == 401
    c.close()
    c = http.client.HTTPConnection(imds.host, imds.port, timeout=5)
    c.request("PUT", "/latest/api/token")
    assert c.getresponse().status == 400                        # no TTL header


def test_auto_prefers_the_environment(agent, imds):
    publish(agent)
    agent.write_config(_s3={"credentials": "auto", "access_key_id": None, "secret_access_key": None})
    env = imds.env()
    env.update(AWS_ACCESS_KEY_ID=harness.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=harness.SECRET_KEY)
    r = agent.once(env=env)
    assert r.returncode == 0, r.stderr
    assert imds.log == []
    assert "credentials environment" in r.stderr


def test_auto_falls_back_to_imds(agent, imds):
    publish(agent)
    rejections = len(agent.s3.proxy.rejections)
    agent.write_config(_s3={"credentials": "auto", "access_key_id": None, "secret_access_key": None})
    r = agent.once(env=imds.env())
    assert r.returncode == 0, r.stderr
    assert len(imds.log) == 6
    assert "credentials imds" in r.stderr
    assert agent.s3.proxy.rejections[rejections:] == []


def test_env_session_token_is_sent(agent):
    publish(agent)
    agent.s3.proxy.add_credentials("ASIAENVTEST0001", "env-secret-1", "env-session-token-1")
    try:
        agent.write_config(_s3={"credentials": "env", "access_key_id": None, "secret_access_key": None})
        r = agent.once(env=env_with(AWS_ACCESS_KEY_ID="ASIAENVTEST0001", AWS_SECRET_ACCESS_KEY="env-secret-1",
                                    AWS_SESSION_TOKEN="env-session-token-1"))
        assert r.returncode == 0, r.stderr
        assert "env-secret-1" not in r.stderr and "env-session-token-1" not in r.stderr
        r = agent.once(env=env_with(AWS_ACCESS_KEY_ID="ASIAENVTEST0001", AWS_SECRET_ACCESS_KEY="env-secret-1",
                                    AWS_SESSION_TOKEN="wrong-token"))
        assert r.returncode != 0 and "InvalidToken" in r.stderr
    finally:
        agent.s3.proxy.credentials.pop("ASIAENVTEST0001", None)


def stall_midway(faults, agent, on_hit=None, after=None):
    """Stall the artifact's body after 512 KiB until the agent gives up (the
    tests set a 2 s stall limit) and resumes. on_hit runs when the GET
    arrives (the worker holds its credentials by then), after once the
    agent has hung up."""
    faults.inject(artifact_path(agent), stall_after=512 * 1024, stall=30, on_hit=on_hit, after=after)


def stalled_env(imds_):
    env = imds_.env()
    env["DEPLOY_AGENT_STALL_TIMEOUT"] = "2"
    return env


def test_rotation_mid_download(agent, imds, faults):
    """Credentials enter their refresh window during the download; IMDS has
    rotated them by then and the old set is retired: the resumed GET must be
    signed with the new one and carry its token."""
    data = publish(agent)
    rejections = len(agent.s3.proxy.rejections)
    # Expiration 10 min + 1 s from serving: due for refresh 1 s later.
    imds.lifetime = 601
    use_imds(agent, endpoint=faults.endpoint)
    retired = []

    def retire_first():
        with agent.s3.proxy.lock:
            retired.append(agent.s3.proxy.credentials.pop(imds.generations[0].access_key))

    stall_midway(faults, agent, on_hit=imds.rotate, after=retire_first)
    r = agent.once(env=stalled_env(imds))
    assert r.returncode == 0, r.stderr
    assert (agent.root / "current" / "MANIFEST").exists()
    gets = faults.requests(is_artifact(agent, SHA))
    first, second = imds.generations[0], imds.generations[1]
    assert [g.token for g in gets] == [first.token, second.token]
    assert gets[1].headers["range"] == f"bytes={gets[0].body_bytes}-"
    assert sum(g.body_bytes for g in gets) == len(data)
    assert retired and agent.s3.proxy.rejections[rejections:] == []
    no_secrets(r, imds)


def test_imds_outage_keeps_valid_credentials(agent, imds, faults):
    publish(agent)
    imds.lifetime = 601
    use_imds(agent, endpoint=faults.endpoint)
    stall_midway(faults, agent, on_hit=lambda: imds.outage("500"))
    r = agent.once(env=stalled_env(imds))
    assert r.returncode == 0, r.stderr
    assert "IMDS refresh failed" in r.stderr and "keeping the role credentials" in r.stderr
    assert [st for m, p, st in imds_calls(imds)][-2:] == [500, 500]   # one retry, then keep
    gets = faults.requests(is_artifact(agent, SHA))
    assert len({g.token for g in gets}) == 1
    no_secrets(r, imds)


def test_imds_refused_keeps_valid_credentials(agent, imds, faults):
    publish(agent)
    imds.lifetime = 601
    use_imds(agent, endpoint=faults.endpoint)
    stall_midway(faults, agent, on_hit=lambda: imds.outage("refuse"))
    r = agent.once(env=stalled_env(imds))
    imds.outage(None)
    assert r.returncode == 0, r.stderr
    assert "IMDS refresh failed" in r.stderr


def test_imds_token_expiry(agent, imds, faults):
    """The session token expires (here after 1 s): the next IMDS GET gets
    401, and the agent asks for a new token once and goes on."""
    publish(agent)
    imds.lifetime = 601
    imds.max_token_ttl = 1
    use_imds(agent, endpoint=faults.endpoint)
    stall_midway(faults, agent, after=lambda: imds.rotate())
    r = agent.once(env=stalled_env(imds))
    assert r.returncode == 0, r.stderr
    calls = imds_calls(imds)
    i = calls.index(("GET", BASE, 401))
    assert calls[i + 1:i + 4] == [("PUT", "/latest/api/token", 200), ("GET", BASE, 200),
                                  ("GET", BASE + ROLE, 200)]


def test_imds_down_from_the_start_fails_clearly(agent, imds):
    publish(agent)
    use_imds(agent)
    imds.outage("refuse")
    r = agent.once(env=imds.env())
    imds.outage(None)
    assert r.returncode != 0
    assert "no credentials from IMDS" in r.stderr
    assert agent.current_sha() is None


def loopback_alias_available():
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not loopback_alias_available(), reason="127.0.0.2 not bindable")
def test_imds_never_through_a_proxy_but_s3_is(agent, s3, faults):
    """http_proxy is honoured for S3 (the fault relay acts as the forward
    proxy) but never used for IMDS (on 127.0.0.2, not in no_proxy)."""
    fake = FakeIMDS(proxy=s3.proxy, host="127.0.0.2").start()
    try:
        publish(agent)
        use_imds(agent)
        env = fake.env()
        env.update(http_proxy=faults.endpoint, HTTPS_PROXY=faults.endpoint, no_proxy="", NO_PROXY="")
        r = agent.once(env=env)
        assert r.returncode == 0, r.stderr
        assert len(fake.log) == 6
        via_proxy = faults.requests()
        assert via_proxy and all(r.absolute for r in via_proxy)
        assert not any("169.254" in r.target or "127.0.0.2" in r.target for r in via_proxy)
    finally:
        fake.stop()
        with s3.proxy.lock:
            for gen in fake.generations:
                s3.proxy.credentials.pop(gen.access_key, None)


def test_static_credentials_never_logged(agent):
    publish(agent)
    agent.write_config(_agent={"log_level": "debug"})
    r = agent.once(env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    assert r.returncode == 0, r.stderr
    check = agent.run("check-config", "-v")
    assert f"secret_access_key = {harness.SECRET_KEY}" not in check.stdout


def test_no_proxy_is_honoured(agent):
    """http_proxy points at a closed port: S3 fails through it, and works
    once the endpoint is in NO_PROXY."""
    publish(agent)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    dead.close()
    r = agent.once(env=env_with(http_proxy=proxy, HTTPS_PROXY=proxy))
    assert r.returncode != 0 and agent.current_sha() is None
    r = agent.once(env=env_with(http_proxy=proxy, HTTPS_PROXY=proxy, NO_PROXY="127.0.0.1,localhost"))
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA
