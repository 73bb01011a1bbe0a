"""Settings → Activity: an organization's audit trail for its owners and admins (SPEC §6)."""

from flask import Blueprint
from flask import render_template
from flask import request
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import accounts
from idp.store import audit
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import User
from idp.web.sessions import current_user
from idp.web.settings.apps import current_membership
from idp.web.settings.apps import install
from idp.web.settings.apps import settings_error

bp = Blueprint("activity", __name__, url_prefix="/settings/activity")
install(bp)

#: Events a page shows.
PAGE_SIZE = 50
#: Pages beyond this are refused: an OFFSET that deep costs the database a long scan.
MAX_PAGE = 200
#: Details shown under an event, with their labels; the rest stay in the CLI and the logs.
SHOWN_DETAIL = {"reason": "Reason", "scope": "Scopes", "scopes": "Scopes", "count": "Attempts"}
#: Actors that stand for the command line rather than a person.
OPERATORS = ("cli", "seed-demo")


def forbidden(membership):
    """Members (and people without an organization) get a polite 403 page."""
    if membership is None:
        message = "You are not a member of any organization yet, so there is no activity to show."
    else:
        message = (f"Only owners and admins of {membership.organization.name} can see its "
                   "activity. Ask one of them if you need to know who changed something.")
    return settings_error(403, "Activity is for owners and admins", message)


def subject_labels(rows) -> dict:
    """What each event is about in words: ``API key "Zapier"``, ``Make, connected by …``."""
    ids = {row.subject for row in rows if row.subject}
    labels = {}
    keys = db.session.execute(select(ApiKey.public_id, ApiKey.name)
                              .where(ApiKey.public_id.in_(ids)))
    labels.update({public_id: f"API key “{name}”" for public_id, name in keys})
    connections = db.session.execute(
        select(Connection.public_id, Client.name, User.email)
        .join(Client, Connection.client_id == Client.id).join(User, Connection.user_id == User.id)
        .where(Connection.public_id.in_(ids)))
    labels.update({public_id: f"{client}, connected by {email}"
                   for public_id, client, email in connections})
    for row in rows:
        # A revoked key is gone; its events carry the name it had.
        name = (row.detail or {}).get("name")
        if row.subject and row.subject not in labels and name:
            labels[row.subject] = f"API key “{name}”" if row.subject.startswith("key_") else name
    return labels


def details(row) -> list[tuple[str, str]]:
    """The few details worth a line on the page, labelled."""
    detail = row.detail or {}
    return [(label, str(detail[key])) for key, label in SHOWN_DETAIL.items() if key in detail]


@bp.get("")
def index():
    """Newest first, a page at a time, optionally one kind of event."""
    membership = current_membership(current_user())
    if not accounts.is_manager(membership):
        return forbidden(membership)
    kind = request.args.get("kind", "")
    if kind not in audit.ORG_KINDS:
        kind = ""
    page = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    rows = audit.search(db.session, org=membership.organization.public_id,
                        kinds=[kind] if kind else (), limit=PAGE_SIZE + 1,
                        offset=(page - 1) * PAGE_SIZE)
    more = len(rows) > PAGE_SIZE and page < MAX_PAGE
    rows = rows[:PAGE_SIZE]
    return render_template(
        "settings/activity.html", rows=rows, kind=kind, page=page, more=more,
        kinds=[(k, audit.KINDS[k]) for k in audit.ORG_KINDS], names=audit.KINDS,
        labels=subject_labels(rows), details=details, operators=OPERATORS,
        organization=membership.organization,
    )
