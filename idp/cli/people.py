"""Operator commands for users and memberships: create, list, show, set-password."""

import click
from flask import current_app
from sqlalchemy import select

from idp.cli.support import emit
from idp.cli.support import find_org
from idp.cli.support import find_user
from idp.cli.support import json_option
from idp.cli.support import live_connections
from idp.cli.support import refused_as_usage
from idp.cli.support import show
from idp.cli.support import stamp
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.signin.passwords import PasswordPolicyError
from idp.signin.passwords import check_password_policy
from idp.store import accounts
from idp.store import audit
from idp.store import user_sessions
from idp.store.database import begin_write
from idp.store.models import ROLES
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import User
from idp.store.validation import ValidationError
from idp.store.validation import check_email


def _member_row(membership: Membership) -> dict:
    """A membership as a listing shows it."""
    return {"org": membership.organization.public_id, "org_name": membership.organization.name,
            "user": membership.user.public_id, "email": membership.user.email,
            "role": membership.role}


def _new_password(prompt: str, email: str) -> str:
    """Ask for a password twice, never as an option (shell history and ps would keep it)."""
    password = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    with refused_as_usage(PasswordPolicyError, param="password"):
        check_password_policy(password, email)
    return password


@click.command("create-user")
@click.argument("email")
@click.option("--name", required=True)
def create_user(email, name):
    """Create a user with an argon2id password hash (the password is asked, twice)."""
    with refused_as_usage(ValidationError, param="EMAIL"):
        email = check_email(email)
    if accounts.find_user(email):
        raise click.BadParameter(f"{email} already exists.", param_hint="EMAIL")
    user = accounts.create_user(email, name, _new_password("Password", email))
    db.session.commit()
    click.echo(user.public_id)


@click.command("add-member")
@click.argument("email")
@click.argument("org_id")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
def add_member(email, org_id, role):
    """Give a user a role in an organization."""
    user = find_user(email, None)
    accounts.add_member(user, find_org(org_id, None), role,
                        issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    click.echo(f"{user.public_id} {role} of {org_id}")


@click.command("remove-member")
@click.argument("email")
@click.argument("org_id")
def remove_member(email, org_id):
    """Remove a user from an organization (their connections there stop working)."""
    user = find_user(email)
    org = find_org(org_id, None)
    membership = next((m for m in user.memberships if m.org_id == org.id), None)
    if membership is None:
        raise click.BadParameter(f"{email} is not a member of {org_id}.", param_hint="EMAIL")
    accounts.remove_member(membership, issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    click.echo(f"removed {email} from {org_id}")


@click.group("user")
def user_group():
    """List and inspect users (create-user and set-password change them)."""


@user_group.command("list")
@click.option("--org", "org_id", default=None, help="Only members of this organization.")
@json_option
def user_list(org_id, as_json):
    """Every user by email: id, email, name, created (never a password hash)."""
    query = select(User).order_by(User.email)
    if org_id is not None:
        org = find_org(org_id, "--org")
        query = query.join(Membership).where(Membership.org_id == org.id)
    rows = [{"id": u.public_id, "email": u.email, "name": u.name,
             "created_at": stamp(u.created_at)} for u in db.session.scalars(query)]
    emit(rows, ("id", "email", "name", "created_at"), as_json)


@user_group.command("show")
@click.argument("user")
def user_show(user):
    """One user (by email or usr_ id) as JSON: memberships, live sessions and connections."""
    found = find_user(user, "USER")
    show({
        "id": found.public_id, "email": found.email, "name": found.name,
        "created_at": stamp(found.created_at),
        "memberships": [{"org": m.organization.public_id, "org_name": m.organization.name,
                         "role": m.role} for m in accounts.memberships(found)],
        "live_sessions": len(user_sessions.listing(db.session, found.id, utcnow(),
                                              current_app.config)),
        "live_connections": live_connections(Connection.user_id == found.id),
    })


@click.group("member")
def member_group():
    """List memberships (add-member and remove-member change them)."""


@member_group.command("list")
@click.option("--org", "org_id", default=None, help="Only this organization's members.")
@click.option("--user", "user_ref", default=None, help="Only this user's (email or usr_ id).")
@click.option("--role", type=click.Choice(ROLES), default=None, help="Only this role.")
@json_option
def member_list(org_id, user_ref, role, as_json):
    """Memberships by organization and email: org, org name, user, email, role."""
    query = (select(Membership).join(Organization).join(User)
             .order_by(Organization.name, Organization.id, User.email))
    if org_id is not None:
        query = query.where(Membership.org_id == find_org(org_id, "--org").id)
    if user_ref is not None:
        query = query.where(Membership.user_id == find_user(user_ref, "--user").id)
    if role is not None:
        query = query.where(Membership.role == role)
    rows = [_member_row(m) for m in db.session.scalars(query)]
    emit(rows, ("org", "org_name", "user", "email", "role"), as_json)


@member_group.command("show")
@click.argument("user")
@click.argument("org_id")
def member_show(user, org_id):
    """One membership as JSON, or an error when the user is not in the organization."""
    found, org = find_user(user, "USER"), find_org(org_id)
    membership = db.session.scalar(select(Membership).where(Membership.user_id == found.id,
                                                            Membership.org_id == org.id))
    if membership is None:
        raise click.BadParameter(f"{found.email} is not a member of {org_id}.", param_hint="USER")
    show({
        **_member_row(membership),
        "live_connections": live_connections(
            (Connection.user_id == found.id) & (Connection.org_id == org.id)),
    })


@click.command("set-password")
@click.argument("email")
def set_password(email):
    """Set a user's password (asked twice, never an argument) and sign them out everywhere."""
    user = find_user(email)
    password = _new_password("New password", user.email)
    # The hash is slow; take the write lock (SQLite) only once it is made.
    password_hash = accounts.hash_password(password)
    begin_write(db.session)
    user = find_user(email)
    user.password_hash = password_hash
    now = utcnow()
    # Whoever held the old password may be signed in with it: those sessions end now.
    ended = user_sessions.end(db.session, user.id, now)
    audit.record(db.session, "password_set", now, actor="cli", subject=user.public_id,
                 sessions_ended=ended)
    db.session.commit()
    click.echo(f"password set for {user.email}; {ended} session{'s' * (ended != 1)} signed out")


#: Commands this module adds to ``flask``.
COMMANDS = (create_user, add_member, remove_member, user_group, member_group, set_password)
