"""Headless Chromium for tests that look at rendered pages (the report, a Superset dashboard).

Debian's `chromium` package; a test that needs it skips, saying so, when it is absent. Only
localhost is contacted: every background service of the browser is switched off.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium() -> str:
    """The chromium executable, or skip the test saying it is absent."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    return found


def chromium_command(browser: str, profile: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `browser` headless with a fresh profile folder `profile` and `args`; fail on a non-zero exit."""
    result = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result
