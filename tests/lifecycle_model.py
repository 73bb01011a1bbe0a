"""What every connection, code and token should be doing now: docs/connection-lifecycle.md as code.

The state-machine tests drive the real endpoints and hold this model beside them. Each method
takes one action, says what the endpoint must answer (an :class:`Expect`) and moves the model to
the state the action leaves behind. Time is whole seconds on the test's clock. Nothing here
touches Flask or the database.
"""

from dataclasses import dataclass
from dataclasses import field

from idp.core.scopes import parse_scope

#: Lifetimes the state-machine apps run with: short enough for the clock rules to cross them.
CODE_TTL = 60
ACCESS_TTL = 600
REFRESH_TTL = 3600
GRACE = 60

#: Seconds an ended connection's tokens and codes are kept by the purge (set for the tests).
RETENTION = 300
#: Seconds the purge keeps an expired access token, so it still answers token_expired.
EXPIRED_ACCESS_KEEP = 24 * 3600

#: Every reason a connection may end for (docs/connection-lifecycle.md, "Ended").
END_REASONS = frozenset({"disconnected", "revoked_by_client", "refresh_reuse", "code_replay"})


@dataclass(eq=False)
class Issue:
    """One successful token response: an access token and a refresh token issued together."""

    connection: "Connection"
    access: str
    refresh: str
    access_scope: str
    refresh_scope: str
    issued_at: int
    access_expires_at: int
    refresh_expires_at: int
    rotated_at: int | None = None
    successor: "Issue | None" = None
    #: Deleted by the purge: from then on the value is simply unknown.
    access_purged: bool = False
    refresh_purged: bool = False

    def __repr__(self) -> str:
        """Short enough for a failing example's steps: the connection and the token's tail."""
        return f"Issue({self.connection.public_id}, refresh=…{self.refresh[-6:]}, " \
               f"issued_at={self.issued_at})"


@dataclass(eq=False)
class Connection:
    """One consent and everything issued through it."""

    public_id: str
    scope: str
    code: str
    verifier: str
    code_expires_at: int
    code_used: bool = False
    activated: bool = False
    end_reason: str | None = None
    ended_at: int | None = None
    code_purged: bool = False
    issues: list[Issue] = field(default_factory=list)

    def __repr__(self) -> str:
        """Short enough for a failing example's steps."""
        return f"Connection({self.public_id}, end_reason={self.end_reason!r})"

    @property
    def ended(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self.end_reason is not None

    @property
    def head(self) -> Issue | None:
        """The issue whose refresh token has not been rotated (the live one), if any."""
        live = [i for i in self.issues if i.rotated_at is None]
        assert len(live) <= 1, "the model itself holds two live refresh tokens"
        return live[0] if live else None

    def last_rotation(self) -> int | None:
        """When a refresh token of this connection was last rotated."""
        times = [i.rotated_at for i in self.issues if i.rotated_at is not None]
        return max(times) if times else None


@dataclass(frozen=True)
class Expect:
    """What an endpoint must answer, and what the answer does to the connection.

    ``kind`` says why a refusal is right: ``dead`` (the connection has ended, cannot act now,
    or its refresh token lapsed) or ``invalid`` (the request itself was wrong). A benign retry,
    race or fault is neither, so it must never meet a 4xx.
    """

    status: int
    error: str | None = None
    kind: str = "ok"
    #: A grace-window retry answers exactly this earlier issue.
    same_as: Issue | None = None
    #: A fresh rotation of this issue's refresh token (the response names the successor).
    rotates: Issue | None = None
    #: The first pair of a connection, from its code.
    activates: Connection | None = None
    #: The connection this action ends, and why.
    ends: Connection | None = None
    reason: str | None = None


class Lifecycle:
    """The expected state of one client's connections to one organization."""

    def __init__(self) -> None:
        """Start with everything allowed, at time zero."""
        self.now = 0
        self.client_enabled = True
        self.org_suspended = False
        self.member = True
        self.allowlisted = True
        self.connections: list[Connection] = []

    # --- conditions that can be lifted -------------------------------------------------------

    def bound(self) -> bool:
        """Whether the organization binding holds (member, not suspended, allowlisted)."""
        return self.member and not self.org_suspended and self.allowlisted

    def issues(self) -> list[Issue]:
        """Every token response the client ever received, oldest first."""
        return [i for c in self.connections for i in c.issues]

    def find(self, raw: str) -> tuple[Issue | None, str | None]:
        """The issue holding this raw value and which half it is; purged values are unknown."""
        for issue in self.issues():
            if raw == issue.refresh and not issue.refresh_purged:
                return issue, "refresh"
            if raw == issue.access and not issue.access_purged:
                return issue, "access"
        return None, None

    # --- authorize + consent -----------------------------------------------------------------

    def expect_connect(self) -> Expect:
        """The consent page answers an error page unless the client may bind the org."""
        if not self.client_enabled:
            return Expect(400, "client_disabled", "dead")
        if not self.bound():
            return Expect(403, "no_eligible_org", "dead")
        return Expect(302)

    def add_connection(self, public_id, scope, code, verifier) -> Connection:
        """Record the pending connection that Allow created."""
        connection = Connection(public_id, scope, code, verifier, self.now + CODE_TTL)
        self.connections.append(connection)
        return connection

    # --- token endpoint ----------------------------------------------------------------------

    def expect_code(self, connection: Connection) -> Expect:
        """RFC 6749 §4.1.3: single-use code; a replay ends its connection (§10.5)."""
        if not self.client_enabled:
            return Expect(401, "invalid_client", "dead")
        if connection.code_purged:
            return Expect(400, "invalid_grant", "invalid")
        if connection.code_used:
            ends = None if connection.ended else connection
            return Expect(400, "invalid_grant", "dead", ends=ends, reason="code_replay")
        if self.now >= connection.code_expires_at:
            return Expect(400, "invalid_grant", "invalid")
        if not self.bound():
            return Expect(400, "invalid_grant", "dead")
        return Expect(200, activates=connection)

    def expect_refresh(self, raw: str, *, other_client=False, scope=None) -> Expect:
        """RFC 6749 §6 with rotation, the grace window and reuse detection, in the code's order."""
        if not other_client and not self.client_enabled:
            return Expect(401, "invalid_client", "dead")
        issue, half = self.find(raw)
        if issue is None or half != "refresh" or other_client:
            return Expect(400, "invalid_grant", "invalid")
        requested = set(parse_scope(scope))
        if requested and not requested <= set(parse_scope(issue.refresh_scope)):
            return Expect(400, "invalid_scope", "invalid")
        connection = issue.connection
        if connection.ended or not self.bound():
            return Expect(400, "invalid_grant", "dead")
        if self.now >= issue.refresh_expires_at:
            lapsed = issue is connection.head
            return Expect(400, "invalid_grant", "dead" if lapsed else "invalid")
        if issue.rotated_at is not None:
            if self.now - issue.rotated_at <= GRACE:
                return Expect(200, same_as=self.newest(issue))
            return Expect(400, "invalid_grant", "dead", ends=connection, reason="refresh_reuse")
        return Expect(200, rotates=issue)

    def newest(self, issue: Issue) -> Issue:
        """Follow successors to the issue whose refresh token is live."""
        while issue.successor is not None:
            issue = issue.successor
        return issue

    # --- revocation, disconnect --------------------------------------------------------------

    def expect_revoke(self, raw: str, *, other_client=False) -> Expect:
        """RFC 7009: either token of a connection ends it; unknown or others' tokens do nothing."""
        if not other_client and not self.client_enabled:
            return Expect(401, "invalid_client", "dead")
        issue, _ = self.find(raw)
        if issue is None or other_client or issue.connection.ended:
            return Expect(200)
        return Expect(200, ends=issue.connection, reason="revoked_by_client")

    def expect_disconnect(self, connection: Connection) -> Expect:
        """Connected Apps lists only activated, live connections; anything else is 404."""
        if connection.ended or not connection.activated:
            return Expect(404)
        return Expect(302, ends=connection, reason="disconnected")

    # --- bearer use --------------------------------------------------------------------------

    def judge_access(self, issue: Issue) -> tuple[int, str] | None:
        """SPEC §4 for an access token, in the core's order; None when it is good."""
        if issue.access_purged:
            return 401, "unknown_token"
        if issue.connection.ended:
            return 401, "token_revoked"
        if self.now >= issue.access_expires_at:
            return 401, "token_expired"
        if not self.client_enabled:
            return 403, "client_disabled"
        if not self.bound():
            return 403, "org_unbound"
        return None

    # --- applying an answer ------------------------------------------------------------------

    def apply(self, expect: Expect, body: dict | None = None) -> Issue | None:
        """Move the model as the (already checked) answer says; return a new issue if any."""
        new = None
        if expect.activates is not None:
            connection = expect.activates
            connection.code_used = True
            connection.activated = True
            new = self._issue(connection, body, connection.scope)
        if expect.rotates is not None:
            old = expect.rotates
            new = self._issue(old.connection, body, old.refresh_scope)
            old.rotated_at = self.now
            old.successor = new
        if expect.ends is not None and not expect.ends.ended:
            expect.ends.end_reason = expect.reason
            expect.ends.ended_at = self.now
        return new

    def purge(self) -> None:
        """What ``flask purge`` deletes now (idp/store/purge.py): those values are unknown after.

        Expired codes and refresh tokens, access tokens expired for a day, used codes past the
        retention, and everything of a connection that ended more than the retention ago.
        """
        gone_before = self.now - RETENTION
        for connection in self.connections:
            long_ended = connection.ended and connection.ended_at <= gone_before
            if (long_ended or connection.code_expires_at <= gone_before
                    or (not connection.code_used and connection.code_expires_at <= self.now)):
                connection.code_purged = True
            for issue in connection.issues:
                if long_ended or issue.access_expires_at <= self.now - EXPIRED_ACCESS_KEEP:
                    issue.access_purged = True
                if long_ended or issue.refresh_expires_at <= self.now:
                    issue.refresh_purged = True

    def _issue(self, connection: Connection, body: dict, refresh_scope: str) -> Issue:
        """Record a new pair from a token response."""
        issue = Issue(
            connection=connection, access=body["access_token"], refresh=body["refresh_token"],
            access_scope=body["scope"], refresh_scope=refresh_scope, issued_at=self.now,
            access_expires_at=self.now + ACCESS_TTL, refresh_expires_at=self.now + REFRESH_TTL,
        )
        connection.issues.append(issue)
        return issue

    # --- what must hold after every step -----------------------------------------------------

    def working_refresh_tokens(self, connection: Connection) -> list[Issue]:
        """Issues whose refresh token would be answered 200 right now."""
        return [i for i in connection.issues if self.expect_refresh(i.refresh).status == 200]
