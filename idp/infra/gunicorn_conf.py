"""gunicorn settings, each overridable from the environment (docs/OPERATIONS.md).

Use: ``gunicorn --config idp/infra/gunicorn_conf.py app:app``.
"""

import atexit
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The logger class below is imported by dotted name, before on_starting runs.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
#: Where prometheus_client keeps each process's metric values (idp/infra/metrics.py).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: The pid of the master that made the directory: a HUP re-reads this file in that master.
METRICS_OWNER = "IDP_METRICS_OWNER"
#: Seconds a long poll may run past IDP_SSF_LONG_POLL_SECONDS: its last look, signing, the
#: answer, a database under load.
POLL_MARGIN = 5


def _remove_metrics_directory(path: str, owner: int) -> None:
    """Remove the directory as its master exits (workers inherit the exit hook: not them)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _metrics_directory() -> str | None:
    """A fresh private directory for the workers' metric files; None when metrics are off.

    Made as this file is read: prometheus_client chooses where values live when it is first
    imported, which the logger class below does in the master before any hook runs, and the
    forked workers inherit that choice. A directory left by another run would add its dead
    workers' counts, so each master makes its own (mode 0700) and removes it when it exits.
    """
    if not os.environ.get("IDP_METRICS_BIND"):
        os.environ.pop(MULTIPROC_DIR, None)
        return None
    if os.environ.get(METRICS_OWNER) == str(os.getpid()):
        return os.environ[MULTIPROC_DIR]
    path = tempfile.mkdtemp(prefix="idp-metrics-")
    os.environ[MULTIPROC_DIR] = path
    os.environ[METRICS_OWNER] = str(os.getpid())
    atexit.register(_remove_metrics_directory, path, os.getpid())
    return path


metrics_directory = _metrics_directory()

bind = os.environ.get("IDP_BIND", "127.0.0.1:5000")
# Processes x threads is how many requests one instance serves at once; each thread may hold
# one database connection, so keep workers x threads within the pool (IDP_DB_POOL_SIZE +
# IDP_DB_MAX_OVERFLOW per worker) and the database's max_connections across all instances.
workers = int(os.environ.get("IDP_WORKERS", "2"))
threads = int(os.environ.get("IDP_THREADS", "1"))
# One thread per process: the sync worker. Measured against the keep-alive capable gthread
# worker on the same machine, it served every API and OAuth path faster and with a far
# shorter tail, because threads of one process only take turns holding Python's GIL
# (docs/PERFORMANCE.md, "Server"). It needs a buffering proxy in front (docs/OPERATIONS.md).
worker_class = "sync" if threads == 1 else "gthread"
# The sync worker is restarted when one request runs longer than this; gthread's is only a
# heartbeat of its main loop, however long a request (an RFC 8936 long poll) takes.
timeout = int(os.environ.get("IDP_WORKER_TIMEOUT", "30"))
# On SIGTERM, requests already running (a refresh mid-rotation, a long poll) get this long to
# finish; on the events pool it should outlast IDP_SSF_LONG_POLL_SECONDS (docs/OPERATIONS.md).
graceful_timeout = int(os.environ.get("IDP_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("IDP_KEEPALIVE", "5"))
loglevel = os.environ.get("IDP_LOG_LEVEL", "info").lower()
errorlog = "-"
# The default access-log format carries the query string (an authorization response's code
# travels there) and can be extended with request headers (Authorization). Log the path only,
# no headers except the response's request id, which ties the line to the app's own logs.
accesslog = os.environ.get("IDP_ACCESS_LOG", "-")
# gunicorn's runtime control socket is one more way in and we never use it; several instances
# on one host would also fight over its default path.
control_socket_disable = True
# No timestamp: the journal or log shipper stamps each line, and formatting one per request
# cost CPU. The lean logger computes only these atoms (docs/PERFORMANCE.md, item 10).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
logger_class = "idp.infra.access_log.LeanLogger"


def on_starting(server):
    """Check the settings once in the master, before any worker is forked.

    A ConfigError is a RuntimeError, which gunicorn prints as one ``Error: ...`` line before
    exiting, instead of every worker printing a traceback while failing to boot.
    """
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from idp.infra.config import build_config
    from idp.infra.config_checks import check_config

    config = build_config(os.path.join(ROOT, "instance"))
    check_config(config)
    _refuse_timeout_under_long_poll(server.cfg, config["IDP_SSF_LONG_POLL_SECONDS"])
    if config["IDP_METRICS_BIND"]:
        _refuse_public_metrics(config["IDP_METRICS_BIND"], server.cfg.address)


def _refuse_timeout_under_long_poll(cfg, long_poll: float) -> None:
    """A sync worker must outlive a long poll (RFC 8936 §2.4), which any pool may be sent.

    Its timeout bounds a whole request, so a poll waiting IDP_SSF_LONG_POLL_SECONDS would get
    the worker killed, and each poll after it another one. gthread only counts heartbeats;
    a timeout of 0 is none.
    """
    from gunicorn.workers.sync import SyncWorker

    from idp.infra.config import ConfigError

    sync = issubclass(cfg.worker_class, SyncWorker)
    if sync and 0 < cfg.timeout < long_poll + POLL_MARGIN:
        raise ConfigError(
            f"IDP_WORKER_TIMEOUT ({cfg.timeout}) must be at least IDP_SSF_LONG_POLL_SECONDS "
            f"({long_poll:g}) + {POLL_MARGIN}: a sync worker is killed by a long poll that "
            "outlasts it.")


def _refuse_public_metrics(bind: str, public) -> None:
    """The metrics listener must not share a port with the public one (SPEC §7)."""
    from idp.infra.config import ConfigError
    from idp.infra.config import metrics_address

    _host, port = metrics_address(bind)
    if any(isinstance(address, tuple) and address[1] == port for address in public):
        raise ConfigError(f"IDP_METRICS_BIND must not use the public port {port}.")


def when_ready(server):
    """Serve the workers' metrics from the master, on their own listener (idp/infra/metrics.py)."""
    if not metrics_directory:
        return
    from idp.infra import metrics
    bind = os.environ["IDP_METRICS_BIND"]
    try:
        server.metrics_listener = metrics.serve(bind, metrics_directory)
    except OSError as error:
        # A RuntimeError: gunicorn prints one "Error: ..." line and stops before forking.
        raise RuntimeError(f"IDP_METRICS_BIND {bind} cannot be served: {error}") from None
    server.log.info("Metrics served at http://%s/metrics", bind)


def post_fork(server, worker):
    """A worker has no use for the master's metrics socket; keep it from holding the port."""
    listener = getattr(server, "metrics_listener", None)
    if listener is not None:
        listener.socket.close()


def child_exit(server, worker):
    """Drop a dead worker's live gauges; its counters stay in the sums, as counters must."""
    if metrics_directory:
        from idp.infra import metrics
        metrics.process_exited(worker.pid, metrics_directory)
