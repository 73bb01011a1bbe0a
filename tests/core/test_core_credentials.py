"""The §4 judgement of plain rows, in its fixed order, with no database or app in sight."""

from datetime import datetime
from datetime import timedelta

import pytest

from idp.core import secrets as cs
from idp.core.credentials import API_KEY
from idp.core.credentials import OAUTH
from idp.core.credentials import UNKNOWN
from idp.core.credentials import AccessTokenRow
from idp.core.credentials import ApiKeyRow
from idp.core.credentials import Credential
from idp.core.credentials import bearer_kind
from idp.core.credentials import judge_access_token
from idp.core.credentials import judge_api_key
from idp.core.credentials import require_scopes

NOW = datetime(2026, 12, 1, 12, 0, 0)
HOUR = timedelta(hours=1)
PRESENTED = cs.digest("fe_k_" + "0" * 32)
ROLLED = cs.digest("fe_k_" + "1" * 32)


def key_row(**changes) -> ApiKeyRow:
    """A good key of a live organization, found by its current secret."""
    row = ApiKeyRow(
        pk=7, previous_digest=None, previous_revoke_at=None, key_id="key_1", name="Zapier",
        scopes="leads:read contacts:read", active=True, created_at=NOW - HOUR, expires_at=None,
        last_used_at=None, org_id="org_1", org_name="Acme", suspended=False,
    )
    return row._replace(**changes)


def token_row(**changes) -> AccessTokenRow:
    """A live access token of a live connection, client, membership and organization."""
    row = AccessTokenRow(
        scope="leads:read", issued_at=NOW - HOUR, expires_at=NOW + HOUR, connection_pk=3,
        connection_id="con_1", ended_at=None, last_used_at=None, org_pk=5, org_id="org_1",
        org_name="Acme", suspended=False, user_id="usr_1", user_email="a@example.com",
        user_name="Ada", client_id="cli_1", client_name="Zapier", client_enabled=True,
        org_allowlist=None, membership_pk=11,
    )
    return row._replace(**changes)


@pytest.mark.parametrize(("token", "kind"), [
    ("fe_k_" + "0" * 32, API_KEY),
    ("fe_at_" + "A" * 43, OAUTH),
])
def test_the_prefix_alone_says_which_table_to_ask(token, kind):
    assert bearer_kind(token) == kind


@pytest.mark.parametrize(("token", "reason"), [
    ("fe_rt_" + "A" * 43, "unknown_token"),
    ("fe_k_" + "A" * 32, "malformed_authorization"),
    ("x" * 600, "malformed_authorization"),
])
def test_no_other_value_is_a_bearer(token, reason):
    assert bearer_kind(token).reason == reason


def test_a_good_key_becomes_its_organizations_credential():
    credential = judge_api_key(key_row(), PRESENTED, NOW)
    assert isinstance(credential, Credential)
    assert (credential.kind, credential.org_id, credential.row_id, credential.rate_key) == (
        API_KEY, "org_1", 7, "key_1")
    assert credential.scopes == {"leads:read", "contacts:read"}


@pytest.mark.parametrize(("changes", "reason"), [
    ({"active": False, "expires_at": NOW, "suspended": True}, "key_inactive"),
    ({"expires_at": NOW, "suspended": True}, "key_expired"),
    ({"suspended": True}, "org_unbound"),
    ({"previous_digest": PRESENTED, "previous_revoke_at": NOW, "active": False}, "unknown_token"),
], ids=["disabled before expired", "expired before suspended", "suspended",
        "rolled away before disabled"])
def test_key_rows_are_judged_in_spec_order(changes, reason):
    assert judge_api_key(key_row(**changes), PRESENTED, NOW).reason == reason


def test_a_rolled_secret_works_until_its_overlap_ends():
    overlapping = key_row(previous_digest=PRESENTED, previous_revoke_at=NOW + HOUR)
    assert isinstance(judge_api_key(overlapping, PRESENTED, NOW), Credential)
    # The current secret of a key that was rolled is never mistaken for the old one.
    rolled = key_row(previous_digest=ROLLED, previous_revoke_at=NOW - HOUR)
    assert isinstance(judge_api_key(rolled, PRESENTED, NOW), Credential)


def test_no_row_is_an_unknown_bearer():
    assert judge_api_key(None, PRESENTED, NOW) is UNKNOWN
    assert judge_access_token(None, NOW) is UNKNOWN


def test_a_good_token_becomes_its_connections_credential():
    credential = judge_access_token(token_row(), NOW)
    assert isinstance(credential, Credential)
    assert (credential.kind, credential.user_id, credential.client_id, credential.row_id,
            credential.rate_key) == (OAUTH, "usr_1", "cli_1", 3, "con_1")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"ended_at": NOW, "expires_at": NOW, "client_enabled": False}, "token_revoked"),
    ({"expires_at": NOW, "client_enabled": False}, "token_expired"),
    ({"client_enabled": False, "membership_pk": None}, "client_disabled"),
    ({"membership_pk": None}, "org_unbound"),
    ({"suspended": True}, "org_unbound"),
    ({"org_allowlist": [6]}, "org_unbound"),
], ids=["revoked first", "expired before disabled", "disabled before unbound", "left the org",
        "suspended org", "not on the allowlist"])
def test_token_rows_are_judged_in_spec_order(changes, reason):
    assert judge_access_token(token_row(**changes), NOW).reason == reason


def test_an_allowlist_naming_the_org_lets_it_through():
    assert isinstance(judge_access_token(token_row(org_allowlist=[5]), NOW), Credential)


def test_write_is_not_read():
    credential = judge_access_token(token_row(), NOW)
    assert require_scopes(credential, "leads:read") is None
    refusal = require_scopes(credential, "leads:read", "leads:write")
    assert (refusal.status, refusal.reason) == (403, "insufficient_scope")
