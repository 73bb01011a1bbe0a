"""Settings → Security, passkeys: confirm the password, register a passkey, remove one."""

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.signin import passkeys
from idp.signin import reauth
from idp.signin import two_step
from idp.store import audit
from idp.store.models import Passkey
from idp.web.account_forms import PasskeyForm
from idp.web.account_forms import PasswordConfirmForm
from idp.web.forms import EmptyForm
from idp.web.sessions import current_user
from idp.web.settings.apps import install
from idp.web.settings.security import after_setup
from idp.web.settings.security import show_codes
from idp.web.unit_of_work import changes
from idp.web.unit_of_work import commit

bp = Blueprint("passkeys", __name__, url_prefix="/settings/security/passkeys")
install(bp)

#: Session key of the registration ceremony's challenge (spent on first use).
CHALLENGE = "passkey_register"
#: What the passkey endpoints answer without a recently confirmed password.
CONFIRM_FIRST = "Confirm your current password first."


def _refusal(message: str, status: int, headers: dict | None = None):
    """The JSON refusal the passkey script shows in its status line."""
    return jsonify(error="reauthentication_required", message=message), status, headers or {}


@bp.post("/confirm")
def confirm_password():
    """The current password before adding a passkey (a fetch); 204 marks the session."""
    form = PasswordConfirmForm()
    user = current_user()
    try:
        reauth.confirm(user, form.password.data if form.validate_on_submit() else None,
                       "add_passkey")
    except reauth.Refused as refused:
        # A wrong password is kept in the audit trail although the passkey is refused.
        commit()
        return _refusal(str(refused), refused.status, refused.headers)
    return "", 204


@bp.post("/options")
def passkey_options():
    """Registration options for the browser (a fetch carrying the CSRF token as a header)."""
    user = current_user()
    if not reauth.recent():
        return _refusal(CONFIRM_FIRST, 403)
    options, challenge = passkeys.registration_options(db.session, current_app.config, user)
    session[CHALLENGE] = challenge
    return Response(options, mimetype="application/json")


@bp.post("")
def add_passkey():
    """Verify the browser's new passkey and keep its public key."""
    form = PasskeyForm()
    user = current_user()
    challenge = session.pop(CHALLENGE, None)
    if not reauth.recent():
        flash(f"The passkey was not added. {CONFIRM_FIRST}")
        return redirect(url_for("security.index"), 303)
    if not form.validate_on_submit() or not challenge:
        flash("The passkey was not added: start again with “Add a passkey”.")
        return redirect(url_for("security.index"), 303)
    try:
        with changes():
            now = utcnow()
            row = passkeys.register(db.session, current_app.config, user, form.credential.data,
                                    challenge, (form.name.data or "").strip(), now)
            audit.record(db.session, "passkey_added", now, actor=user.email,
                         subject=row.public_id, ip=request.remote_addr, name=row.name)
            codes = None
            if two_step.recovery_codes_left(db.session, user) == 0:
                codes = two_step.new_recovery_codes(db.session, user, now)
    except passkeys.PasskeyError as refused:
        flash(f"The passkey was not added. {refused}")
        return redirect(url_for("security.index"), 303)
    # One confirmation, one passkey: a session cookie copied meanwhile gets no second one.
    reauth.spend()
    message = f"Passkey “{row.name}” is added."
    if codes is None:
        flash(message)
        return after_setup()
    return show_codes(codes, message)


@bp.post("/<public_id>/remove")
def remove_passkey(public_id):
    """Forget one of the user's passkeys."""
    form = EmptyForm()
    user = current_user()
    if not form.validate_on_submit():
        return redirect(url_for("security.index"), 303)
    with changes():
        row = db.session.scalar(select(Passkey).where(Passkey.public_id == public_id,
                                                      Passkey.user_id == user.id))
        if row is None:
            abort(404)
        db.session.delete(row)
        db.session.flush()
        if not two_step.has_two_step(db.session, user):
            two_step.remove_totp(db.session, user)
        audit.record(db.session, "passkey_removed", utcnow(), actor=user.email,
                     subject=row.public_id, ip=request.remote_addr, name=row.name)
    flash(f"Passkey “{row.name}” is removed.")
    return redirect(url_for("security.index"), 303)
