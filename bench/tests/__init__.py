"""Tests of the benchmark harness itself (no timing): ``.venv/bin/pytest bench/tests``."""
