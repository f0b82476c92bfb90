"""Summaries of a frame: mean ± std per cell and method, gaps to BP paired by seed with their t-interval.

Only runs with status ``ok`` enter the statistics; the others are counted in a ``failed`` column. A
seed that appears twice for one method in a row is refused by the pairing (the gap says so) instead
of being counted twice.
"""
from __future__ import annotations

import math

import pandas as pd

from .frame import GROUP


def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (a two-sided 95% interval)."""
    from scipy import stats  # imported here: scipy.stats costs about a second, and only tables need it

    return float(stats.t.ppf(0.975, dof))


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
            half = (t975(n - 1) * diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            rows.append(dict(zip(GROUP, cell), metric=metric, method=method, gap=mean, ci95=half, pairs=n,
                             duplicate=""))
    return pd.DataFrame(rows, columns=GROUP + ["metric", "method", "gap", "ci95", "pairs", "duplicate"])


def format_mean(mean: float, std: float, n: int, digits: int = 4) -> str:
    """'mean ± std (n=N)' as every table prints it; '—' without runs, no spread for one."""
    if n == 0 or mean != mean:
        return "—"
    spread = f" ± {std:.2g}" if std == std else ""
    return f"{mean:.{digits}g}{spread} (n={n})"


def gap_text(gaps: pd.DataFrame, method: str) -> str:
    """'+gap ± ci' of one method in one cell's paired gaps; '' without pairs."""
    g = gaps[gaps.method == method] if len(gaps) else gaps
    if len(g) and g.duplicate.iloc[0]:
        return f"not paired: seed {g.duplicate.iloc[0]} recorded twice"
    if not len(g) or g.pairs.iloc[0] == 0:
        return ""
    ci = g.ci95.iloc[0]
    return f"{g.gap.iloc[0]:+.3g}" + (f" ± {ci:.2g}" if ci == ci else "")


