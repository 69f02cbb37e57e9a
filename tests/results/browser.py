"""A real headless Chromium (Debian's ``chromium`` package) driven by playwright, for the dashboard tests.

A uniquely named module (not conftest) so test folders never shadow each other's helpers.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = os.environ.get("PARTICLE_NAS_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip (with the reason) when the browser or playwright is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium); it is not installed")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install -e '.[test]')")


@contextmanager
def chromium_page(profile: Path, *, width: int = 1400, height: int = 900) -> Iterator[object]:
    """A page of a fresh Chromium profile; network requests other than file:// are refused and counted."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            ignore_default_args=["--enable-automation"],
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.js_errors = []  # type: ignore[attr-defined]
            page.remote_requests = []  # type: ignore[attr-defined]
            page.on("pageerror", lambda err: page.js_errors.append(str(err)))
            page.on("console", lambda msg: page.js_errors.append(msg.text) if msg.type == "error" else None)

            def refuse(route: object) -> None:
                page.remote_requests.append(route.request.url)
                route.abort()

            context.route("http*://**/*", refuse)
            yield page
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
