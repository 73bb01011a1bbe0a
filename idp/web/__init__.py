"""The web layer: blueprints, forms, sessions, headers and error pages."""


def init_app(app) -> None:
    """Install the server-side sessions, error handlers, headers and every blueprint."""
    from idp.web import api
    from idp.web import auth
    from idp.web import body_limits
    from idp.web import consent
    from idp.web import errors
    from idp.web import headers
    from idp.web import health
    from idp.web import home
    from idp.web import openapi
    from idp.web import password
    from idp.web import second_step
    from idp.web import sessions
    from idp.web import ssf
    from idp.web.settings import activity
    from idp.web.settings import api_key_changes
    from idp.web.settings import api_keys
    from idp.web.settings import apps
    from idp.web.settings import passkeys
    from idp.web.settings import password_change
    from idp.web.settings import security
    from idp.web.settings import sessions as session_pages

    app.session_interface = sessions.ServerSessions()
    errors.init_app(app)
    body_limits.init_app(app)
    headers.init_app(app)
    for module in (auth, second_step, consent, apps, api_keys, api_key_changes, session_pages,
                   activity, api, health, openapi, home, password, password_change, security,
                   passkeys, ssf):
        app.register_blueprint(module.bp)
