"""Shared fixtures: a migrated database per test, the real app factory, a live server.

Tests run on SQLite by default. With ``IDP_TEST_DATABASE_URL`` set to a PostgreSQL URL the same
tests run there instead (the schema is made once by the migrations, and tables are emptied
between tests).
"""

import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text

from idp import create_app
from idp.infra.extensions import db
from idp.infra.extensions import limiter
from tests import helpers

# The factory fixtures (demo, factory), shared by every test directory. Imported rather than
# named in pytest_plugins, which pytest allows only in the conftest at the root of the run.
from tests.factories import demo  # noqa: F401
from tests.factories import factory  # noqa: F401

PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")

#: Settings every test app shares; generous limits so only rate-limit tests meet them.
BASE_CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-0123456789-abcdefghijklmnop",
    "IDP_ISSUER": "http://127.0.0.1:5000",
    "IDP_LOGIN_PAIR_RATE_LIMIT": "1000 per minute",
    "IDP_LOGIN_ADDRESS_RATE_LIMIT": "1000 per minute",
    "IDP_AUTH_FAILURE_RATE_LIMIT": "1000 per minute",
    "IDP_TOKEN_RATE_LIMIT": "100000 per minute",
    "IDP_API_RATE_LIMIT": "100000 per minute",
    "IDP_INTROSPECTION_RATE_LIMIT": "100000 per minute",
    "RATELIMIT_STORAGE_URI": "memory://",
}


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing():
    """argon2id at its lowest cost in tests: each hash at full cost takes about half a second.

    Verification reads the cost from the hash itself, so live servers checking a password that
    a test hashed are fast too. Production keeps the library's defaults (idp/store/accounts.py).
    """
    from argon2 import PasswordHasher

    from idp.store import accounts
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "_hasher", cheap)
        patch.setattr(accounts, "_DUMMY_HASH", cheap.hash("not-a-real-password"))
        yield


def _upgrade(url: str) -> None:
    """Make the schema with the real migrations."""
    from flask_migrate import upgrade

    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A migrated SQLite file copied per test, or the migrated PostgreSQL database."""
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        _upgrade(PG_URL)
        return PG_URL
    path = tmp_path_factory.mktemp("template") / "idp.sqlite3"
    _upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def database_url(template_db, tmp_path):
    """A clean, migrated database for one test."""
    return helpers.fresh_database(template_db, tmp_path)


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build apps through the real factory on this test's database."""
    apps = []

    def build(**overrides):
        app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, **overrides})
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    """The IdP with default test settings and a fresh rate-limit storage."""
    app = make_app()
    with app.app_context():
        limiter.reset()
    return app


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def clock():
    """Move the in-process clock with ``clock.shift(seconds)``; reset after the test."""
    from idp.core import clock as idp_clock

    yield idp_clock
    idp_clock.reset()


@pytest.fixture
def live_server(database_url, tmp_path):
    """A real IdP process (gunicorn) on a free port, on this test's database."""
    server = helpers.LiveServer(database_url, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_rig(database_url, tmp_path, monkeypatch):
    """The IdP as deployed: nginx (deploy/nginx.conf) terminating TLS for production gunicorn.

    HTTP clients verify its certificate for real: requests reads the rig's CA from the
    environment, so the tests' plain ``requests.get(server.url ...)`` calls need no change.
    """
    from tests import tls_rig as rig_module

    if not os.path.exists(rig_module.NGINX):
        pytest.skip(f"{rig_module.NGINX} is not installed (CI installs it in .ci/test)")
    rig = rig_module.TlsRig(database_url, tmp_path)
    rig.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(rig.ca))
    yield rig
    rig.stop()


@pytest.fixture(params=["http", pytest.param("tls", marks=pytest.mark.tls)])
def served_idp(request):
    """A live IdP twice: as developers run it (http) and as it is deployed (the TLS rig)."""
    return request.getfixturevalue("live_server" if request.param == "http" else "tls_rig")
