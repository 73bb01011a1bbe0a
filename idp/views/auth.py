"""Sign in and sign out (SPEC §6)."""

from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from idp import accounts
from idp import audit
from idp.core.clock import utcnow
from idp.database import begin_write
from idp.extensions import db
from idp.extensions import limiter
from idp.forms import EmptyForm
from idp.forms import LoginForm

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


def _login_limit() -> str:
    """Sign-in attempts allowed per IP and per email."""
    return current_app.config["IDP_LOGIN_RATE_LIMIT"]


def _email_key() -> str:
    """Rate-limit key for the email being tried."""
    return "login-email:" + accounts.normalize_email(request.form.get("email", ""))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, key_func=_email_key, methods=["POST"])
def login():
    """Show the sign-in form; on success go to ``next`` (a local path only)."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    error = None
    if form.validate_on_submit():
        user = accounts.find_user(form.email.data)
        if accounts.check_password(user, form.password.data):
            accounts.sign_in(user)
            return redirect(safe_next(form.next.data))
        # The lookup began a read transaction; on SQLite it could not become a writer once
        # another request had committed, so start the audit write with the lock held.
        begin_write(db.session)
        audit.record(
            db.session, "sign_in_failed", utcnow(), actor=accounts.normalize_email(form.email.data),
            ip=request.remote_addr,
        )
        db.session.commit()
        error = "That email and password do not match an account."
    status = 200 if request.method == "GET" or error is None else 401
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
def logout():
    """Sign out (POST with a CSRF token) and return to the sign-in page."""
    form = EmptyForm()
    if form.validate_on_submit():
        accounts.sign_out()
    return redirect(url_for("auth.login"))
