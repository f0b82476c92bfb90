"""Records → frame: one row per record and metric, the identity every summary groups by.

Runs group by the same identity as their ids: a record's ``overrides`` (what the user's ``--set``
changed) and ``data`` (the content fingerprint of a user's data) are part of the row, so a
``--set lr=1e6`` run or another graph never shares a row with the default runs. Only the frame's
``status`` says whether a run counts; the summaries (``summaries.py``) decide how.
"""
from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..harness.store import iter_records

METHOD_ORDER = ["bp", "dfa", "shallow"]
CELL = ["scale", "domain", "dataset", "model"]
VARIANT = ["overrides", "data"]  # the rest of a row's identity ('' for the task's own settings and data)
GROUP = CELL + VARIANT


VAL_PREFIX = "val:"  # a metric named "val:perplexity" is read from the validation split


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record: its primary metric's value on the test split (on validation for a
    ``val:`` name) and the trivial floor the task reported for it (``extras.floors``, test;
    ``extras.val_floors``, validation), NaN where there is none."""
    from ..harness.identity import overrides_label

    rows = []
    for r in records:
        metric = r.get("primary_metric")
        split, name = ("val", metric[len(VAL_PREFIX):]) if str(metric).startswith(VAL_PREFIX) else ("test", metric)
        value = ((r.get("metrics") or {}).get(split) or {}).get(name)
        floors = (r.get("extras") or {}).get("floors" if split == "test" else "val_floors") or {}
        floor = (floors.get(name) or {}).get("value") if isinstance(floors, dict) else None
        rows.append({"scale": r["scale"], "domain": r["domain"], "dataset": r["dataset"], "model": r["model"],
                     "overrides": overrides_label(r.get("overrides")), "data": (r.get("data") or "")[:8],
                     "method": r["method"], "seed": r["seed"], "status": r["status"], "metric": metric,
                     "higher_is_better": r.get("higher_is_better", True),
                     "value": float(value) if isinstance(value, (int, float)) else math.nan,
                     "floor": float(floor) if isinstance(floor, (int, float)) else math.nan})
    columns = GROUP + ["method", "seed", "status", "metric", "higher_is_better", "value", "floor"]
    return pd.DataFrame(rows, columns=columns)


def load(results: Path) -> pd.DataFrame:
    """Each record's primary metric (what the regression gate and the W&B leaderboard use)."""
    return records_frame(iter_records(Path(results)))


def table_frame(records: list[dict], metric: str | None = None) -> pd.DataFrame:
    """The frame `dfabench table` shows. Per domain: with no ``metric``, the metrics its task lists in
    ``table_metrics`` (PSNR and SSIM, AUC and logloss), else each record's primary metric; with a
    name, that test metric; with 'all', every metric the task declares. An unknown name is a
    ValueError."""
    from ..catalog import specs

    tasks = specs()  # metric names and directions only: no task is imported
    parts, known = [], set()
    for domain in sorted({r["domain"] for r in records}):
        mine = [r for r in records if r["domain"] == domain]
        task = tasks.get(domain)
        direction = {m.name: m.higher_is_better for m in task.metrics} if task else {}
        known |= set(direction)
        names = list(direction) if metric == "all" else [metric] if metric else list(getattr(task, "table_metrics", ()))
        if not names:
            parts.append(records_frame(mine))
        parts += [metric_frame(mine, name, direction[name]) for name in names if name in direction]
    if records and metric not in (None, "all") and metric not in known:
        raise ValueError(f"unknown metric {metric!r} for these records; known: {', '.join(sorted(known))} or all")
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else records_frame([])


def metric_frame(records: Iterable[dict], metric: str, higher_is_better: bool) -> pd.DataFrame:
    """Like records_frame, for any test metric the records hold (AUC or logloss, PSNR or SSIM), not
    only their primary one, or a validation metric named ``val:NAME``; ok records without it are left
    out, failed ones (which hold no metrics) stay wherever their cell's table shows them, to be
    counted as failed."""
    return records_frame({**r, "primary_metric": metric, "higher_is_better": higher_is_better} for r in records
                         if _shows(r, metric))


def _shows(record: dict, metric: str) -> bool:
    split, name = ("val", metric[len(VAL_PREFIX):]) if metric.startswith(VAL_PREFIX) else ("test", metric)
    if name in ((record.get("metrics") or {}).get(split) or {}):
        return True
    if record["status"] == "ok":
        return False
    from ..catalog import specs

    spec = specs().get(record["domain"])
    return metric == record.get("primary_metric") or (spec is not None and metric in spec.table_metrics)


def method_key(method: str) -> tuple[int, str]:
    """Sort key of a method name: BP, DFA and shallow first, the rest by name."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def variant_label(overrides: str, data: str) -> str:
    """What sets a row apart from the task's own settings and data ('' for those)."""
    return "; ".join(part for part in (overrides, f"data {data}" if data else "") if part)


def select_records(records: list[dict], scale: str | None = None, domain: str | None = None,
                   cells: list[str] | None = None) -> list[dict]:
    """The records of one scale, domain and cells (domain/dataset/model globs); None keeps all."""
    return [r for r in records
            if scale in (None, r["scale"]) and domain in (None, r["domain"])
            and (not cells or any(fnmatch.fnmatchcase(f"{r['domain']}/{r['dataset']}/{r['model']}", glob)
                                  for glob in cells))]
