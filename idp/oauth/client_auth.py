"""Client authentication by HTTP Basic: connector clients at the token and revocation
endpoints, resource servers at introspection (RFC 6749 §2.3.1)."""

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import current_app

from idp.oauth import resource_auth


def basic_credentials(headers) -> tuple[str | None, str | None]:
    """HTTP Basic client credentials, percent-decoded (RFC 6749 §2.3.1); (None, None) when the
    header is not Basic or cannot be decoded.

    RFC 7617 §2.1 lets a server expect UTF-8 and RFC 6749 §2.3.1 form-encodes UTF-8 octets, so
    bytes that are not UTF-8 can name no registered client; they are read like any other Basic
    header we cannot decode (Authlib itself would raise, a 500).
    """
    try:
        return extract_basic_authorization(headers)
    except UnicodeDecodeError:
        return None, None


def client_secret_basic(query_client, request):
    """Authlib's ``client_secret_basic`` method, reading the header with basic_credentials."""
    client_id, secret = basic_credentials(request.headers)
    if not client_id or not secret:
        return None
    client = query_client(client_id)
    if client is None:
        # RFC 6749 §5.2: credentials sent in the Authorization header fail with 401.
        raise InvalidClientError(
            status_code=401, description="The client does not exist on this server."
        )
    return client if client.check_client_secret(secret) else None


def authenticate_resource_server(conn, headers, *, remembered: bool = True) -> str | None:
    """Public id of the registered, enabled resource server whose Basic credentials these are.

    ``remembered`` false reads the database every time, without the few-second memo that
    spares introspection a lookup: for calls whose success must mean the server is enabled
    now.
    """
    client_id, secret = basic_credentials(headers)
    memo = (current_app.extensions["idp.resource_server_memo"] if remembered
            else resource_auth.NO_MEMO)
    return resource_auth.check(conn, memo, client_id, secret)
