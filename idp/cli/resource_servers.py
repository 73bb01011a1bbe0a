"""``flask resource-server``: register the services that may call introspection (SPEC §7).

A secret is printed once, as JSON, and stored only as a digest.
"""

import click
from flask import current_app
from flask.cli import AppGroup

from idp.cli.support import find
from idp.cli.support import json_option
from idp.cli.support import listed_time
from idp.cli.support import refused_as_usage
from idp.cli.support import say_enabled
from idp.cli.support import show
from idp.cli.support import show_secret
from idp.cli.support import stamp
from idp.infra.extensions import db
from idp.store import resource_servers
from idp.store.models import ResourceServer


def _server(public_id: str) -> ResourceServer:
    """The resource server with this client_id, or a usage error."""
    return find(ResourceServer, public_id, "resource server", None)


@click.group("resource-server", cls=AppGroup)
def resource_server_group():
    """Register the services that may call introspection."""


@resource_server_group.command("create")
@click.option("--name", required=True)
def resource_server_create(name):
    """Register a service; its client_id and secret are printed once."""
    with refused_as_usage(resource_servers.ResourceServerError):
        server, secret = resource_servers.create(name)
    db.session.commit()
    show_secret(server.public_id, secret)


@resource_server_group.command("list")
@json_option
def resource_server_list(as_json):
    """List resource servers with their state."""
    if as_json:
        show([{"client_id": server.public_id, "name": server.name, "enabled": server.enabled,
               "created_at": stamp(server.created_at)} for server in resource_servers.listing()])
        return
    for server in resource_servers.listing():
        state = "enabled" if server.enabled else "disabled"
        created = listed_time(server.created_at)
        click.echo(f"{server.public_id}\t{server.name}\t{state}\tcreated {created}")


def _set_enabled(public_id: str, enabled: bool) -> None:
    """Shared body of enable/disable."""
    server = _server(public_id)
    resource_servers.set_enabled(server, enabled, issuer=current_app.config["IDP_ISSUER"])
    db.session.commit()
    say_enabled(server.public_id, enabled)


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
    server = _server(client_id)
    secret = resource_servers.rotate_secret(server)
    db.session.commit()
    show_secret(server.public_id, secret)


#: Command groups this module adds to ``flask``.
COMMANDS = (resource_server_group,)
