"""Screenshots of a built site in headless Chromium (the browser the leaderboard test drives).

    python -m dfabench.leaderboard.screenshot SITE_DIR OUT_DIR [--width 1200]

writes OUT_DIR/<page>.png, full page, for every page of the site: how docs/leaderboard.png is made
(``dfabench leaderboard --html /tmp/site`` from the repository, then this, then the index's picture).
Needs the ``test`` extra (playwright) and Debian's chromium (``dfabench data install chromium``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dfabench.data.sources import CHROMIUM  # Debian's, which `dfabench data install` puts there

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch(playwright):
    """Chromium with nothing that reaches the network: the pages must work offline."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


def screenshots(site: Path, out: Path, width: int = 1200) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": width, "height": 800})
        for html in sorted(Path(site).glob("*.html")):
            page.goto(html.resolve().as_uri())
            path = out / f"{html.stem}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args(argv)
    for path in screenshots(args.site, args.out, args.width):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
