"""Fixtures the kit's stream tests share: a fake transmitter and the clock both sides read."""

import pytest

from tests.kit.ssf_support import FakeTransmitter
from tests.kit_support import FakeClock


@pytest.fixture
def transmitter():
    """A fake transmitter serving on a free loopback port."""
    with FakeTransmitter() as served:
        yield served


@pytest.fixture
def ticks():
    """The clock the judge and the receiver share."""
    return FakeClock()
