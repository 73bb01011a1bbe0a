"""Liveness and readiness (SPEC §7): /readyz follows the database, /healthz does not."""

import re

import pytest


def test_healthz_and_readyz_when_all_is_well(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ready" and re.fullmatch(r"[0-9a-f]{12}", body["schema"])


@pytest.fixture(params=["unreachable", "unmigrated"])
def broken_app(request, make_app, tmp_path):
    """An IdP whose database cannot be opened, or holds no schema."""
    if request.param == "unreachable":
        url = f"sqlite:///{tmp_path / 'missing-dir' / 'idp.sqlite3'}"
    else:
        url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    return make_app(SQLALCHEMY_DATABASE_URI=url)


def test_readyz_is_503_and_healthz_stays_up_without_a_database(broken_app):
    client = broken_app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    assert ready.get_json()["error"] == "temporarily_unavailable"
    assert "Traceback" not in ready.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200
