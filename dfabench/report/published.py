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

from ..errors import ConfigError
from .frame import VAL_PREFIX
from .summaries import format_mean

PUBLISHED_SOURCES = ("paper", "biotorch")  # baselines/<source>.yaml, merged in this order


def load_published_by_source(baselines: Path, require: str | None = None) -> dict[str, dict]:
    """``{source: {cell: entry}}`` of the published-number files under ``baselines`` that exist (the one
    reader of them: the paper tables of `reproduce` read one source each, the domain tables the merge).
    ``require`` names a source whose file must be there (a ConfigError otherwise)."""
    baselines = Path(baselines)
    if require is not None and not (baselines / f"{require}.yaml").exists():
        raise ConfigError(f"no {baselines}/{require}.yaml: run from the repository root or pass --baselines DIR")
    return {name: yaml.safe_load((baselines / f"{name}.yaml").read_text()) or {}
            for name in PUBLISHED_SOURCES if (baselines / f"{name}.yaml").exists()}


def load_published(baselines: Path) -> dict:
    """Every cell of the published-number files under ``baselines``, merged (missing files are skipped)."""
    merged: dict = {}
    for entries in load_published_by_source(baselines).values():
        merged.update(entries)
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
