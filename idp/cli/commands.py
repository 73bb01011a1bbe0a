"""Operator commands (SPEC §7): ``flask --app app <command>``."""

import json
import secrets

import click
from flask import current_app
from sqlalchemy import select

from idp.cli import audit
from idp.cli import clients as client_cli
from idp.cli import connections as connection_cli
from idp.cli import credentials as credential_cli
from idp.cli import people
from idp.cli.support import emit
from idp.cli.support import json_option
from idp.infra.extensions import db
from idp.signin.passwords import PasswordPolicyError
from idp.signin.passwords import check_password_policy
from idp.store import accounts
from idp.store import api_keys
from idp.store import clients
from idp.store import presets
from idp.store import resource_servers
from idp.store.models import ROLES
from idp.store.models import ApiKey
from idp.store.models import Client
from idp.store.models import Organization
from idp.store.purge import purge_command
from idp.store.validation import ValidationError
from idp.store.validation import check_email
from idp.store.validation import check_org_name

#: Redirect URIs of the demo connectors (SPEC §8), from the presets' one list.
ZAPIER_REDIRECTS = [presets.zapier_redirect(presets.DEMO_ZAPIER_APP_ID)]
MAKE_REDIRECTS = list(presets.MAKE_REDIRECTS)
DEMO_EMAIL = "owner@acme-realty.example"
#: Names of the demo resource server and API key; a second seed replaces their secrets.
DEMO_RESOURCE_SERVER = "FlowEstate API (demo)"
DEMO_KEY_NAME = "Demo key"


def _org(public_id: str) -> Organization:
    """The organization with this id, or a usage error."""
    org = db.session.scalar(select(Organization).where(Organization.public_id == public_id))
    if org is None:
        raise click.BadParameter(f"No organization {public_id!r}.")
    return org


@click.command("create-org")
@click.argument("name")
def create_org(name):
    """Create an organization and print its id; names are unique, ignoring case."""
    try:
        name = check_org_name(name)
    except ValidationError as error:
        raise click.BadParameter(str(error), param_hint="NAME") from None
    org = accounts.create_org(name)
    db.session.commit()
    click.echo(org.public_id)


@click.command("suspend-org")
@click.argument("org_id")
@click.option("--undo", is_flag=True, help="Lift the suspension instead.")
def suspend_org(org_id, undo):
    """Suspend an organization (its tokens stop working) or lift the suspension."""
    org = _org(org_id)
    org.suspended = not undo
    db.session.commit()
    click.echo(f"{org.public_id} {'active' if undo else 'suspended'}")


@click.command("create-user")
@click.argument("email")
@click.option("--name", required=True)
def create_user(email, name):
    """Create a user with an argon2id password hash (the password is asked, twice)."""
    try:
        email = check_email(email)
    except ValidationError as error:
        raise click.BadParameter(str(error), param_hint="EMAIL") from None
    if accounts.find_user(email):
        raise click.BadParameter(f"{email} already exists.", param_hint="EMAIL")
    # Asked, never an option: a password on the command line stays in shell history and ps.
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_policy(password, email)
    except PasswordPolicyError as error:
        raise click.BadParameter(str(error), param_hint="password") from None
    user = accounts.create_user(email, name, password)
    db.session.commit()
    click.echo(user.public_id)


@click.command("add-member")
@click.argument("email")
@click.argument("org_id")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
def add_member(email, org_id, role):
    """Give a user a role in an organization."""
    user = accounts.find_user(email)
    if user is None:
        raise click.BadParameter(f"No user {email!r}.")
    accounts.set_membership(user, _org(org_id), role)
    db.session.commit()
    click.echo(f"{user.public_id} {role} of {org_id}")


@click.command("remove-member")
@click.argument("email")
@click.argument("org_id")
def remove_member(email, org_id):
    """Remove a user from an organization (their connections there stop working)."""
    user = accounts.find_user(email)
    if user is None:
        raise click.BadParameter(f"No user {email!r}.", param_hint="EMAIL")
    org = _org(org_id)
    membership = next((m for m in user.memberships if m.org_id == org.id), None)
    if membership is None:
        raise click.BadParameter(f"{email} is not a member of {org_id}.", param_hint="EMAIL")
    db.session.delete(membership)
    db.session.commit()
    click.echo(f"removed {email} from {org_id}")


@click.group("client")
def client_group():
    """Register and manage connector clients (Zapier, Make, ...)."""


@client_group.command("create")
@click.option("--preset", type=click.Choice(presets.NAMES), default=None,
              help="Fill in a connector's redirect URIs, name and lifetimes (docs/connectors.md).")
@click.option("--app-id", default=None,
              help="With --preset zapier: the app key of its redirect URL, e.g. App123456CLIAPI.")
@click.option("--name", default=None, help="Required without --preset.")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Exact redirect URI (repeatable); added to a preset's.")
@click.option("--scopes", default=None, help="Allowed scopes (default: the whole catalogue).")
@click.option("--default-scopes", default=None, help="Granted when none are requested.")
@click.option("--org", "orgs", multiple=True, help="Allowlisted organization id (repeatable).")
@click.option("--code-ttl", type=click.IntRange(min=1), default=None)
@click.option("--access-token-ttl", type=click.IntRange(min=1), default=None)
@click.option("--refresh-token-ttl", type=click.IntRange(min=1), default=None)
@click.option("--require-pkce/--no-require-pkce", default=True, show_default=True,
              help="Refuse authorization requests without an S256 code_challenge.")
def client_create(preset, app_id, name, redirect_uris, scopes, default_scopes, orgs, code_ttl,
                  access_token_ttl, refresh_token_ttl, require_pkce):
    """Register a client; its secret is printed once and stored only as a digest."""
    catalogue = current_app.config["IDP_SCOPES"]
    name, redirect_uris, access_token_ttl = _apply_preset(
        preset, app_id, name, list(redirect_uris), access_token_ttl)
    try:
        client, secret = clients.create_client(
            name, list(redirect_uris), scopes or " ".join(catalogue), default_scopes, catalogue,
            org_allowlist=[_org(o).id for o in orgs], code_ttl=code_ttl,
            access_token_ttl=access_token_ttl, refresh_token_ttl=refresh_token_ttl,
            require_pkce=require_pkce,
        )
    except clients.ClientError as error:
        raise click.BadParameter(str(error)) from None
    db.session.commit()
    click.echo(json.dumps({"client_id": client.public_id, "client_secret": secret}))


def _apply_preset(kind, app_id, name, redirect_uris, access_token_ttl):
    """A preset's name, redirect URIs and lifetime under what the operator gave explicitly."""
    if kind is None:
        if app_id:
            raise click.UsageError("--app-id needs --preset zapier.")
        if not name or not redirect_uris:
            raise click.UsageError("Give --name and --redirect-uri, or a --preset.")
        return name, redirect_uris, access_token_ttl
    try:
        chosen = presets.preset(kind, app_id)
    except presets.PresetError as error:
        raise click.UsageError(str(error)) from None
    if access_token_ttl is None:
        access_token_ttl = chosen.access_token_ttl
    elif kind == "make" and access_token_ttl <= presets.MAKE_REFRESH_LEAD_SECONDS:
        raise click.UsageError(
            f"--access-token-ttl {access_token_ttl} is too short for Make, which refreshes "
            f"{presets.MAKE_REFRESH_LEAD_SECONDS} seconds before expiry: every run would "
            "refresh. Use at least 1800 (the preset uses 3600).")
    return (name or chosen.name, [*chosen.redirect_uris, *redirect_uris], access_token_ttl)


@client_group.command("show")
@click.argument("client_id")
def client_show(client_id):
    """Print a client's whole configuration as JSON (never its secret, which is not kept)."""
    try:
        client = clients.get_client(client_id)
    except clients.ClientError as error:
        raise click.BadParameter(str(error)) from None
    click.echo(json.dumps(clients.describe(client, current_app.config), indent=2))


@client_group.command("list")
@click.option("--enabled/--disabled", default=None, help="Only enabled, or only disabled, ones.")
@json_option
def client_list(enabled, as_json):
    """List clients with their state and redirect URIs (--json: every setting but secrets)."""
    query = select(Client).order_by(Client.created_at, Client.id)
    if enabled is not None:
        query = query.where(Client.enabled.is_(enabled))
    found = list(db.session.scalars(query))
    if as_json:
        emit([clients.describe(c, current_app.config) for c in found], (), True)
        return
    for client in found:
        state = "enabled" if client.enabled else "disabled"
        click.echo(f"{client.public_id}\t{client.name}\t{state}\t{' '.join(client.redirect_uris)}")


@client_group.command("disable")
@click.argument("client_id")
def client_disable(client_id):
    """Disable a client: authorize shows an error, tokens are refused at once."""
    _set_enabled(client_id, False)


@client_group.command("enable")
@click.argument("client_id")
def client_enable(client_id):
    """Enable a client again."""
    _set_enabled(client_id, True)


def _set_enabled(client_id, enabled):
    """Shared body of enable/disable."""
    try:
        client = clients.get_client(client_id)
    except clients.ClientError as error:
        raise click.BadParameter(str(error)) from None
    clients.set_enabled(client, enabled)
    db.session.commit()
    click.echo(f"{client.public_id} {'enabled' if enabled else 'disabled'}")


@client_group.command("rotate-secret")
@click.argument("client_id")
@click.option("--overlap", type=int, default=None,
              help="Seconds the old secret keeps working (default IDP_SECRET_OVERLAP_SECONDS).")
def client_rotate(client_id, overlap):
    """Print a new secret once; the previous one works for the overlap."""
    try:
        client = clients.get_client(client_id)
    except clients.ClientError as error:
        raise click.BadParameter(str(error)) from None
    if overlap is None:
        overlap = current_app.config["IDP_SECRET_OVERLAP_SECONDS"]
    secret = clients.rotate_secret(client, overlap)
    db.session.commit()
    click.echo(json.dumps({"client_id": client.public_id, "client_secret": secret}))


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
        api_keys.revoke(old, actor="seed-demo")
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


def init_app(app):
    """Register the commands on the app's CLI."""
    for command in (create_org, suspend_org, create_user, add_member, remove_member,
                    client_group, seed_demo_command, purge_command, *credential_cli.COMMANDS,
                    *people.COMMANDS, *connection_cli.COMMANDS, *audit.COMMANDS):
        app.cli.add_command(command)
    for command in client_cli.CLIENT_COMMANDS:
        client_group.add_command(command)
