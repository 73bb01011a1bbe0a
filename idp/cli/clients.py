"""``flask client update``: change any setting a client was created with (SPEC §7)."""

import json

import click
from flask import current_app

from idp.cli.support import find_client
from idp.cli.support import find_org
from idp.infra.extensions import db
from idp.store import clients

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


@click.command("update")
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
    try:
        changed = clients.update_client(client, current_app.config["IDP_SCOPES"], changes)
    except clients.ClientError as error:
        raise click.BadParameter(str(error)) from None
    db.session.commit()
    shown = clients.describe(client, current_app.config)
    shown["changed"] = changed
    click.echo(json.dumps(shown, indent=2))


#: Commands this module adds to the ``client`` group.
CLIENT_COMMANDS = (client_update,)
