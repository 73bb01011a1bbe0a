"""``flask seed-demo``: demo data for clicking through a connect (development mode only)."""

import json
import secrets

import click
from flask import current_app
from sqlalchemy import select

from idp.infra.extensions import db
from idp.store import accounts
from idp.store import api_keys
from idp.store import clients
from idp.store import presets
from idp.store import resource_servers
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Organization

#: Redirect URIs of the demo connectors (SPEC §8), from the presets' one list.
ZAPIER_REDIRECTS = [presets.zapier_redirect(presets.DEMO_ZAPIER_APP_ID)]
MAKE_REDIRECTS = list(presets.MAKE_REDIRECTS)
DEMO_EMAIL = "owner@acme-realty.example"
#: Names of the demo resource server and API key; a second seed replaces their secrets.
DEMO_RESOURCE_SERVER = "FlowEstate API (demo)"
DEMO_KEY_NAME = "Demo key"


def _demo_client(name, redirects):
    """Create the demo client or give the existing one a fresh secret (no overlap)."""
    catalogue = current_app.config["IDP_SCOPES"]
    client = db.session.scalar(select(Client).where(Client.name == name))
    if client is None:
        client, secret = clients.create_client(name, redirects, " ".join(catalogue), None,
                                               catalogue, actor="seed-demo")
    else:
        secret = clients.rotate_secret(client, 0, actor="seed-demo")
        client.redirect_uris = list(redirects)
        client.enabled = True
        # Zapier and Make both send S256, so the demo clients require it even when they were
        # registered before the flag existed.
        client.require_pkce = True
    return {"client_id": client.public_id, "client_secret": secret,
            "redirect_uris": list(client.redirect_uris)}


def _demo_resource_server() -> dict:
    """Register the demo resource server, or give the existing one a fresh secret."""
    server = resource_servers.find_by_name(DEMO_RESOURCE_SERVER)
    if server is None:
        server, secret = resource_servers.create(DEMO_RESOURCE_SERVER, actor="seed-demo")
    else:
        secret = resource_servers.rotate_secret(server, actor="seed-demo")
        server.enabled = True
    return {"client_id": server.public_id, "client_secret": secret}


def _demo_api_key(org, user) -> str:
    """A fresh all-scopes key of the demo org; an earlier demo key is revoked (raw keys are
    never kept, so a second seed can only print a new one)."""
    old = db.session.scalar(
        select(ApiKey).where(ApiKey.org_id == org.id, ApiKey.name == DEMO_KEY_NAME)
    )
    if old is not None:
        api_keys.revoke(old, actor="seed-demo", issuer=current_app.config["IDP_ISSUER"])
        db.session.flush()
    catalogue = current_app.config["IDP_SCOPES"]
    _key, raw = api_keys.create_key(org, DEMO_KEY_NAME, list(catalogue), catalogue,
                                   created_by=user, actor="seed-demo")
    return raw


def seed_demo() -> dict:
    """Create (or refresh) the demo org, owner and connectors; return working credentials."""
    org = db.session.scalar(select(Organization).where(Organization.name == "Acme Realty"))
    if org is None:
        org = accounts.create_org("Acme Realty")
    password = secrets.token_urlsafe(12)
    user = accounts.find_user(DEMO_EMAIL)
    if user is None:
        user = accounts.create_user(DEMO_EMAIL, "Avery Owner", password)
    else:
        user.password_hash = accounts.hash_password(password)
    db.session.flush()
    accounts.set_membership(user, org, "owner")
    result = {
        "user": {"email": user.email, "password": password},
        "organization": {"id": org.public_id, "name": org.name},
        "clients": {
            "zapier": _demo_client("Zapier", ZAPIER_REDIRECTS),
            "make": _demo_client("Make", MAKE_REDIRECTS),
        },
        "resource_server": _demo_resource_server(),
        "api_key": _demo_api_key(org, user),
    }
    db.session.commit()
    return result


@click.command("seed-demo")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def seed_demo_command(as_json):
    """Create demo data for clicking through a connect (development mode only)."""
    if not current_app.config["IDP_DEVELOPMENT"]:
        raise click.ClickException("seed-demo is refused in production mode.")
    result = seed_demo()
    if as_json:
        click.echo(json.dumps(result))
        return
    issuer = current_app.config["IDP_ISSUER"]
    click.echo(f"Sign in at {issuer}/login as {result['user']['email']} / "
               f"{result['user']['password']}")
    for key, client in result["clients"].items():
        click.echo(f"{key}: client_id={client['client_id']} "
                   f"client_secret={client['client_secret']}")
        for uri in client["redirect_uris"]:
            click.echo(f"  redirect URI: {uri}")
    server = result["resource_server"]
    click.echo(f"resource server: client_id={server['client_id']} "
               f"client_secret={server['client_secret']}")
    click.echo(f"API key: {result['api_key']}")


#: Commands this module adds to ``flask``.
COMMANDS = (seed_demo_command,)
