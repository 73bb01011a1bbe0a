"""Shared Signals endpoints (docs/ssf.md, "Endpoints"): metadata, keys, stream management and
RFC 8936 poll for resource servers.

Resource servers authenticate exactly as to introspection: HTTP Basic checked by
``idp.oauth.resource_auth`` (401 ``invalid_client`` with ``WWW-Authenticate: Basic``, failures
counted per address), and each authenticated call counts against the server's own limit.
Changes commit through the unit of work; idp/ssf decides, this module only speaks HTTP.
"""

import json
from functools import wraps

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import make_response
from flask import request

from idp.core.bearer import RETRY_AFTER_UNAVAILABLE
from idp.core.clock import utcnow
from idp.infra import throttle
from idp.infra.extensions import csrf
from idp.infra.extensions import db
from idp.oauth import limits
from idp.oauth.client_auth import authenticate_resource_server
from idp.ssf import keys
from idp.ssf import metadata
from idp.ssf import poll as polling
from idp.ssf import stream_documents
from idp.ssf import streams
from idp.ssf.poll import PollError
from idp.ssf.stream_errors import SsfError
from idp.store.database import reading
from idp.web.unit_of_work import changes

bp = Blueprint("ssf", __name__)

#: OAuth error headers that jsonify sets itself.
_OWN_HEADERS = {"content-type"}


@bp.after_request
def no_store(response):
    """Stream configurations, statuses, SETs and keys are never cached (RFC 9111 §5.2.2.5);
    a receiver fetches the JWKS again when it meets a kid it does not know."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _json(status: int, document, headers=()):
    """A JSON answer with extra headers."""
    response = jsonify(document)
    response.status_code = status
    for name, value in headers:
        if name.lower() not in _OWN_HEADERS:
            response.headers[name] = value
    return response


def _body():
    """The JSON request body; an empty body is an empty object (every member is optional)."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise SsfError("The request body is not valid JSON.") from None


def _resource_server() -> str:
    """The client_id of the resource server whose Basic credentials came with the request,
    counted against its limit; InvalidClientError (401) when they name none."""
    # Not from the memo: a verification that comes back restores a kit's trust in its stream,
    # so it must not succeed for a server disabled a moment ago. These calls are rare.
    with reading(db.engine) as conn:
        server = authenticate_resource_server(conn, request.headers, remembered=False)
    if server is None:
        raise InvalidClientError(status_code=401,
                                 description="Shared Signals needs resource-server credentials.")
    limits.count_resource_server(server)
    return server


def managed(view):
    """Authenticate the resource server and answer every refusal as
    ``{"error", "error_description"}`` (401 counted per address, as introspection's)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return make_response(view(_resource_server(), *args, **kwargs))
        except OAuth2Error as error:
            return _json(error.status_code, {"error": error.error,
                                             "error_description": error.get_error_description()},
                         error.get_headers())
        except SsfError as error:
            return _json(error.status, {"error": error.error,
                                        "error_description": error.description})

    return csrf.exempt(throttle.refuse_failing(wrapper))


@bp.get("/.well-known/ssf-configuration")
def configuration():
    """SSF 1.0 §7.1 transmitter metadata."""
    return jsonify(metadata.configuration(current_app.config))


@bp.get("/ssf/jwks")
def jwks():
    """The SET signing keys' public halves, live and retired (RFC 7517 §5)."""
    return jsonify(keys.jwks(db.session))


@bp.route("/ssf/streams", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
@managed
def stream_configuration(server: str):
    """SSF 1.0 §8.1.1: create (201), read, update, replace, delete (204) streams."""
    config = current_app.config
    issuer = config["IDP_ISSUER"]
    if request.method == "GET":
        stream_id = request.args.get("stream_id")
        if stream_id is None:
            return jsonify([stream_documents.configuration(stream, issuer)
                            for stream in streams.listing(db.session, server)])
        stream = streams.find(db.session, server, stream_id)
        return jsonify(stream_documents.configuration(stream, issuer))
    if request.method == "DELETE":
        with changes():
            streams.delete(db.session, server, request.args.get("stream_id"))
        return "", 204
    operation = {"POST": streams.create, "PATCH": streams.update, "PUT": streams.replace}
    body = _body()
    with changes():
        stream = operation[request.method](db.session, config, server, body, utcnow())
        document = stream_documents.configuration(stream, issuer)
    return _json(201 if request.method == "POST" else 200, document)


@bp.route("/ssf/status", methods=["GET", "POST"])
@managed
def stream_status(server: str):
    """SSF 1.0 §8.1.2: read or change a stream's status."""
    if request.method == "GET":
        stream = streams.find(db.session, server, request.args.get("stream_id"))
        return jsonify(stream_documents.status_of(stream))
    body = _body()
    with changes():
        stream = streams.set_status(db.session, current_app.config, server, body, utcnow())
        document = stream_documents.status_of(stream)
    return jsonify(document)


@bp.post("/ssf/verify")
@managed
def verify(server: str):
    """SSF 1.0 §8.1.4.2: queue a verification event on the stream (204)."""
    body = _body()
    with changes():
        streams.verify(db.session, current_app.config, server, body, utcnow())
    return "", 204


def _poll_error(status: int, err: str, description: str, headers=()):
    """RFC 8936 §2.4.4 error body."""
    return _json(status, {"err": err, "description": description}, headers)


@bp.post("/ssf/poll/<stream_id>")
@csrf.exempt
@throttle.refuse_failing
def poll(stream_id: str):
    """RFC 8936 poll: acknowledgements, then SETs, waiting up to IDP_SSF_LONG_POLL_SECONDS
    (idp/ssf/poll.py) with no transaction open between looks."""
    config = current_app.config
    try:
        server = _resource_server()
        try:
            wanted = polling.parse(_body())
        except SsfError as error:
            raise PollError(400, "invalid_request", error.description) from None

        def look_once(first: bool):
            with changes():
                return polling.look(db.session, config, server, stream_id, wanted, utcnow(),
                                    first=first)

        def due() -> bool:
            with reading(db.engine) as conn:
                return polling.due(conn, stream_id)

        answer = polling.wait(wanted, look_once, due, config["IDP_SSF_LONG_POLL_SECONDS"])
    except OAuth2Error as error:
        return _poll_error(error.status_code, error.error, error.get_error_description(),
                           error.get_headers())
    except PollError as error:
        return _poll_error(error.status, error.err, error.description)
    except keys.KeyUnavailable:
        # Logged by idp.ssf.keys; a key the operator can restore or rotate is a passing fault.
        return _poll_error(503, "temporarily_unavailable",
                           "The service is briefly unavailable; retry shortly.",
                           [("Retry-After", str(RETRY_AFTER_UNAVAILABLE))])
    return jsonify(answer.body())
