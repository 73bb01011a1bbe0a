"""The Flask-free §4 helpers: header parsing, shape checks, challenges, bodies."""

import pytest

from idp.core import bearer
from idp.core.bearer import Denial


@pytest.mark.parametrize("header, expected", [
    (None, bearer.MISSING),
    ("", bearer.MALFORMED),
    ("Bearer", bearer.MALFORMED),
    ("Bearer    ", bearer.MALFORMED),
    ("Basic abc", bearer.MALFORMED),
    ("Bearertoken", bearer.MALFORMED),
    ("Bearer abc", "abc"),
    ("bearer abc", "abc"),
    ("BEARER   abc  ", "abc"),
])
def test_parse_authorization(header, expected):
    assert bearer.parse_authorization(header) == expected


@pytest.mark.parametrize("token, bad", [
    ("fe_k_" + "0" * 32, False),
    ("fe_k_" + "0" * 31, True),
    ("fe_k_" + "0" * 33, True),
    ("fe_k_" + "A" * 32, True),
    ("fe_k_" + "g" * 32, True),
    ("fe_at_" + "A" * 43, False),
    ("x" * bearer.MAX_TOKEN_LENGTH, False),
    ("x" * (bearer.MAX_TOKEN_LENGTH + 1), True),
    ("tok€n", True),
    ("a b", True),
    ("abc==", False),
    ("=abc", True),
])
def test_check_shape(token, bad):
    assert (bearer.check_shape(token) is not None) is bad


@pytest.mark.parametrize("denial, challenge", [
    (bearer.MISSING, 'Bearer realm="FlowEstate"'),
    (bearer.MALFORMED, 'Bearer realm="FlowEstate", error="invalid_token"'),
    (bearer.denial("token_expired"), 'Bearer realm="FlowEstate", error="invalid_token"'),
    (bearer.denial("key_inactive"), None),
    (bearer.denial("org_unbound"), None),
    (bearer.denial("insufficient_scope", needed=("leads:read", "leads:write")),
     'Bearer realm="FlowEstate", error="insufficient_scope", scope="leads:read leads:write"'),
])
def test_www_authenticate(denial, challenge):
    assert bearer.www_authenticate(denial) == challenge


@pytest.mark.parametrize("reason", sorted(bearer.STATUSES))
def test_every_reason_has_a_status_a_message_and_a_round_trip(reason):
    denial = bearer.denial(reason)
    status, body, _headers = bearer.denial_parts(denial)
    assert status == bearer.STATUSES[reason] in (401, 403)
    assert body == {"error": {"code": denial.code, "reason": reason,
                              "message": bearer.MESSAGES[reason]}}
    assert bearer.denial_from_dict(denial.as_dict()) == Denial(
        status, reason, presented=reason != "missing_authorization")


@pytest.mark.parametrize("data", [
    None, [], {}, {"status": 401}, {"status": 403, "reason": "unknown_token"},
    {"status": 401, "reason": "not_a_reason"}, {"status": "401", "reason": "unknown_token"},
])
def test_denial_from_dict_refuses_what_is_not_ours(data):
    assert bearer.denial_from_dict(data) is None


def test_unavailable_is_a_503_with_retry_after():
    status, body, headers = bearer.unavailable_parts()
    assert status == 503 and headers == {"Retry-After": "5"}
    assert body["error"]["reason"] == "temporarily_unavailable"
