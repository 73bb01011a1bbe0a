"""Make the toolkit's schema and seed it through its own models; print the raw values as JSON.

Run by the harness with the peers' Python, from this directory:
``python seed.py SIZE SAMPLE POOL OUT``. ``SIZE`` access tokens, each with its refresh token,
spread over ``SIZE / 10`` users; ``SAMPLE`` of those access tokens are handed to the
introspection plan; ``POOL`` further pairs are the single-use refresh tokens of the refresh
plan, each in its own token family. Both clients are confidential; their secrets are stored
unhashed (``hash_client_secret=False``), see docs/PERFORMANCE.md, "Peers".
"""

import json
import os
import secrets
import sys
import uuid
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.models import AccessToken  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402
from oauth2_provider.models import RefreshToken  # noqa: E402
from oauthlib.common import generate_token  # noqa: E402

#: Rows per INSERT statement in the bulk loads.
BATCH = 2000
LIVE_FOR = timedelta(hours=3)


def application(name: str, grant: str, owner) -> tuple[Application, str]:
    """A confidential client and its raw secret."""
    secret = secrets.token_urlsafe(32)
    app = Application.objects.create(
        name=name, user=owner, client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant, client_secret=secret, hash_client_secret=False,
        redirect_uris="https://zapier.example/callback", algorithm="",
    )
    return app, secret


def pairs(count: int, users: list, app: Application, scope: str) -> tuple[list, list]:
    """``count`` live access tokens, each with its refresh token: (raw refresh, raw access)."""
    now = timezone.now()
    access, refresh_raw = [], []
    for i in range(count):
        access.append(AccessToken(user=users[i % len(users)], application=app,
                                  token=generate_token(), expires=now + LIVE_FOR, scope=scope))
    access = AccessToken.objects.bulk_create(access, batch_size=BATCH)
    refresh = []
    for at in access:
        raw = generate_token()
        refresh_raw.append(raw)
        refresh.append(RefreshToken(user=at.user, application=app, token=raw, access_token=at,
                                    token_family=uuid.uuid4()))
    RefreshToken.objects.bulk_create(refresh, batch_size=BATCH)
    return refresh_raw, [at.token for at in access]


def main(size: int, sample: int, pool: int, out: str) -> None:
    """Migrate, seed, and write what the load plans need."""
    call_command("migrate", verbosity=0)
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"agent{u}", password="!") for u in range(max(size // 10, 1))],
        batch_size=BATCH)
    client, client_secret = application(
        "Zapier", Application.GRANT_AUTHORIZATION_CODE, users[0])
    rs, rs_secret = application(
        "FlowEstate API", Application.GRANT_CLIENT_CREDENTIALS, users[0])
    _, stored = pairs(size, users, client, "read")
    step = max(size // sample, 1)
    refresh_pool, _ = pairs(pool, users, client, "read")
    values = {
        "client_id": client.client_id, "client_secret": client_secret,
        "rs_id": rs.client_id, "rs_secret": rs_secret,
        "access_tokens": stored[::step][:sample], "refresh_pool": refresh_pool,
        "counts": {"users": User.objects.count(), "access tokens": AccessToken.objects.count(),
                   "refresh tokens": RefreshToken.objects.count()},
    }
    with open(out, "w") as f:
        json.dump(values, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
