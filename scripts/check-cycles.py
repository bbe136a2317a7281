#!/usr/bin/env python3
"""Finds file-level reference cycles between the objects of one component.

A file uses another when it refers to a symbol (function or variable) the
other defines; `nm` on the objects says which.  Dependencies must run one
way, even between two files of one folder, so a cycle is an error: the
helper both sides need belongs one floor down.

  scripts/check-cycles.py [-v] BUILDDIR [COMPONENT ...]

A component is a folder of the source tree (nlb, api, registry, cli); its
objects are every .o below BUILDDIR/COMPONENT.  Prints each cycle as the
files in it (with -v, each use inside it and the symbols it goes through)
and exits 1 if there is one, 0 if there is none.
"""
import os
import re
import subprocess
import sys


def source_name(build, path):
    """libnlb_a-flow.o in nlb/dataplane -> nlb/dataplane/flow"""
    rel = os.path.relpath(path, build)
    folder, base = os.path.split(rel)
    base = re.sub(r"^[A-Za-z0-9_]+-", "", base[:-2])
    return os.path.join(folder, base)


def symbols(path):
    out = subprocess.run(["nm", path], capture_output=True, text=True,
                         check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRVWGS":
            defined.add(parts[2])
    return defined, used


def strongly_connected(graph):
    """Tarjan's algorithm; returns the components with more than one file."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def component_graph(build, component):
    objects = []
    for folder, _, files in os.walk(os.path.join(build, component)):
        objects += [os.path.join(folder, f) for f in files
                    if f.endswith(".o")]
    defined_by, uses = {}, {}
    for obj in objects:
        name = source_name(build, obj)
        defined, used = symbols(obj)
        uses[name] = used
        for sym in defined:
            defined_by[sym] = name
    graph = {name: {} for name in uses}
    for name, used in uses.items():
        for sym in used:
            owner = defined_by.get(sym)
            if owner and owner != name:
                graph[name].setdefault(owner, []).append(sym)
    return graph


def main():
    args = sys.argv[1:]
    verbose = bool(args) and args[0] == "-v"
    if verbose:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    build = args[0]
    components = args[1:] or ["nlb", "api", "registry", "cli"]
    status = 0
    for component in components:
        graph = component_graph(build, component)
        cycles = strongly_connected(graph)
        for cycle in cycles:
            print("%s: cycle: %s" % (component, " <-> ".join(cycle)))
            status = 1
            for name in cycle if verbose else []:
                for owner, syms in sorted(graph[name].items()):
                    if owner in cycle:
                        print("  %s -> %s: %s" % (name, owner,
                                                  " ".join(sorted(syms))))
        if not cycles:
            print("%s: %d files, no cycle" % (component, len(graph)))
    return status


if __name__ == "__main__":
    sys.exit(main())
