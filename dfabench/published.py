"""Published numbers (``baselines/*.yaml``) and ours beside them.

``baselines/paper.yaml`` holds the paper's tables, ``baselines/biotorch.yaml`` biotorch's CNN errors;
both are keyed by cell (domain/dataset/model) and method, with a ``source`` per cell and ``unknown``
where we do not have the number (never guessed). Where we ran the same cell, our mean ± std (n) of
the same test metric sits beside the published value; elsewhere (Criteo, WikiText-103: official data
we do not run offline) the "ours" column says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from .tables import VAL_PREFIX, format_mean

PUBLISHED_FILES = ("paper.yaml", "biotorch.yaml")


def load_published(baselines: Path) -> dict:
    """Every cell of the published-number files under ``baselines`` (missing files are skipped)."""
    merged: dict = {}
    for name in PUBLISHED_FILES:
        path = Path(baselines) / name
        if path.exists():
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def published_rows(published: dict, domain: str) -> list[list]:
    """Rows (cell, method, metric, value or 'unknown', source) of one domain."""
    rows = []
    for cell, entry in sorted(published.items()):
        if not cell.startswith(domain + "/"):
            continue
        if not isinstance(entry, dict):
            rows.append([cell, "all", "", "unknown", ""])
            continue
        source = str(entry.get("source", ""))
        for method, values in entry.items():
            if method in ("source", "metrics"):
                continue
            if not isinstance(values, dict):
                rows.append([cell, method, "", "unknown", source])
                continue
            rows += [[cell, method, metric, float(value), source] for metric, value in values.items()]
    return rows


def _ours(records: list[dict], cell: str, method: str, metric: str) -> str:
    split, name = ("val", metric[len(VAL_PREFIX):]) if metric.startswith(VAL_PREFIX) else ("test", metric)
    values = [float(r["metrics"][split][name]) for r in records
              if f"{r['domain']}/{r['dataset']}/{r['model']}" == cell and r["method"] == method
              and r.get("status") == "ok"
              and isinstance(((r.get("metrics") or {}).get(split) or {}).get(name), (int, float))]
    if not values:
        return "not run"
    series = pd.Series(values)
    return format_mean(series.mean(), series.std(), len(values))


def published_markdown(published: dict, domain: str, records: Iterable[dict]) -> str:
    """A markdown section with the domain's published numbers and ours beside them ('' if none)."""
    rows = published_rows(published, domain)
    if not rows:
        return ""
    records = list(records)
    table = [{"cell": cell, "method": method, "metric": metric,
              "published": value if isinstance(value, str) else f"{value:g}",
              "ours": _ours(records, cell, method, metric) if metric and not isinstance(value, str) else "",
              "source": source}
             for cell, method, metric, value, source in rows]
    return ("\n### Published numbers beside ours\n\n" + pd.DataFrame(table).to_markdown(index=False)
            + "\n\nours: the same cell, method and test metric (`val:`: validation) at this scale (other data sizes and budgets "
              "than the source's); 'not run' where we have no such run (official data).\n")
