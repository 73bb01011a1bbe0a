"""The floor: Flask answering one indexed lookup of an API key by its SHA-256 digest.

It reads the same seeded database as the IdP (``DATABASE_URL``), so the gap between this and
the IdP is what the IdP adds on top of the one query it cannot avoid.
"""

import hashlib
import os

from flask import Flask
from flask import jsonify
from flask import request
from sqlalchemy import create_engine
from sqlalchemy import text

app = Flask(__name__)
engine = create_engine(os.environ["DATABASE_URL"])
QUERY = text("SELECT public_id FROM api_keys WHERE digest = :digest")


@app.get("/lookup")
def lookup():
    """Digest the bearer, find its row, name it."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    with engine.connect() as conn:
        found = conn.execute(QUERY, {"digest": digest}).scalar()
    if found is None:
        return jsonify(found=None), 404
    return jsonify(found=found)


@app.get("/healthz")
def healthz():
    """Readiness probe for the harness."""
    return jsonify(status="ok")
