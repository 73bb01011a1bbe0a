"""A lock held too long is a passing fault: 503 with Retry-After, never a 4xx (SPEC §5.3).

On PostgreSQL another session holds the refresh token's row lock past ``lock_timeout``; on
SQLite another connection holds the write lock past the busy timeout.
"""

import contextlib
import os
import sqlite3
import time

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text

from idp.cli.demo import seed_demo
from idp.core import secrets as cs
from tests.prod_support import add_credentials
from tests.prod_support import flask_tokens
from tests.prod_support import token_form

PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")


@contextlib.contextmanager
def lock_held(database_url: str, refresh_token: str):
    """Hold the lock a rotation of ``refresh_token`` needs, from another connection."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT id FROM refresh_tokens WHERE digest = :d FOR UPDATE"),
                         {"d": cs.digest(refresh_token)})
            yield
    finally:
        engine.dispose()


def test_a_refresh_that_cannot_get_its_lock_is_503_then_succeeds(make_app, database_url):
    app = make_app(IDP_DB_LOCK_TIMEOUT_MS=300)
    client = app.test_client()
    with app.app_context():
        demo = seed_demo()
    api_key = add_credentials(app, demo)["api_key"]
    tokens = flask_tokens(client, demo)
    form = token_form(demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    with lock_held(database_url, tokens["refresh_token"]):
        for _ in range(2):
            busy = client.post("/oauth/token", data=form)
            assert busy.status_code == 503
            assert busy.headers["Retry-After"] == "5"
            assert busy.get_json()["error"] == "temporarily_unavailable"
            assert busy.headers["Cache-Control"] == "no-store"
        # Readers are not held up by a writer (row lock / WAL).
        for bearer in (tokens["access_token"], api_key):
            assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {bearer}"}
                              ).status_code == 200
    retried = client.post("/oauth/token", data=form)
    assert retried.status_code == 200
    assert retried.get_json()["refresh_token"] != tokens["refresh_token"]


@pytest.mark.skipif(not PG_URL, reason="row locks (SELECT ... FOR UPDATE) exist on PostgreSQL "
                                       "only; SQLite serialises writers with one file lock")
def test_a_grace_window_retry_waits_for_the_row_lock_then_answers_503(make_app, database_url):
    lock_timeout_ms = 500
    app = make_app(IDP_DB_LOCK_TIMEOUT_MS=lock_timeout_ms)
    client = app.test_client()
    with app.app_context():
        demo = seed_demo()
    tokens = flask_tokens(client, demo)
    form = token_form(demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    rotated = client.post("/oauth/token", data=form)
    assert rotated.status_code == 200
    engine = create_engine(database_url)
    try:
        with engine.connect() as holder:
            # Released by the server after 5 s if the IdP waited without a lock timeout, so a
            # missing timeout fails the test below instead of hanging it.
            holder.execute(text("SET idle_in_transaction_session_timeout = '5s'"))
            holder.execute(text("SELECT id FROM refresh_tokens WHERE digest = :d FOR UPDATE"),
                           {"d": cs.digest(tokens["refresh_token"])})
            started = time.monotonic()
            busy = client.post("/oauth/token", data=form)
            waited = time.monotonic() - started
            holder.rollback()
    finally:
        engine.dispose()
    # It waited for the lock (FOR UPDATE) and gave up at the lock timeout, not later.
    assert busy.status_code == 503, busy.get_json()
    assert busy.get_json()["error"] == "temporarily_unavailable"
    assert busy.headers["Retry-After"] == "5"
    assert lock_timeout_ms / 1000 <= waited < 3
    retried = client.post("/oauth/token", data=form)
    assert retried.status_code == 200
    assert retried.get_json()["refresh_token"] == rotated.get_json()["refresh_token"]
