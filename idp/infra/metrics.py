"""Prometheus metrics, summed across gunicorn's workers (docs/OPERATIONS.md, "Monitoring").

On only when ``IDP_METRICS_BIND`` is set. Then gunicorn's master (idp/infra/gunicorn_conf.py) gives
every worker a private directory in ``PROMETHEUS_MULTIPROC_DIR``, where prometheus_client
keeps each process's values in memory-mapped files; the master alone serves ``/metrics`` on
that address, adding up the files of all workers, live and dead. The public port never
serves them. Off, every hook below returns at once, so the hot paths pay nothing.

The metrics themselves, and how an answer is counted, are in idp/infra/metric_families.py.
"""

from time import perf_counter

from flask import request
from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess
from prometheus_client import start_http_server
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from idp.infra import current
from idp.infra.config import metrics_address
from idp.infra.extensions import db
from idp.infra.metric_families import LIMIT
from idp.infra.metric_families import REFRESH
from idp.infra.metric_families import Metrics
from idp.infra.metric_families import quiet
from idp.infra.metric_families import stamp

#: The process's metrics once an app with IDP_METRICS_BIND was made; None while off.
_metrics = None


def registry() -> CollectorRegistry | None:
    """This process's own registry (tests read it; the master serves the shared files)."""
    return _metrics.registry if _metrics is not None else None


def _observe(response):
    """After-request hook: count the answer; the answer goes out whatever happens here."""
    _metrics.count_answer(response)
    return response


def observe(endpoint: str, response, environ: dict) -> None:
    """Count an answer the lean path made (idp/web/lean.py), as the hook above counts Flask's."""
    if _metrics is not None:
        _metrics.count(endpoint, response, environ)


def refresh_outcome(outcome: str) -> None:
    """Note how a refresh was settled: rotated, grace_replay, successor_unavailable or
    reuse_ended (counted with the answer)."""
    if _metrics is not None:
        request.environ[REFRESH] = outcome


def note_limit(scope: str) -> None:
    """Note the limit a request breached, so its 429 is counted under that limit's name."""
    if _metrics is None:
        return
    environ = current.environ()
    if environ is not None:
        environ[LIMIT] = scope


def connection_ended(reason: str) -> None:
    """Count a connection ended (code_replay, refresh_reuse, revoked_by_client, ...)."""
    if _metrics is not None:
        _increment(_metrics.connections_ended, reason)


def database_fault(error: Exception) -> None:
    """Count a database fault answered 503, by :func:`fault_kind`."""
    if _metrics is not None:
        _increment(_metrics.database_faults, fault_kind(error))


@quiet
def _increment(counter, label: str) -> None:
    """Add one to ``counter`` under ``label``."""
    counter.labels(label).inc()


def fault_kind(error: Exception) -> str:
    """``pool_timeout``, ``lock_timeout``, ``unavailable`` (connection refused or lost) or
    ``other``: what an operator does differently for each."""
    if isinstance(error, PoolTimeout):
        return "pool_timeout"
    original = getattr(error, "orig", None)
    # PostgreSQL's lock_not_available (lock_timeout), or SQLite's busy timeout.
    if getattr(original, "sqlstate", None) == "55P03" or "database is locked" in str(original):
        return "lock_timeout"
    if isinstance(error, OperationalError | InterfaceError):
        return "unavailable"
    return "other"


def set_clock_offset(seconds: float) -> None:
    """Record this host's offset from the database's clock (idp/store/dbclock.py may call it)."""
    if _metrics is not None:
        _set(_metrics.clock_offset, seconds)


@quiet
def _set(gauge, value: float) -> None:
    """Set ``gauge`` to ``value``."""
    gauge.set(value)


class LockWait:
    """``with LockWait("row"):`` times the statement that waits for a database lock."""

    __slots__ = ("lock", "started")

    def __init__(self, lock: str):
        """Name the lock waited for."""
        self.lock = lock

    def __enter__(self):
        """Start the clock."""
        self.started = perf_counter()

    def __exit__(self, *_exc):
        """Record the wait, also when it ended in a lock timeout."""
        if _metrics is not None:
            _waited(self.lock, perf_counter() - self.started)


@quiet
def _waited(lock: str, seconds: float) -> None:
    """Record one lock wait."""
    _metrics.lock_wait.labels(lock).observe(seconds)


def init_app(app) -> None:
    """Record metrics in this process when ``IDP_METRICS_BIND`` is set (once per process)."""
    global _metrics
    if not app.config["IDP_METRICS_BIND"]:
        return
    if _metrics is None:
        _metrics = Metrics(CollectorRegistry())
    app.wsgi_app = stamp(app.wsgi_app)
    app.after_request(_observe)
    with app.app_context():
        _metrics.watch_pool(db.engine, app.config)


def serve(bind: str, directory: str):
    """Serve the workers' metrics on ``bind`` from gunicorn's master; returns the server.

    Any path answers with the metrics (prometheus_client's server); scrape ``/metrics``.
    """
    workers = CollectorRegistry()
    multiprocess.MultiProcessCollector(workers, path=directory)
    host, port = metrics_address(bind)
    server, _thread = start_http_server(port, addr=host, registry=workers)
    return server


def process_exited(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges (its counters keep counting in the sums)."""
    multiprocess.mark_process_dead(pid, directory)
