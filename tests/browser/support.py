"""What the browser tests share: Chromium settings, sign-in, axe-core, screenshots."""

import os
import tempfile
from pathlib import Path

from tests.helpers import ROOT

#: Debian's Chromium; Playwright's own browser downloads are never used.
CHROMIUM = "/usr/bin/chromium"
#: Quiet, offline-friendly flags (no sandbox inside containers, no background traffic).
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: axe-core installed by .ci/setup into the virtualenv (npm, pinned).
AXE_JS = ROOT / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
#: Where the page screenshots for the README go (only with IDP_WRITE_SCREENSHOTS=1).
SCREENSHOTS = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def sign_in(page, base_url: str, email: str, password: str, path="/settings/connected-apps"):
    """Fill the real sign-in form as a person would."""
    page.goto(base_url + path)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    # Exact: "Sign in with a passkey" is a button of the same page.
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()


def axe_serious(page) -> list[str]:
    """Run axe-core on the page; describe each violation of impact serious or critical."""
    assert AXE_JS.exists(), f"{AXE_JS} is missing; run .ci/setup (it installs axe-core)"
    page.add_script_tag(path=str(AXE_JS))
    violations = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in violations if v["impact"] in ("serious", "critical")
    ]


def screenshot_dir() -> Path:
    """docs/screenshots when asked for (bash .ci/screenshots), else a scratch folder.

    The test command must leave a clone's tree as it found it; the pictures still get taken on
    every run, so a page that cannot be captured fails the suite either way.
    """
    if os.environ.get("IDP_WRITE_SCREENSHOTS") == "1":
        return SCREENSHOTS
    return Path(tempfile.gettempdir()) / "flowestate-screenshots"


def screenshot(page, name: str) -> Path:
    """Save the visible viewport as <screenshot_dir()>/<name>.png."""
    folder = screenshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path
