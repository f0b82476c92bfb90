"""Each method summarised per domain by one scale-free number with its interval: the share of BP's
advantage over a valid control that the method keeps (``kept = 1 - lost``, ``dfabench.report.shares``).

Per cell (the task's own settings and data), ``kept`` has a bootstrap interval over seeds. Per domain,
the summary is the median of the cells' ``kept`` with a two-level bootstrap: resample the cells, and
inside each picked cell take one of its own seed-resampled shares, so that both the spread between
cells and the noise inside each enter the interval. Raw gaps are never averaged across cells: a
perplexity gap of 30 on one corpus and of 300 on another are not one quantity.

Left out of a domain's number, each with its reason (``left_out``): cells whose shallow control does
not beat the cell's trivial model (no control, so no share), cells where BP does not beat the control
or whose share's interval is unbounded (the control's gap crosses zero over the seeds). Findings
cells (``FINDINGS``: the pre-LN models, which DFA is known to collapse, and the probes' variants) are
summarised apart, in their own group, and never averaged into the benchmark's number.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .shares import RESAMPLES, control_problem, lost_share, trivial_reference
from .frame import CELL, records_frame

CONTROLS = ("bp", "shallow")
# domain -> models whose cells are findings, not benchmark cells: shown apart, never averaged in
FINDINGS = {"lm": {"gpt2-preln", "transformer-noln", "transformer-logits", "transformer-preln",
                   "transformer-preln-logits"}}


def group_of(domain: str, model: str) -> str:
    return "findings" if model in FINDINGS.get(domain, set()) else "benchmark"


def cell_scores(records: Iterable[dict]) -> pd.DataFrame:
    """One row per (cell, method other than BP and shallow): kept and its interval over seeds, the
    seeds used, why it has none (``problem``), its group, and the resampled shares (``draws``)."""
    records = list(records)
    frame = records_frame(records)
    frame = frame[(frame.overrides == "") & (frame.data == "") & (frame.status == "ok")]
    rows = []
    for cell, here in frame.groupby(CELL, sort=True):
        higher = bool(here.higher_is_better.iloc[0])
        by_seed = {m: g.set_index("seed")["value"] for m, g in here.groupby("method")}
        if "bp" not in by_seed:
            continue
        for method in sorted(set(by_seed) - set(CONTROLS)):
            row = {**dict(zip(CELL, cell)), "method": method, "metric": here.metric.iloc[0],
                   "higher_is_better": higher, "group": group_of(cell[1], cell[3]), "kept": math.nan,
                   "low": None, "high": None, "seeds": 0, "problem": "", "draws": None}
            if "shallow" not in by_seed:
                rows.append({**row, "problem": "no shallow control recorded"})
                continue
            problem = control_problem(float(by_seed["shallow"].mean()), trivial_reference(frame, *cell), higher)
            share = lost_share(by_seed["bp"], by_seed[method], by_seed["shallow"], higher)
            row["seeds"] = share["n"]
            if problem:
                row["problem"] = problem
            elif share["n"] < 2:
                row["problem"] = f"{share['n']} seed{'s' * (share['n'] != 1)} shared by BP, the method and the control: no interval"
            elif False:
                row["problem"] = problem
            elif not math.isfinite(share["lost"]):
                row["problem"] = "BP does not beat the shallow control"
            elif share["low"] is None:
                row.update(kept=1 - share["lost"], problem="its interval is unbounded: the shallow control's gap "
                                                           "to BP crosses zero over the seeds")
            else:
                row.update(kept=1 - share["lost"], low=1 - share["high"], high=1 - share["low"],
                           draws=1 - share["draws"])
            rows.append(row)
    return pd.DataFrame(rows)


def domain_summary(records: Iterable[dict], seed: int = 0) -> pd.DataFrame:
    """One row per (scale, domain, group, metric, method): the median ``kept`` over the cells that have one,
    its 95% two-level bootstrap interval, the cells counted, the seeds per cell, and ``left_out``
    ("dataset/model: why" for every cell of the group that is not counted)."""
    scores = cell_scores(records)
    columns = ["scale", "domain", "group", "method", "metric", "kept", "low", "high", "cells", "seeds_min",
               "seeds_max", "left_out"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    rng = np.random.default_rng(seed)
    rows = []
    for (scale, domain, group, metric, method), part in scores.groupby(["scale", "domain", "group", "metric", "method"],
                                                                      sort=True):
        counted = part[part.problem == ""]
        left = [f"{r.dataset}/{r.model}: {r.problem}" for r in part[part.problem != ""].itertuples()]
        row = {"scale": scale, "domain": domain, "group": group, "method": method, "metric": metric,
               "kept": math.nan, "low": math.nan, "high": math.nan, "cells": len(counted),
               "seeds_min": int(counted.seeds.min()) if len(counted) else 0,
               "seeds_max": int(counted.seeds.max()) if len(counted) else 0, "left_out": left}
        if len(counted):
            row["kept"] = float(np.median(counted.kept))
            draws = np.vstack(counted.draws.tolist())  # cells x RESAMPLES
            cells = rng.integers(0, len(counted), size=(RESAMPLES, len(counted)))
            picked = draws[cells, np.arange(RESAMPLES)[:, None]]  # resample b: cell c's b-th seed resample
            medians = np.nanmedian(picked, axis=1)
            row["low"], row["high"] = (float(v) for v in np.nanpercentile(medians, [2.5, 97.5]))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def kept_text(kept: float, low: float, high: float) -> str:
    if kept != kept:
        return "—"
    return f"{kept:.2f} [{low:.2f}, {high:.2f}]" if low == low else f"{kept:.2f}"


def describe_row(r: Any) -> str:
    """One line for a summary row: what the number is and what it leaves out."""
    what = (f"{r.method} keeps {kept_text(r.kept, r.low, r.high)} of BP's advantage over the shallow control "
            f"(median over {r.cells} {r.group} cell{'s' * (r.cells != 1)}, {r.metric})")
    return what + (f"; left out: {'; '.join(r.left_out)}" if r.left_out else "")
