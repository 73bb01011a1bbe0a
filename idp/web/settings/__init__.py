"""The settings pages: Connected Apps, API keys, sessions, activity, security."""
