"""The regression gate: compare fresh runs with a recorded reference and list what got worse.

``reference(frame)`` summarises records per cell: each method's mean, std and n, each method's gap
to BP paired by seed (with the spread of the paired differences), and DFA's margin over shallow.
``failures(records, ref)`` lists readable problems, one line each:

* a run that is not ok (diverged, timeout, error);
* a method's gap to BP wider than recorded by more than its tolerance: twice the recorded spread of
  the paired gap, never less than ``GAP_FLOOR`` (relative to the size of BP's metric);
* DFA no longer clearly above shallow: its margin over shallow below both half the recorded margin and the
  recorded margin less twice DFA's seed spread (a DFA
  whose feedback is lost, scaled to zero, or no longer reaches the hidden layers is shallow);
* a metric at or below its floor (every method but the shallow control): the chance level or
  trivial baseline a task reports in a record's ``extras.floors`` (accuracy above chance, PSNR above
  the mean-colour image, perplexity below the vocabulary size), and AUC above 0.5 wherever there is one.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pandas and the tables load only when the gate runs
    import pandas as pd

GAP_FLOOR = 0.02  # smoke runs are noisy with few seeds: never a tolerance below 2% of BP's metric
SHALLOW_MARGIN_KEPT = 0.5  # DFA must keep at least half of its recorded margin over shallow


def _key(row) -> str:
    return f"{row['domain']}/{row['dataset']}/{row['model']}"


def _paired(frame: pd.DataFrame, cell: pd.Series, method: str, base: str) -> pd.Series:
    from ..report.frame import GROUP

    rows = frame[(frame.status == "ok") & (frame[GROUP] == cell[GROUP]).all(axis=1)]
    b = rows[rows.method == base].set_index("seed")["value"]
    return (rows[rows.method == method].set_index("seed")["value"] - b).dropna()


def reference(frame: pd.DataFrame) -> dict[str, Any]:
    from ..report.summaries import paired_gaps, summary

    out: dict[str, Any] = {}
    for _, r in summary(frame).iterrows():
        cell = out.setdefault(_key(r), {"scale": r["scale"], "metric": r["metric"],
                                        "higher_is_better": bool(r["higher_is_better"]),
                                        "methods": {}, "gaps": {}})
        cell["methods"][r["method"]] = {"mean": float(r["mean"]), "n": int(r["n"]),
                                        "std": float(r["std"]) if r["std"] == r["std"] else 0.0}
    for _, g in paired_gaps(frame).iterrows():
        diff = _paired(frame, g, g["method"], "bp")
        out[_key(g)]["gaps"][g["method"]] = {"gap": float(g["gap"]), "pairs": int(g["pairs"]),
                                             "std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0}
    for cell in out.values():
        methods, sign = cell["methods"], 1.0 if cell["higher_is_better"] else -1.0
        if "dfa" in methods and "shallow" in methods:
            cell["dfa_over_shallow"] = sign * (methods["dfa"]["mean"] - methods["shallow"]["mean"])
    return out


def failures(records: Iterable[dict], ref: dict[str, Any]) -> list[str]:
    from ..report.frame import records_frame

    records = [r for r in records if f"{r['domain']}/{r['dataset']}/{r['model']}" in ref]
    problems = [f"{r['domain']}/{r['dataset']}/{r['model']} {r['method']} seed {r['seed']}: run {r['status']}"
                + (f" ({r['error']})" if r.get("error") else "") for r in records if r["status"] != "ok"]
    problems += _floor_failures(records)
    now = reference(records_frame(records)) if records else {}
    for cell, recorded in sorted(ref.items()):
        current = now.get(cell)
        if current is None:
            problems.append(f"{cell}: no ok records to check")
            continue
        sign = 1.0 if recorded["higher_is_better"] else -1.0
        bp_size = max(1.0, abs(recorded["methods"].get("bp", {}).get("mean", 1.0)))
        for method, old in sorted(recorded["gaps"].items()):
            new = current["gaps"].get(method)
            if new is None or math.isnan(new["gap"]):
                continue
            tolerance = max(2.0 * old["std"], GAP_FLOOR * bp_size)
            widened = sign * (old["gap"] - new["gap"])  # > 0: the method fell further behind BP
            if widened > tolerance:
                problems.append(f"{cell}: {method}−bp gap {new['gap']:+.4g}, recorded {old['gap']:+.4g}: "
                                f"widened by {widened:.3g} > tolerance {tolerance:.3g}")
        margin, old_margin = current.get("dfa_over_shallow"), recorded.get("dfa_over_shallow")
        # The margin may shrink by half or by twice DFA's recorded seed spread, whichever allows more:
        # a noisy cell (few graph seeds) must not fail a healthy DFA, a lost feedback still does.
        spread = recorded["methods"].get("dfa", {}).get("std", 0.0)
        if margin is not None and old_margin is not None and old_margin > 0 \
                and margin < min(SHALLOW_MARGIN_KEPT * old_margin, old_margin - 2.0 * spread):
            problems.append(f"{cell}: dfa is {margin:+.4g} over shallow, recorded {old_margin:+.4g}: "
                            f"below {SHALLOW_MARGIN_KEPT:g} of it (is the feedback reaching the hidden layers?)")
    return problems


def _floor_failures(records: list[dict]) -> list[str]:
    problems = []
    for r in records:
        if r["status"] != "ok" or r["method"] == "shallow":  # the control is allowed to be trivial
            continue
        test = (r.get("metrics") or {}).get("test") or {}
        floors = dict(((r.get("extras") or {}).get("floors") or {}))
        if "auc" in test:
            floors.setdefault("auc", {"value": 0.5, "what": "a random ranking", "higher_is_better": True})
        for metric, floor in floors.items():
            value = test.get(metric)
            if value is None:
                continue
            higher = floor.get("higher_is_better", True)
            if (value <= floor["value"]) if higher else (value >= floor["value"]):
                problems.append(f"{r['domain']}/{r['dataset']}/{r['model']} {r['method']} seed {r['seed']}: "
                                f"{metric} {value:.4g} is {'not above' if higher else 'not below'} "
                                f"{floor['what']} ({floor['value']:.4g})")
    return problems


def reference_path(baselines: Path, scale: str) -> Path:
    return Path(baselines) / scale / "reference.json"


def record_reference(results: Path, scale: str, baselines: Path) -> Path:
    """Write the per-cell reference of ``results``' records at ``scale`` into ``baselines/SCALE/``."""
    from ..errors import ConfigError
    from ..report.frame import load

    frame = load(results)
    frame = frame[frame.scale == scale]
    if frame.empty:
        raise ConfigError(f"no {scale} records under {results}/runs")
    out = reference_path(baselines, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(reference(frame), indent=1, sort_keys=True) + "\n")
    return out


def check(results: Path, scale: str, baselines: Path, run: bool = True, device: str = "cpu") -> int:
    """The gate: run what the reference covers and ``results`` lacks (the same path as `dfabench run`),
    print one line per problem, and return the exit code (1 on any problem)."""
    from ..errors import ConfigError
    from ..harness.config import run_config
    from ..harness.store import iter_records
    from ..harness.suite import run_suite

    ref_path = reference_path(baselines, scale)
    if not ref_path.exists():
        raise ConfigError(f"no reference at {ref_path}; run `dfabench baseline record --scale {scale}`")
    ref = json.loads(ref_path.read_text())
    if run:
        for cell, entry in sorted(ref.items()):
            seeds = max(m["n"] for m in entry["methods"].values())
            config = run_config({"selectors": [cell], "method": ",".join(sorted(entry["methods"])), "scale": scale,
                                 "seeds": seeds, "results": str(results), "device": device})
            print(f"check: {cell}", file=sys.stderr)
            run_suite(config, results)
    records = [r for r in iter_records(results) if r.get("scale") == scale]
    problems = failures(records, ref)
    for line in problems:
        print(f"FAIL {line}")
    print(f"check: {len(problems)} problem(s) against {ref_path}" if problems
          else f"check: ok ({len(ref)} cells against {ref_path})")
    return 1 if problems else 0
