"""The ceiling: a bare Flask JSON endpoint, with nothing behind it."""

from flask import Flask
from flask import jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    """A constant JSON answer."""
    return jsonify(hello="world")
