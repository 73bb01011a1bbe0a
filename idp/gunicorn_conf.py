"""gunicorn settings, each overridable from the environment (see README, Operating)."""

import os

bind = os.environ.get("IDP_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("IDP_WORKERS", "2"))
threads = int(os.environ.get("IDP_THREADS", "4"))
timeout = int(os.environ.get("IDP_WORKER_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("IDP_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("IDP_KEEPALIVE", "5"))
# The default access-log format includes the query string; log the path only, and never headers.
accesslog = os.environ.get("IDP_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
