"""The world the lifecycle tests act in: a seeded app, a frozen clock, a fault injector.

Shared by the state machine and the plain lifecycle tests so both judge the endpoints the same
way against :mod:`tests.lifecycle_model`. Its data comes from the factories of tests/factories.py.
"""

import base64
import secrets
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import urlencode

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from idp.core import clock as idp_clock
from idp.core import secrets as cs
from idp.core.clock import epoch
from idp.infra.extensions import db
from idp.store import accounts
from idp.store.models import AuditEvent
from idp.store.models import AuthorizationCode
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Membership
from idp.store.models import Organization
from idp.store.models import RefreshToken
from idp.store.models import User
from tests import factories
from tests import lifecycle_model as lm
from tests.helpers import authorize_params
from tests.helpers import csrf_token
from tests.helpers import flask_sign_in
from tests.helpers import pkce_pair
from tests.helpers import query_of

#: The instant the frozen clock stands at before any shift (a whole second, so epochs are exact).
FROZEN_AT = datetime(2031, 3, 3, 12, 0, 0, tzinfo=UTC)
#: Lifetimes matching the model.
LIFETIMES = {
    "IDP_CODE_TTL": lm.CODE_TTL,
    "IDP_ACCESS_TOKEN_TTL": lm.ACCESS_TTL,
    "IDP_REFRESH_TOKEN_TTL": lm.REFRESH_TTL,
    "IDP_REFRESH_GRACE_SECONDS": lm.GRACE,
    "IDP_ENDED_RETENTION_SECONDS": lm.RETENTION,
}
#: Scope every connection asks for; refreshes may narrow it.
GRANTED = "contacts:read leads:read leads:write"
#: Statements that change rows; a fault is injected before the k-th of them.
WRITES = ("INSERT", "UPDATE", "DELETE")


class _FrozenDatetime(datetime):
    """``datetime`` whose ``now`` stands still, so only ``clock.shift`` moves time."""

    @classmethod
    def now(cls, tz=None):
        """The frozen instant (in ``tz`` if given)."""
        return FROZEN_AT.astimezone(tz) if tz else FROZEN_AT.replace(tzinfo=None)


def freeze_clock(monkeypatch) -> None:
    """Stop real time inside the IdP's clock; shifts still apply on top of the frozen instant.

    Expiry and grace boundaries are compared to the second, so a test that reaches one exactly
    must not have real milliseconds pushing the server past it.
    """
    monkeypatch.setattr(idp_clock, "datetime", _FrozenDatetime)
    # On PostgreSQL utcnow() follows readings of the database's clock (idp/store/dbclock.py); the
    # frozen instant stands in for that clock too, so no reading is taken or kept meanwhile.
    monkeypatch.setattr(idp_clock, "_anchor", None)
    monkeypatch.setattr(idp_clock, "_first_reading", None)
    monkeypatch.setattr(idp_clock, "anchor", lambda reading: None)
    monkeypatch.setattr(idp_clock, "on_first_use", lambda take_reading: None)
    # Undoing the patch puts the offset back too, so no shift outlives the test.
    monkeypatch.setattr(idp_clock, "_offset", timedelta(0))


class FaultInjector:
    """Fail one request with a driver OperationalError before its k-th write, or at COMMIT."""

    def __init__(self, engine) -> None:
        """Listen on the engine; nothing fails until :meth:`arm` is called."""
        self.at: int | str | None = None
        self.writes = 0
        self.fired = False
        event.listen(engine, "before_cursor_execute", self._before_statement)
        event.listen(engine, "commit", self._before_commit)

    def arm(self, at: int | str) -> None:
        """Fail the ``at``-th write statement from now on (or the first COMMIT for "commit")."""
        self.at, self.writes, self.fired = at, 0, False

    def disarm(self) -> None:
        """Let everything through again."""
        self.at = None

    def _before_statement(self, conn, cursor, statement, parameters, context, executemany):
        """Count writes; raise the driver's own error class so SQLAlchemy wraps it as usual."""
        if not isinstance(self.at, int) or self.fired:
            return
        if "user_sessions" in statement:
            # A page's session bookkeeping is written after its answer is made and is
            # best-effort by design (idp/web/sessions.py); the machine judges credential writes.
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb in WRITES:
            self.writes += 1
            if self.writes == self.at:
                self.fired = True
                raise conn.dialect.loaded_dbapi.OperationalError("injected fault before a write")

    def _before_commit(self, conn):
        """A COMMIT that never reaches the database (a dropped connection, a failover)."""
        if self.at == "commit" and not self.fired:
            self.fired = True
            raise sqlalchemy.exc.OperationalError(
                "COMMIT", None, Exception("injected fault at commit")
            )


def lifecycle_world(make_app, monkeypatch, **config) -> "World":
    """A frozen clock, an app with ``config``, the demo data and a signed-in World."""
    freeze_clock(monkeypatch)
    app = make_app(**config)
    with app.app_context():
        demo = factories.demo_data()
    return World(app, demo)


class World:
    """One app, its demo data, a signed-in browser session and helpers to call every endpoint."""

    def __init__(self, app, demo) -> None:
        """Seed what the lifecycle needs beyond the demo: a resource server, another org."""
        self.app = app
        self.demo = demo
        self.http = app.test_client()
        self.zapier = demo["clients"]["zapier"]
        self.make = demo["clients"]["make"]
        with app.app_context():
            server, self.rs_secret = factories.resource_server("Lifecycle API")
            other = factories.organization("Elsewhere Homes")
            db.session.commit()
            self.rs_id = server.public_id
            self.other_org_pk = other.id
            self.org_pk = factories.org_by_id(demo["organization"]["id"]).id
            user = accounts.find_user(demo["user"]["email"])
            self.user_id, self.user_pk = user.public_id, user.id
            self.faults = FaultInjector(db.engine)
        #: The CSRF token of the current session; signing in again replaces it (see sign_in).
        self.csrf = None
        self._restores = 0
        self.sign_in()

    def sign_in(self) -> None:
        """Sign in through the form and take the new session's CSRF token.

        Signing in starts a new session, and a form token of the session before it is refused
        (400, "This form has expired"), so every sign-in must renew the token the harness posts.
        """
        flask_sign_in(self.http, self.demo)
        self.csrf = csrf_token(self.http.get("/settings/connected-apps").get_data(as_text=True))

    # --- time ---------------------------------------------------------------------------------

    def epoch(self, model_seconds: int) -> int:
        """Unix seconds of a model time."""
        return epoch(FROZEN_AT.replace(tzinfo=None)) + model_seconds

    # --- the conditions that can be lifted ----------------------------------------------------

    def reset_conditions(self) -> None:
        """Client enabled, org active, owner membership, no allowlist; the clock at zero."""
        idp_clock.reset()
        with self.app.app_context():
            client = self._client()
            client.enabled, client.org_allowlist = True, []
            org = db.session.get(Organization, self.org_pk)
            org.suspended = False
            if self._membership() is None:
                factories.membership(db.session.get(User, self.user_pk), org, "owner")
            db.session.commit()

    def cli(self, *args: str) -> None:
        """Run an operator command the way ``flask`` does (inside an app context)."""
        with self.app.app_context():
            result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, (args, result.output, result.exception)

    def set_client_enabled(self, enabled: bool) -> None:
        """``flask client enable|disable``."""
        self.cli("client", "enable" if enabled else "disable", self.zapier["client_id"])

    def set_org_suspended(self, suspended: bool) -> None:
        """``flask suspend-org [--undo]``."""
        args = ["suspend-org", self.demo["organization"]["id"]]
        self.cli(*(args if suspended else [*args, "--undo"]))

    def set_member(self, member: bool) -> None:
        """``flask remove-member`` / ``flask add-member --role owner``."""
        email, org = self.demo["user"]["email"], self.demo["organization"]["id"]
        if member:
            # Back with another role now and then: the binding needs membership, not a role.
            self.cli("add-member", email, org, "--role", ("owner", "member")[self._restores % 2])
            self._restores += 1
        else:
            # remove-member refuses someone who is not a member (so a typo never reads as
            # done), and the machine may take the person out twice in a row.
            with self.app.app_context():
                member = self._membership() is not None
            if member:
                self.cli("remove-member", email, org)

    def purge(self, dry_run: bool = False) -> None:
        """``flask purge [--dry-run]``: the janitor an operator runs from cron."""
        self.cli("purge", *(["--dry-run"] if dry_run else []))

    def set_allowlist(self, mode: str) -> None:
        """Allow any org (empty list), only the demo org, or only another org."""
        lists = {"any": [], "ours": [self.org_pk], "other": [self.other_org_pk]}
        with self.app.app_context():
            self._client().org_allowlist = list(lists[mode])
            db.session.commit()

    def _client(self) -> Client:
        """The Zapier client row."""
        return db.session.scalar(select(Client).where(Client.public_id == self.zapier["client_id"]))

    def _membership(self) -> Membership | None:
        """The demo user's membership of the demo org."""
        return db.session.scalar(select(Membership).where(
            Membership.user_id == self.user_pk, Membership.org_id == self.org_pk))

    # --- authorize + consent ------------------------------------------------------------------

    def connect(self):
        """Authorize and Allow; return (status, code, verifier, connection id, scope)."""
        verifier, challenge = pkce_pair()
        params = authorize_params(self.zapier, scope=GRANTED, challenge=challenge)
        url = "/oauth/authorize?" + urlencode(params)
        page = self.http.get(url)
        if page.status_code == 302 and page.headers["Location"].startswith("/login"):
            # The browser's session ended (idle or absolute limit) as the clock moved on:
            # sign in again, as a person would, and come back to the same request.
            self.sign_in()
            page = self.http.get(url)
        if page.status_code != 200:
            return page.status_code, None, None, None, None
        response = self.http.post(url, data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "decision": "allow",
            "organization": self.demo["organization"]["id"],
        })
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        code = query_of(response.headers["Location"])["code"]
        with self.app.app_context():
            row = db.session.scalar(
                select(AuthorizationCode).where(AuthorizationCode.digest == cs.digest(code)))
            return 302, code, verifier, row.connection.public_id, row.scope

    def connection_count(self) -> int:
        """How many connections exist at all (a refused consent must create none)."""
        with self.app.app_context():
            return db.session.scalar(select(func.count(Connection.id)))

    # --- token endpoint, revocation, disconnect -----------------------------------------------

    def token(self, data: dict, *, client: str = "zapier"):
        """POST /oauth/token with a connector's credentials in the body (as both send them)."""
        creds = self.zapier if client == "zapier" else self.make
        form = {**data, "client_id": creds["client_id"], "client_secret": creds["client_secret"]}
        return self.http.post("/oauth/token", data=form)

    def exchange(self, connection: lm.Connection):
        """Redeem a connection's code with its PKCE verifier."""
        return self.token({
            "grant_type": "authorization_code", "code": connection.code,
            "redirect_uri": self.zapier["redirect_uris"][0], "code_verifier": connection.verifier,
        })

    def refresh(self, raw: str, *, client: str = "zapier", scope: str | None = None):
        """Present a refresh token (or anything else) to the refresh grant."""
        data = {"grant_type": "refresh_token", "refresh_token": raw}
        if scope is not None:
            data["scope"] = scope
        return self.token(data, client=client)

    def revoke(self, raw: str, *, client: str = "zapier", hint: str | None = None):
        """POST /oauth/revoke (RFC 7009) with a connector's credentials in the body."""
        creds = self.zapier if client == "zapier" else self.make
        data = {"token": raw, "client_id": creds["client_id"],
                "client_secret": creds["client_secret"]}
        if hint:
            data["token_type_hint"] = hint
        return self.http.post("/oauth/revoke", data=data)

    def stay_signed_in(self) -> None:
        """Sign in again if the session ended as the clock moved on (with a new CSRF token)."""
        if self.http.get("/settings/connected-apps").status_code == 302:
            self.sign_in()

    def disconnect(self, public_id: str, *, signed_in: bool = False):
        """The Connected Apps action: a CSRF-protected POST (signing in again first if needed,
        unless the caller already made sure with :meth:`stay_signed_in`)."""
        if not signed_in:
            self.stay_signed_in()
        return self.http.post(f"/settings/connected-apps/{public_id}/disconnect",
                              data={"csrf_token": self.csrf})

    def introspect(self, raw: str) -> dict:
        """RFC 7662 introspection as the resource server."""
        basic = base64.b64encode(f"{self.rs_id}:{self.rs_secret}".encode()).decode()
        response = self.http.post("/oauth/introspect", data={"token": raw},
                                  headers={"Authorization": "Basic " + basic})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def me(self, raw: str):
        """GET /api/v1/me with the value as a bearer."""
        return self.http.get("/api/v1/me", headers={"Authorization": "Bearer " + raw})

    # --- reading the database directly (white-box invariants) ---------------------------------

    def snapshot(self, public_ids: list[str]) -> dict:
        """Per connection: end reason, refresh rows by digest, audit event names."""
        out = {}
        with self.app.app_context():
            now = idp_clock.utcnow()
            for public_id in public_ids:
                connection = db.session.scalar(
                    select(Connection).where(Connection.public_id == public_id))
                rows = list(db.session.scalars(
                    select(RefreshToken).where(RefreshToken.connection_id == connection.id)))
                events = db.session.execute(
                    select(AuditEvent.event, AuditEvent.detail)
                    .where(AuditEvent.subject == public_id)).all()
                out[public_id] = {
                    "ended": connection.ended_at is not None,
                    "reason": connection.end_reason,
                    "rotated": {r.digest: r.rotated_at is not None for r in rows},
                    "unrotated_unexpired": db.session.scalar(
                        select(func.count(RefreshToken.id)).where(
                            RefreshToken.connection_id == connection.id,
                            RefreshToken.rotated_at.is_(None),
                            RefreshToken.expires_at > now)),
                    "events": [(e, (d or {}).get("reason")) for e, d in events],
                }
        return out


def random_refresh_token() -> str:
    """A well-formed refresh token that was never issued."""
    return cs.REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
