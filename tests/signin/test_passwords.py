"""The password policy (idp/signin/passwords.py) and the email check (idp/store/validation.py)."""

import pytest

from idp.signin.passwords import PasswordPolicyError
from idp.signin.passwords import check_password_policy
from idp.signin.passwords import common_passwords
from idp.store.validation import ValidationError
from idp.store.validation import check_email


def test_the_shipped_list_is_the_top_ten_thousand_lowercased():
    listed = common_passwords()
    assert len(listed) == 10000
    assert {"123456", "password", "qwerty123456"} <= listed
    assert all(p == p.lower() for p in listed)


@pytest.mark.parametrize("password", [
    "plum-ladder-quietly-47", "Tr0ub4dor&3 horse", "a" * 11 + "b",
])
def test_good_passwords_pass(password):
    check_password_policy(password, "owner@example.com")


@pytest.mark.parametrize(("password", "message"), [
    ("x" * 11, "at least 12"),
    ("x" * 1025, "at most 1024"),
    ("Password1234", "common passwords"),
    ("zzzzzzzzzzzz", "repeat one character"),
    ("owner@example.com", "email address"),
    ("OWNER@example.com", "email address"),
])
def test_weak_passwords_are_refused(password, message):
    with pytest.raises(PasswordPolicyError, match=message):
        check_password_policy(password, "owner@example.com")


@pytest.mark.parametrize(("typed", "kept"), [
    ("Ann@Example.com", "ann@example.com"),
    (" o'neil+crm@sub.example.co.uk ", "o'neil+crm@sub.example.co.uk"),
    ("ann@bücher.example", "ann@bücher.example"),
    ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
])
def test_valid_emails_are_kept_lowercased(typed, kept):
    assert check_email(typed) == kept


@pytest.mark.parametrize("typed", [
    "", "ann", "@example.com", "ann@", "ann@example", "ann..b@example.com", ".ann@example.com",
    "ann@exa_mple.com", "ann@example..com", "ann@192.168.0.1", '"ann"@example.com',
    "ann@exa\nmple.com", "ann@ex ample.com",
])
def test_invalid_emails_are_refused(typed):
    with pytest.raises(ValidationError):
        check_email(typed)
