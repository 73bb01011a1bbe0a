"""Operator commands for connections: list, show, end (as Disconnect does, SPEC §6)."""

import click
from flask import current_app
from sqlalchemy import func
from sqlalchemy import select

from idp.cli.support import emit
from idp.cli.support import find_client
from idp.cli.support import find_connection
from idp.cli.support import find_org
from idp.cli.support import find_user
from idp.cli.support import json_option
from idp.cli.support import show
from idp.cli.support import stamp
from idp.core.clock import utcnow
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store.connections import end_connection
from idp.store.database import begin_write
from idp.store.models import AccessToken
from idp.store.models import Connection

#: ``end_reason`` of a connection an operator ended; the audit event's actor is ``cli``.
OPERATOR_END = "operator"
#: Columns of ``connection list``.
COLUMNS = ("id", "client_name", "org", "email", "scope", "state", "created_at", "last_used_at")


def state(connection: Connection) -> str:
    """``live``, ``pending`` (code not redeemed yet) or ``ended``."""
    if connection.ended_at is not None:
        return "ended"
    return "live" if connection.activated_at is not None else "pending"


def describe(connection: Connection) -> dict:
    """A connection as operators see it (never a token)."""
    return {
        "id": connection.public_id, "state": state(connection),
        "client": connection.client.public_id, "client_name": connection.client.name,
        "org": connection.organization.public_id, "org_name": connection.organization.name,
        "user": connection.user.public_id, "email": connection.user.email,
        "scope": parse_scope(connection.scope), "created_at": stamp(connection.created_at),
        "activated_at": stamp(connection.activated_at), "ended_at": stamp(connection.ended_at),
        "end_reason": connection.end_reason, "last_used_at": stamp(connection.last_used_at),
        "last_used_ip": connection.last_used_ip,
    }


@click.group("connection")
def connection_group():
    """List, inspect and end connections (one consent of a user, an org and a client)."""


@connection_group.command("list")
@click.option("--org", "org_id", default=None, help="Only this organization's (org_…).")
@click.option("--user", "user_ref", default=None, help="Only this user's (email or usr_…).")
@click.option("--client", "client_id", default=None, help="Only this client's (cli_…).")
@click.option("--active", is_flag=True, help="Only live ones (redeemed, not ended).")
@click.option("--ended", is_flag=True, help="Only ended ones.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N, newest.")
@json_option
def connection_list(org_id, user_ref, client_id, active, ended, limit, as_json):
    """Connections, newest first: id, app, org, user, scope, state, created, last used."""
    if active and ended:
        raise click.UsageError("Give --active or --ended, not both.")
    query = select(Connection).order_by(Connection.created_at.desc(), Connection.id.desc())
    if org_id is not None:
        query = query.where(Connection.org_id == find_org(org_id, "--org").id)
    if user_ref is not None:
        query = query.where(Connection.user_id == find_user(user_ref, "--user").id)
    if client_id is not None:
        query = query.where(Connection.client_id == find_client(client_id, "--client").id)
    if active:
        query = query.where(Connection.ended_at.is_(None), Connection.activated_at.isnot(None))
    if ended:
        query = query.where(Connection.ended_at.isnot(None))
    if limit is not None:
        query = query.limit(limit)
    rows = [describe(c) for c in db.session.scalars(query)]
    emit(rows, COLUMNS, as_json)


@connection_group.command("show")
@click.argument("con_id")
def connection_show(con_id):
    """One connection as JSON, with how many of its access tokens are still unexpired."""
    connection = find_connection(con_id)
    shown = describe(connection)
    shown["unexpired_access_tokens"] = 0 if connection.ended_at else db.session.scalar(
        select(func.count(AccessToken.id)).where(AccessToken.connection_id == connection.id,
                                                 AccessToken.expires_at > utcnow()))
    show(shown)


@connection_group.command("end")
@click.argument("con_id")
def connection_end(con_id):
    """End a connection at once, exactly as Disconnect does: every token of it stops."""
    # Read-then-write: on SQLite hold the write lock before reading (idp/web/settings/apps.py).
    begin_write(db.session)
    connection = find_connection(con_id)
    if connection.ended_at is not None:
        raise click.BadParameter(
            f"{con_id} already ended at {stamp(connection.ended_at)} "
            f"({connection.end_reason}).", param_hint="CON_ID")
    ended = end_connection(db.session, connection, OPERATOR_END, utcnow(), actor="cli",
                           issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    if not ended:
        # A refresh reuse or a Disconnect got there between the read and the update.
        raise click.ClickException(f"{con_id} was ended by someone else just now.")
    click.echo(f"{connection.public_id} ended")


#: Commands this module adds to ``flask``.
COMMANDS = (connection_group,)
