#!/usr/bin/env python3
"""Import cycles between a crate's top-level modules.

For every crate under crates/ (and bench/), counts the references one
top-level module makes to another (`crate::x`, `use crate::{x, ..}`,
and `super::x`
where it leads to the crate root), outside `#[cfg(test)]` items and
test-only files (`tests.rs`, `*_tests.rs`). Prints each crate's strongly
connected components with more than one module and exits 1 when any has
more than MAX (default 2) modules.

    python3 scripts/module_cycles.py [--max N] [--verbose] [CRATE_DIR ...]
"""

import argparse
import os
import re
import sys

REF = re.compile(r"\bcrate::(\{[^}]*\}|[a-z_][a-z0-9_]*)", re.S)


def top_module(src_dir, path):
    rel = os.path.relpath(path, src_dir)
    parts = rel.split(os.sep)
    first = parts[0]
    if first.endswith(".rs"):
        first = first[:-3]
    return first


def strip_tests(text):
    """Drops items under #[cfg(test)] (a `mod x { ... }` block or one item)."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = j + len("#[cfg(test)]")
        # The item ends at the matching close brace of its first block, or
        # at the first `;` if that comes before any brace.
        brace = text.find("{", k)
        semi = text.find(";", k)
        if semi >= 0 and (brace < 0 or semi < brace):
            i = semi + 1
            continue
        depth = 0
        m = brace
        while m < n:
            c = text[m]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            m += 1
        i = m + 1
    return "".join(out)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def names_in_group(group):
    """Top-level names in `{a, b::c, d::{e, f}}`."""
    inner = group[1:-1]
    names = []
    depth = 0
    cur = ""
    for c in inner:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            names.append(cur)
            cur = ""
        else:
            cur += c
    names.append(cur)
    out = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        out.append(re.split(r"::|\s", n)[0])
    return out


def crate_edges(src_dir):
    modules = set()
    files = []
    for root, _, fnames in os.walk(src_dir):
        for f in fnames:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            files.append(path)
            m = top_module(src_dir, path)
            if m not in ("lib", "main"):
                modules.add(m)
    edges = {}
    for path in files:
        base = os.path.basename(path)
        if base == "tests.rs" or base.endswith("_tests.rs"):
            continue
        src = top_module(src_dir, path)
        if src in ("lib", "main"):
            continue
        text = strip_tests(strip_comments(open(path, encoding="utf-8").read()))
        # A multi-line `use crate::{...}` group may span lines; the regex is DOTALL.
        rel = os.path.relpath(path, src_dir).split(os.sep)
        # How many `super::` lead from this file to the crate root.
        depth = len(rel) - 1 if rel[-1] == "mod.rs" else len(rel)
        refs = [m.group(1) for m in REF.finditer(text)]
        if depth >= 1:
            sup = re.compile(r"(?<![:\w])" + r"super::" * depth + r"(\{[^}]*\}|[a-z_][a-z0-9_]*)", re.S)
            refs += [m.group(1) for m in sup.finditer(text)]
        for target in refs:
            targets = names_in_group(target) if target.startswith("{") else [target]
            for t in targets:
                if t in modules and t != src:
                    edges.setdefault(src, {}).setdefault(t, 0)
                    edges[src][t] += 1
    return modules, edges


def sccs(nodes, edges):
    index = {}
    low = {}
    stack = []
    on = set()
    out = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=2)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("crates", nargs="*")
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    crates = args.crates or sorted(
        os.path.join(root, d, c)
        for d in ("crates", "bench")
        if os.path.isdir(os.path.join(root, d))
        for c in os.listdir(os.path.join(root, d))
        if os.path.isdir(os.path.join(root, d, c, "src"))
    )
    worst = 0
    for crate in crates:
        src_dir = os.path.join(crate, "src")
        modules, edges = crate_edges(src_dir)
        comps = [c for c in sccs(modules, edges) if len(c) > 1]
        name = os.path.basename(os.path.normpath(crate))
        for comp in comps:
            worst = max(worst, len(comp))
            print(f"{name}: cycle of {len(comp)}: {' '.join(comp)}")
            if args.verbose:
                for a in comp:
                    for b, n in sorted(edges.get(a, {}).items()):
                        if b in comp:
                            print(f"    {a} -> {b} ({n})")
    if worst > args.max:
        print(f"largest cycle: {worst} modules (allowed: {args.max})")
        return 1
    print(f"largest cycle: {worst} modules (allowed: {args.max})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
