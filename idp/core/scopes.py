"""The scope catalogue and scope-string handling (RFC 6749 §3.3)."""

import re

#: Default catalogue (SPEC §9): scope -> one plain-words line for people.
DEFAULT_SCOPES = {
    "leads:read": "See your leads",
    "leads:write": "Create and change leads",
    "contacts:read": "See your contacts",
    "contacts:write": "Create and change contacts",
    "properties:read": "See your property listings",
    "properties:write": "Create and change property listings",
    "pipelines:read": "See your pipelines and deal stages",
    "pipelines:write": "Create and change pipelines and deal stages",
    "tasks:read": "See your tasks",
    "tasks:write": "Create and change tasks",
    "webhooks:read": "See your webhook subscriptions",
    "webhooks:write": "Create and delete webhook subscriptions",
}

#: Spaces are the RFC separator; commas are accepted because connector configs use them.
_SEPARATORS = re.compile(r"[\s,]+")


def parse_scope(value: str | None) -> list[str]:
    """Split a scope string on spaces or commas, dropping empties and duplicates, in order."""
    if not value:
        return []
    seen: dict[str, None] = {}
    for item in _SEPARATORS.split(value.strip()):
        if item:
            seen.setdefault(item, None)
    return list(seen)


def join_scope(scopes) -> str:
    """Render scopes as one space-separated string in catalogue-independent sorted order."""
    return " ".join(sorted(set(scopes)))


def describe(scopes, catalogue: dict[str, str]) -> list[tuple[str, str]]:
    """Pair each scope with its plain-words description for pages."""
    return [(s, catalogue.get(s, s)) for s in sorted(set(scopes))]


def group_by_resource(described: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Gather described scopes per resource (``leads:read`` and ``leads:write`` together)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for scope, words in described:
        groups.setdefault(scope.partition(":")[0], []).append((scope, words))
    return list(groups.items())
