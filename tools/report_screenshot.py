"""Regenerate ``docs/report.png``, the picture of the report at the top of the README: the top of
``index.html`` as headless Chromium shows it (Playwright driving the system browser).

    .venv/bin/python tools/report_screenshot.py [--report report/] [--build] [--out docs/report.png]

``--build`` runs ``cnnlab report --quick`` into ``--report`` first; otherwise the page already
there is used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", default="report", help="the report folder")
    parser.add_argument("--build", action="store_true", help="build the quick report first")
    parser.add_argument("--out", default="docs/report.png")
    parser.add_argument("--height", type=int, default=1100, help="pixels of the page's top to keep")
    args = parser.parse_args()
    if args.build:
        from cnnlab.report import build_report

        build_report(args.report, quick=True)
    index = Path(args.report) / "index.html"
    if not index.is_file():
        sys.exit(f"no {index}: run `cnnlab report --quick` first, or pass --build")
    browser_path = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "",
                                     shutil.which("chromium-browser") or "") if p and Path(p).is_file()), None)
    if browser_path is None:
        sys.exit("no Chromium here: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    from cnnlab.fileio import atomic_path

    with sync_playwright() as p, atomic_path(args.out) as tmp:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": args.height}, device_scale_factor=1)
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(tmp), type="png")
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
