"""What the results were measured on: machine, software versions, date."""

import os
import platform
import sqlite3
import subprocess
from datetime import UTC
from datetime import datetime
from importlib import metadata

import psycopg

from bench.settings import PG_ADMIN_URL
from bench.settings import ROOT

#: Python packages whose versions shape the figures.
PACKAGES = ("Flask", "gunicorn", "SQLAlchemy", "Authlib", "Flask-Limiter", "psycopg")


def cpu_model() -> str:
    """The processor's name as the kernel reports it."""
    for line in open("/proc/cpuinfo").read().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    """Installed memory in GiB."""
    for line in open("/proc/meminfo").read().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def command_output(argv: list[str]) -> str:
    """First line a command prints, or a dash when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "-"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "-"


def postgres_version(databases) -> str:
    """The PostgreSQL server's version, when the run used it."""
    if "postgresql" not in databases:
        return "not used"
    with psycopg.connect(PG_ADMIN_URL) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def collect(databases) -> dict[str, str]:
    """Facts for the docs header."""
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in PACKAGES)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB, "
                   f"Linux {platform.release()}",
        "software": f"Python {platform.python_version()}, {versions}",
        "databases": f"SQLite {sqlite3.sqlite_version}, PostgreSQL {postgres_version(databases)}",
        "tools": f"{command_output(['wrk', '--version']).split(' Copyright')[0]}, "
                 f"{command_output(['redis-server', '--version']).split(' sha=')[0]}",
    }
