"""Comparison tables from run records: the wide markdown, LaTeX and CSV forms `dfabench table` writes.

Per cell (domain/dataset/model at a scale), metric and method: a test metric's mean ± unbiased
std over seeds and n; methods side by side, the best in bold; and for every method other than BP
its gap to BP paired by seed (mean difference with a 95% t-interval). Where the records report a
trivial floor for the metric (chance accuracy, the unigram perplexity), a ``floor`` column shows it.
An ``overrides`` / ``data`` column appears when any record has one (``frame.py``).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..harness.store import iter_records
from .frame import GROUP, VARIANT, method_key, select_records, table_frame
from .published import load_published, published_markdown
from .summaries import format_mean, gap_text, paired_gaps, summary


def wide(frame: pd.DataFrame, over_shallow: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per cell: a column per method (mean ± std (n)), then a gap column per non-BP method,
    and for the methods in ``over_shallow`` their gap to the shallow control (``dfa−shallow``)."""
    if frame.empty:
        return pd.DataFrame()
    summ = summary(frame)
    gaps = paired_gaps(frame)
    shallow_gaps = paired_gaps(frame, "shallow") if over_shallow else gaps.iloc[0:0]
    floors = frame.groupby(GROUP + ["metric"])["floor"].mean() if "floor" in frame else pd.Series(dtype=float)
    methods = sorted(summ.method.unique(), key=method_key)
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
                row[f"{method}−bp"] = gap_text(cell_gaps, method)
        if over_shallow:
            cell_shallow = shallow_gaps[(shallow_gaps[GROUP + ["metric"]] == key).all(axis=1)]
            for method in over_shallow:
                row[f"{method}−shallow"] = gap_text(cell_shallow, method)
        rows.append(row)
    table = pd.DataFrame(rows)
    empty = [c for c in table.columns
             if (c.endswith(("−bp", "−shallow")) or c == "floor" or c in VARIANT) and (table[c] == "").all()]
    return table.drop(columns=empty)  # default runs only: no overrides / data column


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


def write_all(results: Path, baselines: Path) -> list[Path]:
    """`dfabench table --write`: the per-domain tables, then each task's own figures."""
    from ..task import all_tasks

    written = write_tables(Path(results), baselines=Path(baselines))
    for task in all_tasks().values():
        written += task.figures(Path(results))
    return written


def table_text(results: Path, fmt: str = "glance", scale: str | None = None, domain: str | None = None,
               cells: list[str] | None = None, metric: str | None = None) -> str:
    """What `dfabench table` prints: the records of ``results`` narrowed by scale, domain and cell globs,
    in one of the formats (glance, compact, md, latex, csv). A filter that keeps nothing of a non-empty
    folder is a typo, and an unknown metric bad input: ConfigError."""
    from ..errors import ConfigError

    every = list(iter_records(Path(results)))
    records = select_records(every, scale, domain, cells)
    if every and not records:
        given = " ".join(f"--{k} {v}" for k, v in (("scale", scale), ("domain", domain)) if v)
        given = " ".join([given] + [f"--cell {c}" for c in cells or []]).strip()
        raise ConfigError(f"{given} matches no record in {results}/runs")
    try:
        frame = table_frame(records, metric)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if fmt == "glance":
        from .glance import render_glance

        return render_glance(frame, records)
    if fmt == "compact":
        from .compact import render_compact

        return render_compact(frame, cells)
    return render(frame, fmt)
