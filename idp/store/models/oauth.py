"""OAuth: connector clients, resource servers, connections and their codes and tokens."""

from datetime import datetime

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import false
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from idp.core.clock import utcnow
from idp.core.scopes import join_scope
from idp.core.scopes import parse_scope
from idp.core.secrets import same_digest
from idp.infra.extensions import db
from idp.store.models.accounts import Organization
from idp.store.models.accounts import User
from idp.store.models.columns import DIGEST
from idp.store.models.columns import PUBLIC_ID


class ConnectorClientRules(ClientMixin):
    """Authlib's client interface for connector clients, read off the client's columns.

    Shared by the :class:`Client` model and by ``ClientRecord`` (idp/oauth/server.py), the
    plain copy of a client's row that the OAuth endpoints load without the ORM.
    """

    def get_client_id(self):
        """The public client_id."""
        return self.public_id

    def get_default_redirect_uri(self):
        """Only a client with exactly one redirect URI may omit redirect_uri (SPEC §5.2)."""
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope):
        """Requested scopes if all are allowed, the defaults if none asked, else None."""
        requested = parse_scope(scope)
        if not requested:
            return self.default_scopes
        if not set(requested) <= set(parse_scope(self.allowed_scopes)):
            return None
        return join_scope(requested)

    def check_redirect_uri(self, redirect_uri):
        """Exact string match against a registered URI (RFC 6749 §3.1.2.3)."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        """Current secret, or the previous one during its rotation overlap; constant time."""
        if same_digest(self.secret_digest, client_secret):
            return True
        expires = self.previous_secret_expires_at
        return (
            expires is not None
            and expires > utcnow()
            and same_digest(self.previous_secret_digest, client_secret)
        )

    def check_endpoint_auth_method(self, method, endpoint):
        """Confidential clients: Basic or form-body secrets, never 'none'."""
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        """Only the authorization code flow exists here."""
        return response_type == "code"

    def check_grant_type(self, grant_type):
        """Authorization code and refresh token grants only."""
        return grant_type in ("authorization_code", "refresh_token")


class Client(db.Model, ConnectorClientRules):
    """A connector client (Zapier, Make): confidential, exact redirect URIs."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(PUBLIC_ID, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_digest: Mapped[str] = mapped_column(DIGEST)
    #: The secret replaced by the last rotation, accepted until ``previous_secret_expires_at``.
    previous_secret_digest: Mapped[str | None] = mapped_column(DIGEST)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    redirect_uris: Mapped[list] = mapped_column(JSON)
    allowed_scopes: Mapped[str] = mapped_column(Text)
    default_scopes: Mapped[str] = mapped_column(Text)
    #: Organization row ids this client may bind to; empty means any organization.
    org_allowlist: Mapped[list] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    code_ttl: Mapped[int | None] = mapped_column(Integer)
    access_token_ttl: Mapped[int | None] = mapped_column(Integer)
    refresh_token_ttl: Mapped[int | None] = mapped_column(Integer)
    #: Authorization requests must carry an S256 code_challenge (RFC 7636 §4.4.1). New clients
    #: get it; rows made before the flag existed were migrated to false (docs/DESIGN.md).
    require_pkce: Mapped[bool] = mapped_column(Boolean, default=True, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ResourceServer(db.Model):
    """A FlowEstate service allowed to call introspection."""

    __tablename__ = "resource_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(PUBLIC_ID, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_digest: Mapped[str] = mapped_column(DIGEST)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Connection(db.Model):
    """One consent: user x organization x client x scopes (``con_…``)."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(PUBLIC_ID, unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    #: Set once its code is redeemed; a connection whose code never was is not listed.
    activated_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(40))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    #: What the client called this connection (the ``connection_label`` authorize parameter),
    #: so two connects of one app can be told apart on Connected Apps.
    label: Mapped[str | None] = mapped_column(String(100))

    user: Mapped[User] = relationship()
    organization: Mapped[Organization] = relationship()
    client: Mapped[Client] = relationship()


class AuthorizationCode(db.Model):
    """A single-use authorization code (RFC 6749 §4.1.2), stored as a digest."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(DIGEST, unique=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    #: True when the authorization request named redirect_uri (then the token request must).
    redirect_uri_given: Mapped[bool] = mapped_column(Boolean, default=True)
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)

    connection: Mapped[Connection] = relationship()

    def get_redirect_uri(self):
        """The URI the token request must repeat: only when the authorization request named it."""
        return self.redirect_uri if self.redirect_uri_given else None


class AccessToken(db.Model):
    """An OAuth access token (``fe_at_…``), stored as a digest."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(DIGEST, unique=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    connection: Mapped[Connection] = relationship()


class RefreshToken(db.Model):
    """An OAuth refresh token (``fe_rt_…``); rotated on every use, kept to detect reuse."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        # Every rotation drops its connection's expired seals, and a connection that refreshes
        # hourly keeps hundreds of rotated rows until they expire: index only the rows that
        # still hold a seal (a handful per connection), so that UPDATE touches just those.
        Index(
            "ix_refresh_tokens_sealed_connection", "connection_id",
            sqlite_where=text("sealed_successor IS NOT NULL"),
            postgresql_where=text("sealed_successor IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(DIGEST, unique=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    #: When this token was exchanged for its successor; None while it is the live one.
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    #: Indexed: deleting a token makes the database look for rows that point at it.
    successor_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id"), index=True
    )
    #: The successor response, encrypted under this token's own raw value, for the grace window.
    sealed_successor: Mapped[bytes | None] = mapped_column(LargeBinary)

    connection: Mapped[Connection] = relationship()
