# pyright: strict
"""Headless Chromium for the end-to-end tests: a web page's rendered DOM, and its screenshot as a PNG.

Single-page apps (Phoenix's UI) fetch their data after the first paint; ``--virtual-time-budget`` lets the page
run its scripts, requests and timers until it is idle (or the budget is spent) before the DOM is dumped or the
screenshot taken, and ``--force-prefers-reduced-motion`` keeps drawers from being caught halfway through their
opening animation. Chromium runs in a session of its own and is killed with its whole process group (renderer,
GPU and zygote children included) if it outlives ``timeout``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

__all__ = ["CHROMIUM_FLAGS", "CHROMIUM_HINT", "PNG_SIGNATURE", "dump_dom", "screenshot"]

CHROMIUM_HINT = "apt-get install -y --no-install-recommends chromium"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Headless, offline and quiet: no first-run UI, no background fetches, no scrollbars in screenshots.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-prefers-reduced-motion",
)


def _chromium(profile: Path, url: str, *args: str, budget_ms: int, timeout: float) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        raise AssertionError(f"headless Chromium is needed for this test: {CHROMIUM_HINT}")
    # 127.0.0.1 must never go through a proxy taken from the environment.
    environment = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    command = [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--no-proxy-server",
        *args,
        url,
    ]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium did not finish {url} within {timeout}s") from None
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited with {proc.returncode} on {url}:\n{stderr[-2000:]}")
    return stdout


def dump_dom(
    url: str, profile: Path, *, window: tuple[int, int] = (1800, 1000), budget_ms: int = 60_000, timeout: float = 120.0
) -> str:
    """The DOM of `url` once its scripts have run, serialised as HTML.

    Args:
        url: The page.
        profile: A fresh directory for Chromium's profile.
        window: The window's width and height, as for the screenshot (layouts can depend on it).
        budget_ms: Virtual milliseconds the page may run before the DOM is read.
        timeout: Real seconds before Chromium is killed.
    """
    size = f"--window-size={window[0]},{window[1]}"
    return _chromium(profile, url, size, "--dump-dom", budget_ms=budget_ms, timeout=timeout)


def screenshot(
    url: str,
    path: Path,
    profile: Path,
    *,
    window: tuple[int, int] = (1800, 1000),
    budget_ms: int = 60_000,
    timeout: float = 120.0,
) -> bytes:
    """Render `url` and write its screenshot to `path` (a PNG of `window` pixels); return the PNG's bytes.

    Args:
        url: The page.
        path: Where the PNG goes; its directory is created. A file already there is replaced.
        profile: A fresh directory for Chromium's profile.
        window: The window's width and height in pixels.
        budget_ms: Virtual milliseconds the page may run before the screenshot.
        timeout: Real seconds before Chromium is killed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    size = f"--window-size={window[0]},{window[1]}"
    _chromium(profile, url, size, f"--screenshot={path}", budget_ms=budget_ms, timeout=timeout)
    return path.read_bytes()
