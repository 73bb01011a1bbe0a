"""A migrated SQLite database and the real app factory, for checking what the seed makes."""

import pytest

from idp import create_app
from idp.infra.extensions import db

#: Development-mode settings; the seed itself does not depend on the mode.
CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "bench-test-secret-key-0123456789-abcdefghij",
    "IDP_ISSUER": "http://127.0.0.1:5000",
    "RATELIMIT_STORAGE_URI": "memory://",
}


@pytest.fixture
def database_url(tmp_path):
    """A SQLite file made by the real migrations."""
    from flask_migrate import upgrade

    url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    app = create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture
def app(database_url):
    """The IdP on that database; its engine is disposed after the test."""
    app = create_app({**CONFIG, "SQLALCHEMY_DATABASE_URI": database_url})
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
