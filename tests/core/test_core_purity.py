"""The credential core stays Flask-free, refuses garbage without the database, and makes one
indexed lookup per judgement."""

import ast
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event

from idp.core import credentials
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from tests.bearer_world import build_world
from tests.bearer_world import random_access_token
from tests.bearer_world import random_key

CORE = Path(__file__).resolve().parents[2] / "idp" / "core"
#: Modules whose import would let the core reach a request, g, session or app.
FORBIDDEN_MODULES = ("flask", "werkzeug", "idp.infra.extensions", "idp.web.guard", "idp.views")
#: Names that only exist inside a Flask request or app context.
FORBIDDEN_NAMES = {"request", "g", "session", "current_app", "has_request_context"}
NOW = datetime(2026, 12, 1, 12, 0, 0)


def core_modules():
    """Every Python file of idp/core."""
    return sorted(CORE.glob("*.py"))


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_imports_nothing_from_flask(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            assert not {a.name for a in node.names} & FORBIDDEN_NAMES, (path.name, node.lineno)
        else:
            continue
        for name in names:
            assert not name.startswith(FORBIDDEN_MODULES), (path.name, name, node.lineno)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_never_reaches_for_the_app_session(path):
    """No ``db.session`` or ``flask.g`` style attribute access either."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in {("db", "session"), ("flask", "request"),
                                                      ("flask", "g")}, (path.name, node.lineno)


def test_the_purity_check_would_catch_a_flask_import(tmp_path):
    """The check above is not vacuous: it flags the import it looks for."""
    tree = ast.parse("from flask import request\n")
    node = tree.body[0]
    assert node.module.startswith(FORBIDDEN_MODULES)
    assert {a.name for a in node.names} & FORBIDDEN_NAMES


class NoDatabase:
    """A session that fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"the core touched the database ({name}) for garbage input")


GARBAGE = [
    None,
    "",
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer ",
    "Bearer fe_k_0123456789abcdef0123456789abcde",
    "Bearer fe_k_0123456789ABCDEF0123456789ABCDEF",
    "Bearer fe_k_0123456789abcdef0123456789abcdef0",
    "Bearer fe_k_" + "a" * 10240,
    "Bearer fe_at_" + "A" * 10240,
    "Bearer fe_at_" + "é" * 43,
    "Bearer two tokens",
    "Bearer fe_rt_" + "A" * 43,
    "Bearer fe_at_tooshort",
    "Bearer <script>",
]


@pytest.mark.parametrize("header", GARBAGE, ids=lambda h: repr(h)[:40])
def test_garbage_is_judged_without_the_database(header):
    verdict = credentials.authenticate(NoDatabase(), header, NOW)
    assert isinstance(verdict, credentials.Denial)
    assert verdict.status == 401
    assert verdict.reason in ("missing_authorization", "malformed_authorization", "unknown_token")


@pytest.fixture
def counted(app):
    """The world, plus a list that records every SQL statement sent while it is open."""
    statements = []
    with app.app_context():
        world = build_world(app)

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            yield world, statements
        finally:
            event.remove(db.engine, "before_cursor_execute", record)


#: One credential of each kind and state; each must cost exactly one SELECT.
PICKS = {
    "key": lambda w: w.keys["good"], "disabled key": lambda w: w.keys["disabled"],
    "deleted key": lambda w: w.keys["deleted"], "unknown key": lambda w: random_key(),
    "token": lambda w: w.tokens["good"], "revoked token": lambda w: w.tokens["revoked"],
    "unbound token": lambda w: w.tokens["membership removed"],
    "unknown token": lambda w: random_access_token(),
}


def test_one_lookup_by_digest_per_judgement(counted):
    world, statements = counted
    db.session.commit()
    for name, pick in PICKS.items():
        token = pick(world)
        statements.clear()
        credentials.authenticate(db.session, "Bearer " + token, utcnow())
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1, (name, selects)
        assert "digest" in selects[0], name
        # SQLite's explicit BEGIN (idp/store/database.py) is the only other statement allowed.
        assert [s for s in statements if s not in selects and s != "BEGIN"] == [], name


@pytest.mark.parametrize("model", [ApiKey, AccessToken])
def test_digest_columns_are_unique_and_so_indexed(model):
    assert model.__table__.c.digest.unique is True
