"""Hostile archives, built in memory, for test_hostile.py.

Each case is a Case(name, build, expect, config, suffix): build(marker, tmp)
returns the archive bytes. `marker` is a unique file name: an archive that
escaped would leave a file of that name somewhere (in `tmp`, the test's
directory, when the escape is aimed there). `expect` is a piece of the error
the agent must print, `config` the [service] overrides the case needs.

Paths are aimed from the staging dir ROOT/releases/.staging-<sha>-XXXXXX:
with ROOT = tmp/srv/app, "../../../../x" is tmp/x.
"""

import dataclasses
import gzip
import io
import random
import tarfile
import zipfile

TO_TMP = "../../../../"          # from the staging dir to the test's tmp dir
MTIME = 1700000000


def _info(name, type_=tarfile.REGTYPE, mode=0o644, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = MTIME
    info.uname = info.gname = "root"
    return info


def tar_gz(members, level=1):
    """members: (TarInfo, bytes or None), written in order, as a pax tar.gz."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=level, mtime=MTIME) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _node(name, type_, mode=0o644, linkname=""):
    """A member without data: link, device, fifo."""
    return _info(name, type_, mode, linkname=linkname), None


def _file(name, data, mode=0o644):
    return _info(name, mode=mode, size=len(data)), data


def _harmless():
    return _file("README", b"looks innocent\n")


# -- the cases ---------------------------------------------------------

def traversal(marker, tmp):
    return tar_gz([_harmless(), _file(TO_TMP + marker, b"escaped\n")])


def traversal_nested(marker, tmp):
    return tar_gz([_harmless(), _file("a/b/../../../../../../" + marker, b"escaped\n")])


def absolute(marker, tmp):
    return tar_gz([_harmless(), _file(f"{tmp}/{marker}", b"escaped\n")])


def symlink_then_file(marker, tmp):
    """A link to the test dir, then a file written through it."""
    return tar_gz([_node("up", tarfile.SYMTYPE, 0o777, linkname=TO_TMP),
                   _file("up/" + marker, b"escaped\n")])


def symlink_absolute_then_file(marker, tmp):
    return tar_gz([_node("out", tarfile.SYMTYPE, 0o777, linkname=str(tmp)),
                   _file("out/" + marker, b"escaped\n")])


def symlink_to_etc(marker, tmp):
    """Harmless by itself at unpack time, a trap for whoever follows it."""
    return tar_gz([_harmless(), _node("etc", tarfile.SYMTYPE, 0o777, linkname="/etc")])


def symlink_dotdot_chain(marker, tmp):
    """"d" -> "." is inside; "d/../.." only looks lexically shallower than it is."""
    return tar_gz([_node("d", tarfile.SYMTYPE, 0o777, linkname="."),
                   _node("e", tarfile.SYMTYPE, 0o777, linkname="d/" + TO_TMP)])


def hardlink_passwd(marker, tmp):
    return tar_gz([_harmless(), _node("passwd", tarfile.LNKTYPE, linkname="/etc/passwd")])


def hardlink_passwd_relative(marker, tmp):
    return tar_gz([_harmless(),
                   _node("passwd", tarfile.LNKTYPE, linkname="../" * 16 + "etc/passwd")])


def char_device(marker, tmp):
    info = _info("null", tarfile.CHRTYPE, 0o666)
    info.devmajor, info.devminor = 1, 3
    return tar_gz([_harmless(), (info, None)])


def fifo(marker, tmp):
    return tar_gz([_harmless(), _node("pipe", tarfile.FIFOTYPE, 0o666)])


def setuid_file(marker, tmp):
    return tar_gz([_harmless(), _file("bin/su", b"#!/bin/sh\nexec /bin/sh\n", 0o4755)])


def setgid_file(marker, tmp):
    return tar_gz([_harmless(), _file("bin/sg", b"#!/bin/sh\n", 0o2755)])


class _Zeros(io.RawIOBase):
    """size zero bytes without holding them in memory."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def gzip_bomb(marker, tmp, size=64 << 20):
    """64 MiB of zeros declared in the tar: about 64 KiB compressed."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=MTIME) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(*_harmless_pair())
            tar.addfile(_info("zeros", size=size), io.BufferedReader(_Zeros(size)))
    return buf.getvalue()


def _harmless_pair():
    info, data = _harmless()
    return info, io.BytesIO(data)


def many_medium_files(marker, tmp):
    """Each file under the cap, their sum above it: only counting stops it."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=MTIME) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(8):
                size = 6 << 20
                tar.addfile(_info(f"part{i}", size=size), io.BufferedReader(_Zeros(size)))
    return buf.getvalue()


def too_many_entries(marker, tmp):
    return tar_gz([_file(f"f{i:03d}", b"x") for i in range(200)])


def truncated_gzip(marker, tmp):
    """Cut in the middle of the deflate stream. The sidecar is computed on
    the cut bytes, so the checksum passes: unpack must notice."""
    noise = random.Random(7).randbytes(512 * 1024)
    data = tar_gz([_harmless(), _file("noise.bin", noise)])
    return data[: len(data) // 2]


def not_an_archive(marker, tmp):
    return b"<html><body>503 Service Unavailable</body></html>\n" * 20


def zip_traversal(marker, tmp):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README", b"looks innocent\n")
        z.writestr(zipfile.ZipInfo(TO_TMP + marker, date_time=(2023, 11, 14, 22, 13, 20)),
                   b"escaped\n")
    return buf.getvalue()


def zip_absolute(marker, tmp):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(f"{tmp}/{marker}", date_time=(2023, 11, 14, 22, 13, 20)),
                   b"escaped\n")
    return buf.getvalue()


def _escape_chain(marker):
    """Each link is inside by itself: "a/l/l/l/m" is four levels deep
    lexically, but with "a/l" -> "." it is "a/m", and four ".." from "a"
    lead to tmp/srv."""
    return [("a/", "dir", None), ("a/l", "link", "."),
            ("a/l/l/l/m", "link", "../../../.."), ("a/m/" + marker, "file", b"escaped\n")]


def escape_chain(marker, tmp):
    members = []
    for name, kind, arg in _escape_chain(marker):
        if kind == "dir":
            members.append(_node(name, tarfile.DIRTYPE, 0o755))
        elif kind == "link":
            members.append(_node(name, tarfile.SYMTYPE, 0o777, linkname=arg))
        else:
            members.append(_file(name, arg))
    return tar_gz(members)


def zip_escape_chain(marker, tmp):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, kind, arg in _escape_chain(marker):
            info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
            info.create_system = 3          # Unix: external_attr holds the mode
            mode = {"dir": 0o40755, "link": 0o120777, "file": 0o100644}[kind]
            info.external_attr = mode << 16 | (0x10 if kind == "dir" else 0)
            z.writestr(info, arg.encode() if kind == "link" else (arg or b""))
    return buf.getvalue()


def hardlink_through_symlink(marker, tmp):
    """"sl" -> "dir" is inside; a hardlink to "sl/file" is not to be made
    through it."""
    return tar_gz([_file("dir/file", b"f\n"),
                   _node("sl", tarfile.SYMTYPE, 0o777, linkname="dir"),
                   _node(marker, tarfile.LNKTYPE, linkname="sl/file")])


def only_root(marker, tmp):
    """`tar -C empty -czf x.tar.gz .`: nothing but the root, however spelled;
    once deployed as an empty release."""
    return tar_gz([_node(name, tarfile.DIRTYPE, 0o755) for name in ("./", ".", "./.")])


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: object
    expect: str
    config: dict = dataclasses.field(default_factory=dict)
    suffix: str = ".tar.gz"


CASES = [
    Case("traversal", traversal, "path escapes the release"),
    Case("traversal-nested", traversal_nested, "path escapes the release"),
    Case("absolute-path", absolute, "path escapes the release"),
    Case("symlink-then-file", symlink_then_file, "symlink target escapes the release"),
    Case("symlink-absolute-then-file", symlink_absolute_then_file,
         "symlink target escapes the release"),
    Case("symlink-to-etc", symlink_to_etc, "symlink target escapes the release"),
    Case("symlink-dotdot-chain", symlink_dotdot_chain, "symlink target escapes the release"),
    Case("hardlink-etc-passwd", hardlink_passwd, "hardlink target escapes the release"),
    Case("hardlink-etc-passwd-relative", hardlink_passwd_relative,
         "hardlink target escapes the release"),
    Case("char-device", char_device, "device nodes are not allowed"),
    Case("fifo", fifo, "fifos are not allowed"),
    Case("setuid", setuid_file, "setuid/setgid files are not allowed"),
    Case("setgid", setgid_file, "setuid/setgid files are not allowed"),
    Case("gzip-bomb", gzip_bomb, "max_unpacked_size (16777216 bytes)",
         {"max_unpacked_size": "16M"}),
    Case("many-medium-files", many_medium_files, "max_unpacked_size (16777216 bytes)",
         {"max_unpacked_size": "16M"}),
    Case("too-many-entries", too_many_entries, "max_entries (50)", {"max_entries": "50"}),
    Case("truncated-gzip", truncated_gzip, "truncated gzip input"),
    Case("not-an-archive", not_an_archive, "Unrecognized archive format"),
    Case("zip-traversal", zip_traversal, "path escapes the release", {"suffix": ".zip"}, ".zip"),
    Case("only-root", only_root, "contains no entries but the root directory"),
    Case("zip-absolute-path", zip_absolute, "path escapes the release", {"suffix": ".zip"}, ".zip"),
    # "through": the in-memory check and libarchive's on-disk one word it
    # differently ("goes through a symlink", "Cannot extract through symlink")
    Case("symlink-escape-chain", escape_chain, "through"),
    Case("zip-symlink-escape-chain", zip_escape_chain, "through", {"suffix": ".zip"}, ".zip"),
    Case("hardlink-through-symlink", hardlink_through_symlink, "through"),
]
