"""Operator commands for API keys and resource servers (SPEC §7).

Raw keys and secrets are printed once, as JSON, and stored only as digests.
"""

import json
from datetime import datetime
from datetime import time

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from idp.cli.support import emit
from idp.cli.support import json_option
from idp.cli.support import stamp
from idp.core.clock import utcnow
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import resource_servers
from idp.store.models import ApiKey
from idp.store.models import Organization


def _org(public_id: str) -> Organization:
    """The organization with this id, or a usage error."""
    org = db.session.scalar(select(Organization).where(Organization.public_id == public_id))
    if org is None:
        raise click.BadParameter(f"No organization {public_id!r}.")
    return org


def _key(public_id: str) -> ApiKey:
    """The API key with this ``key_…`` id, or a usage error."""
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    if key is None:
        raise click.BadParameter(f"No API key {public_id!r}.")
    return key


def _stamp(moment: datetime | None) -> str:
    """A time for listings, or a dash."""
    return moment.isoformat(sep=" ", timespec="seconds") if moment else "-"


@click.group("api-key", cls=AppGroup)
def api_key_group():
    """Create and manage organization API keys."""


@api_key_group.command("create")
@click.option("--org", "org_id", required=True, help="Organization id (org_…).")
@click.option("--name", required=True, help="Unique within the organization.")
@click.option("--scopes", required=True, help='Space- or comma-separated, e.g. "leads:read".')
@click.option("--expires", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="YYYY-MM-DD: the key stops working at 00:00 UTC that day.")
@click.option("--created-by", "created_by", default=None, help="Email of the creating user.")
def api_key_create(org_id, name, scopes, expires, created_by):
    """Create a key; the raw fe_k_ value is printed once and never again."""
    org = _org(org_id)
    user = None
    if created_by:
        user = accounts.find_user(created_by)
        if user is None:
            raise click.BadParameter(f"No user {created_by!r}.")
    expires_at = datetime.combine(expires.date(), time.min) if expires else None
    try:
        key, raw = api_keys.create_key(
            org, name, parse_scope(scopes), current_app.config["IDP_SCOPES"], created_by=user,
            expires_at=expires_at, actor=user.email if user else "cli",
        )
    except api_keys.ApiKeyError as error:
        raise click.BadParameter(str(error)) from None
    db.session.commit()
    click.echo(json.dumps({"key_id": key.public_id, "api_key": raw, "name": key.name,
                           "scopes": key.scopes, "expires_at": _stamp(key.expires_at)}))


@api_key_group.command("list")
@click.option("--org", "org_id", required=True, help="Organization id (org_…).")
@json_option
def api_key_list(org_id, as_json):
    """List an organization's keys: id, name, last four characters, scopes, status, times."""
    org = _org(org_id)
    now = utcnow()
    keys = list(db.session.scalars(
        select(ApiKey).where(ApiKey.org_id == org.id).order_by(ApiKey.created_at)
    ))
    if as_json:
        emit([{"key_id": key.public_id, "name": key.name, "last4": key.last4,
               "scopes": parse_scope(key.scopes), "status": api_keys.status(key, now),
               "created_by": key.created_by.email if key.created_by else None,
               "created_at": stamp(key.created_at), "expires_at": stamp(key.expires_at),
               "last_used_at": stamp(key.last_used_at), "last_used_ip": key.last_used_ip}
              for key in keys], (), True)
        return
    for key in keys:
        click.echo("\t".join([
            key.public_id, key.name, f"fe_k_…{key.last4}", key.scopes,
            api_keys.status(key, now), f"created {_stamp(key.created_at)}",
            f"expires {_stamp(key.expires_at)}", f"last used {_stamp(key.last_used_at)}",
        ]))


@api_key_group.command("disable")
@click.argument("key_id")
def api_key_disable(key_id):
    """Disable a key: it gets 403 key_inactive at once."""
    key = _key(key_id)
    api_keys.set_active(key, False)
    db.session.commit()
    click.echo(f"{key.public_id} disabled")


@api_key_group.command("enable")
@click.argument("key_id")
def api_key_enable(key_id):
    """Enable a disabled key again."""
    key = _key(key_id)
    api_keys.set_active(key, True)
    db.session.commit()
    click.echo(f"{key.public_id} enabled")


@api_key_group.command("revoke")
@click.argument("key_id")
def api_key_revoke(key_id):
    """Delete a key for good: it gets 401 unknown_token from then on."""
    key = _key(key_id)
    public_id = key.public_id
    api_keys.revoke(key)
    db.session.commit()
    click.echo(f"{public_id} revoked")


@click.group("resource-server", cls=AppGroup)
def resource_server_group():
    """Register the services that may call introspection."""


@resource_server_group.command("create")
@click.option("--name", required=True)
def resource_server_create(name):
    """Register a service; its client_id and secret are printed once."""
    try:
        server, secret = resource_servers.create(name)
    except resource_servers.ResourceServerError as error:
        raise click.BadParameter(str(error)) from None
    db.session.commit()
    click.echo(json.dumps({"client_id": server.public_id, "client_secret": secret}))


@resource_server_group.command("list")
@json_option
def resource_server_list(as_json):
    """List resource servers with their state."""
    if as_json:
        emit([{"client_id": server.public_id, "name": server.name, "enabled": server.enabled,
               "created_at": stamp(server.created_at)} for server in resource_servers.listing()],
             (), True)
        return
    for server in resource_servers.listing():
        state = "enabled" if server.enabled else "disabled"
        created = _stamp(server.created_at)
        click.echo(f"{server.public_id}\t{server.name}\t{state}\tcreated {created}")


def _set_enabled(public_id: str, enabled: bool) -> None:
    """Shared body of enable/disable."""
    try:
        server = resource_servers.get(public_id)
    except resource_servers.ResourceServerError as error:
        raise click.BadParameter(str(error)) from None
    resource_servers.set_enabled(server, enabled)
    db.session.commit()
    click.echo(f"{server.public_id} {'enabled' if enabled else 'disabled'}")


@resource_server_group.command("disable")
@click.argument("client_id")
def resource_server_disable(client_id):
    """Disable a service: its introspection calls get 401 at once."""
    _set_enabled(client_id, False)


@resource_server_group.command("enable")
@click.argument("client_id")
def resource_server_enable(client_id):
    """Enable a service again."""
    _set_enabled(client_id, True)


@resource_server_group.command("rotate-secret")
@click.argument("client_id")
def resource_server_rotate(client_id):
    """Print a new secret once; the old one stops working at once."""
    try:
        server = resource_servers.get(client_id)
    except resource_servers.ResourceServerError as error:
        raise click.BadParameter(str(error)) from None
    secret = resource_servers.rotate_secret(server)
    db.session.commit()
    click.echo(json.dumps({"client_id": server.public_id, "client_secret": secret}))


#: Command groups this module adds to ``flask``.
COMMANDS = (api_key_group, resource_server_group)
