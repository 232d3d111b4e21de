#!/usr/bin/env python3
"""Fail when top-level modules of the library import each other in a cycle.

Lists every `crate::` path (in `use` items, groups included, and in code) and every `super::`
path that leaves its top-level module, per file under src/; builds the graph of top-level
modules; prints each strongly connected component of more than one module with one cycle in
it. Also checks the dependency-direction rules stated in ARCHITECTURE.md (RULES below).

Usage: python3 .ci/module_cycles.py [--graph] [--allow a->b,...] [--src DIR] [--self-test]
  --graph   print every top-level edge and the files that make it
  --src     another tree's src/ (default: this checkout's)
  --self-test  check the parser on the Rust shapes it must read
  --allow   comma-separated `a->b` edges tolerated while another branch removes them
Exit status 1 on a cycle or a broken rule.
"""
import os
import re
import sys
from collections import defaultdict

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# Binary crate roots reach the library through `duo_collector::`, not `crate::`.
NOT_LIBRARY = {"main.rs"}

# (importer prefix, forbidden import prefixes, why). A prefix is a module path; it matches
# itself and everything under it.
NO_IO = ["collector", "daemon", "service", "sink", "state", "duo::client", "duo::proxy",
         "connectivity", "simulator", "demo", "observe", "progress", "config"]
RULES = [
    ("normalize", NO_IO, "normalize is pure"),
    ("logs", NO_IO, "logs is pure"),
    ("inventory", NO_IO, "inventory is pure"),
    ("duo::sign", NO_IO, "duo::sign is pure"),
    ("duo::retry", NO_IO, "duo::retry (the retry decision) is pure"),
    ("verify::decide", NO_IO, "verify-user's decisions are pure"),
    ("verify::record", NO_IO, "verify-user's outcome event is built without I/O"),
    ("pager", NO_IO + ["pacing"], "the pager machine is pure"),
    ("clock", None, "clock is a leaf"),
    ("log_kind", None, "log_kind is a leaf"),
    ("inventory_kind", None, "inventory_kind is a leaf"),
    ("sig_version", None, "sig_version is a leaf"),
    ("proxy_setting", None, "proxy_setting is a leaf"),
    ("secret", None, "secret is a leaf"),
    ("facility", None, "facility is a leaf"),
    ("lease", None, "lease is a leaf (pure: decides from what it is told)"),
    ("sink", ["collector", "observe"],
     "sink never imports collector, and reports deliveries through DeliveryEvents, not observe"),
    ("state", ["collector"], "state never imports collector"),
    ("duo::client", ["collector"], "duo::client never imports collector"),
]

# (importer prefix, the only prefixes it may import, why).
ONLY = [
    ("config", ["secret", "log_kind", "sig_version", "proxy_setting", "facility", "schedule",
                "inventory_kind",
                "normalize", "pacing::rate"],
     "config is imported, and imports only leaf types and pure modules"),
    ("checkpoint", ["log_kind"], "checkpoint is pure"),
]

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<raw_string>b?r(?P<hashes>\#*)")
  | (?P<string>b?"(?:[^"\\]|\\.)*")
  | (?P<char>b?'(?:[^'\\]|\\.)')
  | (?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)
  | (?P<path_sep>::)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


def tokens(text):
    """Identifiers, `::` and single punctuation; comments, strings and chars dropped."""
    pos = 0
    out = []
    while pos < len(text):
        m = TOKEN.match(text, pos)
        kind = m.lastgroup
        if kind == "block_comment":
            depth, pos = 1, m.end()
            while depth and pos < len(text):
                if text.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif text.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
            continue
        if m.group("raw_string") is not None:
            end = text.find('"' + m.group("hashes"), m.end())
            pos = len(text) if end < 0 else end + 1 + len(m.group("hashes"))
            continue
        pos = m.end()
        if kind in ("ident", "path_sep", "punct"):
            out.append(m.group(kind))
    return out


def file_module(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def parse_tree(toks, i):
    """Parse the path (or `{...}` group) starting at toks[i]; return (paths, next index).

    Each path is a list of segments; a group expands into one path per item."""
    if i < len(toks) and toks[i] == "{":
        paths, i = [], i + 1
        while i < len(toks) and toks[i] != "}":
            if toks[i] == ",":
                i += 1
                continue
            sub, i = parse_tree(toks, i)
            paths.extend(sub)
        return paths, i + 1
    if i >= len(toks) or not re.match(r"[A-Za-z_*]", toks[i]):
        return [[]], i
    seg = toks[i]
    i += 1
    if i < len(toks) and toks[i] == "::":
        rest, i = parse_tree(toks, i + 1)
        return [[seg] + r for r in rest], i
    if i + 1 < len(toks) and toks[i] == "as":
        i += 2
    # `a::{self}` and `a::*` name `a` itself.
    return [[] if seg in ("self", "*") else [seg]], i


def references(path, module):
    """Absolute module paths referenced by the file at `path` whose module is `module`."""
    toks = tokens(open(path, encoding="utf-8").read())
    found = []
    # Inline `mod name {` blocks change what `super` means; track them by brace depth.
    stack, depth = [], 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if stack and stack[-1][1] == depth:
                stack.pop()
        elif t == "mod" and i + 2 < len(toks) and toks[i + 2] == "{":
            stack.append((toks[i + 1], depth))
            depth += 1
            i += 3
            continue
        preceded_by_path = i > 0 and toks[i - 1] == "::"
        here = module + [name for name, _ in stack]
        if t == "crate" and not preceded_by_path and i + 1 < len(toks) and toks[i + 1] == "::":
            if i > 0 and toks[i - 1] == "$":
                i += 1
                continue
            paths, i = parse_tree(toks, i + 2)
            found.extend(p for p in paths if p)
            continue
        if t == "super" and not preceded_by_path and i + 1 < len(toks) and toks[i + 1] == "::":
            base, j = here[:-1], i + 2
            while j + 1 < len(toks) and toks[j] == "super" and toks[j + 1] == "::":
                base, j = base[:-1], j + 2
            paths, i = parse_tree(toks, j)
            found.extend(base + p for p in paths if base + p)
            continue
        i += 1
    return found


def prefix_match(path, prefix):
    parts = prefix.split("::")
    return path[: len(parts)] == parts


def strongly_connected(graph):
    """Tarjan's algorithm; returns the components, each a sorted list."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def one_cycle(graph, comp):
    """A shortest cycle through the first module of the component, as a list of modules."""
    members = set(comp)
    start = comp[0]
    frontier, parent = [start], {start: None}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    cycle = [v]
                    while parent[cycle[-1]] is not None:
                        cycle.append(parent[cycle[-1]])
                    return list(reversed(cycle)) + [start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def self_test():
    """The parser on the shapes it must understand; run with --self-test."""
    import tempfile
    source = """
        //! crate::doc_comment is not an import
        use crate::{a, b::c, d::{e, f::g}};
        use crate::h::{self as hh, *};
        use super::sibling::Thing;
        use super::super::up;
        fn f() { let s = "crate::in_string"; crate::i::call(); <crate::j::T>::new(); }
        /* crate::block /* nested crate::deeper */ still comment */
        mod inner {
            use super::*;
            use super::super::k;
        }
        mod tests { use super::super::l::M; }
        macro_rules! m { () => { $crate::n::o() } }
    """
    with tempfile.NamedTemporaryFile("w", suffix=".rs", delete=False) as f:
        f.write(source)
    try:
        got = sorted({"::".join(r) for r in references(f.name, ["top", "sub"])})
    finally:
        os.unlink(f.name)
    want = sorted([
        "a", "b::c", "d::e", "d::f::g", "h", "top::sibling::Thing", "up", "i::call",
        "j::T", "top::k", "top::l::M", "top::sub",
    ])
    assert got == want, f"parsed {got}, expected {want}"
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    comps = [c for c in strongly_connected(graph) if len(c) > 1]
    assert comps == [["a", "b", "c"]], comps
    assert one_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    print("self-test ok")
    return 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    global SRC
    if "--src" in argv:
        SRC = argv[argv.index("--src") + 1]
    allowed = set()
    if "--allow" in argv:
        allowed = {e.strip() for e in argv[argv.index("--allow") + 1].split(",") if e.strip()}
    graph = defaultdict(set)
    edge_files = defaultdict(set)
    broken = []
    for root, _, files in os.walk(SRC):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, SRC)
            if rel in NOT_LIBRARY or rel == "lib.rs":
                continue
            module = file_module(rel)
            # Purity rules are about what runs in production: a module's tests may use the
            # simulator as a fixture. Tests still count for cycles.
            is_test = os.path.basename(rel) == "tests.rs" or "/tests/" in "/" + rel
            graph[module[0]]
            for ref in references(path, module):
                edge = f"{module[0]}->{ref[0]}"
                if edge in allowed:
                    edge_files[edge].add(rel)
                    continue
                for importer, forbidden, why in RULES:
                    if is_test or not prefix_match(module, importer):
                        continue
                    if prefix_match(ref, importer):
                        continue
                    if forbidden is None or any(prefix_match(ref, f) for f in forbidden):
                        broken.append(f"{rel}: imports {'::'.join(ref)} ({why})")
                for importer, only, why in ONLY:
                    if is_test or not prefix_match(module, importer) or prefix_match(ref, importer):
                        continue
                    if not any(prefix_match(ref, a) for a in only):
                        broken.append(f"{rel}: imports {'::'.join(ref)} ({why})")
                if ref[0] == module[0]:
                    continue
                edge_files[edge].add(rel)
                graph[module[0]].add(ref[0])
                graph[ref[0]]
    if "--graph" in argv:
        for edge in sorted(edge_files):
            print(f"{edge}: {', '.join(sorted(edge_files[edge]))}")
    failed = False
    for comp in strongly_connected(graph):
        if len(comp) < 2:
            continue
        failed = True
        cycle = one_cycle(graph, comp)
        print(f"module cycle among {{{', '.join(comp)}}}: {' -> '.join(cycle)}")
        for a, b in zip(cycle, cycle[1:]):
            print(f"  {a} -> {b}: {', '.join(sorted(edge_files[f'{a}->{b}']))}")
    for line in sorted(set(broken)):
        failed = True
        print(f"dependency rule broken: {line}")
    if not failed:
        print(f"module graph: {len(graph)} top-level modules, no cycle, dependency rules hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
