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

from .catalog import specs
from .tables import GROUP, VARIANT, _method_key, paired_gaps, summary

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


def _gap(gap: float, ci: float, digits: int) -> str:
    if gap != gap:
        return ""
    return f"{gap:+.{digits}f}".replace("-", "−") + (f" ± {ci:.{digits}f}" if ci == ci else "")


def _throughput(records: list[dict]) -> dict[tuple, str]:
    """(row identity, method) -> mean items/s (or step ms) of its ok records."""
    from .harness.identity import overrides_label

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


def _variant(overrides: str, data: str) -> str:
    """What sets a row apart from the task's own settings and data ('' for those)."""
    return "; ".join(part for part in (overrides, f"data {data}" if data else "") if part)


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
    summ, gaps = summary(frame), paired_gaps(frame)
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
                row_gaps = gaps[(gaps[GROUP] == pd.Series(dict(zip(GROUP, key)))).all(axis=1)] if len(gaps) else gaps
                for method in sorted(here.method.unique(), key=_method_key):
                    row = {"cell": "" if shown else f"{dataset}/{model}", "variant": _variant(*variant),
                           "method": method}
                    shown = True
                    for metric in metrics:
                        _add_metric(row, metric, here, row_gaps, method)
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


def _add_metric(row: dict, metric: str, here: pd.DataFrame, cell_gaps: pd.DataFrame, method: str) -> None:
    rows = here[here.metric == metric]
    if rows.empty:
        return
    higher = bool(rows.higher_is_better.iloc[0])
    factor, name, digits = _column(metric, higher, rows)
    means = rows.set_index("method")["mean"].dropna()
    best = (means.idxmax() if higher else means.idxmin()) if len(means) > 1 else None
    mine = rows[rows.method == method]
    if mine.empty:
        row[name] = ""
    else:
        m = mine.iloc[0]
        text = _value(factor * m["mean"], factor * m["std"], int(m["n"]), int(m["failed"]), digits)
        row[name] = f"**{text}**" if method == best else text
    g = cell_gaps[(cell_gaps.metric == metric) & (cell_gaps.method == method)]
    if method != "bp":
        if len(g) and g.duplicate.iloc[0]:
            row[f"{metric} − BP"] = f"not paired: seed {g.duplicate.iloc[0]} recorded twice"
        else:
            row[f"{metric} − BP"] = _gap(factor * g.gap.iloc[0], factor * g.ci95.iloc[0], digits) if len(g) else ""


def render_glance(frame: pd.DataFrame, records: list[dict]) -> str:
    parts = [f"{title}\n\n{table.to_markdown(index=False)}\n" for title, table in blocks(frame, records)]
    return "\n".join(parts) if parts else "no run records\n"
