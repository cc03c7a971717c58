#!/usr/bin/env python3
"""Reads the .plist reports of `scan-build -plist -o DIR` and fails on any finding
but one known false positive, printing each finding as FILE:LINE: message [checker].

The false positive: clang 14's analyzer does not run __attribute__((cleanup))
functions at the end of a scope (it treats `_cleanup_free_ char *s = strdup(x);
return -1;` as a leak, and a store kept only for the cleanup as dead). So a
"Potential leak of memory pointed to by 'v'" (or 'v.field', 'v->field') is dropped
when v, or the variable the allocation went into, is declared with a `_cleanup_`
attribute in the function the report is in; so is "Value stored to 'v' is never
read" for such a v. Every other report, leaks of plain pointers
included, fails `make analyze`. LeakSanitizer in `make asan-test` still checks the
cleanups at run time.

Usage: scan-build-check.py DIR
"""

import plistlib
import re
import sys
from pathlib import Path

LEAK = re.compile(r"^Potential leak of memory pointed to by '([A-Za-z_]\w*)")
DEAD_STORE = re.compile(r"^Value stored to '([A-Za-z_]\w*)' is never read")


def function_start(lines, name, line):
    """Index of the line that opens function name, searching up from line (1-based)."""
    for i in range(min(line, len(lines)) - 1, -1, -1):
        if re.match(rf"^[A-Za-z_].*\b{re.escape(name)}\(", lines[i]):
            return i
    return None


def cleanup_variables(body):
    """Names declared with a _cleanup_ attribute in body (several per line too)."""
    names = set()
    for line in body:
        if "_cleanup_" in line:
            decl = re.sub(r"_cleanup_\w*(?:\([^)]*\))?", " ", line.split("//")[0])
            names.update(re.findall(r"[\s*,]([A-Za-z_]\w*)\s*(?:=|;|,|\[)", " " + decl))
    return names


def is_cleanup_leak(diag, path):
    """True for a leak of memory that a _cleanup_ variable of the reporting
    function holds: the variable named, or the one the allocation went into
    (the analyzer sometimes names an alias, e.g. base = strrchr(target, '/'))."""
    dead = DEAD_STORE.match(diag["description"])
    m = dead or LEAK.match(diag["description"])
    if not m or diag.get("check_name") not in ("unix.Malloc", "deadcode.DeadStores"):
        return False
    lines = Path(path).read_text(errors="replace").splitlines()
    line = diag["location"]["line"]
    start = function_start(lines, diag.get("issue_context", ""), line)
    if start is None:
        return False
    cleanup = cleanup_variables(lines[start:line])
    if m.group(1) in cleanup or dead:
        return bool(m.group(1) in cleanup)
    file_index = diag["location"]["file"]
    allocations = [e["location"]["line"] for e in diag.get("path", [])
                   if e.get("kind") == "event" and "allocated" in e.get("message", "")
                   and e["location"]["file"] == file_index and start < e["location"]["line"] <= line]
    if not allocations:
        return False
    return bool(set(re.findall(r"[A-Za-z_]\w*", lines[allocations[-1] - 1])) & cleanup)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    findings, dropped = set(), 0
    for report in Path(argv[1]).rglob("*.plist"):
        with open(report, "rb") as f:
            data = plistlib.load(f)
        for diag in data.get("diagnostics", []):
            path = data["files"][diag["location"]["file"]]
            if is_cleanup_leak(diag, path):
                dropped += 1
                continue
            findings.add(f'{path}:{diag["location"]["line"]}: {diag["description"]} [{diag.get("check_name")}]')
    for f in sorted(findings):
        print(f)
    print(f"scan-build: {len(findings)} finding(s); {dropped} report(s) on _cleanup_ variables dropped")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
