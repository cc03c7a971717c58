#!/usr/bin/python3
"""A tiny HTTP service to be deployed by deploy-agent in the integration tests.

It is shipped inside a release: a release is a directory (or tarball) holding

    server.py   this file
    VERSION     what GET /health answers (e.g. the release's SHA)
    MODE        healthy | crash | unhealthy   (optional, default healthy)

and a unit runs it as `ExecStart=/usr/bin/python3 /srv/app/current/server.py --port 18080`.
Standard library only (it runs under Debian's /usr/bin/python3 inside the test systemd).

Release dir: --dir, else $SAMPLE_DIR, else the directory this file really lives in
(symlinks such as `current` resolved once at start, so the process keeps answering the
version it was started from after a later swap), else the cwd when that has no VERSION.

Mode: --mode, else $SAMPLE_MODE, else the MODE file, else healthy.
  healthy    GET /health -> 200, body = VERSION (stripped of surrounding whitespace)
  unhealthy  GET /health -> 500, body = "unhealthy <VERSION>"
  crash      exit 1 at once, before listening (a broken release)
Port: --port, else $SAMPLE_PORT, else $PORT, else 18080. Host: --host (127.0.0.1).

Also: GET /version -> VERSION, GET / -> JSON {version, mode, pid, dir}. Under systemd
with Type=notify it sends READY=1 once listening. Every request and the start-up line go to
stdout, flushed, so the journal shows them. SIGTERM exits 0.

Tests build releases with release_files(version, mode) (name -> (bytes, mode), what
harness.make_tar_gz and Agent.publish take) or write_release(dir, version, mode).
"""

import argparse
import http.server
import json
import os
import pathlib
import signal
import socket
import sys

MODES = ("healthy", "crash", "unhealthy")
DEFAULT_PORT = 18080


def release_files(version, mode="healthy"):
    """The files of a release running this service: name -> bytes, ready for
    harness.make_tar_gz / Agent.publish. server.py is this very file."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return {
        "server.py": (pathlib.Path(__file__).read_bytes(), 0o755),
        "VERSION": (f"{version}\n".encode(), 0o644),
        "MODE": (f"{mode}\n".encode(), 0o644),
    }


def write_release(dirpath, version, mode="healthy"):
    """Write release_files(version, mode) into dirpath (created, mode 0755); returns it."""
    dirpath = pathlib.Path(dirpath)
    dirpath.mkdir(parents=True, exist_ok=True)
    os.chmod(dirpath, 0o755)
    for name, (data, perm) in release_files(version, mode).items():
        (dirpath / name).write_bytes(data)
        os.chmod(dirpath / name, perm)
    return dirpath


def log(msg):
    print(f"sample-service[{os.getpid()}]: {msg}", flush=True)


def sd_notify(state):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(state.encode(), addr)


def release_dir(explicit):
    if explicit:
        return pathlib.Path(explicit).resolve()
    if os.environ.get("SAMPLE_DIR"):
        return pathlib.Path(os.environ["SAMPLE_DIR"]).resolve()
    here = pathlib.Path(os.path.realpath(__file__)).parent
    if (here / "VERSION").exists() or not pathlib.Path("VERSION").exists():
        return here
    return pathlib.Path.cwd().resolve()


def read_text(path, default):
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return default


def parse_args(argv):
    p = argparse.ArgumentParser(description="sample HTTP service for deploy-agent tests")
    p.add_argument("--port", type=int,
                   default=int(os.environ.get("SAMPLE_PORT") or os.environ.get("PORT") or DEFAULT_PORT))
    p.add_argument("--host", default=os.environ.get("SAMPLE_HOST", "127.0.0.1"))
    p.add_argument("--dir", default=None, help="release dir holding VERSION and MODE")
    p.add_argument("--mode", choices=MODES, default=None)
    return p.parse_args(argv)


def make_handler(version, mode, rdir):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "sample-service/1"

        def _reply(self, code, body, ctype="text/plain; charset=utf-8"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/health":
                if mode == "unhealthy":
                    self._reply(500, f"unhealthy {version}\n")
                else:
                    self._reply(200, version)
            elif path == "/version":
                self._reply(200, version)
            elif path == "/":
                info = {"version": version, "mode": mode, "pid": os.getpid(), "dir": str(rdir)}
                self._reply(200, json.dumps(info) + "\n", "application/json")
            else:
                self._reply(404, "not found\n")

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            log(f"{self.address_string()} {fmt % args}")

    return Handler


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rdir = release_dir(args.dir)
    version = read_text(rdir / "VERSION", "UNKNOWN")
    mode = args.mode or os.environ.get("SAMPLE_MODE") or read_text(rdir / "MODE", "healthy")
    if mode not in MODES:
        log(f"bad mode {mode!r} in {rdir}, expected one of {MODES}")
        return 2
    if mode == "crash":
        log(f"version {version} mode crash: exiting with status 1 (broken release)")
        return 1

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer.daemon_threads = True
    server = http.server.ThreadingHTTPServer((args.host, args.port), make_handler(version, mode, rdir))
    log(f"listening on {args.host}:{args.port} version {version} mode {mode} dir {rdir}")
    sd_notify(f"READY=1\nSTATUS=serving {version} ({mode})")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
