"""Settings pages: Connected Apps (SPEC §6)."""

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from sqlalchemy import or_
from sqlalchemy import select

from idp import accounts
from idp.core.clock import utcnow
from idp.core.scopes import describe
from idp.core.scopes import parse_scope
from idp.extensions import db
from idp.forms import EmptyForm
from idp.models import Connection
from idp.oauth.tokens import end_connection

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.before_request
def require_sign_in():
    """Every settings page needs a signed-in user."""
    if accounts.current_user() is None:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def visible_connections(user):
    """The user's own live connections plus, for owners/admins, every one in their orgs."""
    managed = [m.org_id for m in accounts.memberships(user) if accounts.is_manager(m)]
    query = (
        select(Connection)
        .where(Connection.ended_at.is_(None), Connection.activated_at.isnot(None))
        .where(or_(Connection.user_id == user.id, Connection.org_id.in_(managed)))
        .order_by(Connection.created_at.desc())
    )
    return list(db.session.scalars(query))


@bp.get("/connected-apps")
def connected_apps():
    """List connections with a Disconnect button each."""
    user = accounts.current_user()
    catalogue = current_app.config["IDP_SCOPES"]
    rows = [
        (c, describe(parse_scope(c.scope), catalogue)) for c in visible_connections(user)
    ]
    return render_template("connected_apps.html", rows=rows, user=user, form=EmptyForm())


@bp.post("/connected-apps/<public_id>/disconnect")
def disconnect(public_id):
    """End a connection the user may see; anything else is 404 and changes nothing."""
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    user = accounts.current_user()
    connection = next((c for c in visible_connections(user) if c.public_id == public_id), None)
    if connection is None:
        abort(404)
    end_connection(db.session, connection, "disconnected", utcnow(), actor=user.email,
                   ip=request.remote_addr)
    db.session.commit()
    flash(f"{connection.client.name} is disconnected from {connection.organization.name}.")
    return redirect(url_for("settings.connected_apps"))
