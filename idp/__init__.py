"""FlowEstate identity provider: the application factory."""

import logging
import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from idp import cli
from idp import database
from idp import errors
from idp import logs
from idp import metrics
from idp import openapi
from idp import security
from idp import sessions
from idp import throttle
from idp.config import build_config
from idp.config import check_config
from idp.extensions import csrf
from idp.extensions import db
from idp.extensions import limiter
from idp.extensions import migrate
from idp.oauth import server as oauth_server
from idp.views import activity
from idp.views import api
from idp.views import api_keys
from idp.views import auth
from idp.views import health
from idp.views import home
from idp.views import oauth
from idp.views import password
from idp.views import security as security_pages
from idp.views import sessions as session_pages
from idp.views import settings
from idp.views import two_step

HERE = os.path.dirname(os.path.abspath(__file__))


def create_app(test_config: dict | None = None) -> Flask:
    """Build the IdP from environment variables, overridden by ``test_config`` in tests."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=os.path.join(os.path.dirname(HERE), "templates"),
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
    if app.config["IDP_PROXY_HOPS"]:
        hops = app.config["IDP_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    app.session_interface = sessions.ServerSessions()
    logs.init_app(app)
    db.init_app(app)
    database.init_app(app)
    with app.app_context():
        database.install(db.engine)
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(HERE), "migrations"), render_as_batch=True
    )
    csrf.init_app(app)
    limiter.init_app(app)
    throttle.init_app(app)
    oauth_server.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    cli.init_app(app)
    for module in (auth, oauth, settings, api_keys, session_pages, activity, api, health,
                   openapi, home, password, security_pages, two_step):
        app.register_blueprint(module.bp)
    metrics.init_app(app)
    return app
