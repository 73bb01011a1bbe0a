"""The layers of the idp package depend only downwards (docs/DESIGN.md, "One home per noun").

Every import counts, including those inside functions: a late import is still a dependency.
"""

import ast
import sys
from pathlib import Path

from bench.tree import imports
from bench.tree import modules

ROOT = Path(__file__).resolve().parent.parent

#: Layer -> the layers its modules may import. ``idp`` (the package itself) may import anything.
ALLOWED = {
    "core": {"core"},
    "infra": {"core", "infra"},
    "store": {"core", "infra", "store"},
    "signin": {"core", "infra", "store", "signin"},
    "oauth": {"core", "infra", "store", "oauth"},
    "ssf": {"core", "infra", "store", "ssf"},
    "web": {"core", "infra", "store", "signin", "oauth", "ssf", "web"},
    "cli": {"core", "infra", "store", "signin", "ssf", "cli"},
}
#: The frameworks idp.core stays free of (plain libraries such as cryptography are fine).
FRAMEWORKS = {"flask", "sqlalchemy", "authlib", "werkzeug", "wtforms"}
#: The only modules of the kit idp.core may import (they are standard library only).
CORE_KIT = {"flowestate_kit.answers", "flowestate_kit.event_types"}
#: Flask's request-bound globals: whoever uses them decides HTTP answers, never the store.
REQUEST_GLOBALS = {"request", "session", "g"}


def layer(name: str) -> str | None:
    """``idp.store.accounts`` -> ``store``; None for the package itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> every idp module it imports, for the idp package under ``root``."""
    known = modules(root)
    return {name: imports(name, path, known)[0] for name, path in known.items()}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every edge that goes against ALLOWED, and every module outside a known layer."""
    wrong = []
    for name, targets in sorted(edges.items()):
        source = layer(name)
        if source is None:
            continue
        if source not in ALLOWED:
            wrong.append(f"{name}: not in a known layer")
            continue
        wrong += [f"{name} -> {target}" for target in sorted(targets)
                  if layer(target) not in ALLOWED[source]]
    return wrong


def outside_imports(path: Path) -> set[str]:
    """Dotted names a module imports from outside the standard library and idp."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n for n in names if n.partition(".")[0] not in {*sys.stdlib_module_names,
                                                                      "idp"})
    return found


def request_globals(path: Path) -> set[str]:
    """Flask's request globals a module imports (``from flask import g``) or reaches
    (``flask.session``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module in {"flask", "flask.globals"}:
            found.update(a.name for a in node.names if a.name in REQUEST_GLOBALS)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "flask" and node.attr in REQUEST_GLOBALS):
            found.add(node.attr)
    return found


def test_every_layer_imports_only_the_layers_below_it():
    edges = graph(ROOT)
    assert len(edges) > 50, "the idp package was found"
    assert violations(edges) == []


def framework_imports(path: Path) -> set[str]:
    """What a module imports of a web or database framework, or of the kit beyond answers."""
    return {name for name in outside_imports(path)
            if (root := name.partition(".")[0]) in FRAMEWORKS or root.startswith("flask_")
            or (root == "flowestate_kit" and name not in CORE_KIT)}


def test_the_core_imports_no_framework_and_only_the_kits_answers():
    core = {name: path for name, path in modules(ROOT).items() if layer(name) == "core"}
    assert "idp.core.credentials" in core
    assert {name: found for name, path in core.items() if (found := framework_imports(path))} == {}


def test_the_store_never_touches_the_request():
    store = {name: path for name, path in modules(ROOT).items() if layer(name) == "store"}
    assert "idp.store.accounts" in store
    touching = {name: found for name, path in store.items() if (found := request_globals(path))}
    assert touching == {}


def test_the_checks_catch_a_wrong_edge_even_inside_a_function(tmp_path):
    package = tmp_path / "idp"
    (package / "store").mkdir(parents=True)
    (package / "web").mkdir()
    (package / "__init__.py").write_text("")
    (package / "store" / "__init__.py").write_text("")
    (package / "web" / "__init__.py").write_text("")
    (package / "web" / "pages.py").write_text("X = 1\n")
    (package / "store" / "rows.py").write_text(
        "import flask\n\n\ndef late():\n    from idp.web.pages import X\n\n"
        "    return X, flask.g\n"
    )
    (package / "store" / "cookies.py").write_text("from flask import session\n")
    assert violations(graph(tmp_path)) == ["idp.store.rows -> idp.web.pages"]
    assert request_globals(package / "store" / "rows.py") == {"g"}
    assert request_globals(package / "store" / "cookies.py") == {"session"}
    assert framework_imports(package / "store" / "rows.py") == {"flask"}
    (package / "store" / "kit.py").write_text("import flowestate_kit.counting\nimport json\n")
    assert framework_imports(package / "store" / "kit.py") == {"flowestate_kit.counting"}


def test_the_checks_catch_every_kind_of_wrong_edge():
    edges = {
        "idp": {"idp.cli.people", "idp.web.auth"},
        "idp.core.clock": {"idp.infra.config"},
        "idp.cli.people": {"idp.web.sessions", "idp.oauth.server", "idp.store.accounts"},
        "idp.web.auth": {"idp.cli.people"},
        "idp.kit": set(),
    }
    assert violations(edges) == [
        "idp.cli.people -> idp.oauth.server", "idp.cli.people -> idp.web.sessions",
        "idp.core.clock -> idp.infra.config", "idp.kit: not in a known layer",
        "idp.web.auth -> idp.cli.people",
    ]
