"""``flask client``: register and manage connector clients (SPEC §7)."""

import click
from flask import current_app
from sqlalchemy import select

from idp.cli.support import find_client
from idp.cli.support import find_org
from idp.cli.support import json_option
from idp.cli.support import refused_as_usage
from idp.cli.support import say_enabled
from idp.cli.support import show
from idp.cli.support import show_secret
from idp.infra.extensions import db
from idp.store import clients
from idp.store import presets
from idp.store.models import Client

#: What a lifetime option takes to go back to the server's setting (stored as NULL).
DEFAULT = "default"


class Lifetime(click.ParamType):
    """Seconds (a positive whole number), or ``default`` for the server's setting."""

    name = "SECONDS|default"

    def convert(self, value, param, ctx):
        """An int, or :data:`DEFAULT`."""
        if isinstance(value, int):
            return value
        if value.strip().lower() == DEFAULT:
            return DEFAULT
        try:
            seconds = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds or 'default'.", param, ctx)
        if seconds < 1:
            self.fail(f"{value!r} must be at least 1 second (or 'default').", param, ctx)
        return seconds


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
    with refused_as_usage(clients.ClientError):
        client, secret = clients.create_client(
            name, list(redirect_uris), scopes or " ".join(catalogue), default_scopes, catalogue,
            org_allowlist=[find_org(o, None).id for o in orgs], code_ttl=code_ttl,
            access_token_ttl=access_token_ttl, refresh_token_ttl=refresh_token_ttl,
            require_pkce=require_pkce,
        )
    db.session.commit()
    show_secret(client.public_id, secret)


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
    show(clients.describe(find_client(client_id, None), current_app.config))


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
        show([clients.describe(c, current_app.config) for c in found])
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
    client = find_client(client_id, None)
    clients.set_enabled(client, enabled, issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    say_enabled(client.public_id, enabled)


@client_group.command("rotate-secret")
@click.argument("client_id")
@click.option("--overlap", type=int, default=None,
              help="Seconds the old secret keeps working (default IDP_SECRET_OVERLAP_SECONDS).")
def client_rotate(client_id, overlap):
    """Print a new secret once; the previous one works for the overlap."""
    client = find_client(client_id, None)
    if overlap is None:
        overlap = current_app.config["IDP_SECRET_OVERLAP_SECONDS"]
    secret = clients.rotate_secret(client, overlap)
    db.session.commit()
    show_secret(client.public_id, secret)


@client_group.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Exact redirect URI (repeatable); replaces the whole list.")
@click.option("--scopes", default=None, help="Allowed scopes; replaces them.")
@click.option("--default-scopes", default=None, help="Granted when none are requested.")
@click.option("--org", "orgs", multiple=True,
              help="Allowlisted organization id (repeatable); replaces the allowlist.")
@click.option("--any-org", is_flag=True, help="Empty the allowlist: any organization.")
@click.option("--code-ttl", type=Lifetime(), default=None)
@click.option("--access-token-ttl", type=Lifetime(), default=None)
@click.option("--refresh-token-ttl", type=Lifetime(), default=None)
@click.option("--require-pkce/--no-require-pkce", default=None,
              help="Refuse authorization requests without an S256 code_challenge, or not.")
def client_update(client_id, name, redirect_uris, scopes, default_scopes, orgs, any_org,
                  code_ttl, access_token_ttl, refresh_token_ttl, require_pkce):
    """Change a client's settings; only the options given change. Prints the new settings."""
    if orgs and any_org:
        raise click.UsageError("Give --org or --any-org, not both.")
    client = find_client(client_id)
    changes = {key: value for key, value in (
        ("name", name), ("allowed_scopes", scopes), ("default_scopes", default_scopes),
        ("require_pkce", require_pkce),
    ) if value is not None}
    changes.update({key: None if value == DEFAULT else value for key, value in (
        ("code_ttl", code_ttl), ("access_token_ttl", access_token_ttl),
        ("refresh_token_ttl", refresh_token_ttl),
    ) if value is not None})
    if redirect_uris:
        changes["redirect_uris"] = list(redirect_uris)
    if orgs or any_org:
        changes["org_allowlist"] = [find_org(org, "--org").id for org in orgs]
    if not changes:
        raise click.UsageError("Nothing to change: give at least one option (see --help).")
    with refused_as_usage(clients.ClientError):
        changed = clients.update_client(client, current_app.config["IDP_SCOPES"], changes,
                                        issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    shown = clients.describe(client, current_app.config)
    shown["changed"] = changed
    show(shown)


#: Commands this module adds to ``flask``.
COMMANDS = (client_group,)
