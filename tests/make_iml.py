"""A small interpreter of Make's IML templates, enough to run connectors/make/ as Make does.

It covers what the connection uses and nothing more: ``{{…}}`` placeholders over dotted paths,
single-quoted strings and numbers, one comparison (``<``, ``>``, ``<=``, ``>=``, ``=``), and the
functions in ``FUNCTIONS``. A template that is a single placeholder keeps its value's type (a
date stays a date, a list stays a list), as in Make. Not covered (docs/connectors.md): arithmetic,
``if``/``switch``, brackets in paths, custom IML functions, pagination and iterators.
"""

import base64
import hashlib
import re
import uuid
from datetime import datetime
from datetime import timedelta

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
TOKEN = re.compile(r"\s*(?:('[^']*')|(\d+(?:\.\d+)?)|(<=|>=|<|>|=|\(|\)|,)|([A-Za-z_][\w.]*))")
COMPARE = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
           ">=": lambda a, b: a >= b, "=": lambda a, b: a == b}


def _sha256(text, encoding="hex"):
    """IML ``sha256(text; [encoding])``: hex by default, or base64."""
    raw = hashlib.sha256(str(text).encode()).digest()
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


#: The IML functions the connection calls, with Make's meaning.
FUNCTIONS = {
    "addSeconds": lambda date, n: date + timedelta(seconds=float(n)),
    "addMinutes": lambda date, n: date + timedelta(minutes=float(n)),
    "ifempty": lambda value, fallback: fallback if value in (None, "", []) else value,
    "join": lambda items, sep: sep.join(str(i) for i in items),
    "replace": lambda text, old, new: str(text).replace(old, new),
    "sha256": _sha256,
}


class Expression:
    """One placeholder's expression, parsed by recursive descent and evaluated on a context."""

    def __init__(self, source: str):
        """Split ``source`` into tokens."""
        self.tokens, position = [], 0
        while position < len(source.rstrip()):
            match = TOKEN.match(source, position)
            if not match:
                raise ValueError(f"IML this interpreter cannot read: {source!r}")
            self.tokens.append(next(g for g in match.groups() if g is not None))
            position = match.end()
        self.at = 0

    def evaluate(self, context: dict):
        """The value of the whole expression."""
        self.at = 0
        left = self._primary(context)
        if self.at < len(self.tokens) and self.tokens[self.at] in COMPARE:
            operator = self.tokens[self.at]
            self.at += 1
            left = COMPARE[operator](left, self._primary(context))
        if self.at != len(self.tokens):
            raise ValueError(f"Unexpected {self.tokens[self.at]!r}")
        return left

    def _primary(self, context):
        """A string, a number, a function call, or a dotted path (``now``, ``uuid`` included)."""
        token = self.tokens[self.at]
        self.at += 1
        if token.startswith("'"):
            return token[1:-1]
        if token[0].isdigit():
            return float(token) if "." in token else int(token)
        if self.at < len(self.tokens) and self.tokens[self.at] == "(":
            self.at += 1
            args = []
            while self.tokens[self.at] != ")":
                args.append(self._primary(context))
                if self.tokens[self.at] == ",":
                    self.at += 1
            self.at += 1
            return FUNCTIONS[token](*args)
        return lookup(context, token)


def lookup(context: dict, path: str):
    """A dotted path in the context; a missing step is empty, as in Make."""
    if path == "now":
        return context.get("now") or datetime.now()
    if path == "uuid":
        return str(uuid.uuid4())
    value = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def render(template, context: dict):
    """Evaluate every placeholder of a template (strings, lists and objects, recursively)."""
    if isinstance(template, dict):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, context) for value in template]
    if not isinstance(template, str):
        return template
    whole = PLACEHOLDER.fullmatch(template)
    if whole and "}}" not in whole.group(1):
        return Expression(whole.group(1)).evaluate(context)

    def text(match):
        """One placeholder rendered inside a string."""
        value = Expression(match.group(1)).evaluate(context)
        return "" if value is None else str(value)

    return PLACEHOLDER.sub(text, template)
