#!/usr/bin/env python3
"""Checks rotor's module structure: no import cycle between the files under src/, and
no source file over 500 lines (tests.rs, proptests.rs and files under tests/ excepted).

An edge A -> B means file A names a path into module B (`use crate::x::y`, `use super::z`,
grouped uses, `pub use child::T`, or an inline `crate::x::f(...)`), resolved to the
longest module prefix that is a file. `mod x;` is containment, not an edge; edges to
the crate root and self-edges are ignored; `#[cfg(test)]` modules are not scanned.

Usage: scripts/check-imports.py [--dot] [--no-size] [--root DIR]
"""
import argparse, bisect, re, sys
from pathlib import Path

MAX_LINES = 500
IDENT = r"[A-Za-z_]\w*"
# Comments and literals, so paths in doc comments or strings are not taken for imports:
# line and (non-nested) block comments, raw strings, strings, and char literals (which,
# unlike lifetimes such as 'a, close with a quote).
NOISE = re.compile(r"""//[^\n]*|/\*.*?\*/|(?<!\w)b?r(#*)".*?"\1|"(?:\\.|[^"\\])*"|'(?:\\.[^'\n]{0,7}|[^\\'\n])'""", re.S)
TEST_BLOCK = re.compile(r"(?:#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+|\bmod\s+tests)\s*\{")
TEST_DECL = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
USE_STMT = re.compile(r"\buse\s+([^;]*);")
USE_TOKEN = re.compile(rf"::|{IDENT}|[{{}},*]")
# A path of two or more segments that is not the tail of a longer path, `$crate` or a field.
INLINE_PATH = re.compile(rf"(?<!::)(?<![\w$.]){IDENT}(?:\s*::\s*{IDENT})+")


def blank(text):
    """Spaces in place of text, keeping its newlines so offsets and line numbers hold."""
    return re.sub(r"[^\n]", " ", text)


def strip_test_blocks(code):
    """Blanks `mod tests { ... }` and `#[cfg(test)] mod x { ... }` blocks."""
    for m in reversed(list(TEST_BLOCK.finditer(code))):
        depth = 0
        for j in range(m.end() - 1, len(code)):
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            if depth == 0:
                break
        code = code[: m.start()] + blank(code[m.start() : j + 1]) + code[j + 1 :]
    return code


def use_leaves(tokens, i, prefix, leaves):
    """Parses the use tree at tokens[i] below path `prefix`; appends (segments, alias,
    offset) per leaf, e.g. `crate::{a, b::{c as d}}` -> [crate, a], [crate, b, c] as d."""
    segs, last = list(prefix), tokens[i][1] if i < len(tokens) else 0
    while i < len(tokens):
        tok, pos = tokens[i]
        if tok == "::":
            i += 1
        elif tok == "{":  # a group: each element is a tree below the path so far
            i += 1
            while i < len(tokens) and tokens[i][0] != "}":
                i = i + 1 if tokens[i][0] == "," else use_leaves(tokens, i, segs, leaves)
            return i + 1
        elif tok in (",", "}"):
            break
        else:  # a name, `self`, `super` or `*`
            segs.append(tok)
            last, i = pos, i + 1
            if i < len(tokens) and tokens[i][0] == "as":
                leaves.append((segs, tokens[i + 1][0], pos))
                return i + 2
            if i >= len(tokens) or tokens[i][0] != "::":
                break
    if len(segs) > len(prefix):
        leaves.append((segs, None, last))
    return i


def scan(f, text, here, modules, is_main, edges):
    """Adds to `edges` every edge from file f (module path `here`) with its line numbers."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    # Names in scope that denote modules: the child modules, then modules imported by `use`.
    scope = {} if is_main else {m[-1]: m for m in modules if len(m) == len(here) + 1 and m[:-1] == here}

    def resolve(segs, offset):
        """Adds the edge a path makes; returns (its module, whether all of it is a module)."""
        first, rest = segs[0], [s for s in segs[1:] if s != "self"]
        if first == "crate" or (is_main and first == "rotor"):
            base = ()
        elif first == "self":
            base = here
        elif first == "super":  # the parent module: from a/b.rs `a`, from a/mod.rs the root
            base = here[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif first in scope:
            base = scope[first]
        else:
            return None, False  # std, an external crate, a type or a local item
        taken = 0
        while taken < len(rest) and base + (rest[taken],) in modules:
            base, taken = base + (rest[taken],), taken + 1
        target = modules.get(base)
        if target and target != f:
            edges.setdefault((f, target), set()).add(bisect.bisect(line_starts, offset))
        return base, taken == len(rest)

    for use in USE_STMT.finditer(text):
        leaves = []
        use_leaves([(t.group(), use.start(1) + t.start()) for t in USE_TOKEN.finditer(use.group(1))], 0, [], leaves)
        for segs, alias, pos in leaves:
            glob = segs[-1] == "*"
            segs = segs[:-1] if glob else segs
            if segs:
                target, whole = resolve(segs, pos)
                bound = alias or (segs[-2] if segs[-1] == "self" and len(segs) > 1 else segs[-1])
                if whole and not glob and bound != "_":
                    scope[bound] = target  # `use crate::engine::{self, repo}` binds engine, repo
        text = text[: use.start()] + blank(use.group()) + text[use.end() :]  # not again below
    for m in INLINE_PATH.finditer(text):
        resolve(re.split(r"\s*::\s*", m.group()), m.start())


def strongly_connected(nodes, edges):
    """Tarjan's algorithm, iterative; returns only the components of more than one node."""
    succ = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index, low, stack, groups = {}, {}, [], []
    for start in nodes:
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        work = [(start, iter(succ[start]))]  # the DFS path, each node with its unvisited successors
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:  # node done: if it is its component's root, pop the component
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set(stack[stack.index(node) :])
                    del stack[stack.index(node) :]
                    groups += [group] if len(group) > 1 else []
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(succ[child])))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return groups


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    ap.add_argument("--dot", action="store_true", help="print the import graph in Graphviz dot")
    ap.add_argument("--no-size", action="store_true", help="skip the file length check")
    args = ap.parse_args()
    root = args.root.resolve()
    files = sorted(root.rglob("*.rs"))
    name = {f: str(f.relative_to(root.parent)) for f in files}
    raw = {f: f.read_text() for f in files}
    code = {f: NOISE.sub(lambda m: blank(m.group()), raw[f]) for f in files}
    mod = {}  # file -> module path: lib.rs/main.rs (), a.rs and a/mod.rs (a,), a/b.rs (a, b)
    for f in files:
        parts = f.relative_to(root).with_suffix("").parts
        mod[f] = () if parts in (("lib",), ("main",)) else parts[:-1] if parts[-1] == "mod" else parts
    modules = {m: f for f, m in mod.items() if m}  # module path -> file, crate root left out

    # A file is test-only when its parent declares it `#[cfg(test)] mod x;`, or is test-only.
    test_only = set()
    for f in sorted(modules.values(), key=lambda f: len(mod[f])):
        parent = modules.get(mod[f][:-1], root / "lib.rs")
        if parent in test_only or mod[f][-1] in TEST_DECL.findall(code.get(parent, "")):
            test_only.add(f)
    edges = {}  # (from file, to file) -> numbers of the lines that make the edge
    for f in files:
        if f not in test_only:
            is_main = mod[f] == () and f.name == "main.rs"
            scan(f, strip_test_blocks(code[f]), mod[f], modules, is_main, edges)
    cycles = strongly_connected(files, edges)

    if args.dot:
        group_of = {f: k for k, group in enumerate(cycles) for f in group}
        print("digraph imports {\n  rankdir=LR; node [shape=box, fontsize=10];")
        for f in files:
            print(f'  "{name[f]}"' + (" [style=dashed]" if f in test_only else "") + ";")
        for a, b in sorted(edges):
            red = a in group_of and group_of.get(b) == group_of[a]
            print(f'  "{name[a]}" -> "{name[b]}"' + (" [color=red]" if red else "") + ";")
        print("}")
        return 0

    for k, group in enumerate(cycles, 1):
        print(f"import cycle {k} ({len(group)} files): " + ", ".join(name[f] for f in sorted(group)))
        for a, b in sorted(e for e in edges if e[0] in group and e[1] in group):
            lines = sorted(edges[a, b])
            print(f"  {name[a]} -> {name[b]}")
            print(f"      {name[a]}:{lines[0]}: {raw[a].splitlines()[lines[0] - 1].strip()}")
            if len(lines) > 1:
                print("      (also lines " + ", ".join(map(str, lines[1:])) + ")")
        print()
    summary = f"{len(cycles)} cycle group(s)" if cycles else "no cycle"
    print(f"imports: {len(files)} files, {len(edges)} edges, {summary}")

    too_long = False
    for f in [] if args.no_size else files:
        lines = raw[f].count("\n")
        exempt = f.name in ("tests.rs", "proptests.rs") or "tests" in f.relative_to(root).parts[:-1]
        if lines > MAX_LINES and not exempt:
            too_long = True
            print(f"too long: {name[f]} has {lines} lines (limit {MAX_LINES})")
    return 1 if cycles or too_long else 0


if __name__ == "__main__":
    sys.exit(main())
