"""What each rate limit does while the shared counter store (Redis) cannot be reached.

Flask-Limiter is configured (idp/config.py) to switch to counters in this process when Redis
fails and to swallow storage errors, so a Redis outage never becomes an error response. On top
of that each limit picks one of two behaviours (OPERATIONS.md, "Redis is down"):

* fail open, not counted at all: the token and revocation endpoints, introspection and the
  per-credential API limit. A refused refresh or introspection during a counter outage would be
  an outage of every connector; these limits protect capacity, not secrets (every credential
  they guard carries 128 to 256 random bits), so briefly unlimited traffic is the lesser harm.
* counted per process: sign-in. Passwords are guessable, so brute-force protection must not
  vanish; with N processes an attacker gets at most N times the configured attempts.
"""

from idp.extensions import limiter


def shared_store_down() -> bool:
    """True while Flask-Limiter counts in its in-process fallback because the store failed."""
    return bool(limiter.enabled and limiter.limiter.storage is not limiter.storage)


def fail_open() -> bool:
    """``exempt_when`` for limits that are not counted while the shared store is down."""
    return shared_store_down()
