"""The revocation push end to end, through real processes (docs/ssf.md): every row of the event
table, made the way a person, a connector or an operator makes it, reaches a poll stream and a
push stream, and the kits act on it.

One gunicorn IdP, one ``flask ssf deliver`` worker process and four kits serve the whole
module, on one database (PostgreSQL when ``IDP_TEST_DATABASE_URL`` names one):

* ``poll`` and ``push``: the same resource server twice, one kit per delivery method;
* ``other``: a second resource server's kit (push), which caches none of the rows'
  credentials: it must get every SET and drop nothing, until its own server is disabled;
* ``plain``: the first server's kit without a stream, which must see no change at all.

The kits' clocks stand still, so a verdict leaves a cache only when an event evicts it: a kit
that refuses a credential it had cached as active, within seconds, proves the event did it.
"""

import os
import subprocess
import sys
from contextlib import ExitStack

import pytest
import requests

from flowestate_kit.answers import Denial
from flowestate_kit.judge import Bearer
from flowestate_kit.judge import IdpUnavailable
from idp import create_app
from idp.core import ssf_events
from idp.infra.extensions import db
from idp.oauth import resource_auth
from idp.store.models.ssf import POLL
from idp.store.models.ssf import PUSH
from tests.conftest import BASE_CONFIG
from tests.factories import DEMO_EMAIL
from tests.factories import PASSWORD
from tests.factories import AppFactory
from tests.factories import demo_data
from tests.helpers import ROOT
from tests.helpers import TEST_SECRET_KEY
from tests.helpers import LiveServer
from tests.helpers import fresh_database
from tests.helpers import http_connect
from tests.helpers import pkce_pair
from tests.live.ssf_stage import PATIENCE
from tests.live.ssf_stage import STARTUP
from tests.live.ssf_stage import Browser
from tests.live.ssf_stage import Case
from tests.live.ssf_stage import Database
from tests.live.ssf_stage import Kit
from tests.live.ssf_stage import PushServer
from tests.live.ssf_stage import PushWorker
from tests.live.ssf_stage import Step
from tests.live.ssf_stage import digest
from tests.live.ssf_stage import wait_until

pytestmark = pytest.mark.live

#: The plain kit's bounds (the kit's defaults): 30 s for an active verdict, 5 s for a refusal.
ACTIVE_TTL = 30
INACTIVE_TTL = 5


class Stage:
    """Everything the module's tests share; see the module docstring."""

    def __init__(self, app, server: LiveServer, demo: dict, database_url: str):
        """Hold the operator's app (same database and issuer as the server) and the seed."""
        self.app = app
        self.server = server
        self.url = server.url
        self.demo = demo
        self.database_url = database_url
        self.db = Database(app)
        self.factory = AppFactory(app)
        self.zapier = demo["clients"]["zapier"]
        self.kits: dict[str, Kit] = {}
        #: The second resource server (its client_id and secret), for the ``other`` kit.
        self.other_rs: dict = {}
        #: The demo owner, signed in to the pages (as ``PASSWORD``).
        self.browser: Browser | None = None
        #: Credentials no row touches, cached by the streamed kits all along.
        self.bystanders: list[str] = []

    @property
    def streamed(self) -> list[Kit]:
        """The first resource server's kits with a stream: poll, then push."""
        return [self.kits["poll"], self.kits["push"]]

    @property
    def observers(self) -> list[Kit]:
        """Every kit with a stream: each must receive every change's SET once."""
        return [*self.streamed, self.kits["other"]]

    # -- making changes the real way ---------------------------------------------------------

    def operator(self, *args: str) -> None:
        """An operator command through Flask's CLI runner, on the shared database."""
        with self.app.app_context():
            result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output

    def command(self, *args: str) -> None:
        """An operator command as its own ``flask`` process, as run on a server."""
        env = {**os.environ, "DATABASE_URL": self.database_url, "SECRET_KEY": TEST_SECRET_KEY,
               "IDP_ISSUER": self.url}
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def token(self, data: dict) -> requests.Response:
        """POST /oauth/token as Zapier (its credentials in the body)."""
        return requests.post(self.url + "/oauth/token", timeout=10, data={
            **data, "client_id": self.zapier["client_id"],
            "client_secret": self.zapier["client_secret"]})

    # -- data ----------------------------------------------------------------------------------

    def owned_org(self, name: str) -> str:
        """A new organization the demo owner manages on the pages."""
        org = self.factory.org(name)
        self.factory.member(DEMO_EMAIL, org, "owner")
        return org

    def person_in(self, email: str, *orgs: str) -> str:
        """A new person, a member of ``orgs``; their email."""
        return self.factory.person(email, dict.fromkeys(orgs, "member"))

    # -- running a row ---------------------------------------------------------------------

    def cache(self, raws: list[str], kits: list[Kit]) -> None:
        """Have each kit judge each credential active and hold the verdict."""
        for kit in kits:
            for raw in raws:
                verdict = kit.verdict(raw)
                assert isinstance(verdict, Bearer), (kit.name, verdict)
                assert kit.cached(raw), kit.name

    def run(self, step: Step, case: Case) -> None:
        """Make one change and check everything the event table promises of it."""
        since = self.db.last_event_id()
        before = {kit.name: kit.active() for kit in self.observers}
        step.make()
        wanted = Denial if step.stops else Bearer
        for kit in self.streamed:
            wait_until(lambda kit=kit: all(isinstance(kit.verdict(raw), wanted)
                                           for raw in case.targets),
                       f"{step.kind}: the {kit.name} kit answering {wanted.__name__}")
        self.told_once(since, step)
        targets = {digest(raw) for raw in case.targets}
        for kit in self.streamed:
            # Exactly what the change touched left the cache (or came back), nothing else.
            expected = before[kit.name] - targets if step.stops else before[kit.name] | targets
            assert kit.active() == expected, (step.kind, kit.name)
            assert all(kit.cached(raw) for raw in case.neighbors), (step.kind, kit.name)
        assert self.kits["other"].active() == before["other"], step.kind
        self.plain_sees_no_change(step, case)

    def told_once(self, since: int, step: Step):
        """The change's one event, of the documented type and subject, acknowledged on every
        stream, each of which received it as exactly one SET that verifies; the event."""
        issuer = self.url
        event = self.one_event(since, step.kind)
        assert event.event_type == ssf_events.event_type(step.kind, issuer)
        assert event.subject == ssf_events.subject(step.kind, step.ids)
        assert event.payload["reason"] == step.kind
        if step.initiator is not None:
            assert event.payload["initiating_entity"] == step.initiator
        streams = {kit.receiver.stream_id: kit for kit in self.observers}
        # Acknowledged: the poll kit sent the jti back, the push kit answered 202. Nothing of
        # it can come again, so what the kits received now is all they will.
        wait_until(lambda: self.acknowledged(event.id, streams),
                   f"{step.kind}: every stream acknowledging the event")
        deliveries = self.db.deliveries(event.id)
        assert set(deliveries) == set(streams), step.kind
        jwks = requests.get(issuer + "/ssf/jwks", timeout=10).json()
        for stream_id, kit in streams.items():
            seq, _, method = deliveries[stream_id]
            assert method == (POLL if kit.name == "poll" else PUSH)
            [token] = kit.received(event.public_id, jwks)
            assert token.header["typ"] == "secevent+jwt" and token.header["alg"] == "ES256"
            claims = token.claims
            assert (claims["iss"], claims["aud"], claims["stream_seq"]) == (
                issuer, kit.judge.auth[0], seq), (step.kind, kit.name)
            assert claims["sub_id"] == event.subject
            assert claims["events"] == {event.event_type: event.payload}
        # Checked again now that every stream has it: the change made no second event.
        assert [e.id for e in self.db.changes_since(since)] == [event.id], step.kind
        return event

    def one_event(self, since: int, kind: str):
        """The one event of a change committed after ``since``."""
        made = self.db.changes_since(since)
        assert [e.kind for e in made] == [kind], [e.kind for e in made]
        return made[0]

    def acknowledged(self, event_id: int, streams: dict) -> bool:
        """Whether every stream has the event, acknowledged and applied by its kit."""
        deliveries = self.db.deliveries(event_id)
        for stream_id, kit in streams.items():
            seq, acked, _ = deliveries.get(stream_id, (None, False, None))
            last = kit.receiver.status()["last_seq"]
            if not acked or last is None or last < seq:
                return False
        return True

    def plain_sees_no_change(self, step: Step, case: Case) -> None:
        """The kit without a stream keeps its cached verdict until its own bound, as before
        the revocation push existed."""
        plain = self.kits["plain"]
        if step.stops:
            assert all(isinstance(plain.verdict(raw), Bearer) for raw in case.targets)
            plain.clock.advance(ACTIVE_TTL)
            assert all(isinstance(plain.verdict(raw), Denial) for raw in case.targets)
        else:
            assert all(isinstance(plain.verdict(raw), Denial) for raw in case.targets)
            plain.clock.advance(INACTIVE_TTL)
            assert all(isinstance(plain.verdict(raw), Bearer) for raw in case.targets)


@pytest.fixture(scope="module")
def stage(template_db, tmp_path_factory):
    """The IdP, the push worker and the kits, for the whole module (see the docstring)."""
    directory = tmp_path_factory.mktemp("ssf-end-to-end")
    database_url = fresh_database(template_db, directory)
    # A grace window of 0: a refresh token presented a second time is reuse at once.
    server = LiveServer(database_url, directory, extra_env={"IDP_REFRESH_GRACE_SECONDS": "0"})
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
                      "IDP_ISSUER": server.url})
    with app.app_context():
        demo = demo_data(password=PASSWORD)
    try:
        with ExitStack() as stack:
            server.start()
            stack.callback(server.stop)
            worker = PushWorker(database_url, server.url, directory / "worker.log")
            stack.callback(worker.stop)
            push = PushServer()
            stack.callback(push.stop)
            stage = Stage(app, server, demo, database_url)
            stage.other_rs = stage.factory.resource_server("Second API")
            for name, rs, delivery in (("poll", demo["resource_server"], "poll"),
                                       ("push", demo["resource_server"], "push"),
                                       ("other", stage.other_rs, "push"),
                                       ("plain", demo["resource_server"], None)):
                stage.kits[name] = kit = Kit(name, server.url, rs, delivery=delivery, push=push)
                stack.callback(kit.close)
            for kit in stage.observers:
                kit.receiver.start()
            for kit in stage.observers:
                wait_until(kit.healthy, f"the {kit.name} stream verified", STARTUP)
            stage.browser = Browser(server.url, DEMO_EMAIL, PASSWORD)
            stack.callback(stage.browser.close)
            # Credentials no row touches, held all along: every row must leave them cached.
            bystander = stage.factory.org("Bystander Realty")
            stage.person_in("bystander@bystander.example", bystander)
            _, key = stage.factory.key(bystander)
            connection = stage.factory.connection("bystander@bystander.example", bystander)
            stage.bystanders = [key, connection["access"]]
            stage.cache(stage.bystanders, stage.streamed)
            yield stage
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- the rows: each builds its world, then names its credentials and its changes ------------


def disconnected(s: Stage) -> Case:
    """Disconnect on the Connected Apps page, by the person who connected."""
    org = s.owned_org("Disconnect Realty")
    target = s.factory.connection(DEMO_EMAIL, org)
    twin = s.factory.connection(DEMO_EMAIL, org)
    page = f"/settings/connected-apps/{target['id']}/disconnect"
    return Case([target["access"]], [twin["access"]], [
        Step(lambda: s.browser.submit(page), "disconnected",
             s.db.connection_ids(target["id"]), stops=True, initiator="user")])


def ended_by_operator(s: Stage) -> Case:
    """``flask connection end``, in a process of its own: a revocation by an administrator."""
    org = s.owned_org("Operator End Realty")
    target = s.factory.connection(DEMO_EMAIL, org)
    twin = s.factory.connection(DEMO_EMAIL, org)
    return Case([target["access"]], [twin["access"]], [
        Step(lambda: s.command("connection", "end", target["id"]), "revoked",
             s.db.connection_ids(target["id"]), stops=True, initiator="admin")])


def revoked(s: Stage) -> Case:
    """RFC 7009 revocation of the refresh token by the connector."""
    org = s.owned_org("Revoke Realty")
    target = s.factory.connection(DEMO_EMAIL, org)
    twin = s.factory.connection(DEMO_EMAIL, org)

    def revoke():
        answer = requests.post(s.url + "/oauth/revoke", timeout=10, data={
            "token": target["refresh"], "client_id": s.zapier["client_id"],
            "client_secret": s.zapier["client_secret"]})
        assert answer.status_code == 200, answer.text

    return Case([target["access"]], [twin["access"]], [
        Step(revoke, "revoked", s.db.connection_ids(target["id"]), stops=True,
             initiator="user")])


def refresh_reuse(s: Stage) -> Case:
    """A refresh token presented again after its (zero-second) grace window."""
    org = s.owned_org("Reuse Realty")
    target = s.factory.connection(DEMO_EMAIL, org)
    twin = s.factory.connection(DEMO_EMAIL, org)

    def reuse():
        grant = {"grant_type": "refresh_token", "refresh_token": target["refresh"]}
        assert s.token(grant).status_code == 200
        again = s.token(grant)
        assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")

    return Case([target["access"]], [twin["access"]], [
        Step(reuse, "refresh_reuse", s.db.connection_ids(target["id"]), stops=True,
             initiator="policy")])


def code_replay(s: Stage) -> Case:
    """Sign in, Allow, redeem the code, then present the same code again."""
    org = s.owned_org("Replay Realty")
    verifier, challenge = pkce_pair()
    person = {**s.demo, "user": {"email": DEMO_EMAIL, "password": PASSWORD},
              "organization": {"id": org}}
    with requests.Session() as browser:
        query = http_connect(s.url, person, challenge=challenge, session=browser)
    grant = {"grant_type": "authorization_code", "code": query["code"],
             "redirect_uri": s.zapier["redirect_uris"][0], "code_verifier": verifier}
    first = s.token(grant)
    assert first.status_code == 200, first.text
    access = first.json()["access_token"]
    twin = s.factory.connection(DEMO_EMAIL, org)

    def replay():
        again = s.token(grant)
        assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")

    return Case([access], [twin["access"]], [
        Step(replay, "code_replay", s.db.connection_ids(s.db.connection_of(access)),
             stops=True, initiator="policy")])


def api_key_paused(s: Stage) -> Case:
    """Disable, then enable, an API key on the API Keys page."""
    org = s.owned_org("Key Pause Realty")
    key_id, raw = s.factory.key(org, "Target")
    _, sibling = s.factory.key(org, "Sibling")
    ids = {"api_key": key_id}
    return Case([raw], [sibling], [
        Step(lambda: s.browser.submit("/settings/api-keys",
                                      f"/settings/api-keys/{key_id}/disable"),
             "api_key_disabled", ids, stops=True),
        Step(lambda: s.browser.submit("/settings/api-keys",
                                      f"/settings/api-keys/{key_id}/enable"),
             "api_key_enabled", ids, stops=False)])


def api_key_revoked(s: Stage) -> Case:
    """``flask api-key revoke``."""
    org = s.owned_org("Key Revoke Realty")
    key_id, raw = s.factory.key(org, "Target")
    _, sibling = s.factory.key(org, "Sibling")
    return Case([raw], [sibling], [
        Step(lambda: s.operator("api-key", "revoke", key_id), "api_key_revoked",
             {"api_key": key_id}, stops=True)])


def client_paused(s: Stage) -> Case:
    """``flask client disable``, then ``enable``: every connection of the client."""
    org = s.factory.org("Client Pause Realty")
    email = s.person_in("casey@client-pause.example", org)
    client = s.factory.connector("make", name="Make (paused)")
    first = s.factory.connection(email, org, "Make (paused)")
    second = s.factory.connection(email, org, "Make (paused)")
    # The same person in the same organization, through another client.
    other_client = s.factory.connection(email, org)
    ids = {"client": client["client_id"]}
    return Case([first["access"], second["access"]], [other_client["access"]], [
        Step(lambda: s.operator("client", "disable", client["client_id"]), "client_disabled",
             ids, stops=True),
        Step(lambda: s.operator("client", "enable", client["client_id"]), "client_enabled",
             ids, stops=False)])


def org_paused(s: Stage) -> Case:
    """``flask suspend-org``, then ``--undo``, each in a process of its own: every key and
    connection of the organization."""
    org = s.factory.org("Suspended Realty")
    elsewhere = s.factory.org("Unsuspended Realty")
    email = s.person_in("sam@suspended.example", org, elsewhere)
    _, key = s.factory.key(org)
    connection = s.factory.connection(email, org)
    _, other_key = s.factory.key(elsewhere)
    # The same person and client, in an organization that stays active.
    same_person = s.factory.connection(email, elsewhere)
    ids = {"org": org}
    return Case([key, connection["access"]], [other_key, same_person["access"]], [
        Step(lambda: s.command("suspend-org", org), "org_suspended", ids, stops=True),
        Step(lambda: s.command("suspend-org", org, "--undo"), "org_restored", ids,
             stops=False)])


def membership_paused(s: Stage) -> Case:
    """``flask remove-member``, then ``add-member``: that person's connections in that
    organization."""
    org = s.factory.org("Membership Realty")
    elsewhere = s.factory.org("Other Membership Realty")
    email = s.person_in("morgan@membership.example", org, elsewhere)
    colleague = s.person_in("riley@membership.example", org)
    target = s.factory.connection(email, org)
    same_person = s.factory.connection(email, elsewhere)
    same_org = s.factory.connection(colleague, org)
    ids = {"user": s.db.user_id(email), "org": org}
    return Case([target["access"]], [same_person["access"], same_org["access"]], [
        Step(lambda: s.operator("remove-member", email, org), "membership_removed", ids,
             stops=True),
        Step(lambda: s.operator("add-member", email, org), "membership_restored", ids,
             stops=False)])


def allowlist_paused(s: Stage) -> Case:
    """``flask client update --org``: an organization taken off a client's allowlist, then
    put back; that client's connections in that organization."""
    org = s.factory.org("Allowlist Realty")
    kept = s.factory.org("Kept Realty")
    email = s.person_in("ari@allowlist.example", org, kept)
    client = s.factory.connector("make", name="Make (allowlist)")
    s.operator("client", "update", client["client_id"], "--org", org, "--org", kept)
    target = s.factory.connection(email, org, "Make (allowlist)")
    kept_org = s.factory.connection(email, kept, "Make (allowlist)")
    other_client = s.factory.connection(email, org)
    ids = {"client": client["client_id"], "org": org}
    return Case([target["access"]], [kept_org["access"], other_client["access"]], [
        Step(lambda: s.operator("client", "update", client["client_id"], "--org", kept),
             "org_disallowed", ids, stops=True),
        Step(lambda: s.operator("client", "update", client["client_id"], "--org", org,
                                "--org", kept),
             "org_allowed", ids, stops=False)])


#: One row per line of docs/ssf.md's event table, with the kinds its changes are told as:
#: connection ends once per reason, and once more for the operator's end. The resource
#: server's own switch has a test of its own.
ROWS = [
    (disconnected, ("disconnected",)),
    (ended_by_operator, ("revoked",)),
    (revoked, ("revoked",)),
    (refresh_reuse, ("refresh_reuse",)),
    (code_replay, ("code_replay",)),
    (api_key_paused, ("api_key_disabled", "api_key_enabled")),
    (api_key_revoked, ("api_key_revoked",)),
    (client_paused, ("client_disabled", "client_enabled")),
    (org_paused, ("org_suspended", "org_restored")),
    (membership_paused, ("membership_removed", "membership_restored")),
    (allowlist_paused, ("org_disallowed", "org_allowed")),
]


def test_the_rows_cover_every_kind_of_the_table():
    told = {kind for _, kinds in ROWS for kind in kinds}
    assert told | {"resource_server_disabled"} == set(ssf_events.KINDS)


@pytest.mark.parametrize("row, kinds", ROWS, ids=[row.__name__ for row, _ in ROWS])
def test_each_change_reaches_both_streams_and_the_kits_act_on_it(stage, row, kinds):
    case = row(stage)
    assert tuple(step.kind for step in case.steps) == kinds
    stage.cache(case.targets + case.neighbors, stage.streamed)
    stage.cache(case.targets, [stage.kits["plain"]])
    for step in case.steps:
        stage.run(step, case)
    for kit in stage.streamed:
        assert all(kit.cached(raw) for raw in stage.bystanders), kit.name


def test_a_change_whose_commit_fails_tells_no_one(stage, monkeypatch):
    org = stage.factory.org("Commit Fault Realty")
    key_id, raw = stage.factory.key(org)
    stage.cache([raw], [*stage.streamed, stage.kits["plain"]])
    since = stage.db.last_event_id()
    with stage.app.app_context():
        dialect = db.engine.dialect

    def failing_commit(dbapi_connection):
        # What a COMMIT that fails does on either database: the transaction is aborted.
        dbapi_connection.rollback()
        raise dialect.loaded_dbapi.OperationalError("disk I/O error (injected at COMMIT)")

    monkeypatch.setattr(dialect, "do_commit", failing_commit)
    with stage.app.app_context():
        failed = stage.app.test_cli_runner().invoke(args=["api-key", "disable", key_id])
    monkeypatch.undo()
    assert failed.exit_code != 0
    assert stage.db.key_active(key_id) is True
    assert stage.db.changes_since(since) == []
    assert all(kit.cached(raw) for kit in stage.streamed)
    # The same change committed for real is the first thing either stream says of the key:
    # had the failed one been told, its SET would have come first (streams keep order).
    case = Case([raw], [])
    stage.run(Step(lambda: stage.operator("api-key", "disable", key_id), "api_key_disabled",
                   {"api_key": key_id}, stops=True), case)
    jwks = requests.get(stage.url + "/ssf/jwks", timeout=10).json()
    for kit in stage.observers:
        about = [token for token in kit.received_all(jwks)
                 if token.claims["sub_id"] == ssf_events.opaque(key_id)]
        assert len(about) == 1, kit.name


def test_disabling_a_resource_server_empties_its_kit_and_no_other(stage):
    poll, push, other = stage.kits["poll"], stage.kits["push"], stage.kits["other"]
    _, raw = stage.factory.key(stage.factory.org("Shared Realty"))
    stage.cache([raw], [poll, push, other])
    before = {kit.name: kit.active() for kit in stage.streamed}
    since = stage.db.last_event_id()
    rs = stage.other_rs["client_id"]
    stage.command("resource-server", "disable", rs)
    # Watched in the cache itself: asking the kit would ask the IdP again (below).
    wait_until(lambda: not other.cached(raw), "the disabled server's kit dropping its cache")
    assert other.judge.cache_len() == 0
    # The IdP may call a credential active for a few seconds more (it remembers a good
    # resource-server check briefly): whatever the kit hears now lives by its short bound.
    status = other.judge.stream_status()
    assert (status["healthy"], status["active_ttl"]) == (False, ACTIVE_TTL)
    stage.told_once(since, Step(lambda: None, "resource_server_disabled",
                                {"resource_server": rs}, stops=True))
    # The first server's kits drop nothing and keep judging with their own credentials.
    for kit in stage.streamed:
        assert kit.active() == before[kit.name], kit.name
        assert isinstance(kit.verdict(raw), Bearer)
        _, fresh = stage.factory.key(stage.factory.org(f"Fresh Realty {kit.name}"))
        assert isinstance(kit.verdict(fresh), Bearer) and kit.cached(fresh)

    def other_refuses() -> bool:
        # A bound later for the kit each time; once the IdP's memo has run out it refuses
        # the server, and the kit answers 503, never a stale "active".
        other.clock.advance(ACTIVE_TTL)
        try:
            other.verdict(raw)
        except IdpUnavailable:
            return True
        return False

    wait_until(other_refuses, "the disabled server's kit refusing",
               resource_auth.MEMO_SECONDS + PATIENCE)
