#!/usr/bin/env python3
"""Checks that src/ keeps its layers: every import points down the list below (or stays inside its
own folder), and no module imports itself in a circle.

Usage: python3 tools/layout_check.py [SRC_DIR]   (normally through `make layout-check`, which
`make lint` runs). Exit status 0 when the layout holds, 1 with one line per violation otherwise.

What counts as an import: every `crate::a::b` path and, inside a folder, every `super::x` path in
a file's production code. A file's tests (from its first `#[cfg(test)]` on) may use anything.
"""

import re
import sys
from pathlib import Path

# Bottom to top: a module may import from the ones before it, never from the ones after it.
LAYERS = [
    "failure",
    "jose",
    "crypto",
    "request",
    "policy",
    "config",
    "keys",
    "decision",
    "gauges",
    "filter",
]

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
CHILD = re.compile(r"^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_][a-z0-9_]*);", re.M)


def production_code(text):
    """The file without its tests and without comments."""
    test_start = text.find("#[cfg(test)]")
    if test_start >= 0:
        text = text[:test_start]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def module_of(src, path):
    """`config/preset.rs` -> ("config", "preset"); `config/mod.rs` -> ("config",)."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def resolve(modules, base, segments):
    """The longest known module that `base` + `segments` names (items after it are dropped)."""
    candidate = list(base) + segments
    while candidate:
        if tuple(candidate) in modules:
            return tuple(candidate)
        candidate.pop()
    return None


def check(src):
    files = {module_of(src, p): p for p in sorted(src.rglob("*.rs")) if p.name != "lib.rs"}
    modules = set(files)
    problems = []
    for module in modules:
        if module[0] not in LAYERS:
            problems.append(f"{files[module]}: top-level module {module[0]!r} is in no layer")
    edges = {module: set() for module in modules}
    for module, path in files.items():
        code = production_code(path.read_text())
        found = []
        for root, tail in PATH.findall(code):
            segments = tail.strip(":").split("::")
            if root == "crate":
                found.append(resolve(modules, (), segments))
            else:
                # `super` from a folder's file is the folder; from mod.rs, the folder's parent.
                parent = module[:-1] if path.name != "mod.rs" else module[:-2]
                found.append(resolve(modules, parent, segments))
        # A folder's mod.rs names its own children without a prefix (`use provider::Provider`).
        if path.name == "mod.rs":
            for child in CHILD.findall(code):
                for _ in re.finditer(rf"(?<![:\w]){child}::", code):
                    found.append(module + (child,))
        for target in set(found):
            if target is None or target == module:
                continue
            edges[module].add(target)
            source_layer, target_layer = module[0], target[0]
            if source_layer == target_layer or target_layer not in LAYERS:
                continue
            if source_layer in LAYERS and LAYERS.index(target_layer) > LAYERS.index(source_layer):
                problems.append(
                    f"{path}: imports {'::'.join(target)}, a layer above {source_layer} "
                    f"(layers, bottom to top: {', '.join(LAYERS)})"
                )
    for cycle in cycles(edges):
        names = ", ".join("::".join(m) for m in cycle)
        problems.append(f"import cycle among: {names}")
    return problems


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan), each as a list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main(argv):
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem)
    if problems:
        print(f"layout-check: {len(problems)} problem(s)")
        return 1
    print(f"layout-check: {len(list(src.rglob('*.rs')))} files, layers hold, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
