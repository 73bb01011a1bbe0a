"""Forgot password and reset by email (SPEC §6 as changed on 2026-11-28).

The mail's link is the only URL that carries the token. Opening it moves the token into a
short-lived cookie kept to this path and sends the browser on to ``/password/reset`` without
it, so the token never stays in the address bar or history, nor reaches a Referer; the form
posts only the new password.
"""

import hashlib
import hmac

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from idp.core.clock import utcnow
from idp.infra import mail
from idp.infra import throttle
from idp.infra.extensions import db
from idp.signin import login_limits
from idp.signin import resets
from idp.signin.passwords import PasswordPolicyError
from idp.signin.passwords import check_password_policy
from idp.store import accounts
from idp.store import audit
from idp.store import user_sessions
from idp.store.models import User
from idp.web.account_forms import ForgotForm
from idp.web.account_forms import ResetForm
from idp.web.unit_of_work import changes

bp = Blueprint("password", __name__, url_prefix="/password")

#: The cookie that holds a reset token between opening the link and choosing a password.
RESET_COOKIE = "fe_idp_reset"
RESET_PATH = "/password/reset"
TOO_MANY = "Too many reset requests from your network. Wait a while and try again."


@bp.after_request
def private(response):
    """These pages hold a CSRF token and, for a while, a reset token: never cache them."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _email_key(email: str) -> str:
    """A keyed digest of the typed email, so counters never hold what was typed."""
    key = current_app.secret_key
    key = key.encode() if isinstance(key, str) else key
    typed = accounts.normalize_email(email).encode()
    return hmac.new(key, b"reset:" + typed, hashlib.sha256).hexdigest()[:40]


def _reset_mail(user: User, raw: str) -> str:
    """The text of the reset mail."""
    minutes = current_app.config["IDP_PASSWORD_RESET_TTL"] // 60
    link = current_app.config["IDP_ISSUER"] + url_for("password.reset", token=raw)
    return (f"Hello {user.name},\n\nSomeone (we hope you) asked to reset the password of your "
            f"FlowEstate account.\nOpen this link within {minutes} minutes to choose a new "
            f"password; it works once:\n\n{link}\n\nIf you did not ask, ignore this mail: your "
            "password stays as it is.\n")


@bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    """Ask for a reset link; the answer is the same whether or not the email has an account."""
    form = ForgotForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("password/forgot.html", form=form), status
    config = current_app.config
    address = throttle.source()
    refused = throttle.peek_strict(config["IDP_RESET_ADDRESS_RATE_LIMIT"], "reset-address",
                                   address)
    if refused is not None:
        page = render_template("password/forgot.html", form=form, error=TOO_MANY)
        return page, 429, {"Retry-After": login_limits.retry_after(refused)}
    throttle.count_strict(config["IDP_RESET_ADDRESS_RATE_LIMIT"], "reset-address", address)
    # Per typed email, counted before the lookup, so a known and an unknown address are
    # limited alike; over it, nothing is sent but the answer does not change (no mail bombing,
    # no enumeration).
    usage = throttle.count_strict(config["IDP_RESET_EMAIL_RATE_LIMIT"], "reset-email",
                                  _email_key(form.email.data))
    if usage is None or usage.allowed:
        user = accounts.find_user(form.email.data)
        if user is not None:
            with changes():
                raw = resets.issue(db.session, user, utcnow(), config["IDP_PASSWORD_RESET_TTL"])
                audit.record(db.session, "password_reset_requested", utcnow(), actor=user.email,
                             subject=user.public_id, ip=request.remote_addr)
            mail.send(user.email, "Reset your FlowEstate password", _reset_mail(user, raw))
    return render_template("password/forgot_sent.html", email=form.email.data)


def _expired():
    """The page for a link that is unknown, expired or used: what to do next."""
    response = current_app.make_response((render_template("password/reset_expired.html"), 410))
    response.delete_cookie(RESET_COOKIE, path=RESET_PATH)
    return response


@bp.route("/reset", methods=["GET", "POST"])
def reset():
    """Choose a new password with the token from the link (held in a cookie, not the URL)."""
    config = current_app.config
    if request.method == "GET" and "token" in request.args:
        response = redirect(url_for("password.reset"), 303)
        token = request.args["token"][:resets.MAX_TOKEN_LENGTH + 1]
        response.set_cookie(RESET_COOKIE, token, max_age=config["IDP_PASSWORD_RESET_TTL"],
                            path=RESET_PATH, secure=config["SESSION_COOKIE_SECURE"],
                            httponly=True, samesite="Lax")
        return response
    if request.method == "GET":
        return _reset_page(ResetForm())
    # Read-then-write on the reset row: hold the write lock first (SQLite).
    with changes():
        found = resets.find(db.session, request.cookies.get(RESET_COOKIE), utcnow())
        if found is None:
            return _expired()
        form = ResetForm()
        if not form.validate_on_submit():
            return _reset_page(form, found, "Check the fields below.")
        user = found.user
        try:
            check_password_policy(form.new.data, user.email)
        except PasswordPolicyError as refused:
            return _reset_page(form, found, str(refused))
        now = utcnow()
        if not resets.consume(db.session, found, now):
            return _expired()
        user.password_hash = accounts.hash_password(form.new.data)
        # Whoever knew the old password may hold a session: every one of them ends. Two-step
        # sign-in stays in force, so a reset link alone never opens the account.
        ended = user_sessions.end(db.session, user.id, now)
        audit.record(db.session, "password_reset", now, actor=user.email,
                     subject=user.public_id, ip=request.remote_addr, sessions_ended=ended)
    if session.user_id == user.id:
        session.detach()
    flash("Your password is changed and every session of your account is signed out. "
          "Sign in with the new password.")
    response = redirect(url_for("auth.login"), 303)
    response.delete_cookie(RESET_COOKIE, path=RESET_PATH)
    return response


def _reset_page(form: ResetForm, found=None, error: str | None = None):
    """The form to choose a new password (400 when a posted one was refused)."""
    if found is None:
        found = resets.find(db.session, request.cookies.get(RESET_COOKIE), utcnow())
        if found is None:
            return _expired()
    status = 400 if error else 200
    return render_template("password/reset.html", form=form, email=found.user.email,
                           error=error), status

