"""Comparison tables from run records, with pandas.

Per cell (domain/dataset/model at a scale), metric and method: a test metric's mean ± unbiased
std over seeds and n; methods side by side, the best in bold; and for every method other than BP
its gap to BP paired by seed (mean difference with a 95% t-interval). Only runs with status ``ok``
enter the statistics; the others are counted in a ``failed`` column. Where the records report a
trivial floor for the metric (chance accuracy, the unigram perplexity), a ``floor`` column shows it.

Runs group by the same identity as their ids: a record's ``overrides`` (what the user's ``--set``
changed) and ``data`` (the content fingerprint of a user's data) are part of the row, shown in an
``overrides`` / ``data`` column when any record has one, so a ``--set lr=1e6`` run or another graph
never shares a row with the default runs. A seed that appears twice for one method in a row is
refused by the pairing (the gap says so) instead of being counted twice.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from .harness.store import iter_records

METHOD_ORDER = ["bp", "dfa", "shallow"]
CELL = ["scale", "domain", "dataset", "model"]
VARIANT = ["overrides", "data"]  # the rest of a row's identity ('' for the task's own settings and data)
GROUP = CELL + VARIANT


VAL_PREFIX = "val:"  # a metric named "val:perplexity" is read from the validation split


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """One row per record: its primary metric's value on the test split (on validation for a
    ``val:`` name) and the trivial floor the task reported for it (``extras.floors``, test;
    ``extras.val_floors``, validation), NaN where there is none."""
    from .harness.identity import overrides_label

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


def _t975(dof: int) -> float:
    from scipy import stats  # imported here: scipy.stats costs about a second, and only tables need it

    return float(stats.t.ppf(0.975, dof))


def table_frame(records: list[dict], metric: str | None = None) -> pd.DataFrame:
    """The frame `dfabench table` shows. Per domain: with no ``metric``, the metrics its task lists in
    ``table_metrics`` (PSNR and SSIM, AUC and logloss), else each record's primary metric; with a
    name, that test metric; with 'all', every metric the task declares. An unknown name is a
    ValueError."""
    from .catalog import specs

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
    from .catalog import specs

    spec = specs().get(record["domain"])
    return metric == record.get("primary_metric") or (spec is not None and metric in spec.table_metrics)


def _method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per cell and method with mean, std (ddof=1), n and failed runs."""
    ok = frame[frame.status == "ok"]
    keys = GROUP + ["method", "metric", "higher_is_better"]
    stats_frame = ok.groupby(keys, dropna=False)["value"].agg(mean="mean", std="std", n="count").reset_index()
    failed = frame[frame.status != "ok"].groupby(keys, dropna=False).size().rename("failed").reset_index()
    out = stats_frame.merge(failed, on=keys, how="outer")
    out["n"] = out["n"].fillna(0).astype(int)
    out["failed"] = out["failed"].fillna(0).astype(int)
    return out


def paired_gaps(frame: pd.DataFrame, reference: str = "bp") -> pd.DataFrame:
    """Method minus reference, paired by seed, per row: mean, 95% CI half-width, n pairs. A seed
    recorded twice for either side is not paired at all: ``duplicate`` names it, the gap is NaN."""
    ok = frame[frame.status == "ok"]
    rows = []
    for (*cell, metric), group in ok.groupby(GROUP + ["metric"]):
        base = group[group.method == reference].set_index("seed")["value"]
        for method, sub in group[group.method != reference].groupby("method"):
            mine = sub.set_index("seed")["value"]
            twice = sorted(set(base.index[base.index.duplicated()]) | set(mine.index[mine.index.duplicated()]))
            if twice:
                rows.append(dict(zip(GROUP, cell), metric=metric, method=method, gap=math.nan, ci95=math.nan,
                                 pairs=0, duplicate=", ".join(map(str, twice))))
                continue
            diff = (mine - base).dropna()
            n = len(diff)
            mean = diff.mean() if n else math.nan
            half = (_t975(n - 1) * diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            rows.append(dict(zip(GROUP, cell), metric=metric, method=method, gap=mean, ci95=half, pairs=n,
                             duplicate=""))
    return pd.DataFrame(rows, columns=GROUP + ["metric", "method", "gap", "ci95", "pairs", "duplicate"])


def format_mean(mean: float, std: float, n: int, digits: int = 4) -> str:
    """'mean ± std (n=N)' as every table prints it; '—' without runs, no spread for one."""
    if n == 0 or mean != mean:
        return "—"
    spread = f" ± {std:.2g}" if std == std else ""
    return f"{mean:.{digits}g}{spread} (n={n})"


def wide(frame: pd.DataFrame, over_shallow: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per cell: a column per method (mean ± std (n)), then a gap column per non-BP method,
    and for the methods in ``over_shallow`` their gap to the shallow control (``dfa−shallow``)."""
    if frame.empty:
        return pd.DataFrame()
    summ = summary(frame)
    gaps = paired_gaps(frame)
    shallow_gaps = paired_gaps(frame, "shallow") if over_shallow else gaps.iloc[0:0]
    floors = frame.groupby(GROUP + ["metric"])["floor"].mean() if "floor" in frame else pd.Series(dtype=float)
    methods = sorted(summ.method.unique(), key=_method_key)
    rows = []
    for (*cell, metric), group in summ.groupby(GROUP + ["metric"], sort=True):
        higher = bool(group.higher_is_better.iloc[0])
        row = dict(zip(GROUP, cell))
        row["metric"] = f"{metric} {'↑' if higher else '↓'}"
        # the trivial level (chance, unigram perplexity): what a method must beat to have learned anything
        floor = floors.get(tuple(cell) + (metric,), math.nan)
        row["floor"] = f"{floor:.4g}" if floor == floor else ""
        by_method = group.set_index("method")
        ok_means = by_method["mean"].dropna()
        best = (ok_means.idxmax() if higher else ok_means.idxmin()) if len(ok_means) else None
        for method in methods:
            if method not in by_method.index:
                row[method] = ""
                continue
            m = by_method.loc[method]
            text = format_mean(m["mean"], m["std"], int(m["n"]))
            if int(m["failed"]):
                text += f" [{int(m['failed'])} failed]"
            row[method] = f"**{text}**" if method == best and len(ok_means) > 1 else text
        key = pd.Series({**dict(zip(GROUP, cell)), "metric": metric})
        cell_gaps = gaps[(gaps[GROUP + ["metric"]] == key).all(axis=1)] if len(gaps) else gaps
        for method in methods:
            if method != "bp":
                row[f"{method}−bp"] = _gap_text(cell_gaps, method)
        if over_shallow:
            cell_shallow = shallow_gaps[(shallow_gaps[GROUP + ["metric"]] == key).all(axis=1)]
            for method in over_shallow:
                row[f"{method}−shallow"] = _gap_text(cell_shallow, method)
        rows.append(row)
    table = pd.DataFrame(rows)
    empty = [c for c in table.columns
             if (c.endswith(("−bp", "−shallow")) or c == "floor" or c in VARIANT) and (table[c] == "").all()]
    return table.drop(columns=empty)  # default runs only: no overrides / data column


def _gap_text(gaps: pd.DataFrame, method: str) -> str:
    """'+gap ± ci' of one method in one cell's paired gaps; '' without pairs."""
    g = gaps[gaps.method == method] if len(gaps) else gaps
    if len(g) and g.duplicate.iloc[0]:
        return f"not paired: seed {g.duplicate.iloc[0]} recorded twice"
    if not len(g) or g.pairs.iloc[0] == 0:
        return ""
    ci = g.ci95.iloc[0]
    return f"{g.gap.iloc[0]:+.3g}" + (f" ± {ci:.2g}" if ci == ci else "")


def render(frame: pd.DataFrame, fmt: str = "md") -> str:
    if fmt == "csv":
        return summary(frame).merge(paired_gaps(frame), on=GROUP + ["metric", "method"], how="left").to_csv(index=False)
    table = wide(frame)
    if table.empty:
        return "no run records\n"
    if fmt == "latex":
        latex = table.copy()
        for column in latex.columns:
            latex[column] = latex[column].astype(str).str.replace(r"\*\*(.*)\*\*", r"\\textbf{\1}", regex=True)
            latex[column] = (latex[column].str.replace("±", r"$\pm$", regex=False)
                             .str.replace("−", "-", regex=False).str.replace("↑", r"$\uparrow$", regex=False)
                             .str.replace("↓", r"$\downarrow$", regex=False).str.replace("_", r"\_", regex=False))
        latex.columns = [c.replace("−", "-").replace("_", r"\_") for c in latex.columns]
        return latex.to_latex(index=False)
    return table.to_markdown(index=False) + "\n\nmean ± unbiased std over seeds (n); gap = method − bp paired " \
                                            "by seed, ± 95% t-interval half-width; best in bold.\n"


def write_tables(results: Path, out_dir: Path | None = None, baselines: Path | None = None) -> list[Path]:
    """One markdown and one LaTeX table per domain of the records under ``results``, into
    ``results/tables/`` (what the README quotes; a test checks they match the records). With
    ``baselines``, each markdown table is followed by the published numbers of its domain, ours beside."""
    from .published import load_published, published_markdown

    records = list(iter_records(Path(results)))
    frame = table_frame(records)
    published = load_published(baselines) if baselines is not None else {}
    out_dir = Path(out_dir) if out_dir is not None else Path(results) / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for domain in sorted(frame.domain.unique()):
        part = frame[frame.domain == domain]
        for fmt, suffix in (("md", "md"), ("latex", "tex")):
            text = render(part, fmt)
            if fmt == "md":
                text += published_markdown(published, domain, (r for r in records if r["domain"] == domain))
            path = out_dir / f"{domain}.{suffix}"
            path.write_text(text)
            written.append(path)
    return written
