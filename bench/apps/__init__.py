"""Reference apps served beside the IdP under the same gunicorn config."""
