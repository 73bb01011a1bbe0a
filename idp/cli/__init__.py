"""Operator commands (SPEC §7): ``flask --app app <command>``."""


def init_app(app) -> None:
    """Register every operator command on the app's CLI."""
    from idp.cli import api_keys
    from idp.cli import audit
    from idp.cli import clients
    from idp.cli import connections
    from idp.cli import demo
    from idp.cli import orgs
    from idp.cli import people
    from idp.cli import resource_servers
    from idp.cli import ssf
    from idp.cli import ssf_push
    from idp.store.purge import purge_command

    for module in (orgs, people, clients, connections, api_keys, resource_servers, audit, demo,
                   ssf, ssf_push):
        for command in module.COMMANDS:
            app.cli.add_command(command)
    app.cli.add_command(purge_command)
