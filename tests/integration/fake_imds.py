"""A fake of the EC2 instance metadata service (IMDSv2), for the tests only.

EC2's real metadata service cannot run here; this one answers the few
requests the agent makes, the way IMDSv2 does:

  PUT /latest/api/token                        X-aws-ec2-metadata-token-ttl-seconds: 1..21600
                                               -> a session token (400 without the header)
  GET /latest/meta-data/iam/security-credentials/        -> the role name
  GET /latest/meta-data/iam/security-credentials/<role>  -> {"Code":"Success",
        "AccessKeyId", "SecretAccessKey", "Token", "Expiration", ...}
  GET /latest/meta-data/instance-id                      -> instance_id
  GET /latest/meta-data/placement/availability-zone      -> zone

A GET without a valid token (absent, unknown or expired) gets 401, as with
IMDSv2 enforced. Each credential generation has its own access key, secret
and session token and is registered with the SigV4 proxy, so the proxy
checks that the agent signs with it and sends its x-amz-security-token.

Test controls: rotate() (new generation; retire_old=True removes the old one
from the proxy, so using it is a 403), outage("500" | "refuse" | None),
max_token_ttl (cap the token lifetime to test token expiry), lifetime
(Expiration = serve time + lifetime), and `log`: (method, path, status,
token_sent) of every request.
"""

import datetime
import http.server
import json
import secrets
import socketserver
import threading
import time

ROLE = "deploy-agent-test-role"
BASE = "/latest/meta-data/iam/security-credentials/"


class Generation:
    def __init__(self, n):
        self.n = n
        self.access_key = f"ASIAFAKE{n:012d}"
        self.secret_key = secrets.token_urlsafe(30)
        self.token = "FwoFAKE" + secrets.token_urlsafe(120)


class FakeIMDS:
    def __init__(self, proxy=None, host="127.0.0.1", port=0, lifetime=3600.0, max_token_ttl=21600):
        self.proxy = proxy              # SigV4Proxy to register credentials with
        self.host = host
        self.lifetime = lifetime        # seconds from serving to Expiration
        self.max_token_ttl = max_token_ttl
        self.lock = threading.Lock()
        self.tokens = {}                # token -> monotonic expiry
        self.log = []                   # (method, path, status, token_sent)
        self.generations = []
        self.failure = None             # None | "500"
        self.instance_id = "i-0fa4e000000000001"   # None: 404, as off EC2's metadata
        self.zone = "us-east-1a"
        self._server = None
        self._thread = None
        self.port = port
        self.rotate()

    # -- lifecycle ------------------------------------------------------

    def start(self):
        self._server = _Server((self.host, self.port), _Handler)
        self._server.imds = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-imds", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    def env(self, base=None):
        """Environment for the agent: this fake as IMDS, no AWS_* keys."""
        import os
        env = dict(base or os.environ)
        for k in list(env):
            if k.startswith("AWS_"):
                del env[k]
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.endpoint + "/"
        return env

    # -- controls -------------------------------------------------------

    @property
    def current(self):
        return self.generations[-1]

    def rotate(self, retire_old=False):
        with self.lock:
            old = self.generations[-1] if self.generations else None
            gen = Generation(len(self.generations) + 1)
            self.generations.append(gen)
        if self.proxy is not None:
            self.proxy.add_credentials(gen.access_key, gen.secret_key, gen.token)
            if retire_old and old is not None:
                with self.proxy.lock:
                    self.proxy.credentials.pop(old.access_key, None)
        return gen

    def outage(self, kind):
        """"500": answer every request 500; "refuse": stop listening and
        drop kept-alive connections (restart with outage(None)); None: back
        to normal."""
        with self.lock:
            self.failure = kind
        if kind == "refuse":
            self.stop()
        elif kind is None and self._server is None:
            self.start()

    def expire_tokens(self):
        with self.lock:
            self.tokens.clear()

    def requests(self, method=None):
        with self.lock:
            return [e for e in self.log if method is None or e[0] == method]

    # -- request handling (called by the handler) -----------------------

    def _record(self, method, path, status, token_sent):
        with self.lock:
            self.log.append((method, path, status, token_sent))

    def _token_ok(self, token):
        with self.lock:
            expiry = self.tokens.get(token)
            return expiry is not None and time.monotonic() < expiry

    def _new_token(self, ttl):
        token = "AQAEAFAKE" + secrets.token_urlsafe(40)
        with self.lock:
            self.tokens[token] = time.monotonic() + min(ttl, self.max_token_ttl)
        return token

    def _credentials_json(self):
        gen = self.current
        now = datetime.datetime.now(datetime.timezone.utc)
        exp = now + datetime.timedelta(seconds=self.lifetime)
        return json.dumps({
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": gen.access_key,
            "SecretAccessKey": gen.secret_key,
            "Token": gen.token,
            "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }).encode()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-imds"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, body=b"", ctype="text/plain"):
        imds = self.server.imds
        imds._record(self.command, self.path, status,
                     bool(self.headers.get("X-aws-ec2-metadata-token")))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _down(self):
        if self.server.imds.failure == "refuse":
            self.close_connection = True        # no answer: the host is gone
            return True
        return False

    def do_PUT(self):
        imds = self.server.imds
        if self._down():
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if imds.failure == "500":
            return self._reply(500, b"fake outage")
        if self.path != "/latest/api/token":
            return self._reply(404)
        if self.headers.get("X-Forwarded-For"):
            return self._reply(403)     # IMDSv2 refuses proxied token requests
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._reply(400)
        self._reply(200, imds._new_token(int(ttl)).encode())

    def do_GET(self):
        imds = self.server.imds
        if self._down():
            return
        if imds.failure == "500":
            return self._reply(500, b"fake outage")
        if not imds._token_ok(self.headers.get("X-aws-ec2-metadata-token", "")):
            return self._reply(401)
        if self.path == BASE:
            return self._reply(200, ROLE.encode())
        if self.path == BASE + ROLE:
            return self._reply(200, imds._credentials_json(), "application/json")
        if self.path == "/latest/meta-data/instance-id" and imds.instance_id:
            return self._reply(200, imds.instance_id.encode())
        if self.path == "/latest/meta-data/placement/availability-zone" and imds.zone:
            return self._reply(200, imds.zone.encode())
        self._reply(404)
