"""Sign in and sign out (SPEC §6)."""

from urllib.parse import parse_qs
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from idp.core.clock import utcnow
from idp.core.secrets import plausible_client_id
from idp.infra.extensions import db
from idp.signin import login_limits
from idp.signin import two_step
from idp.store import accounts
from idp.store import audit
from idp.store import user_sessions
from idp.store.models import Client
from idp.web import second_step
from idp.web import sessions
from idp.web.forms import EmptyForm
from idp.web.forms import LoginForm
from idp.web.unit_of_work import changes

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only a path on this site may follow sign-in; anything else goes to the settings page."""
    default = url_for("settings.connected_apps")
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return default
    return target


def asking_app(target: str | None) -> str | None:
    """The name of the app whose authorization request ``next`` continues, if it is one."""
    parts = urlsplit(safe_next(target))
    if parts.path != url_for("oauth.authorize"):
        return None
    client_id = (parse_qs(parts.query).get("client_id") or [""])[0]
    if not plausible_client_id(client_id):
        return None
    client = db.session.scalar(select(Client).where(Client.public_id == client_id))
    return client.name if client is not None and client.enabled else None


@bp.context_processor
def sign_in_context():
    """The sign-in page names the app asking, in a connect popup (GET and re-shown POST)."""
    try:
        target = request.values.get("next")
    except HTTPException:
        # An error page for this very body (413, a dropped upload) is rendering: don't read it.
        return {"asking": None}
    return {"asking": asking_app(target)}


def sign_in(user) -> None:
    """Begin a session for the user: its record committed first, then the cookie's id."""
    # Begun with the write lock (SQLite): the request has already read the user.
    with changes():
        started = user_sessions.start(db.session, user, utcnow(), current_app.config,
                                      request.user_agent.string, request.remote_addr)
    sessions.attach(user, *started)


def sign_out() -> None:
    """End this browser's session for every copy of its cookie, then forget it here."""
    if session.record_id is not None:
        with changes():
            user_sessions.end(db.session, session.user_id, utcnow(), only=session.record_id)
    sessions.detach()


#: What a refused sign-in attempt says (the same whether or not the account exists).
TOO_MANY = "Too many failed sign-in attempts. Wait a minute and try again."


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form; on success go to ``next`` (a local path only).

    Only failures are counted, and an attempt over a limit is refused before the password
    is checked (idp/signin/login_limits.py says which counters and why).
    """
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    error = None
    if form.validate_on_submit():
        user = accounts.find_user(form.email.data)
        attempt = login_limits.attempt(form.email.data, user)
        refused = login_limits.refusal(attempt)
        if refused is not None:
            page = render_template("auth/login.html", form=form, error=TOO_MANY)
            return page, 429, {"Retry-After": login_limits.retry_after(refused)}
        if accounts.check_password(user, form.password.data):
            if two_step.has_two_step(db.session, user):
                # A half-signed-in note only; the session begins after the second step.
                return second_step.begin(user, safe_next(form.next.data))
            sign_in(user)
            response = redirect(safe_next(form.next.data))
            login_limits.remember_device(response, user)
            return response
        login_limits.failed(attempt)
        # The lookup began a read transaction; on SQLite it could not become a writer once
        # another request had committed, so start the audit write with the lock held.
        with changes():
            # What was typed is recorded only when it names an account: people type passwords
            # into the email field, and the audit trail must never keep one. Failures of one
            # account from one address share an hourly row, so a flood cannot fill the table.
            audit.record_sign_in_failure(
                db.session, utcnow(), actor=user.email if user else None,
                ip=request.remote_addr,
            )
        error = "That email and password do not match an account."
    status = 200 if request.method == "GET" or error is None else 401
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
def logout():
    """Sign out (POST with a CSRF token) and return to the sign-in page."""
    form = EmptyForm()
    if form.validate_on_submit():
        sign_out()
    # "Not you?" on consent signs out and returns to the same authorization request.
    target = request.form.get("next")
    return redirect(url_for("auth.login", next=safe_next(target)) if target
                    else url_for("auth.login"))
