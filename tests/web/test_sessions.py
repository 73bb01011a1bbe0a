"""Server-side sessions: sign-out ends every copy, idle and absolute limits, the settings page."""

import re
from datetime import timedelta

import pytest
import requests
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.config import ConfigError
from idp.infra.extensions import db
from idp.store.models import UserSession
from idp.store.purge import Cutoffs
from idp.store.purge import purge
from idp.web.sessions import describe_browser
from tests.helpers import csrf_token
from tests.helpers import flask_sign_in
from tests.settings_support import add_person
from tests.settings_support import database_text
from tests.settings_support import enter
from tests.settings_support import events
from tests.settings_support import post_form
from tests.settings_support import world

COOKIE = "fe_idp_session"
PAGE = "/settings/sessions"
SETTINGS = "/settings/connected-apps"
HOUR = 3600
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")


def signed_in(client) -> bool:
    """Whether the client's cookie opens a settings page (a refused one goes to sign-in)."""
    response = client.get(SETTINGS)
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login?next=")
    return response.status_code == 200


def copy_of(app, client):
    """A second test client carrying the same session cookie."""
    other = app.test_client()
    other.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    return other


def records(app, **where) -> list[UserSession]:
    """Session rows as stored now, oldest first."""
    with app.app_context():
        rows = list(db.session.scalars(select(UserSession).filter_by(**where)
                                       .order_by(UserSession.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def public_id_of(app, raw: str) -> str:
    """The public id of the session a raw cookie value opens."""
    with app.app_context():
        return db.session.scalar(select(UserSession.public_id)
                                 .where(UserSession.digest == cs.digest(raw)))


@pytest.fixture
def acme(app):
    """Acme Realty with its owner and a colleague."""
    built = world(app)
    built["colleague"] = add_person(app, "casey@acme-realty.example", {built["org"]: "member"})
    return built


def test_break4_copied_cookie_refused_after_sign_out(app, client, demo):
    flask_sign_in(client, demo)
    copy = copy_of(app, client)
    assert signed_in(copy)
    token = csrf_token(client.get(SETTINGS).get_data(as_text=True))
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    # The cookie itself is dropped, and the copy no longer opens anything.
    assert any(c.startswith(f"{COOKIE}=;") for c in out.headers.getlist("Set-Cookie"))
    refused = copy.get(PAGE)
    assert refused.status_code == 302
    assert refused.headers["Location"] == "/login?next=/settings/sessions"
    # The refused cookie is dropped too.
    assert any(c.startswith(f"{COOKIE}=;") for c in refused.headers.getlist("Set-Cookie"))
    assert not signed_in(client)
    [row] = records(app)
    assert row.ended_at is not None


def test_break4_copied_cookie_refused_after_sign_out_live(demo, live_server):
    browser = requests.Session()
    page = browser.get(live_server.url + "/login")
    signed = browser.post(live_server.url + "/login", allow_redirects=False, data={
        "csrf_token": csrf_token(page.text), "email": demo["user"]["email"],
        "password": demo["user"]["password"]})
    assert signed.status_code == 302
    stolen = requests.Session()
    stolen.cookies.set(COOKIE, browser.cookies[COOKIE], domain="127.0.0.1")
    assert stolen.get(live_server.url + SETTINGS, allow_redirects=False).status_code == 200
    settings = browser.get(live_server.url + SETTINGS)
    out = browser.post(live_server.url + "/logout", allow_redirects=False,
                       data={"csrf_token": csrf_token(settings.text)})
    assert out.status_code == 302
    refused = stolen.get(live_server.url + SETTINGS, allow_redirects=False)
    assert refused.status_code == 302
    assert refused.headers["Location"].startswith("/login?next=")


def test_only_a_digest_of_the_session_id_is_stored(app, client, demo):
    flask_sign_in(client, demo)
    raw = client.get_cookie(COOKIE).value
    assert re.fullmatch(r"fe_ses_[A-Za-z0-9_-]{43}", raw)
    [row] = records(app)
    assert row.digest == cs.digest(raw)
    assert raw.encode() not in database_text(app)
    assert raw[len("fe_ses_"):].encode() not in database_text(app)


def test_a_cookie_not_in_the_table_is_refused_and_dropped(app, client, demo):
    for value in ("fe_ses_" + "A" * 43, "fe_ses_short", "fe_ses_" + "!" * 43):
        client.set_cookie(COOKIE, value)
        response = client.get(SETTINGS)
        assert response.status_code == 302
        assert any(c.startswith(f"{COOKIE}=;") for c in response.headers.getlist("Set-Cookie"))


def test_the_record_keeps_the_browser_and_address(app, demo):
    client = app.test_client()
    page = client.get("/login", headers={"User-Agent": FIREFOX + " x" * 300})
    client.post("/login", headers={"User-Agent": FIREFOX + " x" * 300},
                environ_base={"REMOTE_ADDR": "203.0.113.7"},
                data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                      "email": demo["user"]["email"], "password": demo["user"]["password"]})
    [row] = records(app)
    assert row.user_agent.startswith(FIREFOX) and len(row.user_agent) == 200
    assert row.ip == "203.0.113.7"
    assert row.expires_at - row.created_at == timedelta(days=7)


def test_session_cookie_is_set_once_not_on_every_page(app, client, demo):
    flask_sign_in(client, demo)
    client.get(SETTINGS)
    for _ in range(3):
        assert client.get(SETTINGS).headers.getlist("Set-Cookie") == []


def test_idle_session_ends(app, client, demo, clock):
    flask_sign_in(client, demo)
    clock.shift(12 * HOUR - 90)
    assert signed_in(client)
    clock.shift(12 * HOUR - 90)  # a view less than 12 h ago kept it alive
    assert signed_in(client)
    clock.shift(12 * HOUR + 1)
    assert not signed_in(client)


def test_busy_session_still_ends_at_its_absolute_end(app, client, demo, clock):
    flask_sign_in(client, demo)
    for _ in range(13):  # 13 x 12 h = 6.5 days, each within the idle limit
        clock.shift(12 * HOUR - 120)
        assert signed_in(client)
    clock.shift(12 * HOUR)
    assert not signed_in(client)


def test_lifetimes_come_from_the_settings(make_app, demo, clock):
    app = make_app(IDP_SESSION_IDLE_SECONDS=600, IDP_SESSION_MAX_SECONDS=1800)
    client = app.test_client()
    flask_sign_in(client, demo)
    clock.shift(599)
    assert signed_in(client)
    clock.shift(601)
    assert not signed_in(client)


def test_last_seen_is_written_at_most_once_a_minute(app, client, demo, clock):
    flask_sign_in(client, demo)
    client.get(SETTINGS)
    [first] = records(app)
    clock.shift(30)
    client.get(SETTINGS)
    assert records(app)[0].last_seen_at == first.last_seen_at
    clock.shift(31)
    client.get(SETTINGS)
    assert records(app)[0].last_seen_at > first.last_seen_at


def test_requests_without_a_cookie_never_touch_the_session_table(app, client, demo):
    seen = []
    with app.app_context():
        engine = db.engine

        def note(_conn, _cursor, statement, *_args):
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", note)
        try:
            for path in ("/healthz", "/login", "/.well-known/oauth-authorization-server"):
                assert app.test_client().get(path).status_code == 200
            assert app.test_client().get(
                "/api/v1/me", headers={"Authorization": f"Bearer {demo['api_key']}"}
            ).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert seen and not [s for s in seen if "user_sessions" in s]


def test_visitor_cookie_signed_with_a_fallback_key_still_opens(make_app, demo):
    old = make_app(SECRET_KEY="old-secret-key-0123456789-abcdefghijklmnop")
    visitor = old.test_client()
    visitor.get("/login")
    with visitor.session_transaction() as session:
        token = session["csrf_token"]
    new = make_app(SECRET_KEY="new-secret-key-0123456789-ABCDEFGHIJKLMNOP",
                   SECRET_KEY_FALLBACKS=["old-secret-key-0123456789-abcdefghijklmnop"])
    carried = new.test_client()
    carried.set_cookie(COOKIE, visitor.get_cookie(COOKIE).value)
    with carried.session_transaction() as session:
        assert session["csrf_token"] == token
    without = make_app(SECRET_KEY="new-secret-key-0123456789-ABCDEFGHIJKLMNOP").test_client()
    without.set_cookie(COOKIE, visitor.get_cookie(COOKIE).value)
    with without.session_transaction() as session:
        assert "csrf_token" not in session


@pytest.mark.parametrize(("settings", "message"), [
    ({"IDP_SESSION_IDLE_SECONDS": 60}, "IDP_SESSION_IDLE_SECONDS must be at least 120"),
    ({"IDP_SESSION_IDLE_SECONDS": 7200, "IDP_SESSION_MAX_SECONDS": 3600},
     "IDP_SESSION_MAX_SECONDS must be at least IDP_SESSION_IDLE_SECONDS"),
    ({"IDP_SESSION_MAX_SECONDS": 400 * 24 * HOUR}, "at most a year"),
])
def test_session_lifetimes_are_checked(make_app, settings, message):
    with pytest.raises(ConfigError, match=message):
        make_app(**settings)


def test_sessions_page_lists_live_sessions_and_marks_this_one(app, acme):
    phone, laptop = app.test_client(), app.test_client()
    enter(phone, app, acme["owner"])
    with app.app_context():
        row = db.session.scalars(select(UserSession)).one()
        row.user_agent, row.ip = SAFARI, "198.51.100.4"
        db.session.commit()
    enter(laptop, app, acme["owner"])
    enter(app.test_client(), app, acme["colleague"])  # someone else's: never listed
    gone = app.test_client()
    enter(gone, app, acme["owner"])
    post_form(gone, PAGE, PAGE + f"/{public_id_of(app, gone.get_cookie(COOKIE).value)}/sign-out")

    page = laptop.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert html.count('class="card connection"') == 2
    assert html.count("This session") == 1
    assert "Safari on iPhone" in html and "198.51.100.4" in html
    assert "Started" in html and "Last seen" in html
    assert 'aria-current="page">Signed-in sessions<' in html
    assert f'href="{PAGE}/sign-out-others"' in html
    # Every settings page links here.
    assert f'href="{PAGE}"' in laptop.get(SETTINGS).get_data(as_text=True)


def test_sign_out_one_other_session(app, acme):
    phone, laptop = app.test_client(), app.test_client()
    phone_id = public_id_of(app, enter(phone, app, acme["owner"]))
    enter(laptop, app, acme["owner"])
    confirm = laptop.get(f"{PAGE}/{phone_id}/sign-out")
    assert confirm.status_code == 200
    assert "Sign out pytest?" in confirm.get_data(as_text=True)
    response = post_form(laptop, f"{PAGE}/{phone_id}/sign-out", f"{PAGE}/{phone_id}/sign-out")
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    assert "pytest (127.0.0.1) is signed out." in laptop.get(PAGE).get_data(as_text=True)
    assert not signed_in(phone)
    assert signed_in(laptop)
    [audit] = events(app, "session_ended")
    assert audit.subject == phone_id and audit.actor == acme["owner"]


def test_signing_out_this_session_from_the_list_is_signing_out(app, acme):
    laptop = app.test_client()
    this = public_id_of(app, enter(laptop, app, acme["owner"]))
    confirm = laptop.get(f"{PAGE}/{this}/sign-out")
    assert "Sign out of this session?" in confirm.get_data(as_text=True)
    response = post_form(laptop, PAGE, f"{PAGE}/{this}/sign-out")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert not signed_in(laptop)


def test_sign_out_everywhere_else(app, acme):
    laptop, phone, tablet, colleague = (app.test_client() for _ in range(4))
    for device in (laptop, phone, tablet):
        enter(device, app, acme["owner"])
    enter(colleague, app, acme["colleague"])
    confirm = laptop.get(f"{PAGE}/sign-out-others")
    assert confirm.status_code == 200
    assert "Every other session (2) ends at once" in confirm.get_data(as_text=True)
    response = post_form(laptop, PAGE, f"{PAGE}/sign-out-others")
    assert response.status_code == 302 and response.headers["Location"] == PAGE
    html = laptop.get(PAGE).get_data(as_text=True)
    assert "Every other session is signed out." in html
    assert signed_in(laptop) and signed_in(colleague)
    assert not signed_in(phone) and not signed_in(tablet)
    assert html.count('class="card connection"') == 1 and "sign-out-others" not in html
    [audit] = events(app, "other_sessions_ended")
    assert audit.detail == {"count": 2}


def test_another_persons_session_is_not_found(app, acme):
    mine, theirs = app.test_client(), app.test_client()
    enter(mine, app, acme["owner"])
    their_id = public_id_of(app, enter(theirs, app, acme["colleague"]))
    assert mine.get(f"{PAGE}/{their_id}/sign-out").status_code == 404
    assert post_form(mine, PAGE, f"{PAGE}/{their_id}/sign-out").status_code == 404
    assert signed_in(theirs)


@pytest.mark.parametrize("action", ["/sign-out-others", "/{other}/sign-out", "/{this}/sign-out"])
def test_every_sessions_form_needs_its_csrf_token(app, acme, action):
    laptop, phone = app.test_client(), app.test_client()
    this = public_id_of(app, enter(laptop, app, acme["owner"]))
    other = public_id_of(app, enter(phone, app, acme["owner"]))
    laptop.get(PAGE)  # the session has a CSRF token; the post just does not carry it
    response = laptop.post(PAGE + action.format(this=this, other=other))
    assert response.status_code == 400
    assert signed_in(laptop) and signed_in(phone)
    assert all(row.ended_at is None for row in records(app))


def test_sessions_page_needs_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/settings/sessions"


def test_purge_drops_ended_idle_and_expired_sessions(app, acme, clock):
    devices = [app.test_client() for _ in range(4)]
    ids = [public_id_of(app, enter(device, app, acme["owner"])) for device in devices]
    post_form(devices[0], PAGE, f"{PAGE}/{ids[0]}/sign-out")
    with app.app_context():
        now = utcnow()
        rows = {row.public_id: row for row in db.session.scalars(select(UserSession))}
        rows[ids[1]].last_seen_at = now - timedelta(hours=12, seconds=1)
        rows[ids[2]].expires_at = now
        db.session.commit()
        report = purge(db.session, Cutoffs.from_config(utcnow(), app.config))
        assert report.counts["sessions"] == 3
        assert db.session.scalars(select(UserSession.public_id)).all() == [ids[3]]
        assert db.session.scalar(select(func.count()).select_from(UserSession)) == 1
    assert signed_in(devices[3])


@pytest.mark.parametrize(("agent", "name"), [
    (FIREFOX, "Firefox on Linux"),
    (SAFARI, "Safari on iPhone"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0", "Edge on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", "Chrome on macOS"),
    ("python-requests/2.32", "python-requests/2.32"),
    (None, "Unknown browser"),
])
def test_browsers_are_named_as_people_name_them(agent, name):
    assert describe_browser(agent) == name
