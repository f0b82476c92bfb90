"""A few records for the leaderboard tests (two domains, a metric where lower is better, a failed run, a
verification file, a published number), and the summary they should give, computed here from the
record files with pandas alone: not with the code under test."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd

from dfabench.harness.store import write_record

# (domain, dataset, model, metric, higher is better): {method: [value per seed; None = the run diverged]}
CELLS = {
    ("mlp", "digits", "mlp", "accuracy", True): {"bp": [0.90, 0.92, 0.91], "dfa": [0.85, 0.86, 0.88],
                                                 "shallow": [0.60, 0.62, None]},
    ("mlp", "mnist", "mlp", "accuracy", True): {"bp": [0.95, 0.96, 0.94], "dfa": [0.93, 0.90, 0.92],
                                                "shallow": [0.70, 0.71, 0.69]},
    ("lm", "kjv", "transformer", "perplexity", False): {"bp": [50.0, 52.0, 51.0], "dfa": [80.0, 85.0, 83.0],
                                                        "shallow": [120.0, 118.0, 125.0]},
}
UNITS = {"accuracy": 100.0, "perplexity": 1.0}  # accuracy in points, perplexity as it is
VERIFIED = {"mlp-digits-mlp-dfa-0": True, "mlp-digits-mlp-dfa-1": True, "lm-kjv-transformer-shallow-0": False}


def record(domain, dataset, model, metric, higher, method, seed, value) -> dict:
    history = [{"epoch": e, "lr": 0.01, "step": 10 * e, "train_loss": 1.0 / e, "time_s": 0.1,
                "val": {metric: (value or 1.0) * (1 + 0.1 / e)}} for e in (1, 2, 3)]
    status = "ok" if value is not None else "diverged"
    return {"id": f"{domain}-{dataset}-{model}-{method}-{seed}", "scale": "smoke", "domain": domain,
            "dataset": dataset, "model": model, "method": method, "seed": seed, "status": status,
            "primary_metric": metric, "higher_is_better": higher, "hparams": {"lr": 0.01, "epochs": 3},
            "history": history, "provenance": {"commit": "0123456789abcdef", "dirty": False},
            "metrics": {"val": {metric: value}, "test": {metric: value}} if value is not None else {}}


def write_fixture(results: Path, domains: tuple[str, ...] = ("mlp", "lm"), verification: bool = True) -> Path:
    for (domain, dataset, model, metric, higher), methods in CELLS.items():
        if domain not in domains:
            continue
        for method, values in methods.items():
            for seed, value in enumerate(values):
                write_record(results, record(domain, dataset, model, metric, higher, method, seed, value))
    if verification:
        (results / "verification.json").write_text(json.dumps({
            "verified_at": "2026-12-01T12:00:00+00:00", "sample": len(VERIFIED), "seed": 0,
            "tolerance": {"rel": 1e-6}, "environment": {"torch": "2.13.0"},
            "records": {rid: {"agree": ok, "identical": ok, "max_rel_diff": 0.0 if ok else 0.5, "metrics": {}}
                        for rid, ok in VERIFIED.items()}}))
    return results


def write_baselines(folder: Path) -> Path:
    """A paper.yaml with a number for the digits MLP (the survey's table, as `reproduce` labels mlp)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "paper.yaml").write_text("mlp/digits/mlp:\n  source: a test table\n  metrics: {accuracy: higher}\n"
                                       "  bp: {accuracy: 0.95}\n  dfa: {accuracy: 0.9}\n")
    return folder


def records_table(results: Path) -> pd.DataFrame:
    """One row per ok record, read straight from the JSON files: cell, method, seed, metric, value."""
    rows = []
    for path in sorted((results / "runs").glob("*.json")):
        r = json.loads(path.read_text())
        if r["status"] != "ok":
            continue
        metric = r["primary_metric"]
        floor = ((r.get("extras") or {}).get("floors") or {}).get(metric, {}).get("value")
        rows.append({"domain": r["domain"], "dataset": r["dataset"], "model": r["model"], "method": r["method"],
                     "seed": r["seed"], "metric": metric, "value": r["metrics"]["test"][metric],
                     "floor": floor if isinstance(floor, (int, float)) else float("nan"),
                     "variant": json.dumps(r.get("overrides") or {}, sort_keys=True) + (r.get("data") or "")})
    return pd.DataFrame(rows)


FINDINGS = {("lm", "gpt2-preln"), ("lm", "transformer-noln"), ("lm", "transformer-logits"), ("lm", "transformer-preln"),
            ("lm", "transformer-preln-logits")}  # shown apart, as "<domain> findings"


def _unbounded(bp_minus_shallow: pd.Series) -> bool:
    """More than 2.5% of the n^n equally likely resamples of the seeds have a mean gap <= 0."""
    values = bp_minus_shallow.to_numpy()
    picks = itertools.product(range(len(values)), repeat=len(values))
    bad = [values[list(p)].mean() <= 0 for p in picks]
    return sum(bad) / len(bad) > 0.025


def expected_summary(results: Path, units: dict[str, float] | None = None) -> dict[tuple[str, str, str], float]:
    """(method, domain, metric) -> the median over the domain's benchmark cells (findings cells under
    "<domain> findings") of the share of BP's advantage over the shallow control the method keeps,
    1 - mean(BP - method) / mean(BP - shallow) on the seeds all three share, oriented by the metric;
    BP 1, shallow 0. A cell has none with fewer than 2 such seeds, where BP does not beat the control,
    where the control's gap crosses zero over the resampled seeds, or where the control does not beat
    the task's floor or (CTR) logistic regression by BP. (``units`` is unused: the share has none.)"""
    table = records_table(results)
    cell = ["domain", "dataset", "model", "variant", "metric"]
    table = table[table.variant == "{}"]
    wide = table.pivot_table(index=cell + ["seed"], columns="method", values="value")
    out: dict[tuple[str, str, str], list[float]] = {}
    for key, part in wide.groupby(level=cell):
        domain, dataset, model, metric = key[0], key[1], key[2], key[4]
        name = f"{domain} findings" if (domain, model) in FINDINGS else domain
        sign = -1.0 if metric in ("perplexity", "loss") else 1.0
        trivial = [v for v in (table[(table.domain == domain) & (table.dataset == dataset) & (table.model == model)
                                     ].floor.dropna().mean(),) if v == v]
        if domain == "ctr" and model != "lr":
            lr = table[(table.domain == "ctr") & (table.dataset == dataset) & (table.model == "lr") & (table.method == "bp")]
            trivial += [lr.value.mean()] if len(lr) else []
        for method in part.columns:
            if part[method].notna().sum() == 0:
                continue
            if method in ("bp", "shallow"):
                out.setdefault((method, name, metric), []).append(1.0 if method == "bp" else 0.0)
                continue
            both = part[["bp", method, "shallow"]].dropna()
            worth = sign * (both.bp - both.shallow)
            shallow_mean = part.shallow.dropna().mean()
            if any(sign * (shallow_mean - t) <= 0 for t in trivial):
                continue
            if len(both) < 2 or not worth.mean() > 0 or _unbounded(worth):
                continue
            out.setdefault((method, name, metric), []).append(1 - sign * (both.bp - both[method]).mean() / worth.mean())
    return {key: float(pd.Series(values).median()) for key, values in out.items()}
