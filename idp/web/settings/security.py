"""Settings → Security: the authenticator app, recovery codes and the organization's rule."""

from contextlib import nullcontext

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.signin import reauth
from idp.signin import two_step
from idp.store import audit
from idp.store.models import Passkey
from idp.web.account_forms import CodeForm
from idp.web.account_forms import PasswordConfirmForm
from idp.web.account_forms import RequireTwoStepForm
from idp.web.auth import safe_next
from idp.web.forms import EmptyForm
from idp.web.sessions import current_user
from idp.web.settings.apps import current_membership
from idp.web.settings.apps import install
from idp.web.unit_of_work import changes
from idp.web.unit_of_work import commit

bp = Blueprint("security", __name__, url_prefix="/settings")
install(bp)

#: Session key of where to go once two-step sign-in is set up (an authorization request).
RETURN_TO = "security_next"


def _owned_org(user):
    """The current organization's membership when the user owns it, else None."""
    membership = current_membership(user)
    return membership if membership is not None and membership.role == "owner" else None


@bp.get("/security")
def index():
    """Two-step sign-in: the authenticator app, recovery codes, passkeys, the org rule."""
    user = current_user()
    if request.args.get("next"):
        session[RETURN_TO] = safe_next(request.args["next"])
    owned = _owned_org(user)
    org_form = RequireTwoStepForm(formdata=None)
    if owned is not None:
        org_form.require.data = owned.organization.require_two_step
    passkeys = list(db.session.scalars(
        select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at)))
    return render_template(
        "settings/security.html", totp=two_step.has_totp(db.session, user), passkeys=passkeys,
        codes_left=two_step.recovery_codes_left(db.session, user), form=EmptyForm(),
        remove_form=PasswordConfirmForm(formdata=None), owned=owned, org_form=org_form,
        return_to=session.get(RETURN_TO),
    )


@bp.post("/security/totp")
def start_totp():
    """Make a new secret to set up (it takes effect only once a code confirms it)."""
    form = EmptyForm()
    user = current_user()
    if form.validate_on_submit():
        with changes():
            if two_step.has_totp(db.session, user):
                flash("An authenticator app is already set up. Remove it first to use another.")
                return redirect(url_for("security.index"), 303)
            two_step.start_totp(db.session, current_app.config, user, utcnow())
    return redirect(url_for("security.setup_totp"), 303)


@bp.route("/security/totp/setup", methods=["GET", "POST"])
def setup_totp():
    """Show the QR code of the unconfirmed secret; a first correct code puts it in force."""
    user = current_user()
    confirmed, codes = False, None
    # A POST may put the secret it reads in force: hold the write lock from the start (SQLite).
    with changes() if request.method == "POST" else nullcontext():
        row = two_step.totp_of(db.session, user)
        if row is None or row.confirmed_at is not None:
            return redirect(url_for("security.index"), 303)
        secret = two_step.open_secret(current_app.config, user, row.sealed_secret)
        if secret is None:
            # Sealed under a key that is no longer configured: start again.
            return redirect(url_for("security.index"), 303)
        form = CodeForm()
        checked = form.validate_on_submit()
        if checked:
            now = utcnow()
            confirmed = two_step.check_totp(db.session, current_app.config, user, row,
                                            form.code.data, now)
            if confirmed:
                row.confirmed_at = now
                if two_step.recovery_codes_left(db.session, user) == 0:
                    codes = two_step.new_recovery_codes(db.session, user, now)
                audit.record(db.session, "two_step_enabled", now, actor=user.email,
                             subject=user.public_id, ip=request.remote_addr, method="totp")
    if confirmed and codes is None:
        flash("Your authenticator app is set up.")
        return after_setup()
    if confirmed:
        return show_codes(codes, "Your authenticator app is set up.")
    if checked:
        form.code.errors.append("That code is not right. Enter the code your app shows now.")
    uri = two_step.provisioning_uri(secret, user)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    status = 400 if request.method == "POST" else 200
    return render_template("settings/totp_setup.html", form=form, qr=two_step.qr_data_uri(uri),
                           secret=grouped), status


def after_setup():
    """Back to the authorization that asked for two-step sign-in, or to this page."""
    target = session.pop(RETURN_TO, None)
    return redirect(target or url_for("security.index"), 303)


def show_codes(codes: list[str], message: str):
    """The recovery codes, this once; the page is never cached (settings pages are no-store)."""
    return render_template("settings/recovery_codes.html", codes=codes, message=message,
                           return_to=session.pop(RETURN_TO, None))


def _confirmed(form: PasswordConfirmForm, user, action: str, kept: str):
    """None once the form's password is the current one, else the page that refuses."""
    try:
        reauth.confirm(user, form.password.data if form.validate_on_submit() else None, action)
    except reauth.Refused as refused:
        # A wrong password is kept in the audit trail although the change is refused.
        commit()
        # Back to the page with the reason, whether wrong or over the limit: the limit is
        # judged again on the next try, so the form needs no page of its own.
        flash(f"{kept}. {refused}")
        return redirect(url_for("security.index"), 303)
    return None


@bp.post("/security/recovery-codes")
def regenerate_codes():
    """Replace the recovery codes, with the current password; the old ones stop working."""
    form = PasswordConfirmForm()
    user = current_user()
    refused = _confirmed(form, user, "recovery_codes",
                         "Your recovery codes are unchanged")
    if refused is not None:
        return refused
    with changes():
        if not two_step.has_two_step(db.session, user):
            flash("Set up two-step sign-in first.")
            return redirect(url_for("security.index"), 303)
        now = utcnow()
        codes = two_step.new_recovery_codes(db.session, user, now)
        audit.record(db.session, "recovery_codes_renewed", now, actor=user.email,
                     subject=user.public_id, ip=request.remote_addr)
    return show_codes(codes, "New recovery codes are ready; the old ones no longer work.")


@bp.post("/security/totp/remove")
def remove_totp():
    """Turn the authenticator app off, with the current password."""
    form = PasswordConfirmForm()
    user = current_user()
    refused = _confirmed(form, user, "remove_totp", "The authenticator app is still on")
    if refused is not None:
        return refused
    with changes():
        now = utcnow()
        two_step.remove_totp(db.session, user)
        audit.record(db.session, "two_step_disabled", now, actor=user.email,
                     subject=user.public_id, ip=request.remote_addr, method="totp")
    flash("The authenticator app is removed.")
    return redirect(url_for("security.index"), 303)


@bp.post("/security/organization")
def organization_rule():
    """An owner requires (or stops requiring) two-step sign-in of the organization's members."""
    form = RequireTwoStepForm()
    user = current_user()
    owned = _owned_org(user)
    if owned is None:
        abort(404)
    if not form.validate_on_submit():
        return redirect(url_for("security.index"), 303)
    with changes():
        if form.require.data and not two_step.has_two_step(db.session, user):
            flash("Set up two-step sign-in for yourself before requiring it of everyone.")
            return redirect(url_for("security.index"), 303)
        org = owned.organization
        org.require_two_step = bool(form.require.data)
        audit.record(db.session, "org_two_step_required" if org.require_two_step
                     else "org_two_step_optional", utcnow(), org=org.public_id,
                     actor=user.email, subject=org.public_id, ip=request.remote_addr)
    flash(f"Members of {org.name} now need two-step sign-in to connect apps."
          if org.require_two_step else f"Two-step sign-in is optional in {org.name}.")
    return redirect(url_for("security.index"), 303)


def two_step_setup_needed(user, orgs, chosen: str | None):
    """Send a member without two-step sign-in to set it up when the organization asks it.

    ``orgs`` are the memberships the consent page offers; ``chosen`` the organization posted
    with Allow. When every offered organization requires it, or the chosen one does, the
    answer is a redirect to Settings → Security that comes back to this authorization.
    """
    requiring = [m for m in orgs if m.organization.require_two_step]
    if not requiring or two_step.has_two_step(db.session, user):
        return None
    chosen_requires = any(m.organization.public_id == chosen for m in requiring)
    if len(requiring) < len(orgs) and not chosen_requires:
        return None
    names = ", ".join(m.organization.name for m in requiring)
    flash(f"{names} requires two-step sign-in. Set it up here, then you will return to the "
          "app's connection request.")
    return redirect(url_for("security.index", next=request.full_path), 303)
