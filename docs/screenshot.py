"""Screenshot a run dashboard in headless Chromium (Debian's chromium package, driven by playwright).

    python docs/screenshot.py runs/quickstart/dashboard.html docs/dashboard.png

Makes the README's picture; the flags are the ones the browser tests use.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true", help="the whole page rather than the first screen")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile), executable_path=args.chromium, headless=True, args=FLAGS,
                ignore_default_args=["--enable-automation"], viewport={"width": args.width, "height": args.height}, device_scale_factor=1,
            )
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(args.page.resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => window.Plotly && document.querySelectorAll('.js-plotly-plot').length >= 3")
            page.wait_for_timeout(1000)  # let plotly finish its transitions
            args.png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.png), full_page=args.full_page)
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
