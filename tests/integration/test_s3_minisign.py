"""Signed releases: with public_key set, <key>.minisig is required and checked
with libsodium in the fetch worker before anything is unpacked. Signatures
are made with Debian's minisign."""

import harness
from s3_helpers import MinisignKey, sign_as

SHA = "5a5a5a5a5a5a5a5"
OLD = "01d0000000000000"


def publish_signed(agent, sha, data, sig):
    agent.s3.put(agent.key(sha) + ".minisig", sig)
    return agent.publish_archive(sha, data)


def not_deployed(agent, r, *needles):
    assert r.returncode != 0
    assert agent.current_sha() is None
    assert agent.releases() == []
    downloads = agent.state_dir / agent.service / "downloads"
    assert not downloads.exists() or [p.name for p in downloads.iterdir()] == []
    for n in needles:
        assert n in r.stderr, f"{n!r} not in the output"


def bad_reasons(agent):
    return [b.get("reason", "") for b in agent.state().get("bad", [])]


def archive(tag):
    return harness.make_tar_gz(harness.with_manifest({"app": f"build {tag}\n".encode()}))


def test_good_signature_deploys(agent):
    key = MinisignKey(agent.tmp)
    data = archive("good")
    publish_signed(agent, SHA, data, sign_as(key, agent.tmp, data, f"{SHA}.tar.gz"))
    agent.write_config(public_key=key.public)
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA


def test_one_of_several_keys_and_separators(agent):
    old, new = MinisignKey(agent.tmp, "old"), MinisignKey(agent.tmp, "new")
    data = archive("rotated")
    publish_signed(agent, SHA, data, sign_as(new, agent.tmp, data, f"{SHA}.tar.gz"))
    agent.write_config(public_key=f"{old.public}, {new.public}")
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA


def test_tampered_artifact_is_refused(agent):
    key = MinisignKey(agent.tmp)
    data = archive("original")
    sig = sign_as(key, agent.tmp, data, f"{SHA}.tar.gz")
    tampered = archive("tampered")
    # The attacker also fixed the .sha256 sidecar: only the signature stops it.
    publish_signed(agent, SHA, tampered, sig)
    agent.write_config(public_key=key.public)
    r = agent.once()
    not_deployed(agent, r, "does not match the file")
    assert any("signature" in why for why in bad_reasons(agent))


def test_wrong_key_is_refused(agent):
    mine, theirs = MinisignKey(agent.tmp, "mine"), MinisignKey(agent.tmp, "theirs")
    data = archive("foreign")
    publish_signed(agent, SHA, data, sign_as(theirs, agent.tmp, data, f"{SHA}.tar.gz"))
    agent.write_config(public_key=mine.public)
    r = agent.once()
    not_deployed(agent, r, f"signed with key {theirs.key_id}", "not a configured public_key")
    assert bad_reasons(agent)


def test_signature_of_another_artifact_is_refused(agent):
    """A valid signature of an old build, replayed under a new sha."""
    key = MinisignKey(agent.tmp)
    data = archive("old build")
    publish_signed(agent, SHA, data, sign_as(key, agent.tmp, data, f"{OLD}.tar.gz"))
    agent.write_config(public_key=key.public)
    r = agent.once()
    not_deployed(agent, r, f"does not name file:{SHA}.tar.gz")
    assert bad_reasons(agent)


def test_legacy_signature_is_refused(agent):
    key = MinisignKey(agent.tmp)
    data = archive("legacy")
    publish_signed(agent, SHA, data, sign_as(key, agent.tmp, data, f"{SHA}.tar.gz", legacy=True))
    agent.write_config(public_key=key.public)
    r = agent.once()
    not_deployed(agent, r, "legacy signature")
    assert bad_reasons(agent)
    # Refused before the download: no GET of the artifact itself.
    gets = [p for m, p, st in agent.s3_requests() if m == "GET" and p.split("?")[0].endswith(".tar.gz")]
    assert gets == []


def test_missing_signature_is_not_ready_not_bad(agent):
    key = MinisignKey(agent.tmp)
    data = archive("unsigned yet")
    agent.publish_archive(SHA, data)
    agent.write_config(public_key=key.public)
    r = agent.once()
    not_deployed(agent, r, f"{agent.key(SHA)}.minisig not found")
    assert bad_reasons(agent) == []
    # CI uploads the signature a moment later: the next poll deploys.
    agent.s3.put(agent.key(SHA) + ".minisig", sign_as(key, agent.tmp, data, f"{SHA}.tar.gz"))
    r = agent.once()
    assert r.returncode == 0, r.stderr
    assert agent.current_sha() == SHA


def test_garbage_signature_file_is_not_bad(agent):
    key = MinisignKey(agent.tmp)
    data = archive("garbage sig")
    publish_signed(agent, SHA, data, b"untrusted comment: hello\nnot base64 at all\n")
    agent.write_config(public_key=key.public)
    r = agent.once()
    not_deployed(agent, r, "signature line is not base64")
    assert bad_reasons(agent) == []
