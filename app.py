"""Entry point for the ``flask`` command and gunicorn."""

from idp import create_app

app = create_app()
