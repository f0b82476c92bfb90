"""The leaderboard's tables, built once from the records: the HTML site and the W&B mirror render the
same frames.

An *entry* is one method in one row of a domain's table (a cell, dataset/model, with the variant its
overrides or data make, and one test metric): its mean ± unbiased std over the ok seeds and its gap to
BP paired by seed with the 95% t-interval (``dfabench.report.summaries``), in the metric's units (accuracy, AUC
and AP in points, PSNR in dB, the rest as they are: ``dfabench.report.glance``), its failed runs, the
published number for the same model where one is known, and whether `dfabench verify` re-ran it.

The *summary* has one row per method and one column per domain (and scale): the share of BP's advantage
over the shallow control that the method keeps, the median over the domain's benchmark cells with its
95% two-level bootstrap interval (``dfabench.report.domain_summary``: scale-free, so that cells of different
scales are never averaged as raw gaps). Cells whose control is no control are left out and named in the
entry's title. Findings cells (the pre-LN models) have their own column, never averaged in.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from dfabench.report.frame import GROUP, method_key, records_frame, table_frame, variant_label
from dfabench.report.glance import ENTRY, UNITS
from dfabench.report.glance import entries as unit_entries
from dfabench.report.domain_summary import kept_text
from dfabench.harness.identity import overrides_label
from dfabench.harness.store import iter_records
from dfabench.report.reproduce import DATASET_NAMES, TABLES, published_cell

from .verification import Verification, load_verification

ROW = ["dataset", "model", "overrides", "data"]  # a row's identity inside one (scale, domain) table
# what each (method) column of a wide frame holds: display texts and the numbers they sort by
WIDE_FIELDS = ("text", "mean", "best", "gap", "gap_value", "gap_class", "paper", "paper_title", "verified",
               "verified_title")


@dataclass
class Board:
    folders: list[Path]
    records: list[dict]
    entries: pd.DataFrame  # one row per entry (ENTRY), statistics already in the metric's units
    summary: pd.DataFrame  # one row per (scale, domain, metric, method) of the primary metrics
    verification: Verification = field(default_factory=Verification)

    def domains(self) -> list[str]:
        return sorted(self.entries.domain.unique()) if len(self.entries) else []

    def tables(self, domain: str) -> list[tuple[str, str, str, pd.DataFrame]]:
        """(scale, metric, its label, wide frame) of each metric of a domain: primary metrics first."""
        part = self.entries[self.entries.domain == domain]
        keys = part[["scale", "metric", "label", "primary"]].drop_duplicates(["scale", "metric"])
        keys = keys.sort_values(["scale", "primary"], ascending=[True, False], kind="stable")
        return [(k.scale, k.metric, k.label, wide_frame(part[(part.scale == k.scale) & (part.metric == k.metric)]))
                for k in keys.itertuples()]


def load_records(folders: Iterable[Path]) -> list[dict]:
    """The records of every folder, each run once (the same record id in two folders is one run)."""
    seen: dict[str, dict] = {}
    for folder in folders:
        for record in iter_records(Path(folder)):
            seen.setdefault(record["id"], record)
    return list(seen.values())


def build_board(folders: Iterable[Path], baselines: Path | None = None) -> Board:
    folders = [Path(f) for f in folders]
    records = load_records(folders)
    verification = load_verification(folders)
    entries = entries_frame(records, verification, _published_by_source(baselines))
    return Board(folders, records, entries, summary_frame(entries, records), verification)


def _published_by_source(baselines: Path | None) -> dict[str, dict]:
    """{source file: {cell: entry}} as `dfabench reproduce` reads them; nothing without the files."""
    from dfabench.report.reproduce import published_for_tables

    if baselines is None or not (Path(baselines) / "paper.yaml").exists():
        return {}
    return published_for_tables(Path(baselines))


def _record_ids(records: list[dict]) -> dict[tuple, list[str]]:
    """(GROUP..., method) -> the ids of the records that make that entry (what verify re-runs)."""
    out: dict[tuple, list[str]] = {}
    for r in records:
        key = (r["scale"], r["domain"], r["dataset"], r["model"], overrides_label(r.get("overrides")),
               (r.get("data") or "")[:8], r["method"])
        out.setdefault(key, []).append(r["id"])
    return out


ENTRY_COLUMNS = ENTRY + ["higher_is_better", "primary", "label", "digits", "mean", "std", "n", "failed", "gap",
                         "ci95", "pairs", "best", "text", "gap_text", "gap_class", "paper", "paper_title", "verified",
                         "verified_title", "rerun", "runs"]


def entries_frame(records: list[dict], verification: Verification, published: dict[str, dict]) -> pd.DataFrame:
    frame = table_frame(records)  # each task's table metrics (AUC and logloss, PSNR and SSIM), else the primary
    if frame.empty:
        return pd.DataFrame(columns=ENTRY_COLUMNS)
    entries = unit_entries(frame)  # values, texts and gaps in the metric's units, in table order
    primary = records_frame(records)[GROUP + ["metric"]].drop_duplicates()
    entries = entries.merge(primary.assign(primary=True), on=GROUP + ["metric"], how="left")
    entries["primary"] = entries["primary"].eq(True)
    higher = entries.higher_is_better.astype(bool)
    entries["gap_class"] = [_gap_class(g, c, h) for g, c, h in zip(entries.gap, entries.ci95, higher)]
    ids = _record_ids(records)
    marks = [verification.mark(ids.get(tuple(r[c] for c in GROUP) + (r["method"],), []))
             for _, r in entries.iterrows()]
    entries["verified"] = [m["status"] for m in marks]
    entries["verified_title"] = [m["title"] for m in marks]
    entries["rerun"] = [m["rerun"] for m in marks]
    entries["runs"] = [m["records"] for m in marks]
    papers = _paper_numbers(entries, published)
    entries["paper"] = [p[0] for p in papers]
    entries["paper_title"] = [p[1] for p in papers]
    return entries[ENTRY_COLUMNS]


def _gap_class(gap: float, ci95: float, higher: bool) -> str:
    """'better' / 'worse' than BP where the 95% interval excludes 0, else ''."""
    if gap != gap or ci95 != ci95 or abs(gap) <= ci95:
        return ""
    return "better" if (gap > 0) == higher else "worse"


def _paper_numbers(entries: pd.DataFrame, published: dict[str, dict]) -> list[tuple[str, str]]:
    """(text, tooltip) of the published number beside each entry: the same model's number from the file
    `dfabench reproduce` reads for the domain (its dataset named: ours are offline stand-ins), converted
    to the row's units when it is the row's metric; a published metric the page has no row for goes
    beside the primary metric, named. ('', '') where nothing is known."""
    shown = entries.groupby(GROUP)["metric"].agg(set).to_dict()
    out = []
    for r in entries.itertuples():
        table = TABLES.get(r.domain)
        if table is None:
            out.append(("", ""))
            continue
        cells = published.get(table.source_file, {})
        cell = published_cell(table, cells, r.domain, r.dataset, r.model)
        entry = cells.get(cell) if cell else None
        values = entry.get(table.published_methods.get(r.method, r.method)) if isinstance(entry, dict) else None
        if not isinstance(values, dict):
            out.append(("", ""))
            continue
        where = f"{table.source} ({DATASET_NAMES.get(cell.split('/')[1], cell.split('/')[1])})"
        texts = []
        for metric, value in values.items():
            if not isinstance(value, (int, float)):
                continue
            if metric == r.metric:
                factor = UNITS.get(metric, (1.0, ""))[0]
                texts.append(f"{factor * value:.{r.digits}f}")
            elif r.primary and metric not in shown[tuple(getattr(r, c) for c in GROUP)]:
                texts.append(f"{metric} {value:g}")
        text = f"{where}: {', '.join(texts)}" if texts else ""
        out.append((text, f"{cell}, {entry.get('source', '')}; as published: {values}" if text else ""))
    return out


def summary_frame(entries: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """One row per (scale, domain, group, metric, method): the kept share (``dfabench.report.domain_summary``: median
    over the group's cells, 95% interval) and the cells left out; BP is 1 and the shallow control 0 by
    definition; verified and disputed entries of the group's primary-metric entries."""
    from dfabench.report.domain_summary import domain_summary, group_of

    columns = ["scale", "domain", "group", "metric", "label", "higher_is_better", "method", "kept", "low", "high",
               "cells", "seeds_min", "seeds_max", "left_out", "verified", "disputed", "entries"]
    prim = entries[entries.primary.astype(bool)].copy()
    if prim.empty:
        return pd.DataFrame(columns=columns)
    prim["group"] = [group_of(d, m) for d, m in zip(prim.domain, prim.model)]
    kept = domain_summary(records).set_index(["scale", "domain", "group", "metric", "method"])
    rows = []
    for (scale, domain, group, metric, method), g in prim.groupby(["scale", "domain", "group", "metric", "method"],
                                                                   sort=True):
        row = {"scale": scale, "domain": domain, "group": group, "metric": g.metric.iloc[0], "label": g.label.iloc[0],
               "higher_is_better": bool(g.higher_is_better.iloc[0]), "method": method,
               "kept": math.nan, "low": math.nan, "high": math.nan, "cells": 0, "seeds_min": 0, "seeds_max": 0,
               "left_out": [], "verified": int((g.verified == "verified").sum()),
               "disputed": int((g.verified == "disputed").sum()), "entries": len(g)}
        if method in ("bp", "shallow"):
            ran = g[g.n > 0]
            row.update(kept=1.0 if method == "bp" else 0.0, cells=len(ran),
                       seeds_min=int(ran.n.min()) if len(ran) else 0, seeds_max=int(ran.n.max()) if len(ran) else 0)
        elif (scale, domain, group, metric, method) in kept.index:
            k = kept.loc[(scale, domain, group, metric, method)]
            row.update({c: k[c] for c in ("kept", "low", "high", "cells", "seeds_min", "seeds_max", "left_out")})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def paper_table_name(domain: str) -> str:
    """'Table 2' / 'Tables 3 and 4': the paper's table a domain's column stands for ('' if none)."""
    table = TABLES.get(domain)
    found = re.match(r"Tables? [0-9]+(?: and [0-9]+)?", table.title) if table else None
    return found.group(0) if found else ""


def summary_wide(board: Board) -> pd.DataFrame:
    """Rows = methods, columns = (domain column, field): what the index shows and W&B mirrors. The fields:
    text and gap (the kept share, shown and as a number: the field keeps its name for W&B), better
    ('better'/'worse'/'': the interval excludes 1), cells, seeds,
    verified and disputed ('k/n' of its entries, or ''), title (what the entry means, in words)."""
    summ = board.summary
    if summ.empty:
        return pd.DataFrame()
    several_scales = summ.scale.nunique() > 1
    data: dict[tuple, dict] = {}
    for r in summ.sort_values(["domain", "group", "scale", "metric"], kind="stable").itertuples():
        name = r.domain + (" findings" if r.group == "findings" else "")
        column = " · ".join(p for p in (name, r.scale if several_scales else "", r.label) if p)
        seeds = f"{r.seeds_min} seed" + "s" * (r.seeds_max != 1) if r.seeds_min == r.seeds_max else \
            f"{r.seeds_min}–{r.seeds_max} seeds"
        if r.method in ("bp", "shallow"):
            text = "1 (BP)" if r.method == "bp" else "0 (control)"
        else:
            text = kept_text(r.kept, r.low, r.high)
        # better / worse than BP where the interval excludes 1 (kept 1: as BP)
        better = "" if r.method in ("bp", "shallow") or r.low != r.low else (
            "better" if r.low > 1 else "worse" if r.high < 1 else "")
        cells = f"{r.cells} cell" + "s" * (r.cells != 1)
        title = (f"{r.method}: share of BP's advantage over the shallow control kept, median over {cells} ({r.group}), "
                 f"{seeds} per cell, 95% bootstrap interval over cells and seeds")
        if r.left_out:
            title += "; left out: " + "; ".join(r.left_out)
        values = {"text": text, "gap": r.kept, "better": better, "cells": cells, "seeds": seeds,
                  "verified": f"{r.verified}/{r.entries}" if r.verified else "",
                  "disputed": f"{r.disputed}/{r.entries}" if r.disputed else "", "title": title}
        data.setdefault(r.method, {}).update({(column, k): v for k, v in values.items()})
    frame = pd.DataFrame.from_dict(data, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame = frame.reindex(sorted(frame.index, key=method_key))
    frame.index.name = "method"
    return frame


def summary_columns(board: Board) -> list[dict]:
    """The summary's domain columns in order, with what their headers say."""
    frame = summary_wide(board)
    out = []
    for column in dict.fromkeys(c for c, _ in frame.columns):
        domain = column.split(" · ")[0]  # "lm findings": the findings cells' own column
        out.append({"key": column, "domain": domain, "paper_table": paper_table_name(domain)})
    return out


def wide_frame(part: pd.DataFrame) -> pd.DataFrame:
    """One metric of one (scale, domain): rows = cells (dataset/model and variant), columns = (method,
    field) with the fields of WIDE_FIELDS; methods in the paper's order, cells in the task's order."""
    methods = sorted(part.method.unique(), key=method_key)
    rows = []
    for key, g in part.groupby(ROW, sort=False):  # the entries' order: the task's cells
        dataset, model, overrides, data = key
        row = {("cell", ""): f"{dataset}/{model}", ("variant", ""): variant_label(overrides, data)}
        by_method = g.set_index("method")
        for method in methods:
            if method not in by_method.index:
                row.update({(method, f): ("" if f not in ("mean", "gap_value", "best") else
                                          False if f == "best" else math.nan) for f in WIDE_FIELDS})
                continue
            e = by_method.loc[method]
            row.update({(method, "text"): e.text, (method, "mean"): float(e["mean"]), (method, "best"): bool(e.best),
                        (method, "gap"): e.gap_text, (method, "gap_value"): float(e.gap),
                        (method, "gap_class"): e.gap_class,
                        (method, "paper"): e.paper, (method, "paper_title"): e.paper_title,
                        (method, "verified"): e.verified, (method, "verified_title"): e.verified_title})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def methods_of(wide: pd.DataFrame) -> list[str]:
    return [m for m in dict.fromkeys(c for c, _ in wide.columns) if m not in ("cell", "variant")]


def flat(wide: pd.DataFrame, skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """A wide frame with plain column names, for W&B tables: a column's 'text' field goes under its name
    alone, the other fields as 'NAME FIELD' (``skip``: fields left out); empty text where there is none."""
    out = pd.DataFrame(index=wide.index)
    for top, sub in wide.columns:
        if sub in skip:
            continue
        name = top if sub in ("", "text") else f"{top} {sub}"
        column = wide[(top, sub)]
        out[name] = column if pd.api.types.is_numeric_dtype(column) else column.fillna("")
    return out.reset_index(drop=True)


def summary_flat(board: Board) -> pd.DataFrame:
    """The summary as one row per method with plain column names (W&B)."""
    wide = summary_wide(board)
    if wide.empty:
        return wide
    out = flat(wide, skip=("better", "title"))
    out.insert(0, "method", list(wide.index))
    return out


def wide_flat(frame: pd.DataFrame) -> pd.DataFrame:
    """A domain's wide table with plain column names (W&B)."""
    return flat(frame, skip=("best", "gap_value", "gap_class", "paper_title", "verified_title")).assign(
        best=[", ".join(m for m in methods_of(frame) if row[(m, "best")]) for _, row in frame.iterrows()])
