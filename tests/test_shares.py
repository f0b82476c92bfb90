"""The lost share (dfabench/report/shares.py): a ratio of two paired gaps whose interval carries both gaps'
noise, and the check that a shallow control is a control at all."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from dfabench.report.shares import control_problem, lost_share, trivial_reference
from dfabench.report.frame import records_frame
from records import valid_record


def series(values):
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_lost_is_the_ratio_of_the_mean_paired_gaps_and_its_interval_the_exact_resampling():
    bp, dfa, shallow = series([0.90, 0.92, 0.91]), series([0.85, 0.88, 0.84]), series([0.70, 0.71, 0.69])
    found = lost_share(bp, dfa, shallow, higher_is_better=True)
    assert found["n"] == 3
    assert found["lost"] == pytest.approx((bp - dfa).mean() / (bp - shallow).mean())
    # with 3 seeds the bootstrap has 27 equally likely resamples: its percentiles lie inside their range
    ratios = [(bp - dfa)[list(i)].mean() / (bp - shallow)[list(i)].mean() for i in itertools.product(range(3), repeat=3)]
    assert min(ratios) - 1e-12 <= found["low"] <= found["lost"] <= found["high"] <= max(ratios) + 1e-12
    # lower is better: the same numbers mirrored give the same share
    mirrored = lost_share(-bp, -dfa, -shallow, higher_is_better=False)
    assert mirrored["lost"] == pytest.approx(found["lost"]) and mirrored["low"] == pytest.approx(found["low"])


def test_a_noisier_control_widens_the_interval_though_the_method_gap_is_the_same():
    """The old interval (the method gap's t-interval, scaled) ignored the control's noise: with the same
    method gaps and the same mean control gap, a noisier control must give a wider interval."""
    bp, dfa = series([0.90] * 6), series([0.85, 0.86, 0.84, 0.85, 0.87, 0.83])
    steady = lost_share(bp, dfa, series([0.70] * 6), True)
    noisy = lost_share(bp, dfa, series([0.60, 0.80, 0.62, 0.78, 0.65, 0.75]), True)
    assert noisy["lost"] == pytest.approx(steady["lost"])
    assert noisy["high"] - noisy["low"] > 1.5 * (steady["high"] - steady["low"])


def test_a_control_gap_that_crosses_zero_gives_no_bounds_and_one_not_below_bp_no_share():
    bp, dfa = series([0.90, 0.90, 0.90]), series([0.85, 0.86, 0.84])
    crossing = lost_share(bp, dfa, series([0.80, 0.95, 0.88]), True)
    assert math.isfinite(crossing["lost"]) and crossing["low"] is None and crossing["high"] is None
    assert math.isnan(lost_share(bp, dfa, series([0.95, 0.95, 0.95]), True)["lost"])
    assert lost_share(bp, dfa, pd.Series([0.7], index=[7]), True)["n"] == 0  # no common seed


def test_a_shallow_control_below_logistic_regression_is_no_control():
    """DCN's shallow control on the synthetic logs scored 60.2 AUC against logistic regression's 84.5:
    its lost share would describe the control. The reference is the better of the floor and LR."""
    rows = [valid_record(f"{m}{model}{s}", domain="ctr", dataset="synthetic", model=model, method=m, seed=s,
                         primary_metric="auc", metrics={"test": {"auc": v}},
                         extras={"floors": {"auc": {"value": 0.5, "higher_is_better": True, "what": "random"}}})
            for model, m, v in (("dcn", "bp", 0.86), ("dcn", "shallow", 0.602), ("lr", "bp", 0.845))
            for s in range(3)]
    frame = records_frame(rows)
    reference = trivial_reference(frame, "small", "ctr", "synthetic", "dcn")
    assert reference[0] == pytest.approx(0.845) and "logistic regression" in reference[1]
    why = control_problem(0.602, reference, True)
    assert why.startswith("shallow control 0.602 does not beat logistic regression")
    assert control_problem(0.85, reference, True) == ""
    # lower is better (perplexity): the control must be below the unigram floor
    assert control_problem(400.0, (365.0, "the unigram floor"), False) != ""
    assert control_problem(300.0, (365.0, "the unigram floor"), False) == ""
    assert trivial_reference(frame, "small", "ctr", "synthetic", "nothing") is None
    assert np.isfinite(reference[0])
