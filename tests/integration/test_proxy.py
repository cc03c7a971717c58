"""The signature-verifying proxy must itself be trustworthy: if it let a
wrong signature through, every "signatures are right" test of the agent
would prove nothing. These tests need no agent binary."""

import subprocess
import uuid

import botocore.config
import botocore.session
import pytest
from botocore.exceptions import ClientError

import harness


def client(endpoint, key=harness.ACCESS_KEY, secret=harness.SECRET_KEY, token=None):
    return botocore.session.get_session().create_client(
        "s3", region_name=harness.REGION, endpoint_url=endpoint,
        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def curl(s3, path, secret=harness.SECRET_KEY, headers=(), extra=()):
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}",
           "--aws-sigv4", f"aws:amz:{harness.REGION}:s3",
           "--user", f"{harness.ACCESS_KEY}:{secret}",
           "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    for h in headers:
        cmd += ["-H", h]
    cmd += [*extra, s3.endpoint + path]
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


@pytest.fixture
def obj(s3):
    key = f"proxy-test-{uuid.uuid4().hex[:8]}/hello.txt"
    client(s3.endpoint).put_object(Bucket=harness.BUCKET, Key=key, Body=b"hello world\n")
    return key


def test_right_secret_is_accepted(s3, obj):
    r = client(s3.endpoint).get_object(Bucket=harness.BUCKET, Key=obj)
    assert r["Body"].read() == b"hello world\n"
    assert ("GET", f"/{harness.BUCKET}/{obj}", 200) in s3.proxy.requests


def test_wrong_secret_is_rejected(s3, obj):
    with pytest.raises(ClientError) as e:
        client(s3.endpoint, secret="not-the-secret").get_object(Bucket=harness.BUCKET, Key=obj)
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert ("GET", f"/{harness.BUCKET}/{obj}", 403) in s3.proxy.requests


def test_s3rver_alone_does_not_check_signatures(s3, obj):
    # Why the proxy exists: straight to s3rver, a wrong secret still works.
    direct = client(f"http://127.0.0.1:{s3.s3rver_port}", secret="not-the-secret")
    assert direct.get_object(Bucket=harness.BUCKET, Key=obj)["Body"].read() == b"hello world\n"


def test_unknown_access_key_is_rejected(s3, obj):
    with pytest.raises(ClientError) as e:
        client(s3.endpoint, key="AKIANOTKNOWN").get_object(Bucket=harness.BUCKET, Key=obj)
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_curl_sigv4_right_and_wrong_secret(s3, obj):
    code, body = curl(s3, f"/{harness.BUCKET}/{obj}")
    assert (code, body) == (200, b"hello world\n")
    code, body = curl(s3, f"/{harness.BUCKET}/{obj}", secret="wrong")
    assert code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


def test_curl_listing_with_sorted_encoded_query(s3, obj):
    prefix = obj.split("/")[0] + "%2F"
    code, body = curl(s3, f"/{harness.BUCKET}?list-type=2&prefix={prefix}")
    assert code == 200, body
    assert obj.encode() in body


def test_unsorted_query_is_rejected_like_aws(s3, obj):
    # curl 7.88 signs the query as written; S3 signs it sorted.
    prefix = obj.split("/")[0] + "%2F"
    code, body = curl(s3, f"/{harness.BUCKET}?prefix={prefix}&list-type=2")
    assert code == 403 and b"SignatureDoesNotMatch" in body


def test_unencoded_slash_in_query_is_rejected_like_aws(s3, obj):
    prefix = obj.split("/")[0] + "/"
    code, body = curl(s3, f"/{harness.BUCKET}?list-type=2&prefix={prefix}")
    assert code == 403 and b"SignatureDoesNotMatch" in body


def test_missing_content_sha256_is_rejected(s3, obj):
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
           "--aws-sigv4", f"aws:amz:{harness.REGION}:s3",
           "--user", f"{harness.ACCESS_KEY}:{harness.SECRET_KEY}",
           f"{s3.endpoint}/{harness.BUCKET}/{obj}"]
    assert subprocess.run(cmd, capture_output=True, text=True).stdout == "400"


def test_range_is_passed_through(s3, obj):
    code, body = curl(s3, f"/{harness.BUCKET}/{obj}", headers=["Range: bytes=6-"])
    assert (code, body) == (206, b"world\n")


def test_session_token_must_be_signed_and_right(s3, obj):
    s3.proxy.add_credentials("ASIATEMPORARY", "tempsecret", "the-session-token")
    c = client(s3.endpoint, key="ASIATEMPORARY", secret="tempsecret", token="the-session-token")
    assert c.get_object(Bucket=harness.BUCKET, Key=obj)["Body"].read() == b"hello world\n"
    for token in (None, "another-token"):
        bad = client(s3.endpoint, key="ASIATEMPORARY", secret="tempsecret", token=token)
        with pytest.raises(ClientError) as e:
            bad.get_object(Bucket=harness.BUCKET, Key=obj)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_awscli_upload_and_download_through_proxy(s3, tmp_path):
    key = f"proxy-test-{uuid.uuid4().hex[:8]}/blob.bin"
    data = harness.semi_random(3 << 20, seed=7)
    s3.put(key, data)
    assert client(s3.endpoint).get_object(Bucket=harness.BUCKET, Key=key)["Body"].read() == data
    bad = s3.aws_env(secret_key="wrong")
    r = s3.aws("s3", "cp", f"s3://{harness.BUCKET}/{key}", str(tmp_path / "x"), env=bad, check=False)
    assert r.returncode != 0 and "403" in (r.stderr + r.stdout)


def test_tampered_body_is_rejected(s3):
    # A signed payload hash that does not match the body.
    import http.client
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    key = f"proxy-test-{uuid.uuid4().hex[:8]}/t.txt"
    req = AWSRequest(method="PUT", url=f"{s3.endpoint}/{harness.BUCKET}/{key}", data=b"original")
    S3SigV4Auth(Credentials(harness.ACCESS_KEY, harness.SECRET_KEY), "s3", harness.REGION).add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", s3.proxy.port)
    conn.request("PUT", f"/{harness.BUCKET}/{key}", body=b"tampered", headers=dict(req.headers.items()))
    r = conn.getresponse()
    assert r.status == 400 and b"XAmzContentSHA256Mismatch" in r.read()


def test_conditional_get_passes_through(s3, obj):
    etag = client(s3.endpoint).head_object(Bucket=harness.BUCKET, Key=obj)["ETag"]
    code, body = curl(s3, f"/{harness.BUCKET}/{obj}", headers=[f"If-None-Match: {etag}"])
    assert (code, body) == (304, b"")
    code, body = curl(s3, f"/{harness.BUCKET}/{obj}", headers=['If-None-Match: "other"'])
    assert (code, body) == (200, b"hello world\n")


# -- conditional writes (a fake of S3's, which s3rver lacks) -------------------

def signed_put(port, key, body, headers=None):
    """A SigV4-signed PUT with extra headers (this botocore predates
    PutObject's IfMatch/IfNoneMatch). Returns (status, headers, body)."""
    import http.client
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    path = f"/{harness.BUCKET}/{key}"
    req = AWSRequest(method="PUT", url=f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {})
    S3SigV4Auth(Credentials(harness.ACCESS_KEY, harness.SECRET_KEY), "s3", harness.REGION).add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("PUT", path, body=body, headers=dict(req.headers.items()))
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def read(s3, key):
    return client(s3.endpoint).get_object(Bucket=harness.BUCKET, Key=key)["Body"].read()


@pytest.fixture
def fresh_key():
    return f"proxy-test-{uuid.uuid4().hex[:8]}/pointer"


def test_if_none_match_star_creates_only(s3, fresh_key):
    status, headers, _ = signed_put(s3.proxy.port, fresh_key, b"one\n", {"If-None-Match": "*"})
    assert status == 200 and headers.get("etag")
    status, _, body = signed_put(s3.proxy.port, fresh_key, b"two\n", {"If-None-Match": "*"})
    assert status == 412 and b"<Code>PreconditionFailed</Code>" in body
    assert read(s3, fresh_key) == b"one\n"


def test_if_match_writes_only_over_that_etag(s3, fresh_key):
    _, headers, _ = signed_put(s3.proxy.port, fresh_key, b"one\n")
    first = headers["etag"]
    status, headers, _ = signed_put(s3.proxy.port, fresh_key, b"two\n", {"If-Match": first})
    assert status == 200 and headers["etag"] != first
    # The ETag read before the write above is stale now: S3 answers 412.
    status, _, body = signed_put(s3.proxy.port, fresh_key, b"three\n", {"If-Match": first})
    assert status == 412 and b"<Code>PreconditionFailed</Code>" in body
    assert read(s3, fresh_key) == b"two\n"
    # Quoted or bare, as S3 takes it.
    status, _, _ = signed_put(s3.proxy.port, fresh_key, b"four\n", {"If-Match": headers["etag"].strip('"')})
    assert status == 200 and read(s3, fresh_key) == b"four\n"


def test_if_match_on_a_missing_key_fails(s3, fresh_key):
    status, _, body = signed_put(s3.proxy.port, fresh_key, b"x\n", {"If-Match": '"0123456789abcdef"'})
    assert status == 404 and b"<Code>NoSuchKey</Code>" in body
    with pytest.raises(ClientError):
        read(s3, fresh_key)


def test_if_none_match_takes_only_star(s3, fresh_key):
    status, _, body = signed_put(s3.proxy.port, fresh_key, b"x\n", {"If-None-Match": '"abc"'})
    assert status == 501 and b"NotImplemented" in body


def test_s3rver_alone_ignores_write_conditions(s3, fresh_key):
    # Why the proxy fakes them: straight to s3rver, both conditions are ignored.
    signed_put(s3.s3rver_port, fresh_key, b"one\n")
    status, _, _ = signed_put(s3.s3rver_port, fresh_key, b"two\n", {"If-None-Match": "*"})
    assert status == 200
    status, _, _ = signed_put(s3.s3rver_port, fresh_key, b"three\n", {"If-Match": '"not-the-etag"'})
    assert status == 200 and read(s3, fresh_key) == b"three\n"


def test_racing_if_match_writes_have_exactly_one_winner(s3, fresh_key):
    import threading
    for rnd in range(5):
        _, headers, _ = signed_put(s3.proxy.port, fresh_key, f"base {rnd}\n".encode())
        etag = headers["etag"]
        results = []
        start = threading.Barrier(8)

        def writer(i):
            start.wait()
            status, _, _ = signed_put(s3.proxy.port, fresh_key, f"writer {i}\n".encode(), {"If-Match": etag})
            results.append((status, i))

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for status, i in results if status == 200]
        assert len(winners) == 1, results
        assert sorted(status for status, _ in results) == [200] + [412] * 7
        assert read(s3, fresh_key) == f"writer {winners[0]}\n".encode()
