"""``flask api-key``: create and manage organization API keys (SPEC §7).

The raw key is printed once, as JSON, and stored only as a digest.
"""

import json
from datetime import datetime
from datetime import time

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from idp.cli.support import find
from idp.cli.support import find_org
from idp.cli.support import find_user
from idp.cli.support import json_option
from idp.cli.support import listed_time
from idp.cli.support import refused_as_usage
from idp.cli.support import say_enabled
from idp.cli.support import show
from idp.cli.support import stamp
from idp.core.clock import utcnow
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store import api_keys
from idp.store.models import ApiKey


def _key(public_id: str) -> ApiKey:
    """The API key with this ``key_…`` id, or a usage error."""
    return find(ApiKey, public_id, "API key", None)


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
    org = find_org(org_id, None)
    user = find_user(created_by, None) if created_by else None
    expires_at = datetime.combine(expires.date(), time.min) if expires else None
    with refused_as_usage(api_keys.ApiKeyError):
        key, raw = api_keys.create_key(
            org, name, parse_scope(scopes), current_app.config["IDP_SCOPES"], created_by=user,
            expires_at=expires_at, actor=user.email if user else "cli",
        )
    db.session.commit()
    click.echo(json.dumps({"key_id": key.public_id, "api_key": raw, "name": key.name,
                           "scopes": key.scopes, "expires_at": listed_time(key.expires_at)}))


@api_key_group.command("list")
@click.option("--org", "org_id", required=True, help="Organization id (org_…).")
@json_option
def api_key_list(org_id, as_json):
    """List an organization's keys: id, name, last four characters, scopes, status, times."""
    org = find_org(org_id, None)
    now = utcnow()
    keys = list(db.session.scalars(
        select(ApiKey).where(ApiKey.org_id == org.id).order_by(ApiKey.created_at)
    ))
    if as_json:
        show([{"key_id": key.public_id, "name": key.name, "last4": key.last4,
               "scopes": parse_scope(key.scopes), "status": api_keys.status(key, now),
               "created_by": key.created_by.email if key.created_by else None,
               "created_at": stamp(key.created_at), "expires_at": stamp(key.expires_at),
               "last_used_at": stamp(key.last_used_at), "last_used_ip": key.last_used_ip}
              for key in keys])
        return
    for key in keys:
        click.echo("\t".join([
            key.public_id, key.name, f"fe_k_…{key.last4}", key.scopes,
            api_keys.status(key, now), f"created {listed_time(key.created_at)}",
            f"expires {listed_time(key.expires_at)}", f"last used {listed_time(key.last_used_at)}",
        ]))


@api_key_group.command("disable")
@click.argument("key_id")
def api_key_disable(key_id):
    """Disable a key: it gets 403 key_inactive at once."""
    _set_active(key_id, False)


@api_key_group.command("enable")
@click.argument("key_id")
def api_key_enable(key_id):
    """Enable a disabled key again."""
    _set_active(key_id, True)


def _set_active(key_id: str, active: bool) -> None:
    """Shared body of enable/disable."""
    key = _key(key_id)
    api_keys.set_active(key, active, issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    say_enabled(key.public_id, active)


@api_key_group.command("revoke")
@click.argument("key_id")
def api_key_revoke(key_id):
    """Delete a key for good: it gets 401 unknown_token from then on."""
    key = _key(key_id)
    public_id = key.public_id
    api_keys.revoke(key, issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    click.echo(f"{public_id} revoked")


#: Commands this module adds to ``flask``.
COMMANDS = (api_key_group,)
