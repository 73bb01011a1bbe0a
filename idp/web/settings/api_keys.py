"""Settings -> API Keys: the organization's keys, and creating one (its raw key shown once).

Changing a key (edit, roll, disable, enable, revoke) is idp/web/settings/api_key_changes.py.
"""

from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import Blueprint
from flask import current_app
from flask import render_template
from flask import request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp.core.clock import utcnow
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys as apikeys
from idp.store.models import ApiKey
from idp.web.forms import ApiKeyForm
from idp.web.forms import EmptyForm
from idp.web.sessions import current_user
from idp.web.settings.apps import current_membership
from idp.web.settings.apps import install
from idp.web.settings.apps import settings_error
from idp.web.unit_of_work import changes

bp = Blueprint("api_keys", __name__, url_prefix="/settings/api-keys")
install(bp)

#: Shown when the name is taken (by an earlier key, or by a racing create the constraint caught).
DUPLICATE_NAME = "This organization already has a key with that name; choose another."


def managed_membership():
    """The current organization if the user owns or administers it, else None."""
    membership = current_membership(current_user())
    return membership if accounts.is_manager(membership) else None


def forbidden():
    """Members (and people without an organization) get a polite 403 page."""
    membership = current_membership(current_user())
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
    form = new_form()
    try:
        # Reads then writes: on SQLite hold the write lock first, or a concurrent "last used"
        # update would make this click answer 503 (idp.store.database.begin_write).
        with changes():
            membership = managed_membership()
            if membership is None:
                return forbidden()
            if not valid(form, membership):
                return render_list(form, membership, 400)
            user = current_user()
            key, raw = apikeys.create_key(
                membership.organization, form.name.data, form.scopes.data,
                current_app.config["IDP_SCOPES"], created_by=user, expires_at=chosen_expiry(form),
                actor=user.email, ip=request.remote_addr,
            )
    except apikeys.ApiKeyError as error:
        form.name.errors = [str(error)]
        return render_list(form, membership, 400)
    except IntegrityError:
        # Two people created the same name at the same moment; the constraint settled it.
        form.name.errors = [DUPLICATE_NAME]
        return render_list(form, membership, 400)
    response = current_app.make_response(
        (render_template("settings/api_key_created.html", key=key, raw=raw), 201)
    )
    response.headers["Pragma"] = "no-cache"
    return response
