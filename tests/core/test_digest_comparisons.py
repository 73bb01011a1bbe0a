"""Digests are compared in constant time (hmac.compare_digest), never with ``==`` or ``!=``.

A database lookup by a unique digest column (``Model.digest == value`` inside ``.where(...)``)
is not a comparison in Python, so it is allowed.
"""

import ast
from pathlib import Path

import pytest

IDP = Path(__file__).resolve().parents[2] / "idp"
#: Calls whose arguments are SQL expressions evaluated by the database, not in Python.
SQL_CALLS = {"where", "filter", "having", "join", "outerjoin", "select"}


def _name(node) -> str:
    """The identifier a Name, Attribute or Call refers to, or ''."""
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _is_digest(node, tainted: set[str]) -> bool:
    """Whether an operand is a digest: named so, or a local bound to one."""
    if not isinstance(node, ast.Name | ast.Attribute | ast.Call):
        return False
    name = _name(node)
    return "digest" in name.lower() or (isinstance(node, ast.Name) and node.id in tainted)


def _in_sql(node, parents) -> bool:
    """Whether the node sits in the arguments of a SQL-building call."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Call) and _name(node) in SQL_CALLS:
            return True
    return False


def _tainted(scope) -> set[str]:
    """Locals of a function (or module) assigned a digest, e.g. ``presented = cs.digest(raw)``."""
    names: set[str] = set()
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and _is_digest(node.value, names):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def digest_comparisons(source: str, filename: str = "<source>") -> list[tuple[str, str]]:
    """(enclosing function, source text) of each ``==``/``!=`` on a digest outside SQL."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        scope = node
        while scope in parents and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = parents[scope]
        tainted = _tainted(scope)
        if any(_is_digest(side, tainted) for side in [node.left, *node.comparators]) and (
                not _in_sql(node, parents)):
            found.append((getattr(scope, "name", "<module>"), ast.get_source_segment(source, node)))
    return found


def test_no_digest_is_compared_with_equality_in_idp():
    found = []
    for path in sorted(IDP.rglob("*.py")):
        relative = path.relative_to(IDP).as_posix()
        found += [(relative, function, text)
                  for function, text in digest_comparisons(path.read_text(), str(path))]
    assert found == []


@pytest.mark.parametrize(("source", "expected"), [
    ("def check(row, raw):\n    return row.secret_digest == cs.digest(raw)\n",
     [("check", "row.secret_digest == cs.digest(raw)")]),
    ("def check(stored_digest, presented):\n    return stored_digest != presented\n",
     [("check", "stored_digest != presented")]),
    ("def check(stored, raw):\n    presented = digest(raw)\n    return stored == presented\n",
     [("check", "stored == presented")]),
    ("def find(raw):\n    return select(Key).where(Key.digest == cs.digest(raw))\n", []),
    ("LOOKUP = select(Key.id).where(Key.digest == bindparam('digest'))\n", []),
    ("def check(stored, raw):\n    return hmac.compare_digest(stored, cs.digest(raw))\n", []),
], ids=["attribute", "name", "local bound to a digest", "where", "module-level where",
        "constant time"])
def test_the_checker_flags_equality_on_digests_and_nothing_else(source, expected):
    assert digest_comparisons(source) == expected
