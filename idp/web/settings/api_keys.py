"""Settings -> API Keys: create (raw key shown once), roll, edit, disable, enable, revoke."""

from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp.core.clock import utcnow
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys as apikeys
from idp.store.database import begin_write
from idp.store.models import ApiKey
from idp.web.forms import ApiKeyEditForm
from idp.web.forms import ApiKeyForm
from idp.web.forms import EmptyForm
from idp.web.forms import RollForm
from idp.web.settings.apps import current_membership
from idp.web.settings.apps import install
from idp.web.settings.apps import settings_error

bp = Blueprint("api_keys", __name__, url_prefix="/settings/api-keys")
install(bp)

#: Shown when the name is taken (by an earlier key, or by a racing create the constraint caught).
DUPLICATE_NAME = "This organization already has a key with that name; choose another."


def managed_membership():
    """The current organization if the user owns or administers it, else None."""
    membership = current_membership(accounts.current_user())
    return membership if accounts.is_manager(membership) else None


def forbidden():
    """Members (and people without an organization) get a polite 403 page."""
    membership = current_membership(accounts.current_user())
    if membership is None:
        message = "You are not a member of any organization yet, so there are no keys to manage."
    else:
        message = (f"Only owners and admins of {membership.organization.name} can see and "
                   "create its API keys. Ask one of them if you need a key.")
    return settings_error(403, "API keys are managed by owners and admins", message)


def new_form(form_class=ApiKeyForm, **kwargs):
    """A key form with one choice per scope of the catalogue."""
    form = form_class(**kwargs)
    form.scopes.choices = list(current_app.config["IDP_SCOPES"])
    if (form_class is ApiKeyForm and request.method == "POST"
            and "expires" not in request.form):
        # A form posted without the presets (scripts written before them): a date given
        # means that date, none means no expiry, as the form used to say.
        form.expires.data = "custom" if request.form.get("expires_on") else "never"
    return form


def chosen_expiry(form: ApiKeyForm) -> datetime | None:
    """When the key stops: a preset from now, 00:00 UTC on a chosen date, or never."""
    if form.expires.data == "never":
        return None
    if form.expires.data == "custom":
        return datetime.combine(form.expires_on.data, time.min)
    return utcnow().replace(microsecond=0) + timedelta(days=int(form.expires.data))


def render_list(form: ApiKeyForm, membership, status: int = 200):
    """The page: the organization's keys, then the create form (errors scroll to it)."""
    keys = db.session.scalars(
        select(ApiKey).where(ApiKey.org_id == membership.org_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    now = utcnow()
    rows = [(key, apikeys.status(key, now), parse_scope(key.scopes)) for key in keys]
    return render_template(
        "settings/api_keys.html", form=form, rows=rows, actions=EmptyForm(), now=now,
        catalogue=current_app.config["IDP_SCOPES"], organization=membership.organization,
    ), status


def valid(form: ApiKeyForm, membership) -> bool:
    """Check every field at once, including a name already taken in the organization."""
    ok = form.validate_on_submit()
    if not form.name.errors and form.name.data and db.session.scalar(
        select(ApiKey.id).where(ApiKey.org_id == membership.org_id, ApiKey.name == form.name.data)
    ):
        form.name.errors = [DUPLICATE_NAME]
        ok = False
    return ok


@bp.get("")
def index():
    """List the current organization's keys with the create form."""
    membership = managed_membership()
    if membership is None:
        return forbidden()
    return render_list(new_form(), membership)


@bp.post("")
def create():
    """Create a key and show it once, from this response: never via a redirect or the session."""
    # Reads then writes: on SQLite hold the write lock first, or a concurrent "last used"
    # update would make this click answer 503 (idp.store.database.begin_write).
    begin_write(db.session)
    membership = managed_membership()
    if membership is None:
        return forbidden()
    form = new_form()
    if not valid(form, membership):
        return render_list(form, membership, 400)
    user = accounts.current_user()
    expires = chosen_expiry(form)
    try:
        key, raw = apikeys.create_key(
            membership.organization, form.name.data, form.scopes.data,
            current_app.config["IDP_SCOPES"], created_by=user, expires_at=expires,
            actor=user.email, ip=request.remote_addr,
        )
        db.session.commit()
    except apikeys.ApiKeyError as error:
        db.session.rollback()
        form.name.errors = [str(error)]
        return render_list(form, membership, 400)
    except IntegrityError:
        # Two people created the same name at the same moment; the constraint settled it.
        db.session.rollback()
        form.name.errors = [DUPLICATE_NAME]
        return render_list(form, membership, 400)
    response = current_app.make_response(
        (render_template("settings/api_key_created.html", key=key, raw=raw), 201)
    )
    response.headers["Pragma"] = "no-cache"
    return response


def _managed_key(public_id: str) -> ApiKey:
    """A key of an organization the user manages, or 404 whatever the reason."""
    user = accounts.current_user()
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
    begin_write(db.session)
    key = _managed_key(public_id)
    if apikeys.expired(key, utcnow()):
        return _expired_conflict(key, "enabled" if active else "disabled")
    apikeys.set_active(key, active, actor=accounts.current_user().email, ip=request.remote_addr)
    db.session.commit()
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
    begin_write(db.session)
    key = _managed_key(public_id)
    name = key.name
    apikeys.revoke(key, actor=accounts.current_user().email, ip=request.remote_addr)
    db.session.commit()
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
    begin_write(db.session)
    key = _managed_key(public_id)
    form = new_form(ApiKeyEditForm)
    if not form.validate_on_submit():
        return _render_edit(key, form, 400)
    user = accounts.current_user()
    try:
        changes = apikeys.update_key(key, form.name.data, form.scopes.data,
                                     current_app.config["IDP_SCOPES"], actor=user.email,
                                     ip=request.remote_addr)
        db.session.commit()
    except (apikeys.ApiKeyError, IntegrityError) as error:
        db.session.rollback()
        key = _managed_key(public_id)
        form.name.errors = [DUPLICATE_NAME if isinstance(error, IntegrityError) else str(error)]
        return _render_edit(key, form, 400)
    flash(f"The key {key.name!r} is saved." if changes else "Nothing was changed.")
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
    begin_write(db.session)
    key = _managed_key(public_id)
    if apikeys.expired(key, utcnow()):
        return _expired_conflict(key, "rolled")
    form = RollForm()
    if not form.validate_on_submit():
        return _render_roll(key, form, 400)
    raw = apikeys.roll(key, int(form.overlap.data), actor=accounts.current_user().email,
                       ip=request.remote_addr)
    db.session.commit()
    response = current_app.make_response(
        (render_template("settings/api_key_created.html", key=key, raw=raw, rolled=True), 201)
    )
    response.headers["Pragma"] = "no-cache"
    return response
