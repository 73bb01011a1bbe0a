"""Thin blueprints: auth, oauth, settings, api, health."""
