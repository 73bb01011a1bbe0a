"""Figures of the package's shape: modules, largest module, import edges and layers.

``python -m bench.tree [ROOT]`` reads the ``idp`` package under ROOT (default: this checkout)
with ``ast`` and prints how many modules it has, the longest, how many distinct idp-to-idp
import edges its modules have (imports inside functions count too), and how many layers the
module-level imports stack into (the longest chain, cycles folded into one layer).
"""

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the idp package."""
    found = {}
    for path in sorted((root / "idp").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict) -> tuple[set[str], set[str]]:
    """(all idp modules this one imports, those imported at module level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(tree.body)
    every, level = set(), set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
            targets = [t if t in known else node.module for t in targets]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                every.add(target)
                if node in top:
                    level.add(target)
    return every, level


def layers(graph: dict[str, set[str]]) -> int:
    """Length of the longest import chain, each strongly connected group counted once."""
    index, low, stack, on, groups, counter = {}, {}, [], set(), {}, [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            while True:
                w = stack.pop()
                on.discard(w)
                groups[w] = v
                if w == v:
                    break

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    dag: dict[str, set[str]] = {groups[v]: set() for v in graph}
    for v, targets in graph.items():
        dag[groups[v]].update(groups[w] for w in targets if groups[w] != groups[v])
    depth: dict[str, int] = {}

    def height(g):
        if g not in depth:
            depth[g] = 1 + max((height(h) for h in dag[g]), default=0)
        return depth[g]

    return max(height(g) for g in dag)


def figures(root: Path) -> dict:
    """The figures for the checkout at ``root``."""
    known = modules(root)
    every, level = {}, {}
    for name, path in known.items():
        every[name], level[name] = imports(name, path, known)
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in known.items()}
    largest = max(sizes, key=sizes.get)
    return {
        "modules": len(known),
        "largest": f"{largest} ({sizes[largest]} lines)",
        "over_250_lines": sorted(n for n, s in sizes.items() if s > 250),
        "import_edges": sum(len(t) for t in every.values()),
        "layers": layers(level),
    }


if __name__ == "__main__":
    for key, value in figures(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).items():
        print(f"{key}: {value}")
