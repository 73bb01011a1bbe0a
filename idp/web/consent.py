"""OAuth 2.0 endpoints (SPEC §5): metadata, authorize + consent, token, revoke, introspect."""

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.scopes import describe
from idp.core.scopes import group_by_resource
from idp.core.scopes import parse_scope
from idp.infra import throttle
from idp.infra.extensions import csrf
from idp.infra.extensions import db
from idp.oauth.ending import ended_here
from idp.oauth.metadata import metadata as oauth_metadata
from idp.oauth.server import server
from idp.store import accounts
from idp.store.connections import create_connection
from idp.store.database import begin_write
from idp.store.database import read_then_write
from idp.store.models import Client
from idp.web import headers
from idp.web.forms import ConsentForm
from idp.web.forms import EmptyForm
from idp.web.sessions import current_user
from idp.web.settings.security import two_step_setup_needed
from idp.web.unit_of_work import changes
from idp.web.unit_of_work import commit
from idp.web.unit_of_work import record_use

bp = Blueprint("oauth", __name__)


@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    """RFC 8414 metadata that says exactly what is supported (idp/oauth/metadata.py)."""
    return jsonify(oauth_metadata(current_app.config))


def _error_page(message: str, status: int = 400, next_step: str | None = None, **context):
    """An error page that never redirects (unknown client, bad redirect URI, ...).

    Each says what to do next: the page is usually a popup the person can only close, so the
    way on is to start again from the app, or to ask someone who can fix the cause.
    """
    return render_template("error.html", title="This connection request cannot continue",
                           message=message, next_step=next_step or restart(None),
                           **context), status


def restart(app_name: str | None, support: bool = False) -> str:
    """The next step of a connection request that cannot go on: start again from the app."""
    step = f"Close this window and start the connection again from {app_name or 'the app'}."
    if support:
        step += (f" If it happens again, tell {app_name + '’s' if app_name else 'that app’s'} "
                 "support: its FlowEstate setup needs fixing.")
    return step


def _precheck():
    """SPEC §5.2: client and redirect_uri are judged before anything else, signed in or not.

    Returns (client, None) or (None, error page).
    """
    args = request.args
    for name in ("client_id", "redirect_uri"):
        if len(args.getlist(name)) > 1:
            return None, _error_page(f"The request repeats the {name} parameter.",
                                     next_step=restart(None, support=True))
    client_id = args.get("client_id")
    client = db.session.scalar(select(Client).where(Client.public_id == client_id)) if (
        cs.plausible_client_id(client_id)) else None
    if client is None:
        return None, _error_page("The app asking to connect is not registered with FlowEstate.",
                                 next_step=restart(None, support=True))
    if not client.enabled:
        return None, _error_page(
            f"{client.name} is currently disabled and cannot connect.",
            next_step="Close this window and try again later; FlowEstate has switched "
                      f"{client.name} off for now.")
    redirect_uri = args.get("redirect_uri")
    if redirect_uri is None:
        if client.get_default_redirect_uri() is None:
            return None, _error_page("The request must say where to return (redirect_uri).",
                                     next_step=restart(client.name, support=True))
    elif not client.check_redirect_uri(redirect_uri):
        return None, _error_page("The return address in this request is not registered for "
                                 f"{client.name}.", next_step=restart(client.name, support=True))
    return client, None


def _redirect_with_error(error: OAuth2Error):
    """Send the error back to the client with state and iss (RFC 6749 §4.1.2.1, RFC 9207)."""
    params = [("error", error.error)]
    if error.description:
        params.append(("error_description", error.description))
    if request.args.get("state") is not None:
        params.append(("state", request.args["state"]))
    params.append(("iss", current_app.config["IDP_ISSUER"]))
    return redirect(add_params_to_uri(error.redirect_uri, params))


#: Longest client-supplied connection label kept (Connection.label).
MAX_LABEL_LENGTH = 100


def connection_label(args) -> str | None:
    """The client's optional ``connection_label``: printable, spaces collapsed, cut to fit.

    A label is cosmetic, so a messy one is tidied rather than refused: refusing it would turn
    a connect into a dead end over a nicety.
    """
    raw = args.get("connection_label") or ""
    words = "".join(ch if ch.isprintable() else " " for ch in raw).split()
    return " ".join(words)[:MAX_LABEL_LENGTH].strip() or None


def _eligible_orgs(user, client):
    """Memberships whose organization this client may bind to (not suspended, allowlisted)."""
    return [
        m for m in accounts.memberships(user)
        if not m.organization.suspended
        and (not client.org_allowlist or m.org_id in client.org_allowlist)
    ]


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize():
    """Authorization code endpoint with sign-in, consent and an organization choice."""
    client, failure = _precheck()
    if failure:
        return failure
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login", next=request.full_path))
    try:
        grant = server().get_consent_grant(end_user=user)
    except InsecureTransportError:
        # Plain http seen here means a TLS proxy without IDP_PROXY_HOPS: our fault, not the
        # client's, so nothing is sent back to it; the operator finds the hint in the log.
        headers.log_proxy_hint()
        return _error_page("This page is briefly unavailable while its server is set up for "
                           "https. Try again later.", 503)
    except OAuth2Error as error:
        # The client and its redirect URI passed _precheck, so every remaining error (a
        # repeated parameter included) goes back to the client (RFC 6749 §4.1.2.1).
        error.redirect_uri = request.args.get("redirect_uri") or client.get_default_redirect_uri()
        return _redirect_with_error(error)
    orgs = _eligible_orgs(user, client)
    if not orgs:
        return _error_page(
            f"None of your organizations can connect {client.name}.", 403,
            next_step=f"Ask your organization’s owner to invite you to FlowEstate (or to let "
                      f"{client.name} connect to it), then start the connection again from "
                      f"{client.name}. Signed in with the wrong account? Sign in as someone "
                      "else.",
            switch_account=EmptyForm())
    form = ConsentForm()
    form.organization.choices = [(m.organization.public_id, m.organization.name) for m in orgs]
    setup = two_step_setup_needed(user, orgs, request.form.get("organization")
                                  if request.method == "POST" else None)
    if setup is not None:
        return setup
    scopes = parse_scope(grant.request.scope)
    if request.method == "POST" and form.validate_on_submit():
        if request.form.get("decision") != "allow":
            return server().create_authorization_response(grant_user=None, grant=grant)
        membership = next(m for m in orgs if m.organization.public_id == form.organization.data)
        # The unit of work takes the write lock before writing: a SQLite transaction that began
        # by reading cannot become a writer once another request has committed (a 503).
        with changes():
            connection = create_connection(
                db.session, user=user, membership=membership, client=client,
                scope=" ".join(sorted(scopes)), label=connection_label(request.args),
                now=utcnow(), ip=request.remote_addr,
            )
            response = server().create_authorization_response(grant_user=connection, grant=grant)
        return response
    if request.method == "POST":
        abort(400)
    return render_template(
        "consent/consent.html", form=form, client=client, user=user,
        groups=group_by_resource(describe(scopes, current_app.config["IDP_SCOPES"])),
        orgs=orgs, label=connection_label(request.args), signout=EmptyForm(),
    )


def _no_store(response):
    """Token-bearing responses must not be cached (RFC 6749 §5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _settle(response):
    """Commit a success, and a refusal for which a hook ended a connection (a replayed code, a
    reused refresh token: the end must stand); roll anything else back. Never cached."""
    if response.status_code == 200 or ended_here():
        commit()
    else:
        db.session.rollback()
    return _no_store(response)


@bp.post("/oauth/token")
@csrf.exempt
@throttle.refuse_failing
def token():
    """RFC 6749 §3.2: each grant takes the write lock where it starts to read what it will
    write (idp/oauth/authorization_code.py, idp/oauth/refresh_token.py). Limits: failed client
    authentication per address (idp.infra.throttle), then per connection inside the grant
    (idp/oauth/limits.py)."""
    read_then_write(db.session)
    return _settle(server().create_token_response())


@bp.post("/oauth/revoke")
@csrf.exempt
@throttle.refuse_failing
def revoke():
    """RFC 7009 revocation, which ends the token's connection. Limited as the token endpoint
    is: per address on failure, per connection once authenticated."""
    begin_write(db.session)  # read-then-write: hold the write lock from the start (SQLite)
    return _settle(server().create_endpoint_response("revocation"))


@bp.post("/oauth/introspect")
@csrf.exempt
@throttle.refuse_failing
def introspect():
    """RFC 7662 introspection for resource servers; API keys and access tokens alike. Counted
    per address on failed authentication, per authenticated resource server (never per
    token, never per claimed id) once authenticated (idp/oauth/limits.py)."""
    return introspected(server().create_endpoint_response("introspection"))


def introspected(response):
    """Record the use of the token an introspection found good, and keep the answer out of
    caches (this view's last step, and the lean path's)."""
    if "introspected" in g:
        # The caller is a service, not the token's user: record the time of use only and
        # keep the last address seen directly (by /api/v1/me) as it was.
        record_use(db.session, *g.introspected, current_app.config["IDP_LAST_USED_INTERVAL"])
    return _no_store(response)
