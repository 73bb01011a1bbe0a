"""Column types the models share."""

from sqlalchemy import String

from idp.core.secrets import PUBLIC_ID_LENGTH

#: A SHA-256 hex digest: credentials are stored only as these (SPEC §2).
DIGEST = String(64)
#: A public id such as ``org_…`` or ``cli_…``.
PUBLIC_ID = String(PUBLIC_ID_LENGTH)
