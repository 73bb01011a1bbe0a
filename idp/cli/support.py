"""What the operator commands share: finding things by id, refusing bad input, printing."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
from sqlalchemy import func
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


def listed_time(moment: datetime | None) -> str:
    """A stored time as a tab-separated listing shows it (``2026-11-28 09:30:00``), or a dash."""
    return moment.isoformat(sep=" ", timespec="seconds") if moment else "-"


def find(model, public_id: str, noun: str, param: str | None):
    """The row of ``model`` with this public id, or a usage error (exit 2) naming it.

    ``param`` is the argument or option the id came from, shown in the error; None shows none.
    """
    row = db.session.scalar(select(model).where(model.public_id == public_id))
    if row is None:
        raise click.BadParameter(f"No {noun} {public_id!r}.", param_hint=param)
    return row


def find_org(public_id: str, param: str | None = "ORG_ID") -> Organization:
    """The organization with this ``org_…`` id, or a usage error (exit 2)."""
    return find(Organization, public_id, "organization", param)


def find_user(ref: str, param: str | None = "EMAIL") -> User:
    """The user with this email or ``usr_…`` id, or a usage error (exit 2)."""
    # An email may itself start with "usr_"; an id never holds an "@".
    if ref.startswith("usr_") and "@" not in ref:
        return find(User, ref, "user", param)
    user = accounts.find_user(ref)
    if user is None:
        raise click.BadParameter(f"No user {ref!r}.", param_hint=param)
    return user


def find_client(public_id: str, param: str | None = "CLIENT_ID") -> Client:
    """The connector client with this client_id, or a usage error (exit 2)."""
    return find(Client, public_id, "client", param)


def find_connection(public_id: str, param: str | None = "CON_ID") -> Connection:
    """The connection with this ``con_…`` id, or a usage error (exit 2)."""
    return find(Connection, public_id, "connection", param)


@contextmanager
def refused_as_usage(*errors: type[Exception], param: str | None = None) -> Iterator[None]:
    """Turn the store's refusals (``errors``) into a usage error (exit 2) with their message."""
    try:
        yield
    except errors as error:
        raise click.BadParameter(str(error), param_hint=param) from None


def live_connections(where) -> int:
    """How many redeemed, not ended connections match ``where``."""
    return db.session.scalar(select(func.count(Connection.id)).where(
        where, Connection.ended_at.is_(None), Connection.activated_at.isnot(None)))


def show(document) -> None:
    """Print one thing (or a list of them) as indented JSON."""
    click.echo(json.dumps(document, indent=2))


def show_secret(client_id: str, secret: str) -> None:
    """Print a new client_id and secret, on one JSON line: the only time the secret is shown."""
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))


def say_enabled(public_id: str, enabled: bool) -> None:
    """Confirm an enable or disable."""
    click.echo(f"{public_id} {'enabled' if enabled else 'disabled'}")


def emit(rows: list[dict], columns: tuple[str, ...], as_json: bool) -> None:
    """Print rows as one JSON array, or one tab-separated line each (empty values as ``-``)."""
    if as_json:
        show(rows)
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
