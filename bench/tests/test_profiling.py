"""Reading py-spy's collapsed stacks into stages, packages and functions."""

from bench.profiling import bucket
from bench.profiling import summarize

RAW = "\n".join([
    "handle (gunicorn/workers/gthread.py:1);ThreadWorker.handle (gunicorn/workers/gthread.py:2);"
    "Flask.__call__ (flask/app.py:3);authenticate_token (idp/store/credentials.py:4) 6",
    "handle (gunicorn/workers/gthread.py:1);ThreadWorker.handle (gunicorn/workers/gthread.py:2);"
    "Flask.__call__ (flask/app.py:3);Limiter.check (flask_limiter/_extension.py:5) 2",
    "_worker (concurrent/futures/thread.py:6);Condition.wait (threading.py:7) 12",
])


def test_buckets_follow_the_file_of_the_frame():
    """Our code, libraries, and the rest."""
    assert bucket("authenticate_token (idp/store/credentials.py:4)") == "idp (our code)"
    assert bucket("Limiter.check (flask_limiter/_extension.py:5)") == "flask-limiter / limits"
    assert bucket("Condition.wait (threading.py:7)").startswith("other")


def test_cpu_view_counts_every_sample():
    """Without the serving filter the idle pool thread is part of the total."""
    text = summarize(RAW)
    assert text.startswith("20 samples")
    assert " 30.0%  credential core (authenticate_token)" in text


def test_wall_view_keeps_only_request_serving_stacks():
    """Threads waiting for work are not part of any request's time."""
    text = summarize(RAW, serving_only=True)
    assert text.startswith("8 samples")
    assert " 75.0%  credential core (authenticate_token)" in text
    assert " 25.0%  rate limiting (Flask-Limiter, limits, idp.infra.ratelimit)" in text
    assert "100.0%  Flask app (everything inside Flask.__call__)" in text


def test_a_wrapping_route_limit_is_not_counted_as_limiting():
    """Flask-Limiter's decorator frame encloses the view; only its own checks are limiting."""
    wrapped = ("ThreadWorker.handle (gunicorn/workers/gthread.py:2);"
               "RouteLimit.__call__.<locals>.__inner (flask_limiter/_limits.py:9);"
               "authenticate_token (idp/store/credentials.py:4) 3")
    assert "rate limiting" not in summarize(wrapped)


def test_no_samples_is_said_plainly():
    """An empty recording is reported, not divided by zero."""
    assert summarize("") == "no samples"
