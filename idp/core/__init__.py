"""The credential core: no Flask request, session or app context inside.

Everything here takes its database session, clock and settings as arguments so that
introspection, ``/api/v1/me``, the token endpoint and the tests reach the same code.
"""
