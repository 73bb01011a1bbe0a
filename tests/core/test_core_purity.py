"""idp/core is pure: importing any of it loads no Flask, Werkzeug, SQLAlchemy or Authlib, and
nothing of idp outside idp.core, not even through another module.

One checker, :func:`core_impurities`, judges both the real core and a deliberately impure
package, so a checker that stops looking fails the second test instead of passing the first.
"""

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "idp" / "core"
#: Packages the core must never load, directly or through anything it imports.
FORBIDDEN_PACKAGES = ("flask", "werkzeug", "sqlalchemy", "authlib")
#: Names that only exist inside a Flask request or app context, whatever they are imported from.
FORBIDDEN_NAMES = {"request", "g", "session", "current_app", "has_request_context"}
#: ``db.session`` or ``flask.g`` style reaches for the app's state.
FORBIDDEN_ATTRIBUTES = {("db", "session"), ("flask", "request"), ("flask", "g")}

#: Run in a fresh interpreter: import every module of the package named by argv[2], with argv[1]
#: (JSON) as sys.path, then report what was imported, from which files, and what got loaded.
IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
sys.path[:0] = json.loads(sys.argv[1])
core = sys.argv[2]
package = importlib.import_module(core)
names = [core] + [info.name for info in pkgutil.walk_packages(package.__path__, core + ".")]
files = {name: importlib.import_module(name).__file__ for name in names}
print(json.dumps({"files": files, "loaded": sorted(sys.modules)}))
"""


@dataclass
class Report:
    """What the checker imported (module name -> file) and every rule it found broken."""

    checked: dict[str, str]
    violations: set[str]


def forbidden(module: str, core: str) -> bool:
    """Whether the core package ``core`` may not depend on ``module``."""
    top = module.partition(".")[0]
    if top in FORBIDDEN_PACKAGES or top.startswith("flask_"):
        return True
    root = core.partition(".")[0]
    inside = module == core or module.startswith(core + ".")
    return top == root and module != root and not inside


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(line, absolute module name, imported names) of every import anywhere in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, set()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parent = parts if is_package else parts[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield node.lineno, base, {alias.name for alias in node.names}


def static_violations(module: str, path: Path, core: str) -> set[str]:
    """Imports the source of ``module`` writes anywhere, even inside a function body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for line, name, names in imported_modules(tree, module, path.name == "__init__.py"):
        if forbidden(name, core):
            found.add(f"{module} imports {name} (line {line})")
        for bad in sorted(names & FORBIDDEN_NAMES):
            found.add(f"{module} imports {bad} from {name} (line {line})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES):
            found.add(f"{module} uses {node.value.id}.{node.attr} (line {node.lineno})")
    return found


def core_impurities(core: str, search_path: list[str]) -> Report:
    """Import every module of ``core`` in a fresh interpreter and judge what that loaded.

    Transitive: whatever ends up in ``sys.modules`` counts, however it got there. Static: every
    import written in a core module counts, including ones inside functions that importing
    alone would never run.
    """
    run = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_EVERY_MODULE, json.dumps(search_path), core],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    root = core.partition(".")[0]
    violations = {
        # A library's own submodules add nothing: name the package once.
        f"loads {name if name.startswith(root + '.') else name.partition('.')[0]}"
        for name in result["loaded"] if forbidden(name, core)
    }
    for module, file in result["files"].items():
        violations |= static_violations(module, Path(file), core)
    return Report(checked=result["files"], violations=violations)


def test_importing_the_core_loads_nothing_impure():
    report = core_impurities("idp.core", sys.path)
    expected = {f"idp.core.{path.stem}" for path in CORE.glob("*.py")} - {"idp.core.__init__"}
    assert expected <= set(report.checked), "every module of idp/core was imported"
    assert report.violations == set()


def write(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> source) under ``root``."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_the_checker_catches_impurity_however_it_arrives(tmp_path):
    """A probe package whose core breaks each rule once, mostly through a second module."""
    write(tmp_path, {
        "probe/__init__.py": "",
        "probe/core/__init__.py": "",
        # Clean, but imports a module outside the package that loads Werkzeug.
        "probe/core/rules.py": "import probe_shim\nfrom probe.core import helpers\n",
        "probe/core/helpers.py": "LIMIT = 3\n",
        "probe_shim.py": "import werkzeug\n",
        # Reaches the store, which loads SQLAlchemy.
        "probe/core/reach.py": "from probe.store import rows\n",
        "probe/store/__init__.py": "",
        "probe/store/rows.py": "import sqlalchemy\n",
        # A late import runs only when called: only the static check can see it.
        "probe/core/late.py": "def view():\n    from flask import request\n    return request\n",
        # A relative import out of the core, and a reach for the app's session.
        "probe/core/sub/__init__.py": "",
        "probe/core/sub/deep.py": (
            "from ...web import forms\n\n\ndef f(db):\n    return db.session\n"),
        "probe/web/__init__.py": "",
        "probe/web/forms.py": "",
    })
    report = core_impurities("probe.core", [str(tmp_path), *sys.path])
    assert {"probe.core.rules", "probe.core.reach", "probe.core.late",
            "probe.core.sub.deep"} <= set(report.checked)
    assert report.violations == {
        "loads werkzeug",
        "loads probe.store",
        "loads probe.store.rows",
        "loads sqlalchemy",
        "loads probe.web",
        "loads probe.web.forms",
        "probe.core.reach imports probe.store (line 1)",
        "probe.core.late imports flask (line 2)",
        "probe.core.late imports request from flask (line 2)",
        "probe.core.sub.deep imports probe.web (line 1)",
        "probe.core.sub.deep uses db.session (line 5)",
    }
