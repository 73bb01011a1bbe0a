"""The IdP with routes that fail as a bug would: how a 500 looks when gunicorn serves it."""

from idp import create_app

#: Carried in the exception's message, to show that no part of it reaches the client.
SECRET = "fe_k_0123456789abcdef0123456789abcdef"
#: One failing route per shape: the API, the OAuth JSON endpoints, a page.
PATHS = ("/api/v1/_boom", "/oauth/_boom", "/_boom")


def boom():
    """Fail unexpectedly."""
    raise RuntimeError(f"unexpected failure while holding {SECRET}")


def install(app):
    """Add the failing routes to ``app``."""
    for path in PATHS:
        app.add_url_rule(path, path, boom, methods=["GET", "POST"])
    return app


app = install(create_app())
