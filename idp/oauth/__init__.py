"""Authlib wiring: the authorization server, its grants and endpoints."""
