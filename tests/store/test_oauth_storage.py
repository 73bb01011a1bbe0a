"""After full flows the database holds no raw token, code, secret or password (SPEC §2)."""

import pytest
from sqlalchemy import update

from idp.cli.demo import seed_demo
from idp.infra.extensions import db
from idp.store import clients
from idp.store.models import Client
from tests.helpers import token_request
from tests.oauth_helpers import assert_nothing_raw_stored
from tests.oauth_helpers import basic
from tests.oauth_helpers import client_row
from tests.oauth_helpers import exchange
from tests.oauth_helpers import new_code
from tests.oauth_helpers import refresh


def test_no_raw_credential_in_the_database(app, client, demo, database_url, clock):
    seen = [demo["user"]["password"], demo["clients"]["zapier"]["client_secret"],
            demo["clients"]["make"]["client_secret"]]
    # A failed sign-in must not keep the password that was tried.
    wrong_password = "Tried-But-Wrong-Password-123"
    client.post("/login", data={"email": demo["user"]["email"], "password": wrong_password})
    seen.append(wrong_password)

    code, verifier = new_code(client, demo, scope="leads:read leads:write")
    first = exchange(client, demo, code, verifier).get_json()
    seen += [code, verifier, first["access_token"], first["refresh_token"]]
    second = refresh(client, demo, first["refresh_token"], scope="leads:read").get_json()
    retry = refresh(client, demo, first["refresh_token"]).get_json()
    assert retry["refresh_token"] == second["refresh_token"]
    clock.shift(5)
    third = refresh(client, demo, second["refresh_token"]).get_json()
    seen += [second["access_token"], second["refresh_token"], third["access_token"],
             third["refresh_token"]]

    make_code, make_verifier = new_code(client, demo, "make", sign_in=False)
    make = token_request(client, demo, {
        "grant_type": "authorization_code", "code": make_code, "code_verifier": make_verifier,
        "redirect_uri": demo["clients"]["make"]["redirect_uris"][0]}, "make", basic=True)
    assert make.status_code == 200
    seen += [make_code, make_verifier, make.get_json()["access_token"],
             make.get_json()["refresh_token"]]
    zapier = demo["clients"]["zapier"]
    revoked = client.post("/oauth/revoke", data={"token": make.get_json()["refresh_token"]},
                          headers=basic(demo["clients"]["make"]["client_id"],
                                        demo["clients"]["make"]["client_secret"]))
    assert revoked.status_code == 200
    # A replayed code ends its connection; nothing raw is kept for that either.
    assert exchange(client, demo, make_code, make_verifier, "make").status_code == 400

    with app.app_context():
        rotated = clients.rotate_secret(client_row(demo), 3600)
        db.session.commit()
    seen.append(rotated)
    assert refresh(client, demo, third["refresh_token"]).status_code == 200
    assert token_request(client, demo, {"grant_type": "refresh_token",
                                        "refresh_token": "fe_rt_" + "z" * 43},
                         headers=basic(zapier["client_id"], rotated)).status_code == 400
    with app.app_context():
        db.engine.dispose()
    assert_nothing_raw_stored(database_url, seen)


def test_the_scan_finds_a_stored_secret(app, database_url):
    """The scan itself works: a raw value written on purpose is found."""
    planted = "fe_cs_planted-value-for-the-scanner-0123456789"
    with app.app_context():
        seed_demo()
        db.session.execute(update(Client).values(name=planted))
        db.session.commit()
        db.engine.dispose()
    with pytest.raises(AssertionError, match="raw value stored"):
        assert_nothing_raw_stored(database_url, [planted])
