"""A static, self-contained HTML leaderboard from the run records (the records are the source of truth).

``write_site(folders, out_dir, baselines)`` writes ``index.html``, the summary (each method's mean gap to
BP per domain, with the build's date, commit and results folders), and one ``<domain>.html`` per domain:
one wide table per metric (rows = cells, columns = methods), the gap bars, the published numbers, the
test views a task saved and the validation learning curves. The pages are rendered with Jinja2 from
``leaderboard/templates/`` out of the frames of ``leaderboard.board`` (which the W&B mirror renders too);
sorting and filtering are a small script inside each page. No network, no external scripts or styles.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
import os
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from dfabench.report.published import load_published, published_rows

from .board import Board, build_board, methods_of, summary_columns, summary_wide
from .charts import curve_charts, gap_chart, images
from .compute_page import PAGE as COMPUTE_PAGE
from .compute_page import has_budgets, write_compute_page

TEMPLATES = Path(__file__).resolve().parent / "templates"


def page_name(domain: str) -> str:
    """The file a domain's page goes to: a slug of its name, so that a record's domain ('../../x',
    'a/b') can never name a place outside the site's folder. Names that are already slugs are kept."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", domain).strip("-") or "domain"
    if slug != domain:  # two odd names must not share a page
        slug += "-" + hashlib.sha256(domain.encode()).hexdigest()[:6]
    return f"{slug}.html"


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_facts(board: Board) -> dict:
    """What the pages say about their own making: date, folders, the building checkout's commit, and the
    commits the records say they were made by."""
    from dfabench.harness.provenance import git_state

    state = git_state()
    commit = (state["commit"][:12] + (" (modified tree)" if state.get("dirty") else "")) if state["commit"] else ""
    made = Counter(((r.get("provenance") or {}).get("commit") or "unknown")[:12] for r in board.records)
    dirty = Counter(((r.get("provenance") or {}).get("commit") or "unknown")[:12] for r in board.records
                    if (r.get("provenance") or {}).get("dirty"))
    # SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes the stamp, so two builds compare
    built = datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), timezone.utc) \
        if os.environ.get("SOURCE_DATE_EPOCH") else datetime.now(timezone.utc)
    return {"date": built.strftime("%Y-%m-%d %H:%M UTC"),
            "folders": [str(f) for f in board.folders], "commit": commit, "records": len(board.records),
            "scales": sorted({r["scale"] for r in board.records}),
            "provenance": [{"commit": c, "records": n, "dirty": dirty.get(c, 0)} for c, n in made.most_common()]}


def verification_facts(board: Board) -> dict:
    primary = board.entries[board.entries.primary] if len(board.entries) else board.entries
    return {"files": board.verification.files, "entries": len(primary),
            "verified": int((primary.verified == "verified").sum()) if len(primary) else 0,
            "disputed": int((primary.verified == "disputed").sum()) if len(primary) else 0}


def write_site(folders, out_dir: Path, baselines: Path | None = None) -> list[Path]:
    """The site for the records of ``folders`` (one Path or several) under ``out_dir``; the published
    numbers come from ``baselines`` (default: ./baselines, absent: none shown)."""
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    baselines = Path(baselines) if baselines is not None else Path.cwd() / "baselines"
    board = build_board(folders, baselines)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _environment()
    build = build_facts(board)
    domains = [{"name": d, "page": page_name(d)} for d in board.domains()]
    # budgeted records (run --budget) get a page of their own in the navigation (compute_page.py)
    extra = [{"name": "equal compute", "page": COMPUTE_PAGE}] if has_budgets(board.records) else []
    common = {"build": build, "domains": domains + extra}
    index = out_dir / "index.html"
    index.write_text(env.get_template("index.html").render(
        title="dfabench leaderboard", summary=summary_wide(board), columns=summary_columns(board),
        verification=verification_facts(board), **common))
    written = [index]
    published = load_published(baselines)
    for d in domains:
        domain = d["name"]
        path = out_dir / d["page"]
        path.write_text(env.get_template("domain.html").render(
            title=f"dfabench: {domain}", tables=_tables(board, domain), published=published_rows(published, domain),
            gaps=gap_chart(board.entries[board.entries.domain == domain]),
            images=images(folders, domain) if d["page"] == f"{domain}.html" else [],  # never a path from odd names
            curves=curve_charts(board.records, domain), **common))
        written.append(path)
    compute = write_compute_page(board.records, out_dir, env, common)
    return written + ([compute] if compute else [])


def _tables(board: Board, domain: str) -> list[dict]:
    tables = board.tables(domain)
    several_scales = len({scale for scale, *_ in tables}) > 1
    out = []
    for i, (scale, _, label, frame) in enumerate(tables):
        out.append({"id": f"t{i}", "label": label, "scale": scale, "scale_shown": several_scales, "frame": frame,
                    "methods": methods_of(frame), "variants": bool((frame[("variant", "")] != "").any())})
    return out
