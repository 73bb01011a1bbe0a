"""What the operator commands share: finding things by id, and printing lists."""

import json
from datetime import datetime

import click
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Organization
from idp.store.models import User


def stamp(moment: datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601, or None."""
    return moment.isoformat(timespec="seconds") if moment else None


def find(model, public_id: str, noun: str, param: str):
    """The row of ``model`` with this public id, or a usage error (exit 2) naming it."""
    row = db.session.scalar(select(model).where(model.public_id == public_id))
    if row is None:
        raise click.BadParameter(f"No {noun} {public_id!r}.", param_hint=param)
    return row


def find_org(public_id: str, param: str = "ORG_ID") -> Organization:
    """The organization with this ``org_…`` id, or a usage error (exit 2)."""
    return find(Organization, public_id, "organization", param)


def find_user(ref: str, param: str = "EMAIL") -> User:
    """The user with this email or ``usr_…`` id, or a usage error (exit 2)."""
    if ref.startswith("usr_"):
        return find(User, ref, "user", param)
    user = accounts.find_user(ref)
    if user is None:
        raise click.BadParameter(f"No user {ref!r}.", param_hint=param)
    return user


def find_client(public_id: str, param: str = "CLIENT_ID") -> Client:
    """The connector client with this client_id, or a usage error (exit 2)."""
    return find(Client, public_id, "client", param)


def find_connection(public_id: str, param: str = "CON_ID") -> Connection:
    """The connection with this ``con_…`` id, or a usage error (exit 2)."""
    return find(Connection, public_id, "connection", param)


def emit(rows: list[dict], columns: tuple[str, ...], as_json: bool) -> None:
    """Print rows as one JSON array, or one tab-separated line each (empty values as ``-``)."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo("\t".join(_cell(row.get(column)) for column in columns))


def _cell(value) -> str:
    """One value of a text listing."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


#: The ``--json`` flag every list command takes.
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON array instead of tab-separated lines.")
