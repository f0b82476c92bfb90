"""The geometry of the site's inline SVG charts (the templates draw it): validation learning curves per
cell and the bars of each method's paired gap to BP with its 95% interval."""
from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

from dfabench.report.frame import variant_label
from dfabench.harness.identity import overrides_label

# matplotlib's tab10: distinguishable, and the colours the figures of `dfabench reproduce` use
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def curve_charts(records: list[dict], domain: str, w: int = 380, h: int = 200) -> list[dict]:
    """One chart per cell of the domain: each method's validation primary metric per epoch, seed 0."""
    cells: dict[tuple, dict[str, list]] = {}
    for r in records:
        if r["domain"] != domain or r.get("seed") != 0:
            continue
        metric = r.get("primary_metric")
        series = [(h_["epoch"], h_["val"][metric]) for h_ in r.get("history") or []
                  if isinstance((h_.get("val") or {}).get(metric), (int, float))]
        variant = variant_label(overrides_label(r.get("overrides")), (r.get("data") or "")[:8])
        if series:  # runs with other overrides or data are curves of their own, as they are rows of their own
            cells.setdefault((r["scale"], r["dataset"], r["model"], variant, metric), {})[r["method"]] = series
    several_scales = len({k[0] for k in cells}) > 1
    return [_curve(_row_label(dataset, model, variant, scale if several_scales else ""), metric, series, w, h)
            for (scale, dataset, model, variant, metric), series in sorted(cells.items())]


def _row_label(dataset: str, model: str, variant: str, scale: str) -> str:
    """'digits/mlp', with the variant and the scale where they tell rows apart."""
    extra = ", ".join(p for p in (variant, scale) if p)
    return f"{dataset}/{model}" + (f" ({extra})" if extra else "")


def _curve(title: str, metric: str, series: dict[str, list], w: int, h: int) -> dict:
    points = [p for s in series.values() for p in s]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    plot_w = w - 130  # room on the right for the legend
    sx = lambda x: 36 + (x - x0) / ((x1 - x0) or 1) * (plot_w - 36)
    sy = lambda y: h - 22 - (y - y0) / ((y1 - y0) or 1) * (h - 44)
    lines = [{"name": name, "colour": COLOURS[i % len(COLOURS)],
              "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)}
             for i, (name, s) in enumerate(sorted(series.items()))]
    return {"title": title, "metric": metric, "w": w, "h": h, "plot_w": plot_w, "lines": lines,
            "x0": x0, "x1": x1, "y0": f"{y0:.3g}", "y1": f"{y1:.3g}", "top": sy(y1), "bottom": sy(y0)}


def gap_chart(entries: pd.DataFrame, w: int = 640, row_h: int = 16) -> dict | None:
    """Horizontal bars, one per (cell, method) of the primary metrics: the paired gap to BP in the
    metric's units, its 95% interval as a whisker; green above BP, red below, whichever way is better."""
    rows = entries[entries.primary & (entries.method != "bp") & entries.gap.notna()]
    if rows.empty:
        return None
    several_scales = rows.scale.nunique() > 1
    extent = max(abs(g) + (c if c == c else 0.0) for g, c in zip(rows.gap, rows.ci95)) or 1.0
    label_w = 0.42 * w
    mid, half = label_w + (w - label_w) / 2, (w - label_w) / 2 - 6
    x = lambda v: mid + v / extent * half
    bars = []
    for i, g in enumerate(rows.itertuples()):
        y = 4 + i * row_h
        left, right = sorted((x(g.gap), mid))
        better = (g.gap > 0) == bool(g.higher_is_better)
        bar = {"y": y, "text_y": y + 11, "x": left, "width": max(right - left, 1.0), "h": row_h - 4,
               "colour": "#2ca02c" if better or g.gap == 0 else "#d62728",
               "label": _row_label(g.dataset, g.model, variant_label(g.overrides, g.data),
                                   g.scale if several_scales else "") + f" {g.method}",
               "title": f"{g.label}: {g.gap_text}"}
        if g.ci95 == g.ci95:
            bar.update(lo=x(g.gap - g.ci95), hi=x(g.gap + g.ci95), cy=y + (row_h - 4) / 2)
        bars.append(bar)
    h = row_h * len(bars) + 24
    return {"w": w, "h": h, "mid": mid, "bars": bars, "extent": f"{extent:.3g}",
            "units": " / ".join(dict.fromkeys(rows.label))}


def images(folders: list[Path], domain: str) -> list[dict]:
    """PNGs a domain saved beside its records (NeRF: ground truth | BP | DFA | shallow), inlined as data
    URIs so that the site stays one self-contained folder."""
    out = []
    for folder in folders:
        where = Path(folder) / domain
        for png in sorted(where.glob("*.png")) if where.is_dir() else []:
            data = base64.b64encode(png.read_bytes()).decode()
            out.append({"name": png.stem, "src": f"data:image/png;base64,{data}"})
    return out
