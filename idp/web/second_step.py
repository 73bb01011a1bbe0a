"""The second step of sign-in: an authenticator code, a recovery code or a passkey.

A correct password for an account with two-step sign-in leaves only a note in the visitor's
session (who, since when, where to go next): ``sessions.current_user()`` reads the session
record alone, so the half-signed-in state opens no page and no consent. The note lasts
:data:`PENDING_SECONDS`; the session record is made only once the second step passes.
Wrong codes are counted per account (``IDP_TWO_STEP_RATE_LIMIT``): whoever reaches this page
knows the password, so counting per address would let them rotate addresses.
"""

import calendar

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra import throttle
from idp.infra.extensions import db
from idp.signin import login_limits
from idp.signin import passkeys
from idp.signin import two_step as twostep
from idp.store import audit
from idp.store.models import User
from idp.web.account_forms import CodeForm
from idp.web.unit_of_work import changes

bp = Blueprint("two_step", __name__, url_prefix="/login")

#: The visitor-session key of the half-signed-in note.
PENDING = "two_step"
#: Seconds between the password and the second step before starting over.
PENDING_SECONDS = 300
WRONG = "That code is not right, or was already used. Try the newest code."
TOO_MANY = "Too many wrong codes. Wait a few minutes and try again."


def _now_seconds() -> int:
    """The clock as whole seconds (the note is JSON)."""
    return calendar.timegm(utcnow().utctimetuple())


@bp.after_request
def private(response):
    """These pages belong to one person's sign-in: never cache them."""
    response.headers["Cache-Control"] = "no-store"
    return response


def begin(user: User, next_url: str):
    """After a correct password: remember who is half signed in, ask for the second step."""
    session[PENDING] = {"user": user.public_id, "at": _now_seconds(), "next": next_url}
    return redirect(url_for("two_step.index"), 303)


def pending_user() -> User | None:
    """The half-signed-in user of this browser, while the note is fresh."""
    note = session.get(PENDING)
    if not isinstance(note, dict) or not isinstance(note.get("user"), str):
        return None
    if not 0 <= _now_seconds() - int(note.get("at", 0)) <= PENDING_SECONDS:
        session.pop(PENDING, None)
        return None
    return db.session.scalar(select(User).where(User.public_id == note["user"]))


def finish(user: User, next_url: str | None = None, message: str | None = None):
    """The second step passed: a real session begins, and the browser is known again."""
    # Imported here: idp.web.auth imports this module.
    from idp.web.auth import sign_in

    next_url = (next_url or session.get(PENDING, {}).get("next")
                or url_for("settings.connected_apps"))
    sign_in(user)
    if message:
        # After sign-in: starting the session clears what the visitor session held.
        flash(message)
    response = redirect(next_url, 303)
    login_limits.remember_device(response, user)
    return response


def _limit() -> str:
    """The per-account limit of wrong second steps."""
    return current_app.config["IDP_TWO_STEP_RATE_LIMIT"]


def refused(user: User):
    """The 429 page when the account's wrong codes are over the limit, else None."""
    usage = throttle.peek_strict(_limit(), "two-step", user.public_id)
    if usage is None:
        return None
    page = render_template("auth/two_step.html", form=CodeForm(), error=TOO_MANY,
                           passkeys=twostep.passkey_count(db.session, user) > 0,
                           totp=twostep.has_totp(db.session, user))
    return page, 429, {"Retry-After": login_limits.retry_after(usage)}


def failed(user: User, method: str) -> None:
    """Count a wrong second step and record it."""
    throttle.count_strict(_limit(), "two-step", user.public_id)
    with changes():
        audit.record(db.session, "two_step_failed", utcnow(), actor=user.email,
                     subject=user.public_id, ip=request.remote_addr, method=method)


@bp.route("/two-step", methods=["GET", "POST"])
def index():
    """Ask for a code from the authenticator app, or a recovery code."""
    user = pending_user()
    if user is None:
        flash("Sign in again: the sign-in took too long or was not started.")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    error = None
    if request.method == "POST":
        blocked = refused(user)
        if blocked is not None:
            return blocked
    if form.validate_on_submit():
        code = form.code.data
        with changes():
            now = utcnow()
            row = twostep.totp_of(db.session, user)
            if code.isdigit() and row is not None and row.confirmed_at is not None:
                method = "totp"
                passed = twostep.check_totp(db.session, current_app.config, user, row, code, now)
            else:
                method = "recovery_code"
                passed = twostep.use_recovery_code(db.session, user, code, now)
                if passed:
                    left = twostep.recovery_codes_left(db.session, user)
                    audit.record(db.session, "recovery_code_used", now, actor=user.email,
                                 subject=user.public_id, ip=request.remote_addr, left=left)
        if passed and method == "totp":
            return finish(user)
        if passed:
            return finish(user, message=f"You signed in with a recovery code; {left} left. "
                          "Make new ones in Settings → Security if you are running low.")
        failed(user, method)
        error = WRONG
    elif request.method == "POST":
        error = "Enter a code."
    status = 200 if request.method == "GET" else 401
    return render_template("auth/two_step.html", form=form, error=error,
                           passkeys=twostep.passkey_count(db.session, user) > 0,
                           totp=twostep.has_totp(db.session, user)), status


#: Session key of the sign-in ceremony's challenge (spent on first use).
CHALLENGE = "passkey_sign_in"


@bp.post("/passkey/options")
def passkey_options():
    """Options for signing in with a passkey: the half-signed-in user's, or any (discoverable)."""
    user = pending_user()
    rows = passkeys.user_passkeys(db.session, user) if user is not None else []
    options, challenge = passkeys.authentication_options(current_app.config, rows)
    session[CHALLENGE] = challenge
    return Response(options, mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


@bp.post("/passkey")
def passkey():
    """Verify the passkey: the second step, or a whole sign-in without a password."""
    from idp.web.auth import safe_next

    user = pending_user()
    challenge = session.pop(CHALLENGE, None)
    if user is not None:
        blocked = refused(user)
        if blocked is not None:
            return blocked
    if not challenge:
        flash("Start again: the passkey request expired.")
        return redirect(url_for("two_step.index" if user else "auth.login"), 303)
    try:
        with changes():
            row = passkeys.authenticate(db.session, current_app.config,
                                        request.form.get("credential", ""), challenge, utcnow(),
                                        user=user)
            owner = db.session.get(User, row.user_id)
    except passkeys.PasskeyError as error:
        if user is not None:
            failed(user, "passkey")
        flash(str(error))
        return redirect(url_for("two_step.index" if user else "auth.login"), 303)
    if user is None:
        return finish(owner, safe_next(request.form.get("next")))
    return finish(owner)
