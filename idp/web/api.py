"""The IdP's own API surface: ``/api/v1/me`` (SPEC §5.6)."""

from flask import Blueprint
from flask import g
from flask import jsonify

from idp.core.credentials import Credential
from idp.web.guard import require_bearer

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def me_payload(c: Credential) -> dict:
    """Who a bearer is (the body of ``/api/v1/me``, here and on the lean path)."""
    oauth = c.kind == "oauth"
    return dict(
        type=c.kind,
        organization={"id": c.org_id, "name": c.org_name},
        user={"id": c.user_id, "email": c.user_email, "name": c.user_name} if oauth else None,
        api_key=None if oauth else {"id": c.key_id, "name": c.key_name},
        client={"id": c.client_id, "name": c.client_name} if oauth else None,
        scopes=sorted(c.scopes),
        expires_at=c.expires_at.isoformat() + "Z" if c.expires_at else None,
    )


@bp.get("/me")
@require_bearer()
def me():
    """Who this bearer is: the troubleshooting call Zapier and Make use to test a connection."""
    return jsonify(me_payload(g.credential))
