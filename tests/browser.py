"""Debian's Chromium driven by Playwright, for the display's browser tests.

Nothing is downloaded: Playwright (pip) talks to /usr/bin/chromium
(apt-get install chromium; `make test` installs it). Tests skip cleanly
where either is missing.
"""
import os
import shutil
from typing import Optional

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_binary() -> Optional[str]:
    for path in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if path and os.access(path, os.X_OK):
            return path
    return None


def skip_reason() -> Optional[str]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if chromium_binary() is None:
        return "chromium is not installed (apt-get install chromium; `make chromium`)"
    return None


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_ARGS,
                                      headless=True)
