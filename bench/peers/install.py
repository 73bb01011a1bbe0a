"""Install the peers, pinned, under bench/out/peers (which git ignores), once per machine.

django-oauth-toolkit goes into its own virtualenv beside the IdP's, with Django and gunicorn;
oidc-provider into a node_modules tree with ``npm install --prefix``. A second run finds them
installed and only checks the versions.
"""

import json
import shutil
import subprocess
import sys

from bench.settings import OUT
from bench.settings import ROOT

#: Where everything of the peers lives.
PEERS_OUT = OUT / "peers"
#: The exact releases measured (docs/PERFORMANCE.md, "Peers").
DOT_PACKAGES = {"Django": "5.2.19", "django-oauth-toolkit": "3.4.1", "gunicorn": "27.0.1"}
OIDC_PROVIDER = "9.13.3"
DOT_VENV = PEERS_OUT / "dot-venv"
DOT_PYTHON = DOT_VENV / "bin" / "python"
DOT_GUNICORN = DOT_VENV / "bin" / "gunicorn"
#: The small Django project (settings, URLs, WSGI entry) and its seed script, kept in the repo.
DOT_SOURCE = ROOT / "bench" / "peers" / "dot"
OIDC_PREFIX = PEERS_OUT / "oidc"
#: The server script is copied beside node_modules so its imports resolve there.
OIDC_SERVER = OIDC_PREFIX / "server.mjs"
OIDC_SOURCE = ROOT / "bench" / "peers" / "oidc" / "server.mjs"


def run(argv: list, what: str) -> None:
    """Run an installer; fail with the end of its output."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def dot_installed() -> bool:
    """Whether the virtualenv holds exactly the pinned releases."""
    if not DOT_PYTHON.exists():
        return False
    done = subprocess.run([str(DOT_PYTHON), "-m", "pip", "freeze"], capture_output=True,
                          text=True, check=False)
    have = dict(line.split("==", 1) for line in done.stdout.splitlines() if "==" in line)
    return all(have.get(name) == version for name, version in DOT_PACKAGES.items())


def oidc_installed() -> bool:
    """Whether node_modules holds the pinned oidc-provider."""
    package = OIDC_PREFIX / "node_modules" / "oidc-provider" / "package.json"
    return package.exists() and json.loads(package.read_text())["version"] == OIDC_PROVIDER


def install_dot() -> None:
    """A virtualenv with Django, django-oauth-toolkit and gunicorn at the pinned versions."""
    if dot_installed():
        return
    if not DOT_PYTHON.exists():
        run([sys.executable, "-m", "venv", DOT_VENV], "creating the peers' virtualenv")
    pins = [f"{name}=={version}" for name, version in DOT_PACKAGES.items()]
    run([DOT_PYTHON, "-m", "pip", "install", "-q", *pins], "pip install " + " ".join(pins))


def install_oidc() -> None:
    """oidc-provider at the pinned version, and the current server script beside it."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("--peers needs node and npm for oidc-provider")
    if not oidc_installed():
        OIDC_PREFIX.mkdir(parents=True, exist_ok=True)
        run(["npm", "install", "--prefix", OIDC_PREFIX, "--no-audit", "--no-fund",
             "--save-exact", f"oidc-provider@{OIDC_PROVIDER}"], "npm install oidc-provider")
    shutil.copyfile(OIDC_SOURCE, OIDC_SERVER)


def node_version() -> str:
    """The node release that serves oidc-provider."""
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def install() -> None:
    """Both peers, ready to seed and serve."""
    PEERS_OUT.mkdir(parents=True, exist_ok=True)
    install_dot()
    install_oidc()

