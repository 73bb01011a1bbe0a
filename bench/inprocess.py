"""CPU time per request of each hot path, in-process, against the bare Flask app.

No server and no load generator: each path is called through the app's WSGI entry point with a
prepared environ, and the process's CPU time is read around a batch of calls (best of several
batches). The figures are steadier than requests per second on a shared machine, and they show
what a change to the app itself is worth; docs/PERFORMANCE.md quotes them.

    .venv/bin/python -m bench.inprocess                       # SQLite in a scratch directory
    .venv/bin/python -m bench.inprocess --database-url postgresql+psycopg://…/scratch
    .venv/bin/python -m bench.inprocess --profile refresh     # cProfile of one path
"""

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import re
import secrets
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlencode

from bench.settings import ISSUER
from bench.settings import ROOT
from bench.settings import UNLIMITED
from bench.settings import VENV_BIN

#: Paths measured, in order; "refresh" consumes one pre-issued refresh token per call.
PATHS = ("hello", "introspect_key", "introspect_token", "me_key", "me_token", "refresh")


def arguments(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("paths", nargs="*", metavar="PATH", help=f"any of {', '.join(PATHS)}")
    parser.add_argument("--calls", type=int, default=1000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=7, help="batches; the best is kept")
    parser.add_argument("--database-url", help="an empty database (default: scratch SQLite)")
    parser.add_argument("--profile", choices=PATHS, help="print a cProfile of one path")
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    args.paths = args.paths or list(PATHS)
    return args


def production_env(database_url: str) -> dict:
    """The settings of the benchmark's IdP: production checks on, limits counted, never hit."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "IDP_ISSUER": ISSUER,
        "IDP_ALLOW_SQLITE": "1",
        "IDP_PROXY_HOPS": "1",
        "IDP_API_RATE_LIMIT": UNLIMITED,
        "IDP_INTROSPECTION_RATE_LIMIT": UNLIMITED,
        "IDP_TOKEN_RATE_LIMIT": UNLIMITED,
    }


def environ(method: str, path: str, headers=(), form: dict | None = None) -> dict:
    """A WSGI environ as gunicorn builds it behind one TLS-terminating proxy."""
    body = urlencode(form).encode() if form else b""
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": ISSUER.removeprefix("https://"),
        "HTTP_X_FORWARDED_FOR": "192.0.2.10", "HTTP_X_FORWARDED_PROTO": "https",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    if form:
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    for name, value in headers:
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


class Caller:
    """Calls a WSGI app and keeps the last status and body."""

    def __init__(self):
        """Nothing called yet."""
        self.status = ""

    def __call__(self, app, env) -> bytes:
        """One request, answered in full."""
        def start_response(status, _headers, _exc_info=None):
            self.status = status
        result = app(env, start_response)
        try:
            return b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()


def world(app, refresh_pool: int):
    """Demo data plus one access token and ``refresh_pool`` live refresh tokens."""
    from idp.cli.demo import seed_demo
    from idp.core import secrets as cs
    from idp.core.clock import utcnow
    from idp.infra.extensions import db
    from idp.store import tokens
    from idp.store.models import Client
    from idp.store.models import Connection
    from idp.store.models import Organization
    from idp.store.models import User
    with app.app_context():
        demo = seed_demo()
        client = db.session.query(Client).filter_by(name="Zapier").one()
        org = db.session.query(Organization).one()
        user = db.session.query(User).one()
        life = tokens.lifetimes(client, app.config)
        pool, access = [], None
        for _ in range(refresh_pool + 1):
            now = utcnow()
            connection = Connection(
                public_id=cs.new_public_id("con_"), user_id=user.id, org_id=org.id,
                client_id=client.id, scope="leads:read", created_at=now, activated_at=now,
            )
            db.session.add(connection)
            db.session.flush()
            body, _ = tokens.issue_pair(db.session, connection, life, "leads:read",
                                        "leads:read", now)
            access = access or body["access_token"]
            pool.append(body["refresh_token"])
        db.session.commit()
    return demo, access, pool[1:]


def requests_for(demo: dict, access: str, pool: list[str]) -> dict:
    """Per path: a function making the next request's environ."""
    rs = demo["resource_server"]
    basic = "Basic " + base64.b64encode(
        f"{rs['client_id']}:{rs['client_secret']}".encode()).decode()
    zapier = demo["clients"]["zapier"]
    key = demo["api_key"]
    return {
        "hello": lambda: environ("GET", "/hello"),
        "introspect_key": lambda: environ("POST", "/oauth/introspect", [("Authorization", basic)],
                                          {"token": key}),
        "introspect_token": lambda: environ("POST", "/oauth/introspect",
                                            [("Authorization", basic)], {"token": access}),
        "me_key": lambda: environ("GET", "/api/v1/me", [("Authorization", "Bearer " + key)]),
        "me_token": lambda: environ("GET", "/api/v1/me", [("Authorization", "Bearer " + access)]),
        "refresh": lambda: environ("POST", "/oauth/token", form={
            "grant_type": "refresh_token", "refresh_token": pool.pop(),
            "client_id": zapier["client_id"], "client_secret": zapier["client_secret"]}),
    }


def measure(app, make, calls: int, batches: int, call: Caller) -> float:
    """Best CPU microseconds per call over ``batches`` batches of ``calls``."""
    best = float("inf")
    for _ in range(batches):
        started = time.process_time()
        for _ in range(calls):
            call(app, make())
        best = min(best, (time.process_time() - started) / calls * 1e6)
    return best


def main(argv=None) -> int:
    """Set up a scratch IdP, check every path answers 200, then time each one."""
    args = arguments(argv)
    paths = [p for p in PATHS if p in args.paths or p == args.profile]
    scratch = tempfile.mkdtemp(prefix="idp-inprocess-")
    url = args.database_url or f"sqlite:///{scratch}/idp.sqlite3"
    env = production_env(url)
    os.environ.update(env)
    subprocess.run([str(VENV_BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True)
    from app import app as idp
    from bench.apps.hello import app as hello

    warm = 200
    pool_size = (warm + args.calls * args.batches + 1) if "refresh" in paths else 0
    if args.profile == "refresh":
        pool_size += args.calls
    demo, access, pool = world(idp, pool_size)
    makers = requests_for(demo, access, pool)
    call = Caller()
    print(f"CPU per call, best of {args.batches} batches of {args.calls} ({url.split(':')[0]})")
    for path in paths:
        app = hello if path == "hello" else idp
        body = call(app, makers[path]())
        if not call.status.startswith("200"):
            print(f"{path}: {call.status} {body[:200]!r}", file=sys.stderr)
            return 1
        if path.startswith("introspect") and not json.loads(body).get("active"):
            print(f"{path}: not active: {body[:200]!r}", file=sys.stderr)
            return 1
        for _ in range(warm):
            call(app, makers[path]())
        if path in args.paths:
            cpu = measure(app, makers[path], args.calls, args.batches, call)
            print(f"  {path:18s} {cpu:7.0f} µs")
    if args.profile:
        app = hello if args.profile == "hello" else idp
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            call(app, makers[args.profile]())
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(40)
        print(own_time_by_owner(stats))
    return 0


def owner(filename: str, function: str) -> str:
    """Who a profiled function belongs to: a site-packages distribution, idp, the standard
    library, or the C extension a built-in method is bound to (sqlite3, psycopg, ...)."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/idp/" in filename:
        return "idp"
    if filename == "~":
        # Built-ins print as "<method 'execute' of 'sqlite3.Cursor' objects>".
        bound = re.search(r" of '([\w.]+)'", function)
        return bound.group(1).split(".")[0] if bound and "." in bound.group(1) else "builtins"
    return "stdlib and other"


def own_time_by_owner(stats: pstats.Stats) -> str:
    """Each owner's share of the own (not cumulative) time of a profile: where the time of a
    path really goes, library by library."""
    totals: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
        key = owner(filename, function)
        totals[key] = totals.get(key, 0.0) + own
    whole = sum(totals.values()) or 1.0
    lines = ["own time by owner:"]
    for key, own in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"  {key:24s} {own / whole:6.1%}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
