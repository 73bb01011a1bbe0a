"""The credential lookup refuses garbage without the database, makes one indexed lookup per
judgement, and hands the core exactly the columns the core's rows name."""

from datetime import datetime

import pytest
from sqlalchemy import event

from idp.core.clock import utcnow
from idp.core.credentials import AccessTokenRow
from idp.core.credentials import ApiKeyRow
from idp.core.credentials import Denial
from idp.infra.extensions import db
from idp.store import credentials
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from tests.bearer_world import build_world
from tests.bearer_world import random_access_token
from tests.bearer_world import random_key

NOW = datetime(2026, 12, 1, 12, 0, 0)


class NoDatabase:
    """A connection that fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"the lookup touched the database ({name}) for garbage input")


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
    assert isinstance(verdict, Denial)
    assert verdict.status == 401
    assert verdict.reason in ("missing_authorization", "malformed_authorization", "unknown_token")


@pytest.mark.parametrize(("statement", "row"), [
    (credentials.API_KEY_BY_DIGEST, ApiKeyRow),
    (credentials.ACCESS_TOKEN_BY_DIGEST, AccessTokenRow),
], ids=["api key", "access token"])
def test_each_lookup_selects_the_cores_row_in_its_order(statement, row):
    """The core unpacks rows by position, so the SELECT's columns are its fields, in order."""
    assert tuple(statement.selected_columns.keys()) == row._fields


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
