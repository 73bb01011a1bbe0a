"""One length rule for a presented client_id, the same width the store gives public ids."""

import pytest

from idp.core import secrets as cs
from idp.store.models import Client
from idp.store.models import ResourceServer


@pytest.mark.parametrize(("value", "plausible"), [
    (cs.new_public_id("cli_"), True),
    (cs.new_public_id("rs_"), True),
    ("c" * cs.MAX_CLIENT_ID, True),
    ("c" * (cs.MAX_CLIENT_ID + 1), False),
    ("", False),
    (None, False),
])
def test_only_a_present_id_no_wider_than_the_column_is_looked_up(value, plausible):
    assert cs.plausible_client_id(value) is plausible


@pytest.mark.parametrize("model", [Client, ResourceServer])
def test_no_storable_client_id_is_refused_as_too_long(model):
    assert model.__table__.c.public_id.type.length == cs.PUBLIC_ID_LENGTH == cs.MAX_CLIENT_ID
