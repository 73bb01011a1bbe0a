"""Settings pages: the layout they share, the organization switcher, Connected Apps (SPEC §6)."""

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from idp.core.clock import utcnow
from idp.core.scopes import describe
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store import accounts
from idp.store.connections import end_connection
from idp.store.connections import listed_connections
from idp.store.models import Connection
from idp.store.models import Membership
from idp.web.auth import safe_next
from idp.web.forms import EmptyForm
from idp.web.forms import OrganizationSwitchForm
from idp.web.sessions import current_user
from idp.web.unit_of_work import changes

bp = Blueprint("settings", __name__, url_prefix="/settings")

#: Session key holding the public id of the organization the settings pages act on.
CURRENT_ORG = "org"


def require_sign_in():
    """Every settings page needs a signed-in user."""
    if current_user() is None:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def current_membership(user) -> Membership | None:
    """The membership chosen in the switcher; the first organization by name otherwise."""
    memberships = accounts.memberships(user)
    chosen = session.get(CURRENT_ORG)
    return next((m for m in memberships if m.organization.public_id == chosen),
                memberships[0] if memberships else None)


def layout_context():
    """What the settings layout shows: navigation, the switcher, sign-out."""
    user = current_user()
    if user is None:
        return {}
    memberships = accounts.memberships(user)
    current = current_membership(user)
    switcher = OrganizationSwitchForm(formdata=None)
    switcher.organization.choices = [(m.organization.public_id, m.organization.name)
                                     for m in memberships]
    switcher.organization.data = current.organization.public_id if current else None
    switcher.next.data = request.path
    return {"user": user, "current": current, "switcher": switcher, "signout": EmptyForm()}


def no_store(response):
    """Settings pages show private data: never keep them in a cache or the back button."""
    response.headers["Cache-Control"] = "no-store"
    return response


def settings_error(status: int, title: str, message: str):
    """An error page inside the settings layout, so the way back stays in view."""
    return render_template("settings/error.html", title=title, message=message), status


def not_found(error):
    """Anything a user may not see is simply not there (never 403, which would confirm it)."""
    return settings_error(404, "Not found", "There is nothing here, or it is not yours to see.")


def install(blueprint: Blueprint) -> None:
    """Give a settings blueprint the sign-in check, layout, cache policy and 404 page."""
    blueprint.before_request(require_sign_in)
    blueprint.context_processor(layout_context)
    blueprint.after_request(no_store)
    blueprint.register_error_handler(404, not_found)


install(bp)


@bp.app_template_filter("when")
def when(moment) -> str:
    """A stored naive-UTC time as people read it."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


@bp.post("/organization")
def switch_organization():
    """Make another of the user's organizations the current one (a CSRF-protected POST)."""
    form = OrganizationSwitchForm()
    user = current_user()
    chosen = next((m for m in accounts.memberships(user)
                   if m.organization.public_id == form.organization.data), None)
    if chosen is None:
        abort(404)
    session[CURRENT_ORG] = chosen.organization.public_id
    flash(f"You are now working in {chosen.organization.name}.")
    return redirect(safe_next(form.next.data))


def visible_connections(user):
    """The user's own live connections plus, for owners/admins, every one in their orgs."""
    managed = [m.org_id for m in accounts.memberships(user) if accounts.is_manager(m)]
    return listed_connections(db.session, user.id, managed)


def _visible_connection(user, public_id: str) -> Connection:
    """One connection the user may end, or 404 (another org's, ended, unknown)."""
    connection = next((c for c in visible_connections(user) if c.public_id == public_id), None)
    if connection is None:
        abort(404)
    return connection


@bp.get("/connected-apps")
def connected_apps():
    """The user's connections first, then the others of organizations they manage."""
    user = current_user()
    catalogue = current_app.config["IDP_SCOPES"]
    rows = [(c, describe(parse_scope(c.scope), catalogue)) for c in visible_connections(user)]
    return render_template(
        "settings/connected_apps.html",
        mine=[r for r in rows if r[0].user_id == user.id],
        others=[r for r in rows if r[0].user_id != user.id],
    )


@bp.get("/connected-apps/<public_id>/disconnect")
def confirm_disconnect(public_id):
    """Ask before ending a connection; works without JavaScript."""
    connection = _visible_connection(current_user(), public_id)
    scopes = describe(parse_scope(connection.scope), current_app.config["IDP_SCOPES"])
    return render_template("settings/confirm_disconnect.html", connection=connection, scopes=scopes,
                           form=EmptyForm())


@bp.post("/connected-apps/<public_id>/disconnect")
def disconnect(public_id):
    """End a connection at once: its tokens stop on their next use (SPEC §6)."""
    # Read-then-write: on SQLite a transaction that began by reading cannot write once a
    # concurrent refresh has committed, and the click would answer 503. The unit of work
    # holds the lock first.
    with changes():
        user = current_user()
        connection = _visible_connection(user, public_id)
        # A manager disconnecting someone else's connection acts as an administrator.
        end_connection(db.session, connection, "disconnected", utcnow(), actor=user.email,
                       ip=request.remote_addr, issuer=current_app.config["IDP_ISSUER"],
                       initiating_entity="user" if connection.user_id == user.id else "admin")
    flash(f"{connection.client.name} is disconnected from {connection.organization.name}.")
    return redirect(url_for("settings.connected_apps"))
