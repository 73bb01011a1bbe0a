"""Serve the OpenAPI 3.1 description of the JSON endpoints (docs/openapi.yaml)."""

from pathlib import Path

from flask import Blueprint
from flask import Response

bp = Blueprint("openapi", __name__)

#: The document, kept beside the other docs so it is reviewed like them.
DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
#: RFC 9512 media type for YAML.
MEDIA_TYPE = "application/yaml"


@bp.get("/openapi.yaml")
def document():
    """The document as written; cacheable, it changes only with a deploy."""
    response = Response(DOCUMENT.read_bytes(), mimetype=MEDIA_TYPE)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
