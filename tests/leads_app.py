"""A toy "leads API": another Flask service protected by the resource-server kit's Flask adapter.

It stands in for the FlowEstate API in tests: it owns no credentials, asks the IdP's
introspection endpoint about every bearer, and must answer exactly as the IdP's own
``/api/v1/me`` does.
"""

from flask import Flask
from flask import g
from flask import jsonify
from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from flowestate_kit.flask import ResourceProtector


def create_leads_app(introspection_url: str, client_id: str, client_secret: str, *,
                     storage_uri: str = "memory://", rate_limit: str = "100000 per minute",
                     key_prefix: str = "", **kit_options) -> Flask:
    """Build the toy service; ``kit_options`` go to :class:`ResourceProtector`."""
    app = Flask("leads_api")
    app.config["RATELIMIT_KEY_PREFIX"] = key_prefix
    limiter = Limiter(key_func=get_remote_address, storage_uri=storage_uri)
    limiter.init_app(app)
    protector = ResourceProtector(introspection_url, client_id, client_secret,
                                  limiter=limiter, rate_limit=rate_limit, **kit_options)
    app.extensions["protector"] = protector

    @app.get("/api/v1/leads")
    @protector.require_scopes("leads:read")
    def list_leads():
        """Leads of the bearer's organization; any organizationId parameter is ignored."""
        asked = request.args.get("organizationId")
        return jsonify(org_id=g.credential.org_id, ignored_parameter=asked,
                       leads=[{"id": "lead_1", "org_id": g.credential.org_id}])

    @app.post("/api/v1/leads")
    @protector.require_scopes("leads:write")
    def create_lead():
        """Creating a lead needs leads:write (a write scope is never implied by read)."""
        return jsonify(org_id=g.credential.org_id, created=True), 201

    @app.get("/api/v1/whoami")
    @protector.protect()
    def whoami():
        """Any active bearer: echo what introspection said about it."""
        c = g.credential
        return jsonify(token_type=c.token_type, org_id=c.org_id, scopes=sorted(c.scopes),
                       key_id=c.key_id, connection_id=c.connection_id)

    return app
