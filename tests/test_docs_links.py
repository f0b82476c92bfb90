"""Every relative link of the README and of the pages under docs/ names a file or folder that exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import dfabench

ROOT = Path(dfabench.__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    return [target.split("#")[0] for target in LINK.findall(page.read_text())
            if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert missing == [], f"{page.name} links to what does not exist"


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [web](https://example.org) [gone](docs/none.md) [anchor](#x)")
    assert relative_links(page) == ["page.md", "docs/none.md"]
