"""Connected Apps tells connections apart: a client-supplied label, ids, dates, chips."""

import pytest
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store.models import Connection
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of
from tests.oauth_helpers import authorize_url
from tests.oauth_helpers import consent
from tests.oauth_helpers import exchange
from tests.oauth_helpers import me
from tests.oauth_helpers import only_connection

PAGE = "/settings/connected-apps"


def connect_with(client, demo, **params) -> dict:
    """Authorize (with extra parameters), allow, redeem; the token response body."""
    verifier, challenge = pkce_pair()
    url = authorize_url(demo, code_challenge=challenge, code_challenge_method="S256", **params)
    response = consent(client, url, demo["organization"]["id"])
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    code = query_of(response.headers["Location"])["code"]
    tokens = exchange(client, demo, code, verifier)
    assert tokens.status_code == 200, tokens.get_json()
    return tokens.get_json()


@pytest.mark.parametrize(("sent", "kept"), [
    ("Lead sync (jane@acme)", "Lead sync (jane@acme)"),
    ("  two\tlines\nhere\x00  ", "two lines here"),
    ("x" * 150, "x" * 100),
    ("   ", None),
    (None, None),
])
def test_connection_label_is_tidied_and_kept(app, client, demo, sent, kept):
    flask_sign_in(client, demo)
    page = client.get(authorize_url(demo, connection_label=sent))
    assert page.status_code == 200
    if kept:
        assert f"“{kept}”" in page.get_data(as_text=True)  # consent shows what it will be called
    connect_with(client, demo, connection_label=sent)
    with app.app_context():
        assert only_connection().label == kept
    html = client.get(PAGE).get_data(as_text=True)
    if kept:
        assert f'<span class="connection-label">“{kept}”</span>' in html
    else:
        assert "connection-label" not in html


def test_two_connects_of_one_app_are_told_apart(app, client, demo, clock):
    flask_sign_in(client, demo)
    first = connect_with(client, demo, connection_label="Jane's Zapier")
    assert me(client, first["access_token"]).status_code == 200
    clock.shift(600)
    second = connect_with(client, demo)
    html = client.get(PAGE).get_data(as_text=True)
    with app.app_context():
        rows = list(db.session.scalars(select(Connection).order_by(Connection.id)))
    assert len(rows) == 2 and rows[0].created_at != rows[1].created_at
    for row in rows:
        assert f"<code>{row.public_id}</code>" in html
        assert f"connected {row.created_at.strftime('%Y-%m-%d %H:%M UTC')})</span>" in html
    # The used one says when and from where; the other says it is not used yet.
    assert "</time> from 127.0.0.1<" in html and "Not used yet" in html
    assert "“Jane&#39;s Zapier”" in html
    assert second["access_token"] != first["access_token"]


def test_scope_chips_keep_the_tick_with_the_words(app, client, demo):
    flask_sign_in(client, demo)
    connect_with(client, demo, scope="leads:read pipelines:write")
    html = client.get(PAGE).get_data(as_text=True)
    assert ('<li><span class="tick" aria-hidden="true">✓</span>'
            '<span>Create and change pipelines and deal stages</span></li>') in html
    with app.app_context():
        public_id = only_connection().public_id
    confirm = client.get(f"{PAGE}/{public_id}/disconnect").get_data(as_text=True)
    assert '<span class="tick" aria-hidden="true">✓</span><span>See your leads</span>' in confirm
    assert f"<code>{public_id}</code>" in confirm
