"""The one scale-free per-cell number the suite compares across cells: the share of BP's advantage over
a valid control that a method loses (``lost``) or keeps (``1 - lost``), with an interval that carries
both of its uncertainties.

``lost = (BP - method) / (BP - control)``, oriented by the metric's direction: 0 is "as BP", 1 is "no
better than the control" (the shallow control: only the output layer trained). It is a ratio of two
gaps measured on the same seeds, so its interval is a bootstrap over seeds that resamples a seed's
three runs together: the numerator's noise and the denominator's both enter (a t-interval of the
numerator alone, scaled, leaves out the second). With 3 seeds there are only 10 distinct resamples:
the interval is coarse and says so by being wide.

A control is a control only when it beats the cell's trivial model (``trivial``): the metric's floor
the task records (chance, a random ranking, the unigram distribution) and, for CTR, logistic
regression trained by BP on the same logs. Below it, ``lost`` would describe the control, not the
method: ``control_problem`` says why, and the callers leave that cell out of every average and
relation.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

RESAMPLES = 4000
# CTR's trivial model is a cell of its own: logistic regression (model ``lr``) on the same logs, by BP
TRIVIAL_MODEL = {"ctr": ("lr", "logistic regression trained by BP")}


def lost_share(bp: pd.Series, method: pd.Series, control: pd.Series, higher_is_better: bool,
               seed: int = 0) -> dict[str, Any]:
    """``lost`` of ``method`` on the seeds where BP, the method and the control all ran (each Series is
    indexed by seed), with its 95% percentile bootstrap interval over those seeds. ``low``/``high``
    are None where more than 2.5% of the resamples have a control no worse than BP (the ratio is
    then unbounded). ``draws``: the resampled shares (NaN where a resample's control is no worse than
    BP), for a summary that resamples cells and, inside each, seeds."""
    seeds = sorted(set(bp.index) & set(method.index) & set(control.index))
    out: dict[str, Any] = {"lost": math.nan, "low": None, "high": None, "n": len(seeds), "draws": None}
    if not seeds:
        return out
    sign = 1.0 if higher_is_better else -1.0
    lost_by = sign * (bp[seeds].to_numpy(float) - method[seeds].to_numpy(float))  # > 0: the method is worse
    worth = sign * (bp[seeds].to_numpy(float) - control[seeds].to_numpy(float))  # > 0: BP beats the control
    if worth.mean() <= 0:
        return out
    out["lost"] = float(lost_by.mean() / worth.mean())
    if len(seeds) < 2:
        return out
    picks = np.random.default_rng(seed).integers(0, len(seeds), size=(RESAMPLES, len(seeds)))
    numerator, denominator = lost_by[picks].mean(axis=1), worth[picks].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["draws"] = np.where(denominator > 0, numerator / denominator, np.nan)
    if (denominator <= 0).mean() > 0.025:
        return out
    out["low"], out["high"] = (float(v) for v in np.nanpercentile(out["draws"], [2.5, 97.5]))
    return out


def trivial_reference(frame: pd.DataFrame, scale: str, domain: str, dataset: str, model: str
                      ) -> tuple[float, str] | None:
    """The best trivial score a control of this cell must beat, oriented by the metric (the larger for
    a higher-is-better metric), and what it is; None where the cell has none on record. ``frame`` is
    ``tables.records_frame`` of the records (ok rows; its ``floor`` column)."""
    cell = frame[(frame.scale == scale) & (frame.domain == domain) & (frame.dataset == dataset)
                 & (frame.model == model) & (frame.status == "ok")]
    if cell.empty:
        return None
    higher = bool(cell.higher_is_better.iloc[0])
    metric = cell.metric.iloc[0]
    candidates = []
    floors = cell.floor.dropna()
    if len(floors):
        candidates.append((float(floors.mean()), "the task's floor"))
    if domain in TRIVIAL_MODEL:
        name, what = TRIVIAL_MODEL[domain]
        if name != model:
            trivial = frame[(frame.scale == scale) & (frame.domain == domain) & (frame.dataset == dataset)
                            & (frame.model == name) & (frame.method == "bp") & (frame.status == "ok")
                            & (frame.metric == metric)]
            if len(trivial):
                candidates.append((float(trivial.value.mean()), f"{what} ({dataset}/{name}, n={len(trivial)})"))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0]) if higher else min(candidates, key=lambda c: c[0])


def control_problem(control_mean: float, reference: tuple[float, str] | None, higher_is_better: bool) -> str:
    """Why the control is not a control here ('' when it is): it does not beat the trivial model."""
    if reference is None or not math.isfinite(control_mean):
        return ""
    value, what = reference
    beats = control_mean > value if higher_is_better else control_mean < value
    return "" if beats else f"shallow control {control_mean:.4g} does not beat {what} {value:.4g}"
