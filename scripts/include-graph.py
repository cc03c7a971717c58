#!/usr/bin/env python3
"""include-graph.py: the dependency graph of agent/ and config/, from the
#include "..." lines, and a failure if it has a cycle.

A module is a .c and its .h (agent/supervisor/service.c + service.h): when
a.c includes b.h and b.c includes a.h, a and b call each other, which is the
cycle that matters even though no header includes itself. X-internal.h is
module X's private header (config/config-internal.h is part of config). Includes that do
not name a file of the tree (version.h, paths.h: generated) are left out.

Also checked: headers that only some files may include (the manager is at
the top of the supervisor: nothing below it may call it).

Usage: scripts/include-graph.py [-v] [ROOT]   (exit 1 naming the problem)
"""
import os
import pathlib
import re
import sys

DIRS = ("agent", "config")
# Where the compiler looks (-Iagent -I.), after the including file's folder.
SEARCH = ("agent", ".")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# header -> the only files that may include it
ONLY = {
    "agent/supervisor/manager.h": {
        "agent/supervisor/manager.c",
        "agent/supervisor/main.c",
        "agent/supervisor/control-commands.c",
    },
}


def sources(root):
    for d in DIRS:
        for p in sorted((root / d).rglob("*")):
            if p.suffix in (".c", ".h") and p.is_file():
                yield p.relative_to(root)


def resolve(root, src, name):
    for base in (src.parent, *map(pathlib.Path, SEARCH)):
        p = pathlib.Path(os.path.normpath(base / name))
        if (root / p).is_file():
            return p
    return None


def module(path):
    m = str(path.with_suffix(""))
    return m[: -len("-internal")] if m.endswith("-internal") else m


def build(root):
    graph, problems = {}, []
    for src in sources(root):
        graph.setdefault(module(src), set())
        for name in INCLUDE.findall((root / src).read_text(errors="replace")):
            dep = resolve(root, src, name)
            if dep is None:
                continue
            allowed = ONLY.get(str(dep))
            if allowed is not None and str(src) not in allowed:
                problems.append(f"{src} includes {dep}, which only {', '.join(sorted(allowed))} may")
            if module(dep) != module(src):
                graph[module(src)].add(module(dep))
    return graph, problems


def find_cycle(graph):
    """A list of modules m0 -> m1 -> ... -> m0, or None (iterative DFS)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in graph}
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        while stack:
            node, deps = stack[-1]
            for dep in deps:
                if colour.get(dep, BLACK) == GREY:
                    path = [n for n, _ in stack]
                    return path[path.index(dep):] + [dep]
                if colour.get(dep) == WHITE:
                    colour[dep] = GREY
                    stack.append((dep, iter(sorted(graph[dep]))))
                    break
            else:
                colour[node] = BLACK
                stack.pop()
    return None


def main(argv):
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    root = pathlib.Path(args[0] if args else pathlib.Path(__file__).resolve().parent.parent)
    graph, problems = build(root)
    if verbose:
        for m in sorted(graph):
            print(f"{m} -> {' '.join(sorted(graph[m])) or '(nothing)'}")
    cycle = find_cycle(graph)
    if cycle:
        problems.insert(0, "include cycle: " + " -> ".join(cycle))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    edges = sum(len(d) for d in graph.values())
    print(f"include graph: {len(graph)} modules, {edges} dependencies, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
