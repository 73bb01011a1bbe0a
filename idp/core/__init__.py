"""The pure rules: bearer answers, credential judgement, scopes, secrets, the clock.

Nothing here imports Flask, Werkzeug, SQLAlchemy, Authlib, or any of idp outside ``idp.core``
(tests/core/test_core_purity.py checks this transitively). Callers pass in plain rows, the
clock reading and the settings, so introspection, ``/api/v1/me``, the token endpoint and the
tests reach the same code.
"""
