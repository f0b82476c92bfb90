"""The CI gate on DFA−BP gaps (issue 8), library part; the CLI wiring is still to do.

`reference(frame)` summarises smoke records per cell and method (mean, std, n, direction) plus the
paired DFA−BP gap; `failures(frame, ref)` lists readable reasons to fail: a run not ok (diverged or
failed), or a DFA−BP gap worse than the recorded gap by more than its tolerance (2 × recorded seed
spread of the gap, floored). Metric floors (chance, mean-colour PSNR, vocabulary) are still to do.
"""
from __future__ import annotations

import math

import pandas as pd

from .tables import CELL, paired_gaps, summary

GAP_FLOOR = 0.02  # absolute tolerance floor: smoke runs are noisy with few seeds


def _key(row) -> str:
    return f"{row['domain']}/{row['dataset']}/{row['model']}"


def reference(frame: pd.DataFrame) -> dict:
    out: dict = {}
    for _, r in summary(frame).iterrows():
        cell = out.setdefault(_key(r), {"metric": r["metric"], "higher_is_better": bool(r["higher_is_better"]),
                                        "methods": {}, "gaps": {}})
        cell["methods"][r["method"]] = {"mean": float(r["mean"]), "std": float(r["std"]) if r["std"] == r["std"] else 0.0,
                                        "n": int(r["n"])}
    gaps = paired_gaps(frame)
    ok = frame[frame.status == "ok"]
    for _, g in gaps.iterrows():
        cell_rows = ok[(ok[CELL] == g[CELL]).all(axis=1)]
        base = cell_rows[cell_rows.method == "bp"].set_index("seed")["value"]
        diff = (cell_rows[cell_rows.method == g["method"]].set_index("seed")["value"] - base).dropna()
        spread = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        out[_key(g)]["gaps"][g["method"]] = {"gap": float(g["gap"]), "std": spread, "pairs": int(g["pairs"])}
    return out


def failures(frame: pd.DataFrame, ref: dict, methods=("dfa",)) -> list[str]:
    problems = [f"{_key(r)} {r['method']} seed {r['seed']}: run {r['status']}"
                for _, r in frame[frame.status != "ok"].iterrows()]
    now = reference(frame)
    for cell, recorded in ref.items():
        if cell not in now:
            problems.append(f"{cell}: no records")
            continue
        sign = 1.0 if recorded["higher_is_better"] else -1.0
        for method in methods:
            old, new = recorded["gaps"].get(method), now[cell]["gaps"].get(method)
            if old is None or new is None or math.isnan(new["gap"]):
                continue
            tolerance = max(2.0 * old["std"], GAP_FLOOR * max(1.0, abs(recorded["methods"]["bp"]["mean"])))
            widened = sign * (old["gap"] - new["gap"])  # > 0: method fell further behind BP
            if widened > tolerance:
                problems.append(f"{cell}: {method}−bp gap {new['gap']:+.4g} vs recorded {old['gap']:+.4g}"
                                f" (widened by {widened:.3g} > tolerance {tolerance:.3g})")
    return problems
