"""Settings -> API Keys, one key at a time: edit, roll (new raw key shown once), disable,
enable and revoke. Every change is audited and takes effect on the key's next request."""

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from sqlalchemy.exc import IntegrityError

from idp.core.clock import utcnow
from idp.core.scopes import parse_scope
from idp.store import accounts
from idp.store import api_keys as apikeys
from idp.store.models import ApiKey
from idp.web.forms import ApiKeyEditForm
from idp.web.forms import EmptyForm
from idp.web.forms import RollForm
from idp.web.sessions import current_user
from idp.web.settings.api_keys import DUPLICATE_NAME
from idp.web.settings.api_keys import new_form
from idp.web.settings.apps import install
from idp.web.settings.apps import settings_error
from idp.web.unit_of_work import changes

bp = Blueprint("api_key_changes", __name__, url_prefix="/settings/api-keys")
install(bp)


def _managed_key(public_id: str) -> ApiKey:
    """A key of an organization the user manages, or 404 whatever the reason."""
    user = current_user()
    for membership in accounts.memberships(user):
        if accounts.is_manager(membership):
            key = apikeys.find_key(membership.organization, public_id)
            if key is not None:
                return key
    abort(404)


def _expired_conflict(key: ApiKey, action: str):
    """409 for what makes no sense on an expired key; its page offers only Revoke."""
    return settings_error(
        409, f"An expired key cannot be {action}",
        f"The key {key.name!r} has passed its expiry date and no longer works. Revoke it, and "
        "create a new key if the integration still needs one.")


def _set_active(public_id: str, active: bool):
    """Disable or enable a key, then back to the list."""
    with changes():
        key = _managed_key(public_id)
        if apikeys.expired(key, utcnow()):
            return _expired_conflict(key, "enabled" if active else "disabled")
        apikeys.set_active(key, active, actor=current_user().email,
                           ip=request.remote_addr, issuer=current_app.config["IDP_ISSUER"])
    flash(f"The key {key.name!r} is {'enabled' if active else 'disabled'}.")
    return redirect(url_for("api_keys.index"))


@bp.post("/<public_id>/disable")
def disable(public_id):
    """Stop a key at once (403 key_inactive) without losing it."""
    return _set_active(public_id, False)


@bp.post("/<public_id>/enable")
def enable(public_id):
    """Let a disabled key work again."""
    return _set_active(public_id, True)


@bp.get("/<public_id>/revoke")
def confirm_revoke(public_id):
    """Ask before deleting a key for good; works without JavaScript."""
    return render_template("settings/confirm_revoke.html", key=_managed_key(public_id),
                           form=EmptyForm())


@bp.post("/<public_id>/revoke")
def revoke(public_id):
    """Delete a key for good (401 unknown_token afterwards)."""
    with changes():
        key = _managed_key(public_id)
        name = key.name
        apikeys.revoke(key, actor=current_user().email, ip=request.remote_addr,
                       issuer=current_app.config["IDP_ISSUER"])
    flash(f"The key {name!r} is revoked and can no longer be used.")
    return redirect(url_for("api_keys.index"))


@bp.get("/<public_id>/edit")
def edit_form(public_id):
    """The rename and re-scope form, filled with the key's name and scopes."""
    key = _managed_key(public_id)
    form = new_form(ApiKeyEditForm, formdata=None, name=key.name,
                    scopes=parse_scope(key.scopes))
    return _render_edit(key, form)


def _render_edit(key: ApiKey, form: ApiKeyEditForm, status: int = 200):
    """The edit page."""
    return render_template("settings/api_key_edit.html", key=key, form=form,
                           catalogue=current_app.config["IDP_SCOPES"]), status


@bp.post("/<public_id>/edit")
def edit(public_id):
    """Rename and re-scope a key: effective on its very next request, audited."""
    try:
        with changes():
            key = _managed_key(public_id)
            form = new_form(ApiKeyEditForm)
            if not form.validate_on_submit():
                return _render_edit(key, form, 400)
            changed = apikeys.update_key(key, form.name.data, form.scopes.data,
                                         current_app.config["IDP_SCOPES"],
                                         actor=current_user().email,
                                         ip=request.remote_addr)
    except (apikeys.ApiKeyError, IntegrityError) as error:
        key = _managed_key(public_id)
        form.name.errors = [DUPLICATE_NAME if isinstance(error, IntegrityError) else str(error)]
        return _render_edit(key, form, 400)
    flash(f"The key {key.name!r} is saved." if changed else "Nothing was changed.")
    return redirect(url_for("api_keys.index"))


@bp.get("/<public_id>/roll")
def roll_form(public_id):
    """Ask how long the old secret keeps working before giving the key a new one."""
    key = _managed_key(public_id)
    if apikeys.expired(key, utcnow()):
        return _expired_conflict(key, "rolled")
    return _render_roll(key, RollForm(formdata=None))


def _render_roll(key: ApiKey, form: RollForm, status: int = 200):
    """The roll page, warning when an earlier roll's overlap is still running."""
    return render_template("settings/api_key_roll.html", key=key, form=form,
                           overlapping=apikeys.in_overlap(key, utcnow())), status


@bp.post("/<public_id>/roll")
def roll(public_id):
    """Give the key a new secret, shown once from this response; the old one keeps its overlap."""
    with changes():
        key = _managed_key(public_id)
        if apikeys.expired(key, utcnow()):
            return _expired_conflict(key, "rolled")
        form = RollForm()
        if not form.validate_on_submit():
            return _render_roll(key, form, 400)
        raw = apikeys.roll(key, int(form.overlap.data), actor=current_user().email,
                           ip=request.remote_addr)
    response = current_app.make_response(
        (render_template("settings/api_key_created.html", key=key, raw=raw, rolled=True), 201)
    )
    response.headers["Pragma"] = "no-cache"
    return response
