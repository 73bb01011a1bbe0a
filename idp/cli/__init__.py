"""Operator commands (SPEC §7): ``flask --app app <command>``."""


def init_app(app) -> None:
    """Register every operator command on the app's CLI."""
    from idp.cli import commands

    commands.init_app(app)
