"""Connector clients: registration, enabling, secret rotation with overlap (SPEC §7)."""

from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select

from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.core.scopes import join_scope
from idp.core.scopes import parse_scope
from idp.infra.extensions import db
from idp.store import audit
from idp.store import outbox
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Organization

#: Columns ``describe`` never shows: row ids and secret digests.
_HIDDEN = {"id", "public_id", "secret_digest", "previous_secret_digest"}
#: Lifetime column -> the setting that applies when the column is empty.
_LIFETIMES = {"code_ttl": "IDP_CODE_TTL", "access_token_ttl": "IDP_ACCESS_TOKEN_TTL",
              "refresh_token_ttl": "IDP_REFRESH_TOKEN_TTL"}


class ClientError(ValueError):
    """A registration request that cannot be accepted."""


def check_redirect_uri(uri: str) -> None:
    """An absolute https URI without fragment (RFC 6749 §3.1.2, §3.1.2.1); http on loopback only.

    Matching at /oauth/authorize is by exact string, so a URI that can never be a safe
    destination must be refused here, when it is registered.
    """
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ClientError(f"Not a valid redirect URI: {uri!r}") from None
    if "#" in uri:
        raise ClientError(f"A redirect URI must not have a fragment: {uri!r}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ClientError(f"A redirect URI needs a host and no user info: {uri!r}")
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ClientError(f"A redirect URI must use https: {uri!r}")
    if any(c.isspace() or ord(c) < 0x20 for c in uri):
        raise ClientError(f"A redirect URI must not contain spaces: {uri!r}")


def create_client(
    name: str,
    redirect_uris: list[str],
    allowed_scopes: str,
    default_scopes: str | None,
    catalogue: dict,
    org_allowlist: list[int] | None = None,
    code_ttl: int | None = None,
    access_token_ttl: int | None = None,
    refresh_token_ttl: int | None = None,
    actor: str = "cli",
    require_pkce: bool = True,
) -> tuple[Client, str]:
    """Register a confidential client; returns it and its raw secret (shown once)."""
    allowed = parse_scope(allowed_scopes)
    defaults = parse_scope(default_scopes) if default_scopes else allowed
    unknown = sorted(set(allowed) - set(catalogue))
    if unknown:
        raise ClientError(f"Unknown scopes: {', '.join(unknown)}")
    if not set(defaults) <= set(allowed):
        raise ClientError("Default scopes must be a subset of the allowed scopes.")
    if not redirect_uris:
        raise ClientError("At least one redirect URI is required.")
    for uri in redirect_uris:
        check_redirect_uri(uri)
    secret = cs.new_client_secret()
    now = utcnow()
    client = Client(
        public_id=cs.new_public_id("cli_"), name=name, secret_digest=cs.digest(secret),
        redirect_uris=list(dict.fromkeys(redirect_uris)), allowed_scopes=join_scope(allowed),
        default_scopes=join_scope(defaults), org_allowlist=list(org_allowlist or []),
        enabled=True, code_ttl=code_ttl, access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl, require_pkce=require_pkce, created_at=now,
    )
    db.session.add(client)
    audit.record(db.session, "client_created", now, actor=actor, subject=client.public_id,
                 name=name)
    return client, secret


def get_client(public_id: str) -> Client:
    """The client with this client_id, or a ClientError."""
    client = db.session.scalar(select(Client).where(Client.public_id == public_id))
    if client is None:
        raise ClientError(f"No client {public_id!r}.")
    return client


def set_enabled(client: Client, enabled: bool, actor: str = "cli", *, issuer: str) -> None:
    """Disable (every token of it stops at once) or enable a client; a real change is told to
    resource servers (access paused or resumed), as ``issuer``."""
    kind = "client_enabled" if enabled else "client_disabled"
    now = utcnow()
    if client.enabled != enabled:
        outbox.emit(db.session, kind, now, issuer=issuer, client=client.public_id)
    client.enabled = enabled
    audit.record(db.session, kind, now, actor=actor, subject=client.public_id)


def rotate_secret(client: Client, overlap_seconds: int, actor: str = "cli") -> str:
    """Issue a new secret; the current one keeps working for ``overlap_seconds``."""
    secret = cs.new_client_secret()
    now = utcnow()
    client.previous_secret_digest = client.secret_digest if overlap_seconds > 0 else None
    client.previous_secret_expires_at = (
        now + timedelta(seconds=overlap_seconds) if overlap_seconds > 0 else None
    )
    client.secret_digest = cs.digest(secret)
    audit.record(db.session, "client_secret_rotated", now, actor=actor, subject=client.public_id,
                 overlap_seconds=overlap_seconds)
    return secret


def describe(client: Client, config) -> dict:
    """Every stored setting of a client for operators, without its secret digests."""
    # Column by column, so a setting added later shows up without a change here.
    shown = {"client_id": client.public_id}
    for column in Client.__table__.columns:
        if column.key in _HIDDEN:
            continue
        value = getattr(client, column.key)
        shown[column.key] = value.isoformat(timespec="seconds") if hasattr(value, "isoformat") \
            else value
    shown["allowed_scopes"] = parse_scope(client.allowed_scopes)
    shown["default_scopes"] = parse_scope(client.default_scopes)
    shown["org_allowlist"] = list(db.session.scalars(
        select(Organization.public_id).where(Organization.id.in_(client.org_allowlist or []))
        .order_by(Organization.public_id)))
    # What each token actually gets: the client's own lifetime, else the server's default.
    shown["effective_lifetimes"] = {
        column: getattr(client, column) or config[setting]
        for column, setting in _LIFETIMES.items()
    }
    return shown


#: Settings ``update_client`` can change: everything ``create_client`` sets.
UPDATABLE = ("name", "redirect_uris", "allowed_scopes", "default_scopes", "org_allowlist",
             "code_ttl", "access_token_ttl", "refresh_token_ttl", "require_pkce")


def update_client(client: Client, catalogue: dict, changes: dict, actor: str = "cli", *,
                  issuer: str) -> list[str]:
    """Apply ``changes`` (a subset of UPDATABLE) after checking them all; the names changed.

    An allowlist change is told to resource servers as ``issuer``: one ``org_disallowed`` per
    organization that lost the client, one ``org_allowed`` per organization that gained it.
    """
    # A lifetime of None means the server's default. Narrowing the scopes does not take scopes
    # from existing connections; an allowlist applies to them at once (``org_unbound``).
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ClientError(f"Not a client setting: {', '.join(sorted(unknown))}")
    wanted = {key: getattr(client, key) for key in UPDATABLE}
    wanted.update(changes)
    name = (wanted["name"] or "").strip()
    if not name or len(name) > 200:
        raise ClientError("A client needs a name of 1 to 200 characters.")
    if not wanted["redirect_uris"]:
        raise ClientError("At least one redirect URI is required.")
    for uri in wanted["redirect_uris"]:
        check_redirect_uri(uri)
    allowed = parse_scope(wanted["allowed_scopes"])
    if not allowed:
        raise ClientError("A client needs at least one allowed scope.")
    unknown_scopes = sorted(set(allowed) - set(catalogue))
    if unknown_scopes:
        raise ClientError(f"Unknown scopes: {', '.join(unknown_scopes)}")
    defaults = parse_scope(wanted["default_scopes"]) or allowed
    if not set(defaults) <= set(allowed):
        raise ClientError(f"Default scopes {join_scope(sorted(set(defaults) - set(allowed)))} "
                          "are not among the allowed scopes; give the default scopes too.")
    for key in _LIFETIMES:
        if wanted[key] is not None and wanted[key] < 1:
            raise ClientError(f"{key} must be a positive number of seconds.")
    wanted.update(name=name, redirect_uris=list(dict.fromkeys(wanted["redirect_uris"])),
                  allowed_scopes=join_scope(allowed), default_scopes=join_scope(defaults),
                  org_allowlist=list(wanted["org_allowlist"] or []))
    changed = [key for key in UPDATABLE if wanted[key] != getattr(client, key)]
    now = utcnow()
    if "org_allowlist" in changed:
        _emit_allowlist_change(client, client.org_allowlist or [], wanted["org_allowlist"],
                               now, issuer)
    for key in changed:
        setattr(client, key, wanted[key])
    if changed:
        # Names only: values can be long (redirect URIs) and the row holds them anyway.
        audit.record(db.session, "client_updated", now, actor=actor,
                     subject=client.public_id, changed=changed)
    return changed


def _emit_allowlist_change(client: Client, old: list[int], new: list[int], now,
                           issuer: str) -> None:
    """One event per organization whose binding to the client the allowlist change flips.

    An empty allowlist means every organization. Going to or from it, the organizations that
    matter are those with a live connection of the client: no other has anything a resource
    server could have cached for this client.
    """
    if old and new:
        lost, gained = set(old) - set(new), set(new) - set(old)
    else:
        live = set(db.session.scalars(
            select(Connection.org_id).where(Connection.client_id == client.id,
                                            Connection.ended_at.is_(None)).distinct()))
        lost = live - set(new) if not old else set()
        gained = live - set(old) if not new else set()
    changed = sorted(lost | gained)
    if not changed:
        return
    public = dict(db.session.execute(
        select(Organization.id, Organization.public_id).where(Organization.id.in_(changed))
    ).all())
    for org_pk in changed:
        if org_pk in public:
            outbox.emit(db.session, "org_disallowed" if org_pk in lost else "org_allowed", now,
                        issuer=issuer, client=client.public_id, org=public[org_pk])
