"""flowestate-kit installs on its own: a fresh virtual environment with only the kit (and its
``flask`` extra) imports no module of the IdP and judges bearers against a live IdP."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.bearer_world import build_world
from tests.bearer_world import random_key

pytestmark = [pytest.mark.live, pytest.mark.slow]

KIT = Path(__file__).resolve().parents[2] / "kit"
#: Installing fetches the kit's dependencies (and setuptools, to build it) from the registry.
INSTALL_TIMEOUT = 600

#: Run by the fresh environment's python: argv is the introspection URL, the resource
#: server's id and secret, an active API key and a made-up one.
SCRIPT = r'''
import json
import sys

import flowestate_kit
import flowestate_kit.flask
import flowestate_kit.wsgi
from flask import Flask
from flask import g
from werkzeug.test import Client

url, client_id, secret, active, made_up = sys.argv[1:]
judge = flowestate_kit.Judge(url, client_id, secret)
good = judge.judge("Bearer " + active)
bad = judge.judge("Bearer " + made_up)

app = Flask("service")
protector = flowestate_kit.flask.ResourceProtector(url, client_id, secret)


@app.get("/leads")
@protector.require_scopes("leads:read")
def leads():
    return {"org_id": g.credential.org_id}


def inner(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ[flowestate_kit.wsgi.ENVIRON_KEY].org_id.encode()]


wsgi = Client(flowestate_kit.wsgi.BearerMiddleware(inner, url, client_id, secret,
                                                   rules={"/leads": "leads:read"}))
flask = app.test_client()
answers = {}
for name, raw in (("active", active), ("made_up", made_up)):
    headers = {"Authorization": "Bearer " + raw}
    via_flask = flask.get("/leads", headers=headers)
    via_wsgi = wsgi.get("/leads", headers=headers)
    answers[name] = [via_flask.status_code, via_flask.get_json(), via_wsgi.status_code,
                     via_wsgi.get_data(as_text=True)]

print(json.dumps({
    "kit_file": flowestate_kit.__file__,
    "idp_modules": sorted(m for m in sys.modules if m == "idp" or m.startswith("idp.")),
    "good": [type(good).__name__, getattr(good, "token_type", None),
             getattr(good, "org_id", None)],
    "bad": [type(bad).__name__, getattr(bad, "status", None),
            getattr(bad, "reason", None)],
    "answers": answers,
}))
'''


def run(args, cwd, env, timeout=INSTALL_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it fails."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def kit_venv(tmp_path_factory):
    """A fresh virtual environment with the kit and its flask extra installed from a copy."""
    tmp_path = tmp_path_factory.mktemp("kit_venv")
    # A copy: building writes build/ and *.egg-info next to the sources.
    source = tmp_path / "kit"
    shutil.copytree(KIT, source, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{source}[flask]"], tmp_path, env)
    return python, source, env


def test_the_kit_installs_alone_and_judges_against_a_live_idp(app, live_server, kit_venv,
                                                              tmp_path):
    python, _source, env = kit_venv
    with app.app_context():
        world = build_world(app)
    rs = world.resource_server
    made_up = random_key()
    script = tmp_path / "use_kit.py"
    script.write_text(SCRIPT)
    # Run from a directory holding neither idp nor the kit's sources.
    done = run([str(python), str(script), live_server.url + "/oauth/introspect",
                rs["client_id"], rs["client_secret"], world.keys["good"], made_up],
               tmp_path, env, timeout=120)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(seen["kit_file"]).is_relative_to(python.parent.parent), seen["kit_file"]
    assert seen["idp_modules"] == []
    assert seen["good"] == ["Bearer", "api_key", world.orgs["acme"]]
    assert seen["bad"] == ["Denial", 401, "unknown_token"]
    assert seen["answers"]["active"] == [200, {"org_id": world.orgs["acme"]}, 200,
                                         world.orgs["acme"]]
    status, body, wsgi_status, wsgi_body = seen["answers"]["made_up"]
    assert (status, wsgi_status) == (401, 401)
    assert body["error"]["reason"] == "unknown_token"
    assert json.loads(wsgi_body) == body


def test_the_kit_builds_a_wheel_of_its_own_modules(kit_venv, tmp_path):
    python, source, env = kit_venv
    wheels = tmp_path / "wheels"
    run([str(python), "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "-w", str(wheels), str(source)], tmp_path, env)
    (wheel,) = wheels.glob("flowestate_kit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {n for n in names if n.endswith(".py")}
    assert modules == {f"flowestate_kit/{m}.py" for m in (
        "__init__", "answers", "cache", "counting", "event_types", "events", "flask", "judge",
        "local_counters", "push", "sets", "ssf", "ssf_apply", "ssf_health", "ssf_loop",
        "ssf_stream", "ssf_transmitter", "wsgi")}
    assert not any(n.startswith(("idp/", "tests/")) for n in names)
