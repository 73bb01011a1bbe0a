"""Load benchmark of the IdP's hot paths against a bare-Flask ceiling, under gunicorn."""
