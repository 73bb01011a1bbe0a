"""gunicorn settings, each overridable from the environment (docs/OPERATIONS.md).

Use: ``gunicorn --config idp/gunicorn_conf.py app:app``.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The logger class below is imported by dotted name, before on_starting runs.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

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
timeout = int(os.environ.get("IDP_WORKER_TIMEOUT", "30"))
# On SIGTERM, requests already running (a refresh mid-rotation) get this long to finish.
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
logger_class = "idp.access_log.LeanLogger"


def on_starting(server):
    """Check the settings once in the master, before any worker is forked.

    A ConfigError is a RuntimeError, which gunicorn prints as one ``Error: ...`` line before
    exiting, instead of every worker printing a traceback while failing to boot.
    """
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from idp.config import build_config
    from idp.config import check_config

    check_config(build_config(os.path.join(ROOT, "instance")))
