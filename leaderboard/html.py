"""A static, self-contained HTML leaderboard from the run records (the records are the source of truth).

``write_site(results, out_dir)`` writes ``index.html`` and one ``<domain>.html`` per domain: a sortable
comparison table (click a header), the published numbers of ``baselines/paper.yaml`` and ``biotorch.yaml``, and
validation learning curves as inline SVG. No network, no external scripts or styles.
"""
from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

from dfabench.harness.store import iter_records
from dfabench.published import load_published, published_rows
from dfabench.tables import paired_gaps, records_frame, summary

_STYLE = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:4px 8px}th{cursor:pointer;background:#eee}svg{border:1px solid #ddd}
img.pixelated{image-rendering:pixelated;height:auto}"""

# Click a header to sort that table by the column (numbers numerically), click again to reverse.
_SORT_JS = """document.querySelectorAll('table.sortable th').forEach(function(th, col){
 th.addEventListener('click', function(){
  var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
  var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  function key(r){ var t = r.cells[col].dataset.v || r.cells[col].textContent; var n = parseFloat(t);
                   return isNaN(n) ? t : n; }
  rows.sort(function(a, b){ var x = key(a), y = key(b); var c = x < y ? -1 : x > y ? 1 : 0; return asc ? c : -c; });
  rows.forEach(function(r){ body.appendChild(r); });
 });
});"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
            f"<script>{_SORT_JS}</script></body></html>")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"<td data-v='{v!r}'>{'—' if v != v else f'{v:.4g}'}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _curve_svg(series: dict[str, list[tuple[float, float]]], label: str, w: int = 360, h: int = 200) -> str:
    """Polylines of (epoch, value) per method on shared axes."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs) or 1, min(ys), max(ys)
    sx = lambda x: 30 + (x - x0) / ((x1 - x0) or 1) * (w - 40)
    sy = lambda y: h - 20 - (y - y0) / ((y1 - y0) or 1) * (h - 40)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    parts = [f"<text x='4' y='12' font-size='11'>{html.escape(label)} ({y0:.3g}–{y1:.3g})</text>"]
    for i, (name, s) in enumerate(sorted(series.items())):
        c = colours[i % len(colours)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f"<polyline fill='none' stroke='{c}' stroke-width='1.5' points='{pts}'/>")
        parts.append(f"<text x='{w - 90}' y='{14 + 12 * i}' font-size='11' fill='{c}'>{html.escape(name)}</text>")
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}'>{''.join(parts)}</svg>"


def _gap_svg(gaps, w: int = 520, row_h: int = 16) -> str:
    """Horizontal bars: each method's paired gap to BP per cell, with its 95% interval as a whisker."""
    rows = [g for _, g in gaps.iterrows() if g.gap == g.gap]
    if not rows:
        return ""
    extent = max(abs(float(g.gap)) + (float(g.ci95) if g.ci95 == g.ci95 else 0.0) for g in rows) or 1.0
    mid, half, h = w * 0.6, w * 0.38, row_h * len(rows) + 24
    x = lambda v: mid + v / extent * half
    parts = [f"<line x1='{mid}' y1='0' x2='{mid}' y2='{h}' stroke='#888'/>",
             f"<text x='{mid + 3}' y='{h - 4}' font-size='10'>0 (= BP); axis ±{extent:.3g}</text>"]
    for i, g in enumerate(rows):
        y = 4 + i * row_h
        gap = float(g.gap)
        colour = "#2ca02c" if gap >= 0 else "#d62728"
        left, width = (x(gap), mid - x(gap)) if gap < 0 else (mid, x(gap) - mid)
        label = html.escape(f"{g.dataset}/{g.model} {g.method}")
        parts.append(f"<text x='2' y='{y + 11}' font-size='10'>{label}</text>")
        parts.append(f"<rect x='{left:.1f}' y='{y}' width='{max(width, 1):.1f}' height='{row_h - 4}' fill='{colour}'>"
                     f"<title>{label}: {gap:+.4g}</title></rect>")
        if g.ci95 == g.ci95:
            lo, hi = x(gap - float(g.ci95)), x(gap + float(g.ci95))
            cy = y + (row_h - 4) / 2
            parts.append(f"<line x1='{lo:.1f}' y1='{cy}' x2='{hi:.1f}' y2='{cy}' stroke='#000'/>")
    return f"<svg class='gaps' xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}'>{''.join(parts)}</svg>"


def page_name(domain: str) -> str:
    """The file a domain's page goes to: a slug of its name, so that a record's domain ('../../x',
    'a/b') can never name a place outside the site's folder. Names that are already slugs are kept."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", domain).strip("-") or "domain"
    if slug != domain:  # two odd names must not share a page
        slug += "-" + hashlib.sha256(domain.encode()).hexdigest()[:6]
    return f"{slug}.html"


def write_site(results: Path, out_dir: Path, repo_root: Path | None = None) -> list[Path]:
    records = [r for r in iter_records(Path(results))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = records_frame(records)
    paper = load_published((Path(repo_root) if repo_root else Path.cwd()) / "baselines")
    written = []
    domains = sorted(frame.domain.unique()) if not frame.empty else []
    for domain in domains:
        sub = frame[frame.domain == domain]
        summ = summary(sub)
        rows = [[r.scale, r.dataset, r.model, r.method, r.metric, float(r["mean"]), float(r["std"]), int(r.n),
                 int(r.failed)] for _, r in summ.iterrows()]
        body = "<h2>Results (test, mean over seeds)</h2>" + _table(
            ["scale", "dataset", "model", "method", "metric", "mean", "std", "n", "failed"], rows)
        gaps = paired_gaps(sub)
        if not gaps.empty:
            body += "<h2>Gap to BP (paired by seed)</h2>" + _table(
                ["scale", "dataset", "model", "method", "gap", "ci95", "pairs"],
                [[g.scale, g.dataset, g.model, g.method, float(g.gap), float(g.ci95), int(g.pairs)]
                 for _, g in gaps.iterrows()])
            body += "<h2>Gap plot</h2>" + _gap_svg(gaps)
        paper_rows = published_rows(paper, domain)
        if paper_rows:
            body += ("<h2>Published numbers</h2><p>On the official datasets (ours above are on the datasets "
                     "named in each row); <em>unknown</em> where we do not have the number.</p>"
                     + _table(["cell", "method", "metric", "published", "source"], paper_rows))
        body += _images(Path(results) / domain) if page_name(domain) == f"{domain}.html" else ""
        body += "<h2>Learning curves (validation, seed 0)</h2>" + _curves(records, domain)
        path = out_dir / page_name(domain)
        path.write_text(_page(f"dfabench: {domain}", body))
        written.append(path)
    links = "".join(f"<li><a href='{html.escape(page_name(d))}'>{html.escape(d)}</a></li>" for d in domains)
    index = out_dir / "index.html"
    index.write_text(_page("dfabench leaderboard", f"<ul>{links or '<li>no records yet</li>'}</ul>"))
    return [index] + written


def _images(folder: Path) -> str:
    """Images a domain saved beside the records (NeRF: ground truth | BP | DFA | shallow), inlined so
    that the site stays one self-contained folder."""
    import base64

    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not pngs:
        return ""
    figures = "".join(
        f"<figure><img class='pixelated' alt='{html.escape(p.stem)}' width='512' "
        f"src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(p.stem)}: ground truth | BP | DFA | shallow</figcaption></figure>" for p in pngs)
    return "<h2>Test views</h2>" + figures


def _curves(records: list[dict], domain: str) -> str:
    cells: dict[tuple, dict[str, list]] = {}
    for r in records:
        if r["domain"] != domain or r.get("seed") != 0:
            continue
        metric = r.get("primary_metric")
        s = [(h["epoch"], h["val"][metric]) for h in r.get("history") or []
             if isinstance((h.get("val") or {}).get(metric), (int, float))]
        cells.setdefault((r["scale"], r["dataset"], r["model"], metric), {})[r["method"]] = s
    return "".join(f"<div><h3>{html.escape('/'.join(map(str, k[:3])))}</h3>{_curve_svg(v, k[3])}</div>"
                   for k, v in sorted(cells.items()))
