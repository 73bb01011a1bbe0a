"""The rows of the table: what each sends, to which server, with which credentials."""

import base64
from dataclasses import dataclass
from urllib.parse import urlencode

from bench.dataset import Seeded
from bench.load import Plan

FORM = "application/x-www-form-urlencoded"
#: Row keys in table order, with the words the report uses for them.
LABELS = {
    "ceiling": "bare Flask JSON (ceiling)",
    "floor": "one indexed lookup by SHA-256 (floor)",
    "introspect_key": "introspection, API key",
    "introspect_token": "introspection, access token",
    "me_key": "/api/v1/me, API key",
    "me_token": "/api/v1/me, access token",
    "refresh": "refresh grant with rotation",
    "code": "code exchange (PKCE)",
    # Peers (--peers): the data set column names the release.
    "dot_introspect": "django-oauth-toolkit introspection",
    "dot_refresh": "django-oauth-toolkit refresh, rotation",
    "oidc_introspect": "oidc-provider introspection",
    "oidc_refresh": "oidc-provider refresh, rotation",
}
#: Rows whose credentials are used once each.
SINGLE_USE = ("refresh", "code", "dot_refresh", "oidc_refresh")


@dataclass(frozen=True)
class Row:
    """One kind of request against one server, with the credentials it walks through."""

    key: str
    #: "ceiling", "floor" or "idp": which server of the data set answers it ("peer": its own).
    server: str
    plan: Plan
    values: tuple[str, ...] = ()
    #: Requests/s a single-use pool was sized for, when not the run's ``pool_rate``.
    pool_rate: int | None = None

    @property
    def single_use(self) -> bool:
        """Whether every request consumes a credential for good."""
        return self.key in SINGLE_USE


def basic(user: str, password: str) -> str:
    """An HTTP Basic authorization value (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def ceiling_row() -> Row:
    """Hello world, the most a Flask app can answer under this server config."""
    return Row("ceiling", "ceiling", Plan("GET", "/hello", {}, None, ('"hello"',), cycle=True))


def data_set_rows(seeded: Seeded) -> list[Row]:
    """The floor and the IdP rows of one seeded data set."""
    bearer = {"Authorization": "Bearer {value}"}
    introspect = {"Authorization": basic(seeded.rs_id, seeded.rs_secret), "Content-Type": FORM}
    client = urlencode({"client_id": seeded.client_id, "client_secret": seeded.client_secret})
    token_form = {"Content-Type": FORM}
    code_rest = urlencode({"redirect_uri": seeded.redirect_uri,
                           "code_verifier": seeded.code_verifier})
    keys, tokens = tuple(seeded.api_keys), tuple(seeded.access_tokens)
    active = '"active":%s*true'
    return [
        Row("floor", "floor",
            Plan("GET", "/lookup", bearer, None, ('"found":%s*"key_',), cycle=True), keys),
        Row("introspect_key", "idp",
            Plan("POST", "/oauth/introspect", introspect, "token={value}",
                 (active, '"token_type":%s*"api_key"'), cycle=True), keys),
        Row("introspect_token", "idp",
            Plan("POST", "/oauth/introspect", introspect, "token={value}",
                 (active, '"token_type":%s*"access_token"'), cycle=True), tokens),
        Row("me_key", "idp",
            Plan("GET", "/api/v1/me", bearer, None, ('"type":%s*"api_key"',), cycle=True), keys),
        Row("me_token", "idp",
            Plan("GET", "/api/v1/me", bearer, None, ('"type":%s*"oauth"',), cycle=True), tokens),
        Row("refresh", "idp",
            Plan("POST", "/oauth/token", token_form,
                 "grant_type=refresh_token&refresh_token={value}&" + client,
                 ('"refresh_token":%s*"fe_rt_', '"access_token":%s*"fe_at_'), cycle=False),
            tuple(seeded.refresh_pool)),
        Row("code", "idp",
            Plan("POST", "/oauth/token", token_form,
                 "grant_type=authorization_code&code={value}&" + code_rest + "&" + client,
                 ('"access_token":%s*"fe_at_', '"refresh_token":%s*"fe_rt_'), cycle=False),
            tuple(seeded.code_pool)),
    ]
