"""The table `dfabench table` prints: one block per domain and scale, to read at a glance.

Each block has one row per cell (and variant: other overrides or data) and method and one column pair per metric (its value, and its gap
to BP paired by seed with the 95% t-interval), in the units of the field: accuracy, AUC and AP in
points (%), PSNR in dB, the rest as they are. Cells come in the order their task declares them
(its headline first), methods in the paper's order. Columns that would repeat one value (scale,
domain, the seed count) go into the block's title; a throughput column gives each method's
training items per second from the records (``timings.train_items_per_s``), or its step time where
older records hold only ``step_ms``. `--format csv` keeps the long machine-readable form instead.
"""
from __future__ import annotations

import math

import pandas as pd

from ..catalog import specs
from .frame import GROUP, VARIANT, method_key, variant_label
from .summaries import paired_gaps, summary

ENTRY = GROUP + ["metric", "method"]

# metric -> (factor, unit): what the field quotes (accuracy and AUC in points, PSNR in dB);
# records hold fractions, except top-1 error, which vision records in % already (as biotorch quotes it)
UNITS = {"accuracy": (100.0, "%"), "auc": (100.0, "%"), "ap": (100.0, "%"), "top1_error": (1.0, "%"),
         "psnr": (1.0, "dB")}


def _decimals(magnitude: float) -> int:
    """Digits after the point for numbers of this size: 87.8, 0.445, 277."""
    size = abs(magnitude)
    return 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3


def _value(mean: float, std: float, n: int, failed: int, digits: int) -> str:
    if n == 0 or mean != mean:
        text = "—"
    else:
        text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std == std else "")
    return text + (f" [{failed} failed]" if failed else "")


def format_gap(gap: float, ci: float, digits: int) -> str:
    """A paired gap and its interval half-width in the field's units, signed with a true minus."""
    if gap != gap:
        return ""
    return f"{gap:+.{digits}f}".replace("-", "−") + (f" ± {ci:.{digits}f}" if ci == ci else "")


def _throughput(records: list[dict]) -> dict[tuple, str]:
    """(row identity, method) -> mean items/s (or step ms) of its ok records."""
    from ..harness.identity import overrides_label

    rates: dict[tuple, list[float]] = {}
    steps: dict[tuple, list[float]] = {}
    units: dict[tuple, str] = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        key = (r["scale"], r["domain"], r["dataset"], r["model"], overrides_label(r.get("overrides")),
               (r.get("data") or "")[:8], r["method"])  # the identity tables group by (tables.GROUP)
        timings = r.get("timings") or {}
        if timings.get("train_items_per_s"):
            rates.setdefault(key, []).append(float(timings["train_items_per_s"]))
            units[key] = timings.get("item_unit") or "items"
        elif timings.get("step_ms"):
            steps.setdefault(key, []).append(float(timings["step_ms"]))
    out = {key: f"{sum(v) / len(v):,.0f} {units[key]}/s" for key, v in rates.items()}
    out.update({key: f"{sum(v) / len(v):.1f} ms/step" for key, v in steps.items() if key not in out})
    return out


def _cell_order(domain: str, cells: list[tuple[str, str]]) -> list[tuple[str, str]]:
    spec = specs().get(domain)
    declared = spec.cells() if spec else []
    rank = {cell: i for i, cell in enumerate(declared)}
    return sorted(cells, key=lambda c: (rank.get(c, len(rank)), c))


def blocks(frame: pd.DataFrame, records: list[dict]) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) per domain and scale, the table's cells already formatted. Runs whose
    overrides or data differ are rows of their own (a ``variant`` column names them), as in every
    table (tables.GROUP)."""
    if frame.empty:
        return []
    summ, table_entries = summary(frame), entries(frame)
    floors = frame.groupby(GROUP + ["metric"])["floor"].mean() if "floor" in frame else pd.Series(dtype=float)
    speed = _throughput(records)
    out = []
    for (scale, domain), part in summ.groupby(["scale", "domain"], sort=True):
        metrics = list(dict.fromkeys(frame[(frame.scale == scale) & (frame.domain == domain)].metric))
        cells = _cell_order(domain, sorted(set(zip(part.dataset, part.model))))
        rows = []
        for dataset, model in cells:
            shown = False
            for variant in sorted(set(zip(*(part[(part.dataset == dataset) & (part.model == model)][c]
                                             for c in VARIANT)))):
                key = (scale, domain, dataset, model, *variant)
                here = part[(part[GROUP] == pd.Series(dict(zip(GROUP, key)))).all(axis=1)]
                row_entries = table_entries[(table_entries[GROUP] == pd.Series(dict(zip(GROUP, key)))).all(axis=1)]
                for method in sorted(here.method.unique(), key=method_key):
                    row = {"cell": "" if shown else f"{dataset}/{model}", "variant": variant_label(*variant),
                           "method": method}
                    shown = True
                    for metric in metrics:
                        _add_metric(row, row_entries[(row_entries.metric == metric)], method)
                    row["n"] = int(here[here.method == method].n.max())
                    row["throughput"] = speed.get((*key, method), "")
                    rows.append(row)
                floor = _floor_row(here, floors, key)
                if floor:
                    rows.append(floor)
        table = pd.DataFrame(rows).astype(object).fillna("")  # object first: "" is no float
        # each metric's value beside its gap, then the seeds and the throughput
        fixed = ("cell", "variant", "method", "n", "throughput")
        names = [c for c in table.columns if c not in fixed and " − BP" not in c]
        paired = [c for name in names for c in (name, f"{name.split()[0]} − BP") if c in table.columns]
        table = table[["cell", "variant", "method", *paired, "n", "throughput"]]
        title = f"{domain} · {scale} · test metrics, mean ± std over seeds; − BP: paired by seed, ± 95% CI"
        seeds = table.loc[table.method != "floor", "n"]
        if seeds.nunique() == 1:  # a constant column goes into the title
            n = int(seeds.iloc[0])
            title += f"; n = {n} seed{'s' if n != 1 else ''}"
            table = table.drop(columns="n")
        for column in ("variant", "throughput"):
            if (table[column] == "").all():  # the task's own settings only / no timings recorded
                table = table.drop(columns=column)
        out.append((title, table))
    return out


def _column(metric: str, higher: bool, rows: pd.DataFrame) -> tuple[float, str, int]:
    """A metric's factor to the field's units, its column name, and the digits its cell shows."""
    factor, unit = UNITS.get(metric, (1.0, ""))
    name = f"{metric}{' ' + unit if unit else ''} {'↑' if higher else '↓'}"
    bp = rows[rows.method == "bp"]["mean"]
    scale_of = bp.iloc[0] if len(bp) and bp.iloc[0] == bp.iloc[0] else rows["mean"].abs().max()
    return factor, name, _decimals(factor * scale_of) if scale_of == scale_of else 3


def _floor_row(here: pd.DataFrame, floors: pd.Series, key: tuple) -> dict | None:
    """The trivial level the records report (chance, the unigram perplexity), as a row of its own:
    what a method must beat to have learned anything."""
    row = {"cell": "", "variant": "", "method": "floor"}
    for (metric, higher), rows in here.groupby(["metric", "higher_is_better"], sort=False):
        value = floors.get(key + (metric,), math.nan)
        if value == value:
            factor, name, digits = _column(metric, bool(higher), rows)
            row[name] = f"{factor * value:.{digits}f}"
    return row if len(row) > 3 else None


def _add_metric(row: dict, metric_entries: pd.DataFrame, method: str) -> None:
    """A metric's value (the best in bold) and its gap to BP, from the row's ``entries``."""
    if metric_entries.empty:
        return
    name = metric_entries.label.iloc[0]
    mine = metric_entries[metric_entries.method == method]
    if mine.empty:
        row[name] = ""
    else:
        e = mine.iloc[0]
        row[name] = f"**{e.text}**" if e.best else e.text
    if method != "bp":
        row[f"{metric_entries.metric.iloc[0]} − BP"] = mine.iloc[0].gap_text if len(mine) else ""


def render_glance(frame: pd.DataFrame, records: list[dict]) -> str:
    from .domain_summary import domain_summary

    kept = domain_summary(records)
    parts = []
    for title, table in blocks(frame, records):
        domain, scale = title.split(" · ")[:2]
        lines = summary_lines(kept[(kept.scale == scale) & (kept.domain == domain)])
        parts.append(f"{title}\n\n{table.to_markdown(index=False)}\n" + "".join(f"\n{line}\n" for line in lines))
    return "\n".join(parts) if parts else "no run records\n"


def summary_lines(kept: pd.DataFrame) -> list[str]:
    """The block's summary (``dfabench.report.domain_summary``): per group and metric of two cells or more,
    each method's share of BP's advantage over the shallow control kept, the median over cells with its
    95% interval; the findings cells on their own line, never averaged in; the cells left out, named."""
    from .domain_summary import kept_text

    lines = []
    for (group, metric), part in kept.groupby(["group", "metric"], sort=False):
        if max(r.cells + len(r.left_out) for r in part.itertuples()) < 2:
            continue  # one cell: nothing to summarise over (the quickstart's block stays the cell's rows)
        shown = [f"{r.method} {kept_text(r.kept, r.low, r.high)} ({r.cells} cell{'s' * (r.cells != 1)})"
                 for r in part.sort_values("method", key=lambda m: m.map(method_key)).itertuples()]
        lines.append(f"{'Findings cells, apart' if group == 'findings' else 'Summary'} ({metric}): share of BP's "
                     "advantage over the shallow control kept, median over cells [95% CI]: " + "; ".join(shown))
        left = sorted({cell.split(":")[0] for cells in part.left_out for cell in cells})
        if left:
            lines.append(f"Left out of it (no valid control, one seed, or an unbounded interval; `dfabench explain` "
                         f"says which): {', '.join(left)}")
    return lines


def entries(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per row identity (``tables.GROUP``), metric and method, in the field's units: ``mean``,
    ``std``, ``gap`` and ``ci95`` scaled (points, dB), the column ``label`` and ``digits``, ``best``,
    and the display texts ``text`` (mean ± std, failed runs) and ``gap_text`` (the paired gap to BP);
    cells in their task's order, methods in the paper's. What the README's compact table and the
    leaderboard render."""
    if frame.empty:
        return pd.DataFrame()
    out = summary(frame).merge(paired_gaps(frame), on=ENTRY, how="left")
    parts = []
    for (*_, metric), rows in out.groupby(GROUP + ["metric"], sort=False, dropna=False):
        rows = rows.copy()
        higher = bool(rows.higher_is_better.iloc[0])
        factor, label, digits = _column(metric, higher, rows)
        rows["label"], rows["digits"] = label, digits
        for column in ("mean", "std", "gap", "ci95"):
            rows[column] = rows[column].astype(float) * factor
        means = rows.loc[rows.n > 0, "mean"].dropna()
        top = (means.max() if higher else means.min()) if len(means) > 1 else math.nan
        rows["best"] = [bool(m == m and math.isclose(m, top, rel_tol=1e-12, abs_tol=1e-12)) for m in rows["mean"]]
        rows["text"] = [_value(m, sd, int(n), int(f), digits) for m, sd, n, f in
                        zip(rows["mean"], rows["std"], rows.n, rows.failed)]
        rows["gap_text"] = [_entry_gap_text(r, digits) for r in rows.itertuples()]
        parts.append(rows)
    out = pd.concat(parts, ignore_index=True)
    out["pairs"] = out["pairs"].fillna(0).astype(int)
    return _in_table_order(out)


def _entry_gap_text(row, digits: int) -> str:
    if row.method == "bp":
        return ""
    if isinstance(row.duplicate, str) and row.duplicate:
        return f"not paired: seed {row.duplicate} recorded twice"
    return format_gap(row.gap, row.ci95, digits) if row.gap == row.gap else ""


def _in_table_order(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells in the order their task declares them (its headline first), methods in the paper's order."""
    rank: dict[tuple, int] = {}
    for domain, part in rows.groupby("domain"):
        cells = _cell_order(domain, sorted(set(zip(part.dataset, part.model))))
        rank.update({(domain, *cell): i for i, cell in enumerate(cells)})
    key = [(r.scale, r.domain, rank[(r.domain, r.dataset, r.model)], r.overrides, r.data, r.metric,
            method_key(r.method)) for r in rows.itertuples()]
    order = sorted(range(len(rows)), key=key.__getitem__)
    return rows.iloc[order].reset_index(drop=True)
