"""A fault-injecting HTTP/1.1 relay for the tests, placed in front of the
SigV4-verifying proxy (agent -> fault proxy -> sigv4 proxy -> s3rver).

It forwards requests byte for byte (the Host header too, so signatures still
verify downstream), keeps connections alive like the client does, and counts
per request what went back to the client. Faults, matched on (method, path)
in the order they were added, each for `times` requests:

  status=500 / status=503, code="SlowDown"  answer with an S3 error document,
                                            without forwarding
  cut_after=N        forward, close the connection after N body bytes
  stall_after=N, stall=S   after N body bytes, send nothing for S seconds,
                           then go on (the client may have given up by then)
  delay=S            wait S seconds before forwarding
  respond=callable   answer without forwarding: callable(record) returns
                     (status, [(header, value)], body); Content-Length is
                     the body's unless the headers say otherwise, and the
                     connection is closed after it
  extra=b"..."       forward, then send these bytes after the body: a body
                     longer than its Content-Length
  dribble=S          forward the body one byte every S seconds (a slow loris)
  hang=True          read the request, then send nothing until the client
                     hangs up
  on_hit=callable    called when the fault fires, before forwarding
  after=callable     called once the cut or stall has happened (replace the
                     object midway, rotate credentials, ...)

It also accepts absolute-form requests ("GET http://host/x HTTP/1.1"), so it
can stand in as a forward proxy (http_proxy) to show the agent uses one.
"""

import select
import socket
import socketserver
import threading
import time
import uuid

CHUNK = 64 * 1024
HEAD_MAX = 64 * 1024


class Fault:
    def __init__(self, match, status=None, code=None, cut_after=None, stall_after=None, stall=0.0,
                 delay=0.0, times=1, on_hit=None, after=None, respond=None, extra=None, dribble=None,
                 hang=False):
        self.match = match
        self.status = status
        self.code = code or ("SlowDown" if status == 503 else "InternalError")
        self.cut_after = cut_after
        self.stall_after = stall_after
        self.stall = stall
        self.delay = delay
        self.times = times
        self.on_hit = on_hit
        self.after = after
        self.respond = respond
        self.extra = extra
        self.dribble = dribble
        self.hang = hang
        self.hits = 0


class Record:
    """One request as the fault proxy saw it."""

    def __init__(self, method, target, headers):
        self.method = method
        self.target = target            # as the client wrote it
        self.path = target
        self.headers = headers          # lower-case name -> value
        self.status = None
        self.body_bytes = 0             # response body bytes sent to the client
        self.request_bytes = 0          # head and body, as received
        self.response_bytes = 0         # head and body, as sent
        self.fault = None               # "status" | "cut" | "stall" | "respond" | "extra"
                                        # | "dribble" | "hang" | None
        self.absolute = target.startswith("http://")

    @property
    def wire_bytes(self):
        """Bytes both ways: request head and body, response head and body."""
        return self.request_bytes + self.response_bytes + self.body_bytes

    @property
    def token(self):
        return self.headers.get("x-amz-security-token")

    def __repr__(self):
        return f"<{self.method} {self.path} {self.status} {self.body_bytes}B {self.fault or ''}>"


class FaultProxy:
    def __init__(self, upstream_host, upstream_port, host="127.0.0.1", port=0):
        self.upstream = (upstream_host, upstream_port)
        self.faults = []
        self.records = []
        self.lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.proxy = self
        self.host, self.port = self._server.server_address[:2]
        self._thread = None

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()

    def inject(self, match, **kw):
        f = Fault(match, **kw)
        with self.lock:
            self.faults.append(f)
        return f

    def clear(self):
        """Remove every fault: what follows is forwarded as it is."""
        with self.lock:
            self.faults = []

    def take(self, method, path):
        with self.lock:
            for f in self.faults:
                if (f.times is None or f.hits < f.times) and f.match(method, path):
                    f.hits += 1
                    break
            else:
                return None
        if f.on_hit:
            f.on_hit()
        return f

    def requests(self, pred=None):
        with self.lock:
            return [r for r in self.records if pred is None or pred(r)]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    stopping = False


def _read_head(f):
    """Read an HTTP head; returns (first line, [(name, value)], raw bytes) or None at EOF."""
    raw = b""
    while True:
        line = f.readline(HEAD_MAX)
        if not line:
            return None
        raw += line
        if line in (b"\r\n", b"\n"):
            break
        if len(raw) > HEAD_MAX:
            raise ValueError("head too large")
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for h in lines[1:]:
        if ":" in h:
            name, _, value = h.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers, raw


def _copy_body(src, dst, headers, limit=None):
    """Copy a message body framed by Content-Length or chunked; returns bytes
    of payload copied. dst may be None (drain)."""
    h = {k.lower(): v for k, v in headers}
    if h.get("transfer-encoding", "").lower() == "chunked":
        total = 0
        while True:
            line = src.readline(1024)
            if dst:
                dst.write(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    t = src.readline(1024)
                    if dst:
                        dst.write(t)
                    if t in (b"\r\n", b"\n", b""):
                        return total
            data = src.read(size + 2)
            if dst:
                dst.write(data)
            total += size
    left = int(h.get("content-length") or 0)
    total = 0
    while left:
        data = src.read(min(CHUNK, left))
        if not data:
            raise ConnectionResetError("body cut short")
        if dst:
            dst.write(data)
        left -= len(data)
        total += len(data)
    return total


def _error_body(code):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>injected by the fault proxy</Message><RequestId>{uuid.uuid4().hex[:16]}"
            f"</RequestId></Error>").encode()


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        proxy = self.server.proxy
        up = None
        try:
            while True:
                head = _read_head(self.rfile)
                if head is None:
                    return
                if up is None:
                    up = socket.create_connection(proxy.upstream, timeout=120)
                    up_r = up.makefile("rb")
                    up_w = up.makefile("wb")
                if not self._one(proxy, head, up_r, up_w):
                    return
        except (OSError, ValueError):
            return
        finally:
            if up is not None:
                up.close()

    def _one(self, proxy, head, up_r, up_w):
        line, headers, raw = head
        method, target, version = line.split(" ", 2)
        rec = Record(method, target, {k.lower(): v for k, v in headers})
        if rec.absolute:                # forward-proxy form: keep only the path
            rest = target[len("http://"):]
            rec.path = "/" + rest.partition("/")[2]
            raw = raw.replace(f"{method} {target} ".encode(), f"{method} {rec.path} ".encode(), 1)
        with proxy.lock:
            proxy.records.append(rec)
        fault = proxy.take(method, rec.path)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status:
            return self._answer_error(rec, fault, headers)
        if fault and (fault.respond or fault.hang):
            return self._answer_made_up(rec, fault, headers)
        up_w.write(raw)
        up_w.flush()
        rec.request_bytes = len(raw)
        expect = rec.headers.get("expect", "").lower() == "100-continue"
        if expect:
            interim = _read_head(up_r)
            if " 100 " not in interim[0] + " ":
                rec.status = int(interim[0].split(" ")[1])
            self.wfile.write(interim[2])
            self.wfile.flush()
            if " 100 " not in interim[0] + " ":
                return self._relay_rest(rec, interim, up_r, fault)
        rec.request_bytes += _copy_body(self.rfile, up_w, headers)
        up_w.flush()
        resp = _read_head(up_r)
        if resp is None:
            return False
        rec.status = int(resp[0].split(" ")[1])    # before the client can see it
        rec.response_bytes = len(resp[2])
        self.wfile.write(resp[2])
        return self._relay_rest(rec, resp, up_r, fault)

    def _answer_error(self, rec, fault, headers):
        if rec.headers.get("expect", "").lower() != "100-continue":
            _copy_body(self.rfile, None, headers)
        body = _error_body(fault.code)
        rec.status = fault.status
        rec.fault = "status"
        self.wfile.write((f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/xml\r\n"
                          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        self.wfile.flush()
        return False

    def _answer_made_up(self, rec, fault, headers):
        if rec.headers.get("expect", "").lower() != "100-continue":
            _copy_body(self.rfile, None, headers)
        if fault.hang:
            rec.fault = "hang"
            while not self._client_gone() and not self.server.stopping:
                time.sleep(0.05)
            return False
        status, extra_headers, body = fault.respond(rec)
        names = {k.lower() for k, _ in extra_headers}
        head = f"HTTP/1.1 {status} Made Up\r\n"
        for k, v in extra_headers:
            head += f"{k}: {v}\r\n"
        if "content-length" not in names:
            head += f"Content-Length: {len(body)}\r\n"
        head += "Connection: close\r\n\r\n"
        rec.status = status
        rec.fault = "respond"
        self.wfile.write(head.encode() + body)
        self.wfile.flush()
        rec.body_bytes = len(body)
        return False

    def _relay_rest(self, rec, resp, up_r, fault):
        status_line, headers, _ = resp
        rec.status = int(status_line.split(" ")[1])
        h = {k.lower(): v for k, v in headers}
        if rec.method == "HEAD" or rec.status in (204, 304) or rec.status < 200:
            self.wfile.flush()
            return h.get("connection", "").lower() != "close"
        keep = h.get("connection", "").lower() != "close"
        if h.get("transfer-encoding", "").lower() == "chunked":
            rec.body_bytes = _copy_body(up_r, self.wfile, headers)
            self.wfile.flush()
            return keep
        if "content-length" not in h:   # until the upstream closes
            while True:
                data = up_r.read1(CHUNK)
                if not data:
                    break
                self.wfile.write(data)
                rec.body_bytes += len(data)
            self.wfile.flush()
            return False
        if fault and fault.dribble:
            return self._dribble(rec, int(h["content-length"]), up_r, fault)
        ok = self._relay_sized(rec, int(h["content-length"]), up_r, fault) and keep
        if ok and fault and fault.extra:
            rec.fault = "extra"
            self.wfile.write(fault.extra)
            self.wfile.flush()
        return ok

    def _dribble(self, rec, length, up_r, fault):
        """One byte every fault.dribble seconds, until done or the client gives up."""
        rec.fault = "dribble"
        body = up_r.read(length)
        for i in range(len(body)):
            self.wfile.write(body[i:i + 1])
            self.wfile.flush()
            rec.body_bytes += 1
            deadline = time.monotonic() + fault.dribble
            while time.monotonic() < deadline:
                if self._client_gone() or self.server.stopping:
                    return False
                time.sleep(0.05)
        return False

    def _relay_sized(self, rec, length, up_r, fault):
        cut = fault.cut_after if fault else None
        stall_at = fault.stall_after if fault else None
        left = length
        while left:
            n = min(CHUNK, left)
            if cut is not None:
                n = min(n, cut - rec.body_bytes)
            if stall_at is not None and rec.body_bytes < stall_at:
                n = min(n, stall_at - rec.body_bytes)
            if n <= 0 and cut is not None and rec.body_bytes >= cut:
                rec.fault = "cut"
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self._drain(up_r, left)
                if fault.after:
                    fault.after()
                return False
            if stall_at is not None and rec.body_bytes >= stall_at:
                rec.fault = "stall"
                self.wfile.flush()
                self._stall(fault.stall)
                if fault.after:
                    fault.after()
                if self._client_gone():
                    self._drain(up_r, left)
                    return False       # it gave up: count nothing more
                stall_at = None
                continue
            data = up_r.read(n)
            if not data:
                return False
            self.wfile.write(data)
            rec.body_bytes += len(data)
            left -= len(data)
        self.wfile.flush()
        return True

    @staticmethod
    def _drain(up_r, left):
        """Read what the upstream still sends, so that closing our side of
        it is a clean FIN rather than a reset."""
        while left > 0:
            data = up_r.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)

    def _stall(self, seconds):
        """Send nothing for `seconds`, or until the client hangs up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._client_gone():
            time.sleep(0.05)

    def _client_gone(self):
        r, _, _ = select.select([self.connection], [], [], 0)
        if not r:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
