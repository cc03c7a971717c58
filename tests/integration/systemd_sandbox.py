"""A real systemd 252 as PID 1 of a throwaway PID+mount namespace, for tests.

The machine's PID 1 is not systemd, but systemd boots fine as init of a new PID namespace
(container mode). Each Sandbox is such a boot:

    with Sandbox(workdir, {"app.service": UNIT}) as sb:
        sb.wait_for(lambda: sb.show("app.service", "ActiveState") == "active")
        sb.systemctl("restart", "app.service")
        print(sb.journal("app.service"))

What is private to the sandbox, so that nothing it starts can touch the host:
  - PID, mount, UTS, IPC and cgroup namespaces. The network namespace is the host's:
    loopback ports are shared both ways.
  - tmpfs on /run, /tmp, /var/tmp and /etc/systemd (so `systemctl enable/edit/
    set-property` write into the sandbox, not into the host's /etc). `workdir` and any
    `shared` paths below those are bind-mounted back in, so the test runner and the
    sandbox see the same files there; `binds` mounts host dirs elsewhere inside. The
    rest of the root file system is the host's, read-write: a unit's StateDirectory=
    (/var/lib/NAME) is the host's unless you bind something over it.
  - A curated unit search path (SYSTEMD_UNIT_PATH): the units given to us in
    /run/systemd/system, and below it only every *.target and *.slice of the OS (without
    their .wants/ directories), dbus, journald, and the shutdown services. No
    systemd-tmpfiles (it would wipe the shared /tmp), sysctl, sysusers, fstab mounts,
    getty, PostgreSQL... They are "not-found" inside, even if something starts
    multi-user.target. All generators are masked.
  - Its own cgroup v2 subtree (/sys/fs/cgroup/unified/deploy-agent-sandbox-*), mounted
    as /sys/fs/cgroup inside. On this host's hybrid cgroup layout a systemd that sees the
    host's /sys/fs/cgroup takes over the root of every host hierarchy and remounts the
    host's /sys/fs/cgroup tmpfs read-only (seen here); this one cannot.
  - An empty /usr/lib/systemd/system-shutdown (systemd-shutdown would run the host's
    hooks there at poweroff).
  - /sys, /proc/sys and /proc/sysrq-trigger read-only; /dev/kmsg is /dev/null; the
    console is a pty whose output goes to WORKDIR/.sandbox/console.log; journald keeps
    its journal in /run only (Storage=volatile, no rate limit, no kmsg).

Commands run inside with nsenter (Sandbox.run / systemctl / show / journal). PIDs that
systemd reports (MainPID, ...) are PIDs of the sandbox's namespace; host_pid() maps them.

Teardown (Sandbox.close, also on any exception): `systemctl poweroff`, a bounded wait,
then cgroup.kill and SIGKILL of the namespace's init (which takes every process in the
namespace with it), then the cgroup subtree is removed. If the test process itself dies,
PR_SET_PDEATHSIG and unshare --kill-child take the namespace down.

Requires root, util-linux unshare/nsenter, Debian's systemd and dbus packages.
"""

import contextlib
import ctypes
import glob
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

SYSTEMD = "/lib/systemd/systemd"
OS_UNIT_DIR = "/usr/lib/systemd/system"
GENERATOR_DIRS = (
    "/usr/lib/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
    "/etc/systemd/system-generators",
    "/usr/lib/systemd/system-environment-generators",
    "/usr/local/lib/systemd/system-environment-generators",
    "/etc/systemd/system-environment-generators",
)
# Units of the OS the sandbox may load, besides every *.target and *.slice.
OS_UNITS = (
    "dbus.service",
    "dbus.socket",
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-journald-dev-log.socket",
    "systemd-poweroff.service",
    "systemd-halt.service",
    "systemd-reboot.service",
    "systemd-exit.service",
)
BOOT_TARGET = "sandbox.target"
CGROUP_PREFIX = "deploy-agent-sandbox-"
# Mounted over with a tmpfs inside; paths below them that must stay shared are bound back.
PRIVATE_DIRS = ("/run", "/tmp", "/var/tmp", "/etc/systemd")

SYSTEM_CONF = """\
[Manager]
LogColor=no
ShowStatus=yes
DefaultTimeoutStartSec=30s
DefaultTimeoutStopSec=5s
DefaultTasksAccounting=no
"""
JOURNALD_CONF = """\
[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
"""
# journald's /dev/log socket would put a /dev/log symlink into the host's /dev.
DEVLOG_DROPIN = """\
[Socket]
Symlinks=
"""

# systemd-escape --path --suffix=mount /usr/lib/systemd/system-shutdown
SHUTDOWN_HOOKS_MOUNT = "usr-lib-systemd-system\\x2dshutdown.mount"
PR_SET_PDEATHSIG = 1
# Environment of commands run inside (not the test runner's, whose PATH has pyenv first).
RUN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_COLORS": "0",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_LESS": "",
}


class SandboxError(RuntimeError):
    pass


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries the command's output."""

    def __str__(self):
        text = super().__str__()
        for name, value in (("stdout", self.stdout), ("stderr", self.stderr)):
            if value:
                text += f"\n--- {name} ---\n{value.rstrip()}"
        return text


def cgroup2_root():
    """Where the host's cgroup v2 hierarchy is mounted (unified or hybrid layout)."""
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    sep = fields.index("-")
                    if fields[4] == path and fields[sep + 1] == "cgroup2":
                        return pathlib.Path(path)
        except OSError:
            pass
    raise SandboxError("no cgroup2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified")


def _below(path, top):
    path, top = pathlib.Path(path), pathlib.Path(top)
    return path == top or top in path.parents


_ports_given = set()


def free_tcp_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, never one this
    process handed out before: the kernel may offer a released port again at
    once, and two services on one port would answer each other's health
    checks."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise SandboxError("no TCP port on 127.0.0.1 that was not handed out before")


def _start_time(pid):
    """Field 22 of /proc/PID/stat (start time in ticks), or None if PID is gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _cgroup_populated(cg):
    try:
        for line in (cg / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
    except OSError:
        return False
    return False


def _remove_cgroup_tree(cg):
    """rmdir a cgroup subtree, deepest first. Returns True when it is gone."""
    if not cg.exists():
        return True
    dirs = [pathlib.Path(d) for d, _, _ in os.walk(cg)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            try:
                d.rmdir()
            except OSError:
                return False
    return not cg.exists()


def sweep_stale_cgroups(min_age=60.0):
    """Remove empty cgroups left by sandboxes whose test process was SIGKILLed."""
    try:
        root = cgroup2_root()
        now = time.time()
        for cg in root.glob(CGROUP_PREFIX + "*"):
            try:
                if now - cg.stat().st_mtime < min_age or _cgroup_populated(cg):
                    continue
            except OSError:
                continue
            _remove_cgroup_tree(cg)
    except (OSError, SandboxError):
        pass


def _preexec_die_with_parent():
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _ConsolePump(threading.Thread):
    """Copies the pty that is the sandbox's /dev/console into a log file."""

    def __init__(self, master_fd, path):
        super().__init__(name=f"sandbox-console-{path}", daemon=True)
        self.master_fd = master_fd
        self.out = open(path, "ab", buffering=0)

    def run(self):
        try:
            while True:
                try:
                    data = os.read(self.master_fd, 65536)
                except OSError:  # EIO once the last slave fd is closed
                    break
                if not data:
                    break
                self.out.write(data.replace(b"\r\n", b"\n"))
        finally:
            self.out.close()


class Sandbox:
    """A booted systemd in its own namespaces. See the module docstring.

    workdir   a directory both sides see (created if missing); the sandbox keeps its boot
              script, units and console.log in workdir/.sandbox/.
    units     {name: content} written to /run/systemd/system/ before boot; a name may be
              a drop-in such as "app.service.d/10-port.conf".
    start     units the boot target Wants=; default every unit given that is not a
              template or a drop-in. Give () to boot with none of them started.
    shared    more host paths to keep visible below the private dirs (/tmp, /var/tmp,
              /etc/systemd); paths elsewhere are always shared. Not allowed below /run.
    binds     {path inside: host path} bind mounts, e.g. {"/var/lib/deploy-agent":
              workdir / "state"} so that a unit's StateDirectory= lands where the test
              can read it and concurrent sandboxes do not share the host's. A missing
              target directory is created, which outside /run, /tmp, /var/tmp and
              /etc/systemd means an empty directory left on the host's disk; a file bind
              needs an existing target there.
    boot_timeout  seconds for the boot to reach running/degraded.
    root      a throwaway root file system (e.g. made by mmdebstrap) to boot instead of
              the host's: systemd and every command run inside see it as /, so a package
              installed there leaves the host alone. Only workdir is shared (bound at
              its host path; keep it out of /tmp, whose contents a boot may remove);
              /dev and /sys are the host's. Units of the root load from /etc/systemd/system
              (the sandbox's tmpfs) and from os_units, names linked from its
              /usr/lib/systemd/system (they may appear later, e.g. by dpkg -i).
    """

    def __init__(self, workdir, units=None, *, start=None, shared=(), binds=None, boot_timeout=30.0,
                 root=None, os_units=()):
        self.workdir = pathlib.Path(workdir).resolve()
        self.root = pathlib.Path(root).resolve() if root else None
        self.os_units = tuple(os_units)
        if self.root and (shared or binds):
            raise ValueError("a sandbox on its own root shares only its workdir")
        self.units = dict(units or {})
        for name in self.units:
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"bad unit name {name!r}")
        self.start_units = list(start) if start is not None else [
            n for n in self.units if "/" not in n and "@." not in n
        ]
        self.shared = [self.workdir] + [pathlib.Path(p).resolve() for p in shared]
        # A checkout below /tmp or /var/tmp (a CI clone may be there) holds the
        # binaries the units run: keep it visible under the private tmpfs.
        repo = pathlib.Path(__file__).resolve().parents[2]
        if not self.root and any(_below(repo, d) for d in ("/tmp", "/var/tmp")) and repo not in self.shared:
            self.shared.append(repo)
        self.binds = {pathlib.Path(t): pathlib.Path(s).resolve() for t, s in (binds or {}).items()}
        for p in self.shared + list(self.binds.values()):
            if _below(p, "/run"):
                raise ValueError(f"{p}: host paths below /run cannot be shared with the sandbox")
            if p not in self.shared[:1] and not p.exists():
                raise ValueError(f"{p}: does not exist")
        for target, source in self.binds.items():
            if not target.is_absolute():
                raise ValueError(f"bind target {target} is not absolute")
            in_tmpfs = any(_below(target, d) for d in PRIVATE_DIRS)
            if not source.is_dir() and not target.exists() and not in_tmpfs:
                raise ValueError(f"bind target {target}: a file bind needs an existing target "
                                 f"(or one below {', '.join(PRIVATE_DIRS)})")
        self.boot_timeout = boot_timeout
        self.dir = self.workdir / ".sandbox"
        self.console_log = self.dir / "console.log"
        self.name = f"{CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cgroup = None
        self.proc = None  # the unshare process
        self.pid = None  # systemd, PID 1 inside, as seen from the host
        self._pid_start = None
        self._pidns = None
        self._pump = None
        self._console_fd = None
        self.boot_seconds = None
        self._boot()

    # ---- context manager ----------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.alive():
            with contextlib.suppress(Exception):
                (self.workdir / "sandbox-journal.txt").write_text(self.journal(timeout=10))
        self.close()
        return False

    # ---- boot -----------------------------------------------------------------------

    def _boot(self):
        t0 = time.monotonic()
        try:
            self._prepare()
            self._spawn()
            self._wait_booted(t0 + self.boot_timeout)
        except BaseException:
            self._force_cleanup()  # a half-booted systemd is not worth a graceful poweroff
            raise
        self.boot_seconds = time.monotonic() - t0

    def _prepare(self):
        if os.geteuid() != 0:
            raise SandboxError("a systemd sandbox needs root")
        for tool in ("unshare", "nsenter"):
            if not shutil.which(tool):
                raise SandboxError(f"{tool} (util-linux) not found")
        if not os.access(SYSTEMD, os.X_OK):
            raise SandboxError(f"{SYSTEMD} not found: apt-get install systemd dbus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        owner = self.dir / "cgroup"
        if owner.exists():
            other = cgroup2_root() / owner.read_text().strip()
            if _cgroup_populated(other):
                raise SandboxError(f"{self.workdir} is in use by the running sandbox {other.name}")
            shutil.rmtree(self.dir)
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir()
        owner.write_text(self.name + "\n")
        self._build_run_tree(self.dir / "run")
        sweep_stale_cgroups()
        self.cgroup = cgroup2_root() / self.name
        self.cgroup.mkdir()
        (self.dir / "boot.sh").write_text(self._boot_script())

    def _build_run_tree(self, run):
        """What /run holds when systemd starts; the boot script copies it in with one cp."""
        units = run / "systemd" / "system"
        units.mkdir(parents=True)
        for name, content in self.units.items():
            path = units / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        # journald.service itself too: it is Before=sysinit.target, so services with default
        # dependencies start after it and PID 1's messages about them reach the journal.
        wants = " ".join(["systemd-journald.socket", "systemd-journald.service", "dbus.socket",
                          "dbus.service"] + self.start_units)
        (units / BOOT_TARGET).write_text(
            "[Unit]\nDescription=deploy-agent test sandbox\nDefaultDependencies=no\n"
            f"Wants={wants}\nAfter={wants}\n")
        for sub, name, text in (("system.conf.d", "50-sandbox.conf", SYSTEM_CONF),
                                ("journald.conf.d", "50-sandbox.conf", JOURNALD_CONF)):
            (run / "systemd" / sub).mkdir()
            (run / "systemd" / sub / name).write_text(text)
        for d in GENERATOR_DIRS:
            kind = "system-environment-generators" if "environment" in d else "system-generators"
            (run / "systemd" / kind).mkdir(exist_ok=True)
            for g in glob.glob(d + "/*"):
                with contextlib.suppress(FileExistsError):
                    os.symlink("/dev/null", run / "systemd" / kind / os.path.basename(g))
        os_units = run / "sandbox" / "os-units"
        os_units.mkdir(parents=True)
        names = (glob.glob(OS_UNIT_DIR + "/*.target") + glob.glob(OS_UNIT_DIR + "/*.slice")
                 + [OS_UNIT_DIR + "/" + u for u in OS_UNITS])
        names += [OS_UNIT_DIR + "/" + u for u in self.os_units]
        for path in names:
            if path.endswith(self.os_units) and self.os_units:
                os.symlink(path, os_units / os.path.basename(path))  # in the root, maybe later
            elif os.path.islink(path):  # an alias such as default.target -> graphical.target
                os.symlink(os.readlink(path), os_units / os.path.basename(path))
            elif os.path.exists(path):
                os.symlink(path, os_units / os.path.basename(path))
        (os_units / "systemd-journald-dev-log.socket.d").mkdir()
        (os_units / "systemd-journald-dev-log.socket.d" / "50-sandbox.conf").write_text(DEVLOG_DROPIN)
        # Keep the empty hooks dir mounted through shutdown (no Conflicts=umount.target).
        hooks = os_units / (SHUTDOWN_HOOKS_MOUNT + ".d")
        hooks.mkdir()
        (hooks / "50-sandbox.conf").write_text("[Unit]\nDefaultDependencies=no\n")

    def _boot_script(self):
        q = shlex.quote
        # Host paths below the dirs that get a private tmpfs: bound to a stash in the new /run
        # first, then back to where they were (shared) or to their bind target.
        keep = []
        for p in self.shared + list(self.binds.values()):
            if any(_below(p, d) for d in PRIVATE_DIRS) and p not in keep:
                keep.append(p)
        stash = "\n".join(
            ("mkdir -p" if p.is_dir() else "mkdir -p /run/.sandbox-keep && touch")
            + f" /run/.sandbox-keep/{i} && mount --bind {q(str(p))} /run/.sandbox-keep/{i}"
            for i, p in enumerate(keep))
        restore = []
        for p in self.shared:
            if p in keep:
                restore.append(f"mkdir -p {q(str(p))} && mount --bind /run/.sandbox-keep/{keep.index(p)} {q(str(p))}")
        binds = []
        for target, source in self.binds.items():
            src = f"/run/.sandbox-keep/{keep.index(source)}" if source in keep else q(str(source))
            make = f"mkdir -p {q(str(target))}" if source.is_dir() else \
                f"mkdir -p {q(str(target.parent))} && touch {q(str(target))}"
            binds.append(f"{make} && mount --bind {src} {q(str(target))}")
        # Never rm -r here: a stash still mounted would be the host's directory.
        unstash = "\n".join(
            f"umount /run/.sandbox-keep/{i} && " + ("rmdir" if p.is_dir() else "rm -f") + f" /run/.sandbox-keep/{i}"
            for i, p in enumerate(keep))
        if keep:
            unstash += "\nrmdir /run/.sandbox-keep"
        restore = "\n".join(restore)
        binds = "\n".join(binds)
        return f"""#!/bin/bash
# Generated by tests/integration/systemd_sandbox.py. Stage 1 runs as PID 1 of the new
# PID+mount namespace: it moves into the sandbox's cgroup and re-executes itself in a new
# cgroup namespace rooted there (stage 2), which builds the private mounts and execs systemd.
set -eu
SB={q(str(self.dir))}
if [ "${{1:-}}" = stage1 ]; then
    echo 0 > {q(str(self.cgroup))}/cgroup.procs
    exec unshare --cgroup /bin/bash "$SB/boot.sh" stage2 "$2"
fi
CONSOLE="$2"
{self._pivot_script()}
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount -o remount,bind,ro /sys
for f in /proc/sys /proc/sysrq-trigger; do
    [ -e "$f" ] || continue
    mount --bind "$f" "$f"; mount -o remount,bind,ro "$f"
done
mount --bind /dev/null /dev/kmsg
# systemd-shutdown runs every program in here at poweroff (mdadm ships one): not the host's.
if [ -d /usr/lib/systemd/system-shutdown ]; then
    mount -t tmpfs -o ro,mode=0755,nosuid,nodev tmpfs /usr/lib/systemd/system-shutdown
fi
mount --bind "$CONSOLE" /dev/console
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
{stash}
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /etc/systemd
{restore}
cp -a "$SB/run/." /run/
{binds}
{unstash}
UNIT_PATH=/run/systemd/system.control:/run/systemd/transient:/run/systemd/system:/run/sandbox/os-units{":/etc/systemd/system" if self.root else ""}
exec env -i container=other TERM=dumb SYSTEMD_COLORS=0 \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SYSTEMD_UNIT_PATH="$UNIT_PATH" {SYSTEMD} --system --unit={BOOT_TARGET}
"""

    def _pivot_script(self):
        """With a root: move into it before anything else is mounted, so that the rest of
        the boot script (and systemd) runs there unchanged. The workdir keeps its host path
        (the script's own files are in it)."""
        if not self.root:
            return ""
        q = shlex.quote
        r, w = q(str(self.root)), q(str(self.workdir))
        return f"""R={r}
mount --bind "$R" "$R"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mkdir -p "$R"{w} && mount --bind {w} "$R"{w}
mkdir -p "$R/.sandbox-oldroot"
cd "$R" && pivot_root . .sandbox-oldroot && cd /
umount -l /.sandbox-oldroot && rmdir /.sandbox-oldroot
mount -t proc proc /proc"""

    def _spawn(self):
        master, self._console_fd = os.openpty()
        try:
            tty = os.ttyname(self._console_fd)
            self._pump = _ConsolePump(master, self.console_log)
            master = None
            self._pump.start()
            boot_log = open(self.dir / "boot.log", "wb")
            with boot_log:
                self.proc = subprocess.Popen(
                    ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount",
                     "--uts", "--ipc", "--propagation", "private", "--mount-proc",
                     "/bin/bash", str(self.dir / "boot.sh"), "stage1", tty],
                    stdin=subprocess.DEVNULL, stdout=boot_log, stderr=subprocess.STDOUT,
                    preexec_fn=_preexec_die_with_parent, close_fds=True)
        finally:
            if master is not None:
                os.close(master)
        deadline = time.monotonic() + 10
        while self.pid is None:
            try:
                kids = pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                kids = []
            if kids:
                self.pid = int(kids[0])
                self._pid_start = _start_time(self.pid)
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SandboxError(f"unshare did not start its child:\n{self._boot_output()}")
            time.sleep(0.005)

    def _boot_output(self):
        text = ""
        for name in ("boot.log", "console.log"):
            with contextlib.suppress(OSError):
                text += f"--- {name} ---\n" + (self.dir / name).read_text(errors="replace")[-8000:]
        return text

    def _wait_booted(self, deadline):
        private = f"/proc/{self.pid}/root/run/systemd/private"
        while not os.path.exists(private):
            if self.proc.poll() is not None:
                raise SandboxError(f"systemd exited during boot (status {self.proc.returncode}):\n"
                                   f"{self._boot_output()}")
            if time.monotonic() > deadline:
                raise SandboxError(f"systemd did not come up in {self.boot_timeout}s:\n{self._boot_output()}")
            time.sleep(0.01)
        self._pidns = os.stat(f"/proc/{self.pid}/ns/pid").st_ino
        if self._pidns == os.stat("/proc/self/ns/pid").st_ino:
            raise SandboxError(f"PID {self.pid} is not in a new PID namespace")
        left = max(1.0, deadline - time.monotonic())
        r = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=left)
        state = r.stdout.strip()
        if state not in ("running", "degraded"):
            raise SandboxError(f"boot ended in state {state!r} {r.stderr.strip()}\n"
                               f"--- journal ---\n{self.journal(check=False)}\n{self._boot_output()}")

    def __repr__(self):
        state = "running" if self.alive() else "stopped"
        return f"<Sandbox {self.name} pid={self.pid} {state} workdir={self.workdir}>"

    def console(self):
        """What systemd wrote to its console (boot messages, unit file errors found before
        journald was up, shutdown)."""
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    # ---- running things inside --------------------------------------------------------

    def alive(self):
        return (self.proc is not None and self.proc.poll() is None and self.pid is not None
                and _start_time(self.pid) == self._pid_start)

    def nsenter_argv(self, *argv):
        """The argv that runs argv inside the sandbox (for Popen of long-running things)."""
        if not self.alive():
            raise SandboxError("the sandbox is not running")
        root = ["-r", "-w"] if self.root else []
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-C", *root, "--", *map(str, argv)]

    def run(self, *argv, check=True, timeout=30, input=None, env=None):
        """Run argv inside the sandbox; returns CompletedProcess (text, captured). The
        command gets a clean environment (RUN_ENV) updated with env. On timeout the whole
        nsenter process group is killed and TimeoutExpired raised."""
        cmd = self.nsenter_argv(*argv)
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, env={**RUN_ENV, **(env or {})})
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
        r = subprocess.CompletedProcess(cmd, p.returncode, out, err)
        if check and r.returncode != 0:
            raise CommandError(r.returncode, list(argv), out, err)
        return r

    def systemctl(self, *args, check=True, timeout=30):
        return self.run("systemctl", "--no-pager", "--no-ask-password", *args, check=check, timeout=timeout)

    def show(self, unit, prop):
        """One property of a unit (systemctl show -p PROP --value), stripped."""
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def props(self, unit, *props):
        """Several properties at once: {name: value}."""
        args = [a for p in props for a in ("-p", p)]
        out = self.systemctl("show", *args, unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit=None, *args, output="short", sync=True, check=True, timeout=30):
        """journalctl inside (no pager), optionally for one unit (-u)."""
        if sync:
            self.run("journalctl", "--sync", check=False, timeout=timeout)
        argv = ["journalctl", "--no-pager", "--quiet", "-o", output]
        if unit:
            argv += ["-u", unit]
        return self.run(*argv, *args, check=check, timeout=timeout).stdout

    def add_unit(self, name, content, reload=True):
        """Write /run/systemd/system/NAME inside (a drop-in name works too), then daemon-reload."""
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(name)
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh",
                 f"/run/systemd/system/{name}", input=content)
        if reload:
            self.systemctl("daemon-reload")

    def wait_for(self, predicate, timeout=10.0, interval=0.05, what=None):
        """Call predicate() until it returns something truthy; return that. On timeout
        raise TimeoutError naming `what` (or the predicate) and its last result."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = predicate()
            if last:
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for "
                                   f"{what or getattr(predicate, '__name__', predicate)}; last: {last!r}")
            time.sleep(interval)

    def wait_state(self, unit, state="active", timeout=10.0, prop="ActiveState"):
        """Wait until unit's prop (ActiveState by default) equals state."""
        seen = []

        def check():
            seen.append(self.show(unit, prop))
            return seen[-1] == state

        try:
            return self.wait_for(check, timeout)
        except TimeoutError:
            raise TimeoutError(f"{unit}: {prop} still {seen[-1]!r} after {timeout}s, wanted {state!r}\n"
                               f"--- journal ---\n{self.journal(unit, '-n', '30', check=False)}") from None

    def host_pid(self, ns_pid):
        """The host PID of the process that is ns_pid inside the sandbox, or None."""
        ns_pid = str(ns_pid)
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry.name}/ns/pid").st_ino != self._pidns:
                    continue
                for line in open(f"/proc/{entry.name}/status"):
                    if line.startswith("NSpid:"):
                        if line.split()[-1] == ns_pid:
                            return int(entry.name)
                        break
            except OSError:
                continue
        return None

    def processes(self):
        """Host PIDs of every process in the sandbox's cgroup subtree."""
        pids = []
        if self.cgroup is not None and self.cgroup.exists():
            for d, _, files in os.walk(self.cgroup):
                if "cgroup.procs" in files:
                    with contextlib.suppress(OSError):
                        pids += [int(x) for x in pathlib.Path(d, "cgroup.procs").read_text().split()]
        return pids

    # ---- teardown -----------------------------------------------------------------------

    def poweroff(self, timeout=20.0):
        """systemctl poweroff, wait up to timeout, then force. Idempotent. Returns True when
        systemd stopped by itself, False when it had to be killed."""
        clean = True
        if self.alive():
            try:
                self.systemctl("start", "--job-mode=replace-irreversibly", "--no-block",
                               "poweroff.target", timeout=min(10, timeout))
                self.proc.wait(timeout=timeout)
            except (subprocess.SubprocessError, SandboxError, OSError):
                clean = False
        if self.proc is not None and self.proc.poll() is None:
            clean = False
        self._force_cleanup()
        return clean

    close = poweroff

    def _force_cleanup(self):
        # Kill the namespace's init (the kernel then kills every process in it) and let
        # unshare reap it: killing unshare first would leave init a zombie of the host's
        # PID 1, which on this machine does not reap.
        if self.cgroup is not None and self.cgroup.exists():
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
        if self.pid is not None and _start_time(self.pid) == self._pid_start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        if self.cgroup is not None:
            deadline = time.monotonic() + 10
            while _cgroup_populated(self.cgroup) and time.monotonic() < deadline:
                time.sleep(0.01)
            while not _remove_cgroup_tree(self.cgroup) and time.monotonic() < deadline:
                time.sleep(0.02)
        if self._console_fd is not None:
            # We hold the console's slave side so that it never reads EIO while systemd
            # reopens it; closing ours lets the pump see EIO once the sandbox is gone.
            os.close(self._console_fd)
            self._console_fd = None
        if self._pump is not None:
            self._pump.join(timeout=5)


# Default work dirs: below the repo, not /tmp, because a unit with PrivateTmp=yes (any
# hardened one) gets its own /tmp and would not see files the test put below /tmp. A
# checkout that is itself below /tmp or /var/tmp (a CI clone may be) uses /var/lib.
def _default_work_root():
    if os.environ.get("SANDBOX_WORK_ROOT"):
        return pathlib.Path(os.environ["SANDBOX_WORK_ROOT"])
    here = pathlib.Path(__file__).resolve().parent
    if any(_below(here, d) for d in ("/tmp", "/var/tmp")):
        return pathlib.Path("/var/lib/deploy-agent-tests")
    return here / ".tmp"


DEFAULT_WORK_ROOT = _default_work_root()


def make_sandbox_factory():
    """For fixtures: returns (make, close_all). make(units, workdir=None, **kw) boots a
    Sandbox (workdir defaults to a fresh 0755 dir under DEFAULT_WORK_ROOT); close_all()
    tears every one down and removes the default workdirs unless asked to keep them."""
    made = []
    tmpdirs = []

    def make(units=None, workdir=None, **kw):
        if workdir is None:
            DEFAULT_WORK_ROOT.mkdir(mode=0o755, exist_ok=True)
            workdir = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-", dir=DEFAULT_WORK_ROOT))
            os.chmod(workdir, 0o755)
            tmpdirs.append(workdir)
        sb = Sandbox(workdir, units, **kw)
        made.append(sb)
        return sb

    def close_all(keep_dirs=False):
        errors = []
        for sb in reversed(made):
            try:
                sb.close()
            except Exception as e:  # noqa: BLE001 - close every one, report after
                errors.append(e)
        for d in tmpdirs:
            if keep_dirs:
                print(f"\n[sandbox dir kept: {d}]")
            else:
                shutil.rmtree(d, ignore_errors=True)
        if tmpdirs and not keep_dirs:
            with contextlib.suppress(OSError):
                DEFAULT_WORK_ROOT.rmdir()  # only when empty
        if errors:
            raise errors[0]

    return make, close_all


try:
    import pytest
except ImportError:  # usable without pytest too
    pytest = None

if pytest is not None:
    @pytest.fixture
    def systemd_sandbox(request):
        """Factory fixture: systemd_sandbox(units, workdir=None, **Sandbox kwargs) -> booted
        Sandbox. All of them are powered off at teardown; default workdirs are kept when
        the test failed (or KEEP_TEST_DIRS is set)."""
        make, close_all = make_sandbox_factory()
        yield make
        rep = getattr(request.node, "rep_call", None)  # set by conftest.py's makereport hook
        failed = rep is not None and rep.failed
        close_all(keep_dirs=failed or bool(os.environ.get("KEEP_TEST_DIRS")))
