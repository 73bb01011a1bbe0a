"""The data-set helpers: PKCE challenge, even picks, sizes."""

import pytest

from bench.dataset import Shape
from bench.dataset import picks
from bench.dataset import s256


def test_s256_matches_rfc7636_appendix_b():
    """The worked example of RFC 7636 Appendix B."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(("total", "wanted", "count"), [(10, 3, 3), (5, 9, 5), (7, 0, 0)])
def test_picks_are_distinct_in_range_and_capped(total, wanted, count):
    """Never more picks than items, all distinct, all in range."""
    chosen = picks(total, wanted)
    assert len(chosen) == count
    assert all(0 <= i < total for i in chosen)


def test_picks_spread_over_the_whole_range():
    """Picks reach both ends rather than bunching at the start."""
    chosen = picks(1_000_000, 4)
    assert min(chosen) == 0 and max(chosen) == 750_000


def test_shape_scales_with_size_and_keeps_minimums():
    """Orgs, people and connections follow the size, never below a handful."""
    big, tiny = Shape(1_000_000, 10, 10), Shape(10, 10, 10)
    assert (big.orgs, big.users, big.connections) == (1000, 10_000, 100_000)
    assert (tiny.orgs, tiny.users, tiny.connections) == (4, 8, 8)
