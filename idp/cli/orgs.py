"""Operator commands for organizations: create-org, suspend-org, org list and org show."""

import click
from flask import current_app
from sqlalchemy import func
from sqlalchemy import select

from idp.cli.support import emit
from idp.cli.support import find_org
from idp.cli.support import json_option
from idp.cli.support import live_connections
from idp.cli.support import refused_as_usage
from idp.cli.support import show
from idp.cli.support import stamp
from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import ApiKey
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import User
from idp.store.validation import ValidationError
from idp.store.validation import check_org_name


def _org_row(org: Organization) -> dict:
    """An organization as a listing shows it."""
    return {"id": org.public_id, "name": org.name, "suspended": org.suspended,
            "created_at": stamp(org.created_at)}


@click.command("create-org")
@click.argument("name")
def create_org(name):
    """Create an organization and print its id; names are unique, ignoring case."""
    with refused_as_usage(ValidationError, param="NAME"):
        name = check_org_name(name)
    org = accounts.create_org(name)
    db.session.commit()
    click.echo(org.public_id)


@click.command("suspend-org")
@click.argument("org_id")
@click.option("--undo", is_flag=True, help="Lift the suspension instead.")
def suspend_org(org_id, undo):
    """Suspend an organization (its tokens stop working) or lift the suspension."""
    org = find_org(org_id, None)
    accounts.set_suspended(org, not undo, issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    click.echo(f"{org.public_id} {'active' if undo else 'suspended'}")


@click.group("org")
def org_group():
    """List and inspect organizations (create-org and suspend-org change them)."""


@org_group.command("list")
@click.option("--suspended/--active", default=None, help="Only suspended, or only active, ones.")
@json_option
def org_list(suspended, as_json):
    """Every organization, oldest first: id, name, suspended, created."""
    query = select(Organization).order_by(Organization.created_at, Organization.id)
    if suspended is not None:
        query = query.where(Organization.suspended.is_(suspended))
    rows = [_org_row(org) for org in db.session.scalars(query)]
    emit(rows, ("id", "name", "suspended", "created_at"), as_json)


@org_group.command("show")
@click.argument("org_id")
def org_show(org_id):
    """One organization as JSON: its members, API key count and live connections."""
    org = find_org(org_id)
    members = db.session.scalars(select(Membership).join(User).where(Membership.org_id == org.id)
                                 .order_by(User.email))
    show({
        **_org_row(org),
        "members": [{"user": m.user.public_id, "email": m.user.email, "role": m.role}
                    for m in members],
        "api_keys": db.session.scalar(select(func.count(ApiKey.id))
                                      .where(ApiKey.org_id == org.id)),
        "live_connections": live_connections(Connection.org_id == org.id),
    })


#: Commands this module adds to ``flask``.
COMMANDS = (create_org, suspend_org, org_group)
