"""The janitor on 100,000 rows while connectors keep refreshing (SPEC §7).

Rows are bulk-inserted with Core inserts and labelled through their ``scope`` column ("drop" or
"keep"), which the purge never reads for these rows, so the test can count exactly what went.

Refresh-token deletions are kept to 1,000 of the 100,000 rows: until ``successor_id`` is indexed,
each one costs the database a scan of the whole refresh_tokens table to check the foreign key
(OPERATIONS.md, "The purge"), which would make this test take minutes rather than seconds.
"""

import re
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text

from idp.cli.demo import seed_demo
from idp.core import secrets as cs
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.signin import resets
from idp.signin import two_step
from idp.store import api_keys
from idp.store.models import AccessToken
from idp.store.models import ApiKey
from idp.store.models import AuthorizationCode
from idp.store.models import Client
from idp.store.models import Connection
from idp.store.models import Organization
from idp.store.models import PasswordReset
from idp.store.models import RecoveryCode
from idp.store.models import RefreshToken
from idp.store.models import User
from idp.store.purge import Cutoffs
from idp.store.purge import count
from tests.prod_support import token_form

DAY = timedelta(days=1)
LIVE = 40
SCOPE = "leads:read"
#: The Shared Signals counts of a purge that found none of their rows (test_outbox_purge.py).
NO_SSF = " ssf_streams=0 ssf_deliveries=0 ssf_events=0 ssf_keys=0"


class Rows:
    """Builds the rows and remembers how many of each label it made."""

    def __init__(self, app, demo):
        self.now = utcnow()
        self.serial = 0
        with app.app_context():
            self.user_id = db.session.scalar(select(User.id))
            self.org_id = db.session.scalar(select(Organization.id))
            self.client_id = db.session.scalar(
                select(Client.id).where(Client.public_id == demo["clients"]["zapier"]["client_id"]))

    def digest(self) -> str:
        """A unique digest-shaped value."""
        self.serial += 1
        return f"{self.serial:064x}"

    def connections(self, n: int, ended: bool) -> list[dict]:
        """Connection rows; ended ones ended a month ago."""
        start = self.serial
        self.serial += n
        return [{
            "public_id": f"con_bulk{start + i:012d}", "user_id": self.user_id,
            "org_id": self.org_id, "client_id": self.client_id, "scope": SCOPE,
            "created_at": self.now - 40 * DAY, "activated_at": self.now - 40 * DAY,
            "ended_at": self.now - 30 * DAY if ended else None,
            "end_reason": "disconnected" if ended else None,
        } for i in range(n)]

    def access(self, connection_ids, n, label, expires_at) -> list[dict]:
        """Access-token rows spread over the given connections."""
        return [{"digest": self.digest(), "connection_id": connection_ids[i % len(connection_ids)],
                 "scope": label, "issued_at": expires_at - timedelta(hours=1),
                 "expires_at": expires_at} for i in range(n)]

    def refresh(self, connection_ids, n, label, expires_at, rotated_at=None, sealed=False):
        """Refresh-token rows (rotated ones optionally still carrying a seal)."""
        return [{"digest": self.digest(), "connection_id": connection_ids[i % len(connection_ids)],
                 "scope": label, "issued_at": self.now - 10 * DAY, "expires_at": expires_at,
                 "rotated_at": rotated_at, "successor_id": None,
                 "sealed_successor": b"s" * 200 if sealed else None} for i in range(n)]

    def codes(self, connection_ids, n, label, expires_at, used: bool) -> list[dict]:
        """Authorization-code rows."""
        return [{"digest": self.digest(), "connection_id": connection_ids[i % len(connection_ids)],
                 "client_id": self.client_id, "redirect_uri": "https://example.invalid/cb",
                 "redirect_uri_given": True, "scope": label, "created_at": expires_at - DAY / 1440,
                 "expires_at": expires_at, "used_at": expires_at - DAY / 2880 if used else None}
                for i in range(n)]


def bulk(model, rows: list[dict]) -> None:
    """One Core executemany insert."""
    db.session.execute(insert(model), rows)


def build(app, demo) -> dict:
    """Insert just over 100,000 rows; return the live connections' raw refresh tokens."""
    rows = Rows(app, demo)
    now, live_tokens = rows.now, {}
    with app.app_context():
        for ended in (True, False):
            bulk(Connection, rows.connections(100 if ended else 400 + LIVE, ended))
        ids = {ended: db.session.scalars(select(Connection.id).where(
            Connection.public_id.like("con_bulk%"),
            Connection.ended_at.isnot(None) if ended else Connection.ended_at.is_(None))
            .order_by(Connection.id)).all() for ended in (True, False)}
        ended_ids, history_ids, live_ids = ids[True], ids[False][:400], ids[False][400:]
        future = now + 30 * DAY
        # Access tokens: 57,000 to drop, 5,000 to keep.
        bulk(AccessToken, rows.access(history_ids, 52_000, "drop", now - 2 * DAY))
        bulk(AccessToken, rows.access(ended_ids, 5_000, "drop", future))
        bulk(AccessToken, rows.access(history_ids, 5_000, "keep", now - DAY / 2))
        # Codes: 16,000 to drop, 2,000 used ones kept within the retention.
        bulk(AuthorizationCode, rows.codes(history_ids, 10_000, "drop", now - DAY / 24, False))
        bulk(AuthorizationCode, rows.codes(history_ids, 3_000, "drop", now - 8 * DAY, True))
        bulk(AuthorizationCode, rows.codes(ended_ids, 3_000, "drop", future, False))
        bulk(AuthorizationCode, rows.codes(history_ids, 2_000, "keep", now - 2 * DAY, True))
        # Refresh tokens: 1,000 to drop; 20,500 rotated but unexpired kept (they detect reuse),
        # of which 20,000 carry stale seals and 500 are still inside the grace window.
        bulk(RefreshToken, rows.refresh(history_ids, 600, "drop", now - DAY, now - 2 * DAY,
                                        sealed=True))
        bulk(RefreshToken, rows.refresh(ended_ids, 400, "drop", future, now - 31 * DAY))
        bulk(RefreshToken, rows.refresh(history_ids, 20_000, "keep", future, now - DAY / 24,
                                        sealed=True))
        bulk(RefreshToken, rows.refresh(history_ids, 500, "keep-sealed", future,
                                        now - timedelta(seconds=5), sealed=True))
        # A kept token whose successor is doomed (a lifetime was shortened meanwhile).
        doomed = db.session.scalars(select(RefreshToken.id).where(
            RefreshToken.scope == "drop").limit(10)).all()
        keepers = db.session.scalars(select(RefreshToken.id).where(
            RefreshToken.scope == "keep").limit(10)).all()
        for keeper, successor in zip(keepers, doomed, strict=True):
            db.session.get(RefreshToken, keeper).successor_id = successor
        # The live connections: one current refresh and access token each, raw values known.
        for connection_id in live_ids:
            raw = cs.new_refresh_token()
            live_tokens[connection_id] = raw
            db.session.add(RefreshToken(digest=cs.digest(raw), connection_id=connection_id,
                                        scope=SCOPE, issued_at=now, expires_at=future))
            db.session.add(AccessToken(digest=cs.digest(cs.new_access_token()),
                                       connection_id=connection_id, scope=SCOPE, issued_at=now,
                                       expires_at=now + timedelta(hours=1)))
        db.session.commit()
    return live_tokens


def labelled(model) -> dict:
    """How many rows of each label a table holds."""
    return dict(db.session.execute(
        select(model.scope, func.count()).where(model.scope.in_(
            ["drop", "keep", "keep-sealed"])).group_by(model.scope)).all())


@pytest.fixture
def big(make_app, database_url):
    """An app over 100,000+ rows, and the live connections' refresh tokens."""
    app = make_app(IDP_ENDED_RETENTION_SECONDS=7 * 24 * 3600, IDP_REFRESH_GRACE_SECONDS=60)
    with app.app_context():
        demo = seed_demo()
    yield app, demo, build(app, demo)
    if database_url.startswith("postgresql"):
        # The next test empties tables row by row; tens of thousands of refresh tokens would
        # make that slow (each delete checks the unindexed successor_id), so truncate here.
        with app.app_context():
            db.session.remove()
            db.session.execute(text(
                "TRUNCATE refresh_tokens, access_tokens, authorization_codes RESTART IDENTITY"))
            db.session.commit()


def test_purge_removes_exactly_what_can_no_longer_matter_while_refreshes_run(big):
    app, demo, live_tokens = big
    with app.app_context():
        total = sum(db.session.scalar(select(func.count()).select_from(m))
                    for m in (AccessToken, AuthorizationCode, RefreshToken))
        assert total > 100_000
        before = count(db.session, Cutoffs.from_config(utcnow(), app.config))
    assert before.counts == {"codes": 16_000, "access_tokens": 57_000, "refresh_tokens": 1_000,
                             "seals_cleared": 20_600, "sessions": 0, "password_resets": 0,
                             "recovery_codes": 0, "old_key_secrets_cleared": 0,
                             "ssf_streams": 0, "ssf_deliveries": 0, "ssf_events": 0,
                             "ssf_keys": 0}

    stop, failures, successes = threading.Event(), [], []
    chains = list(live_tokens.items())

    def refresher(share):
        """Refresh this thread's connections over and over, keeping each successor."""
        client = app.test_client()
        held = dict(share)
        while not stop.is_set():
            for connection_id, raw in held.items():
                response = client.post("/oauth/token", data=token_form(
                    demo, grant_type="refresh_token", refresh_token=raw))
                if response.status_code != 200:
                    failures.append((response.status_code, response.get_data(as_text=True)))
                    return
                held[connection_id] = response.get_json()["refresh_token"]
                successes.append(1)
                time.sleep(0.02)  # traffic, not a busy loop hogging the interpreter
        live_tokens.update(held)

    threads = [threading.Thread(target=refresher, args=(chains[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    started = utcnow()
    try:
        with app.app_context():
            result = app.test_cli_runner().invoke(args=["purge", "--batch-size", "5000"])
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    print(f"\npurge: {result.output.strip()}; refreshes meanwhile: {len(successes)}, "
          f"failed: {len(failures)}")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"purged: codes=16000 access_tokens=57000 refresh_tokens=1000 "
                        r"seals_cleared=20600 sessions=0 password_resets=0 recovery_codes=0 "
                        r"old_key_secrets_cleared=0" + NO_SSF + r" in \d+\.\ds",
                        result.output.strip())
    assert failures == [] and successes

    with app.app_context():
        assert labelled(AccessToken) == {"keep": 5_000}
        assert labelled(AuthorizationCode) == {"keep": 2_000}
        assert labelled(RefreshToken) == {"keep": 20_000, "keep-sealed": 500}
        sealed = dict(db.session.execute(
            select(RefreshToken.scope, func.count()).where(
                RefreshToken.sealed_successor.isnot(None),
                RefreshToken.scope.in_(["keep", "keep-sealed"])).group_by(RefreshToken.scope)
        ).all())
        assert sealed == {"keep-sealed": 500}, "seals inside the grace window must stay"
        # Every live connection still has exactly the refresh token its client holds.
        for connection_id, raw in live_tokens.items():
            assert db.session.scalars(select(RefreshToken.digest).where(
                RefreshToken.connection_id == connection_id,
                RefreshToken.rotated_at.is_(None))).all() == [cs.digest(raw)]
        again = count(db.session, Cutoffs.from_config(started, app.config))
    assert again.counts == dict.fromkeys(again.counts, 0)
    client = app.test_client()
    for raw in list(live_tokens.values())[:5]:
        assert client.post("/oauth/token", data=token_form(
            demo, grant_type="refresh_token", refresh_token=raw)).status_code == 200


def test_dry_run_counts_and_changes_nothing(app, demo):
    with app.app_context():
        now = utcnow()
        connection = Connection(public_id="con_dry", user_id=db.session.scalar(select(User.id)),
                                org_id=db.session.scalar(select(Organization.id)),
                                client_id=db.session.scalar(select(Client.id)), scope=SCOPE,
                                created_at=now)
        db.session.add(connection)
        db.session.flush()
        db.session.add(AccessToken(digest="d" * 64, connection_id=connection.id, scope=SCOPE,
                                   issued_at=now - 3 * DAY, expires_at=now - 2 * DAY))
        db.session.commit()
        runner = app.test_cli_runner()
        dry = runner.invoke(args=["purge", "--dry-run"])
        assert dry.output.strip() == ("would purge: codes=0 access_tokens=1 refresh_tokens=0 "
                                      "seals_cleared=0 sessions=0 password_resets=0 "
                                      "recovery_codes=0 old_key_secrets_cleared=0" + NO_SSF)
        assert db.session.scalar(select(func.count()).select_from(AccessToken)) == 1
        assert runner.invoke(args=["purge"]).output.startswith(
            "purged: codes=0 access_tokens=1 refresh_tokens=0 seals_cleared=0 sessions=0 "
            "password_resets=0 recovery_codes=0 old_key_secrets_cleared=0" + NO_SSF + " in ")
        assert db.session.scalar(select(func.count()).select_from(AccessToken)) == 0


def _purge(app, *args) -> str:
    """Run ``flask purge`` and return its line without the time taken."""
    result = app.test_cli_runner().invoke(args=["purge", *args])
    assert result.exit_code == 0, result.output
    return re.sub(r" in \d+\.\ds$", "", result.output.strip())


def test_reset_links_go_once_used_or_expired(app, demo, clock):
    with app.app_context():
        user = db.session.scalar(select(User))
        now = utcnow()
        used = resets.issue(db.session, user, now, 3600)
        resets.issue(db.session, user, now - timedelta(hours=2), 3600)
        db.session.flush()
        resets.consume(db.session, resets.find(db.session, used, now), now)
        db.session.commit()
        # consume() spends every open link of the user, so make the one that stays open after.
        resets.issue(db.session, user, now, 3600)
        db.session.commit()
    assert _purge(app, "--batch-size", "1").endswith(
        " password_resets=2 recovery_codes=0 old_key_secrets_cleared=0" + NO_SSF)
    with app.app_context():
        assert db.session.scalars(select(PasswordReset.used_at)).all() == [None]
    clock.shift(3599)
    assert " password_resets=0 " in _purge(app)
    clock.shift(1)
    assert " password_resets=1 " in _purge(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PasswordReset)) == 0


def test_used_recovery_codes_go_and_unused_ones_stay(app, demo):
    with app.app_context():
        user = db.session.scalar(select(User))
        codes = two_step.new_recovery_codes(db.session, user, utcnow())
        for code in codes[:3]:
            assert two_step.use_recovery_code(db.session, user, code, utcnow())
        db.session.commit()
    assert _purge(app, "--dry-run").endswith(
        " password_resets=0 recovery_codes=3 old_key_secrets_cleared=0" + NO_SSF)
    assert _purge(app, "--batch-size", "2").endswith(
        " password_resets=0 recovery_codes=3 old_key_secrets_cleared=0" + NO_SSF)
    with app.app_context():
        user = db.session.scalar(select(User))
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 7
        assert two_step.recovery_codes_left(db.session, user) == 7
        assert not two_step.use_recovery_code(db.session, user, codes[0], utcnow())
        assert two_step.use_recovery_code(db.session, user, codes[3], utcnow())


def test_a_rolled_keys_old_secret_is_cleared_once_its_overlap_ends(app, client, demo, clock):
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        new = api_keys.roll(key, 3600)
        db.session.commit()
    old = demo["api_key"]
    assert _purge(app).endswith(" old_key_secrets_cleared=0" + NO_SSF)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"}).status_code == 200
    clock.shift(3600)
    assert _purge(app, "--dry-run").endswith(" old_key_secrets_cleared=1" + NO_SSF)
    assert _purge(app).endswith(" old_key_secrets_cleared=1" + NO_SSF)
    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        assert (key.previous_digest, key.previous_last4, key.previous_revoke_at) == (None,) * 3
        assert key.digest == cs.digest(new)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert _purge(app).endswith(" old_key_secrets_cleared=0" + NO_SSF)


@pytest.mark.parametrize("batch_size", ["0", "-1", "many"])
def test_batch_size_must_be_a_positive_number(app, batch_size):
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["purge", "--batch-size", batch_size])
    assert result.exit_code == 2
    assert "Invalid value for '--batch-size'" in result.output
