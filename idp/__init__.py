"""FlowEstate identity provider: the application factory.

Importing ``idp`` loads nothing else: every part of the app is imported inside
:func:`create_app`, so ``idp.core`` (and anything else) can be imported on its own.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def create_app(test_config: dict | None = None):
    """Build the IdP from environment variables, overridden by ``test_config`` in tests."""
    import logging

    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from idp import cli
    from idp import web
    from idp.infra import logs
    from idp.infra import metrics
    from idp.infra import throttle
    from idp.infra.config import build_config
    from idp.infra.config_checks import check_config
    from idp.infra.extensions import csrf
    from idp.infra.extensions import db
    from idp.infra.extensions import limiter
    from idp.infra.extensions import migrate
    from idp.oauth import server as oauth_server
    from idp.store import database
    from idp.web.lean import Lean

    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=os.path.join(ROOT, "templates"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(build_config(app.instance_path))
    if test_config:
        app.config.update(test_config)
    check_config(app.config)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **database.engine_options(app.config), **app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    }
    logging.getLogger("idp").setLevel(app.config["IDP_LOG_LEVEL"])
    # The lean read path answers /api/v1/me and introspection before Flask; inside ProxyFix,
    # so it sees the caller's address and scheme as Flask does.
    app.wsgi_app = Lean(app, app.wsgi_app)
    if app.config["IDP_PROXY_HOPS"]:
        hops = app.config["IDP_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    logs.init_app(app)
    db.init_app(app)
    database.init_app(app)
    with app.app_context():
        database.install(db.engine)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    throttle.init_app(app)
    oauth_server.init_app(app)
    web.init_app(app)
    cli.init_app(app)
    metrics.init_app(app)
    return app
