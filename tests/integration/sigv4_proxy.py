"""A SigV4-verifying reverse proxy in front of s3rver.

s3rver does not check signatures (its authentication.js leaves SigV4
unimplemented: a wrong secret still gets the object), so every test request
goes through this proxy instead. For each
request it recomputes the AWS Signature Version 4 with botocore's own signer
(S3SigV4Auth) over exactly the headers the client says it signed, with the
client's X-Amz-Date, and answers 403 SignatureDoesNotMatch (an S3 XML error)
when the signatures differ. Otherwise it forwards to s3rver and streams the
body both ways in chunks, so a 256 MiB object is never held in memory.

Like real S3 it also rejects: a request without x-amz-content-sha256, an
unknown access key, a clock skew over 15 minutes, an x-amz-content-sha256
that does not match the body, and a session token that is missing, unsigned
or wrong when the credential has one.

The canonical request is built the way S3 builds it, not the way the client
wrote the URL: the path is decoded then percent-encoded once (all but
A-Za-z0-9-._~ and '/'), query parameters decoded, encoded and sorted. A
client that signs an unsorted or wrongly encoded URL therefore fails here as
it would against AWS.

Conditional writes are a fake of an S3 feature s3rver lacks: s3rver
ignores If-Match and If-None-Match on PUT, while S3 (since 2024) evaluates
them atomically. The proxy does it for s3rver, as S3 documents it: a PUT
with `If-None-Match: *` fails with 412 PreconditionFailed when the object
exists; a PUT with `If-Match: <etag>` fails with 412 when the object's ETag
differs and with 404 NoSuchKey when there is no object. Writes (PUT,
DELETE) to one key are serialized here, so the check and the write are one
step, as in S3: of two conditional writes racing on one ETag exactly one
wins.

Besides, for tests: a list of (method, path, status) of every request, a
bandwidth throttle for response bodies, and injected faults.
"""

import datetime
import hashlib
import hmac
import http.client
import http.server
import re
import socket
import socketserver
import tempfile
import threading
import time
import urllib.parse
import uuid
from contextlib import contextmanager, nullcontext

from botocore.auth import EMPTY_SHA256_HASH, UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
CHUNK = 256 * 1024
MAX_SKEW = datetime.timedelta(minutes=15)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "expect",
}
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


class S3Error(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class _Verifier(S3SigV4Auth):
    """botocore's S3 signer, fed the client's claimed payload hash.

    For UNSIGNED-PAYLOAD requests payload signing is off; for a hex or
    streaming claim the claim itself goes into the canonical request (the
    proxy checks the claim against the body separately, while spooling it).
    """

    def __init__(self, credentials, region, content_sha256):
        super().__init__(credentials, "s3", region)
        self._claimed = content_sha256

    def _should_sha256_sign_payload(self, request):
        return self._claimed != UNSIGNED_PAYLOAD

    def payload(self, request):
        if self._claimed == UNSIGNED_PAYLOAD:
            return UNSIGNED_PAYLOAD
        return self._claimed

    def _normalize_url_path(self, path):
        return path  # already canonical, see canonical_path()


def canonical_path(raw_path):
    return urllib.parse.quote(urllib.parse.unquote(raw_path), safe="/-_.~")


def canonical_params(raw_query):
    return urllib.parse.parse_qsl(raw_query, keep_blank_values=True)


def compute_signature(method, raw_path, raw_query, headers, signed_names,
                      amz_date, region, credentials, content_sha256):
    """Return (signature, signed_headers) botocore computes for this request.

    headers: list of (name, value) as received. Only the headers named in
    signed_names go into the signer, so a client that forgot to sign one
    S3 requires (host, x-amz-date, x-amz-content-sha256, the token) gets a
    different SignedHeaders list and fails.
    """
    req = AWSRequest(method=method,
                     url="http://placeholder" + canonical_path(raw_path),
                     params=canonical_params(raw_query))
    for name, value in headers:
        if name.lower() in signed_names:
            req.headers[name] = value  # HTTPHeaders appends repeated names
    if "host" not in signed_names:
        # headers_to_sign() would take the host from our placeholder URL.
        req.headers["Host"] = "unsigned-host.invalid"
    req.context["timestamp"] = amz_date
    auth = _Verifier(credentials, region, content_sha256)
    auth._modify_request_before_signing(req)
    canonical = auth.canonical_request(req)
    sts = auth.string_to_sign(req, canonical)
    return auth.signature(sts, req), auth.signed_headers(auth.headers_to_sign(req))


def error_xml(code, message, resource=""):
    rid = uuid.uuid4().hex[:16].upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>{rid}</RequestId></Error>"
    ).encode()


class Fault:
    """An injected failure for requests matching `match(method, path)`.

    status: answer this status with an S3 error body instead of forwarding.
    cut_after: forward, but close the connection after this many body bytes.
    delay: seconds to sleep before answering.
    times: how many matching requests it applies to (None: all).
    """

    def __init__(self, match, status=None, code="InternalError", cut_after=None,
                 delay=0.0, times=1):
        self.match = match
        self.status = status
        self.code = code
        self.cut_after = cut_after
        self.delay = delay
        self.times = times
        self.hits = 0


class SigV4Proxy:
    def __init__(self, upstream_host, upstream_port, region="us-east-1",
                 credentials=None, host="127.0.0.1", port=0):
        self.upstream = (upstream_host, upstream_port)
        self.region = region
        # access key -> (secret, session token or None)
        self.credentials = dict(credentials or {"S3RVER": ("S3RVER", None)})
        # What s3rver accepts; alternative credentials are forwarded as this.
        self.upstream_access_key = "S3RVER"
        self.requests = []          # (method, path?query, status)
        self.rejections = []        # (method, path?query, code, detail)
        self.throttle_bps = None    # response body bytes/second, None = unlimited
        self.faults = []
        self.lock = threading.Lock()
        self._key_locks = {}        # object path -> _KeyLock
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self.host, self.port = self._server.server_address[:2]
        self._thread = None

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="sigv4-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def add_credentials(self, access_key, secret_key, token=None):
        self.credentials[access_key] = (secret_key, token)

    def inject(self, match, **kw):
        fault = Fault(match, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def reset(self):
        """Forget faults and throttling (counters are kept: tests slice them)."""
        with self.lock:
            self.faults.clear()
            self.throttle_bps = None

    def _take_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                if (f.times is None or f.hits < f.times) and f.match(method, path):
                    f.hits += 1
                    return f
        return None

    def _key_lock(self, method, path):
        """Readers of one key share it, a writer has it alone: check-then-write
        is atomic, and a read sees an object whole."""
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            return nullcontext()
        key = path.partition("?")[0]
        with self.lock:
            lock = self._key_locks.setdefault(key, _KeyLock())
        return lock.write() if method in ("PUT", "DELETE") else lock.read()

    def _upstream_etag(self, path):
        """The ETag (quotes stripped) s3rver has for this object now, or
        None when there is none."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request("HEAD", path.partition("?")[0],
                         headers={"x-amz-content-sha256": UNSIGNED_PAYLOAD})
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise OSError(f"HEAD for a conditional write: HTTP {resp.status}")
        return (resp.getheader("ETag") or "").strip('"')

    def _record(self, method, path, status):
        with self.lock:
            self.requests.append((method, path, status))

    def _reject(self, method, path, code, detail):
        with self.lock:
            self.rejections.append((method, path, code, detail))


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _KeyLock:
    """A fake of S3's atomic replacement of an object, which s3rver lacks: on
    S3 a GET sees the old object or the new one, whole; on s3rver a GET that
    races a PUT of the same key can get the old Content-Length with the new
    bytes (a pointer read that way names the new build without its rollout
    policy). Readers share the key; a writer has it alone. New readers wait
    while a writer waits, and a writer waits at most WRITER_WAIT_SECONDS for
    readers, so that a test that stalls a download never hangs a PUT."""

    WRITER_WAIT_SECONDS = 10

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self):
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True
            deadline = time.monotonic() + self.WRITER_WAIT_SECONDS
            while self._readers and deadline > time.monotonic():
                self._cond.wait(deadline - time.monotonic())
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sigv4-proxy"

    def log_message(self, fmt, *args):  # quiet: the request list is the log
        pass

    def do_GET(self):
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # -- request side -------------------------------------------------

    def _handle(self):
        self._answered = False
        proxy = self.server.proxy
        method = self.command
        path = self.path
        try:
            fault = proxy._take_fault(method, path)
            if fault and fault.delay:
                time.sleep(fault.delay)
            body = self._verify_and_spool(proxy)
            if fault and fault.status:
                body[0].close()
                proxy._record(method, path, fault.status)
                self._send_error(fault.status, fault.code, "injected fault")
                return
            with proxy._key_lock(method, path):
                try:
                    self._check_write_conditions(proxy)
                except S3Error:
                    body[0].close()
                    raise
                self._forward(proxy, body, fault)
        except S3Error as e:
            proxy._reject(method, path, e.code, e.message)
            proxy._record(method, path, e.status)
            self._send_error(e.status, e.code, e.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # client went away mid-answer
        except OSError as e:  # s3rver unreachable or cut
            if getattr(self, "_answered", False):
                self.close_connection = True
            else:
                proxy._record(method, path, 503)
                self._send_error(503, "ServiceUnavailable", f"upstream: {e}")

    def _verify_and_spool(self, proxy):
        headers = list(self.headers.items())
        hmap = {k.lower(): v for k, v in headers}
        content_sha = hmap.get("x-amz-content-sha256")
        if content_sha is None:
            raise S3Error(400, "InvalidRequest",
                          "Missing required header for this request: x-amz-content-sha256")
        m = AUTH_RE.match(hmap.get("authorization", ""))
        if not m:
            raise S3Error(403, "AccessDenied", "Missing or malformed AWS4-HMAC-SHA256 Authorization")
        cred_parts = m.group("cred").split("/")
        if len(cred_parts) != 5 or cred_parts[3] != "s3" or cred_parts[4] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed", f"bad credential scope {m.group('cred')}")
        akid, scope_date, region = cred_parts[0], cred_parts[1], cred_parts[2]
        if akid not in proxy.credentials:
            raise S3Error(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.")
        if region != proxy.region:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          f"the region '{region}' is wrong; expecting '{proxy.region}'")
        amz_date = hmap.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        except ValueError:
            raise S3Error(403, "AccessDenied", f"bad or missing X-Amz-Date {amz_date!r}")
        if scope_date != amz_date[:8]:
            raise S3Error(403, "SignatureDoesNotMatch", "credential scope date differs from X-Amz-Date")
        if abs(datetime.datetime.utcnow() - when) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is too large.")
        secret, token = proxy.credentials[akid]
        if token is not None and hmap.get("x-amz-security-token") != token:
            raise S3Error(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        signed_names = set(m.group("signed").split(";"))
        raw_path, _, raw_query = self.path.partition("?")
        want_sig, want_signed = compute_signature(
            self.command, raw_path, raw_query, headers, signed_names, amz_date,
            region, Credentials(akid, secret, token), content_sha)
        got_signed = ";".join(sorted(signed_names))
        if want_signed != got_signed or not hmac.compare_digest(want_sig, m.group("sig")):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature "
                          "you provided. Check your key and signing method.")
        body = self._spool_body(hmap, content_sha, want_sig, amz_date,
                                "/".join(cred_parts[1:]), secret, region)
        if akid != proxy.upstream_access_key:
            self._upstream_auth = hmap["authorization"].replace(
                f"Credential={akid}/", f"Credential={proxy.upstream_access_key}/", 1)
        else:
            self._upstream_auth = None
        return body

    def _read_raw_body(self, hmap):
        """Yield the request body as sent (Content-Length or chunked)."""
        if hmap.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        raise S3Error(400, "IncompleteBody", "body cut short")
                    left -= len(data)
                    yield data
                self.rfile.readline(16)
        else:
            left = int(hmap.get("content-length") or 0)
            while left:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    raise S3Error(400, "IncompleteBody", "body cut short")
                left -= len(data)
                yield data

    def _spool_body(self, hmap, content_sha, seed_sig, amz_date, scope, secret, region):
        """Read the body into a temp file (memory up to 8 MiB), checking
        x-amz-content-sha256, or the chunk signatures of an aws-chunked body."""
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        raw = self._read_raw_body(hmap)
        if content_sha == STREAMING_PAYLOAD:
            _decode_aws_chunked(raw, spool, seed_sig, amz_date, scope, secret, region)
        else:
            h = hashlib.sha256()
            for data in raw:
                h.update(data)
                spool.write(data)
            if content_sha != UNSIGNED_PAYLOAD and content_sha != h.hexdigest():
                raise S3Error(400, "XAmzContentSHA256Mismatch",
                              "The provided 'x-amz-content-sha256' header does not match what was computed.")
        size = spool.tell()
        spool.seek(0)
        return spool, size

    def _check_write_conditions(self, proxy):
        """S3's conditional writes (a fake: s3rver ignores both headers)."""
        if self.command != "PUT":
            return
        if_match = self.headers.get("If-Match")
        if_none_match = self.headers.get("If-None-Match")
        if if_match is None and if_none_match is None:
            return
        if if_none_match is not None and if_none_match.strip() != "*":
            raise S3Error(501, "NotImplemented",
                          "A header you provided implies functionality that is not implemented")
        etag = proxy._upstream_etag(self.path)
        if if_match is not None:
            if etag is None:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
            wanted = [t.strip().strip('"') for t in if_match.split(",")]
            if "*" not in wanted and etag not in wanted:
                raise S3Error(412, "PreconditionFailed",
                              "At least one of the pre-conditions you specified did not hold")
        if if_none_match is not None and etag is not None:
            raise S3Error(412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold")

    # -- upstream side ------------------------------------------------

    def _forward(self, proxy, body, fault):
        spool, size = body
        conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                ln = name.lower()
                if ln in HOP_BY_HOP or ln in ("content-length", "content-encoding",
                                              "x-amz-decoded-content-length"):
                    continue
                if self.command == "PUT" and ln in ("if-match", "if-none-match"):
                    continue  # evaluated here (_check_write_conditions)
                if ln == "authorization" and self._upstream_auth:
                    value = self._upstream_auth
                if ln == "x-amz-content-sha256" and value == STREAMING_PAYLOAD:
                    value = UNSIGNED_PAYLOAD
                conn.putheader(name, value)
            enc = self.headers.get("Content-Encoding", "")
            enc = ",".join(e for e in (x.strip() for x in enc.split(",")) if e and e != "aws-chunked")
            if enc:
                conn.putheader("Content-Encoding", enc)
            if size or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(size))
            conn.endheaders()
            while True:
                data = spool.read(CHUNK)
                if not data:
                    break
                conn.send(data)
            resp = conn.getresponse()
            return self._relay_response(proxy, resp, fault)
        finally:
            spool.close()
            conn.close()

    def _relay_response(self, proxy, resp, fault):
        self._answered = True
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for name, value in resp.getheaders():
            if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                continue
            self.send_header(name, value)
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        chunked = False
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Transfer-Encoding", "chunked")
            chunked = True
        # Recorded before the headers go out: a client that has its answer
        # (a PUT's is complete with its headers) finds it listed.
        proxy._record(self.command, self.path, resp.status)
        self.end_headers()
        if no_body:
            resp.read()
            return resp.status
        sent = 0
        start = time.monotonic()
        cut = fault.cut_after if fault else None
        while True:
            data = resp.read(64 * 1024)
            if not data:
                break
            if cut is not None and sent + len(data) > cut:
                data = data[: max(0, cut - sent)]
                self._write(data, chunked)
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return resp.status
            self._write(data, chunked)
            sent += len(data)
            bps = proxy.throttle_bps
            if bps:
                ahead = sent / bps - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        return resp.status

    def _write(self, data, chunked):
        if not data:
            return
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)

    def _send_error(self, status, code, message):
        body = error_xml(code, message, self.path)
        try:
            self.send_response_only(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Whatever body the client still sends is not read: close.
        self.close_connection = True


def _signing_key(secret, date, region):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, b"s3", hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def _decode_aws_chunked(raw, out, seed_sig, amz_date, scope, secret, region):
    """Decode a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body into `out`, checking
    each chunk's signature (chained from the seed signature)."""
    buf = b""
    it = iter(raw)
    key = _signing_key(secret, amz_date[:8], region)
    prev = seed_sig

    def fill(n):
        nonlocal buf
        while len(buf) < n:
            data = next(it, b"")
            if not data:
                raise S3Error(400, "IncompleteBody", "aws-chunked body cut short")
            buf += data

    while True:
        while b"\r\n" not in buf:
            data = next(it, b"")
            if not data:
                raise S3Error(400, "IncompleteBody", "aws-chunked body cut short")
            buf += data
        line, buf = buf.split(b"\r\n", 1)
        size_hex, _, ext = line.partition(b";")
        size = int(size_hex, 16)
        sig = ext.split(b"=", 1)[1].decode() if b"chunk-signature=" in ext else ""
        fill(size + 2)
        chunk, buf = buf[:size], buf[size + 2:]
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev,
                         EMPTY_SHA256_HASH, hashlib.sha256(chunk).hexdigest()])
        want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig):
            raise S3Error(403, "SignatureDoesNotMatch", "chunk signature mismatch")
        prev = sig
        if size == 0:
            return
        out.write(chunk)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of s3rver")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--port-file", help="write the listening port here")
    args = ap.parse_args()
    lh, _, lp = args.listen.rpartition(":")
    uh, _, up = args.upstream.rpartition(":")
    proxy = SigV4Proxy(uh, int(up), region=args.region, host=lh, port=int(lp)).start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{proxy.port}\n")
        import os
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"sigv4-proxy listening on {proxy.endpoint} -> {args.upstream}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
