"""`dfabench explain`: what goes with the DFA−BP gap, cell by cell, from the records alone.

For every cell (domain/dataset/model at a scale, the task's own settings and data) and every method
other than BP, it sets side by side:

* the gap to BP on the cell's primary metric, paired by seed, with its 95% t-interval
  (``tables.paired_gaps``, the numbers every table shows), and the shallow control's gap the same way:
  how much the hidden layers are worth under BP;
* ``lost``: the gap as a share of the shallow control's, oriented so that 0 is "as good as BP" and 1 is
  "no better than training the output layer alone" (the one gap that compares across metrics);
* the mean ``grad_cos`` and ``signal_cos`` per feedback point at the last alignment probe (the record's
  ``alignment``), averaged over seeds, and their means over points;
* what the network is, read off the network by ``Task.architecture`` (``dfabench.architecture``), not
  from a table: the output dimension (the rank of DFA's feedback), the feedback points and their widths,
  the depth, the normalisation and its placement, the convolutions;
* the dead units where the task measures them (``extras.dead_units``: NeRF), mean over points and seeds.

Then the rank correlations (Spearman) of ``lost`` with alignment, output dimension and depth over the
cells, with a percentile bootstrap interval over cells (scipy), and within each domain the gap against
the shallow control's gap; figures of each (matplotlib); and one markdown report that says where the
evidence is thin.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..harness.store import iter_records
from ..hparams import ConfigError
from .frame import CELL, method_key, records_frame
from .summaries import paired_gaps, summary

MIN_CELLS = 6  # below this a rank correlation is not computed: too few cells to rank
BOOTSTRAP = 2000
CONTROLS = ("bp", "shallow")


# -- alignment and dead units, from the records ------------------------------------------------------
def end_alignment(records: Iterable[dict]) -> dict[tuple, dict[str, Any]]:
    """(domain, dataset, model, method) -> mean over ok seeds of the last alignment probe: ``grad_cos``
    and ``signal_cos`` (each the mean over points), ``points`` (point -> {grad_cos, signal_cos}), ``n``
    seeds; only methods whose records measured it."""
    found: dict[tuple, list[dict]] = {}
    for r in records:
        report = r.get("alignment") if r.get("status") == "ok" else None
        if report and report.get("points"):
            found.setdefault((r["domain"], r["dataset"], r["model"], r["method"]), []).append(report["points"])
    out = {}
    for key, runs in found.items():
        per_point: dict[str, dict[str, list[float]]] = {}
        for points in runs:
            for name, values in points.items():
                for measure in ("grad_cos", "signal_cos"):
                    value = values.get(measure)
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        per_point.setdefault(name, {}).setdefault(measure, []).append(float(value))
        points = {name: {m: float(np.mean(v)) for m, v in measures.items()} for name, measures in per_point.items()}
        summary_ = {"points": points, "n": len(runs)}
        for measure in ("grad_cos", "signal_cos"):
            values = [p[measure] for p in points.values() if measure in p]
            summary_[measure] = float(np.mean(values)) if values else None
        out[key] = summary_
    return out


def dead_units(records: Iterable[dict]) -> dict[tuple, float]:
    """(domain, dataset, model, method) -> the mean share of dead units over points and ok seeds, where
    the records hold ``extras.dead_units`` (point -> share)."""
    found: dict[tuple, list[float]] = {}
    for r in records:
        shares = (r.get("extras") or {}).get("dead_units") if r.get("status") == "ok" else None
        if isinstance(shares, dict) and shares:
            found.setdefault((r["domain"], r["dataset"], r["model"], r["method"]), []).append(
                float(np.mean([float(v) for v in shares.values()])))
    return {key: float(np.mean(v)) for key, v in found.items()}


# -- what the network is, from the records (or the committed side file) ------------------------------
FACTS_FILE = "architecture.json"  # the facts of cells whose records predate run-time facts


def facts_file(results: Path) -> Path | None:
    """The nearest ``architecture.json`` at or above ``results`` (results/architecture.json for every
    folder under results/), written by ``python -m dfabench.report.architecture_facts``."""
    for folder in (Path(results).resolve(), *Path(results).resolve().parents):
        if (folder / FACTS_FILE).is_file():
            return folder / FACTS_FILE
    return None


def cell_key(domain: str, dataset: str, model: str, scale: str) -> str:
    return f"{scale}/{domain}/{dataset}/{model}"


def recorded_facts(records: Iterable[dict], side: dict[str, dict] | None = None, side_name: str = FACTS_FILE):
    """``describe(domain, dataset, model, scale)`` from the records alone: the ``architecture`` a run
    recorded (any ok run of the cell without overrides; all of a cell's runs build the same network),
    else the side file's entry for the cell, else {"error": why}. No model is built and no task's
    library imported, so the answer is the same wherever the records are read."""
    found: dict[str, dict] = {}
    for r in records:
        facts = r.get("architecture")
        if r.get("status") == "ok" and isinstance(facts, dict) and "error" not in facts and not r.get("overrides"):
            found.setdefault(cell_key(r["domain"], r["dataset"], r["model"], r["scale"]), facts)
    side = side or {}

    def describe(domain: str, dataset: str, model: str, scale: str) -> dict[str, Any]:
        key = cell_key(domain, dataset, model, scale)
        if key in found:
            return found[key]
        if key in side and "error" not in side[key]:
            return side[key]
        if key in side:
            return {"error": f"{side_name} holds no facts for it ({side[key]['error']})"}
        return {"error": f"its records predate run-time architecture facts and {side_name} has no entry for it"}
    return describe


def active_points(points: dict[str, list[int]], method: str, options: dict | None) -> list[int]:
    """The widths of the points ``method`` (with the record's ``method_options``) acts on: those whose
    tag it selects (dfa: the default points; dfa-micro and the vision task's dfa: more)."""
    from ..methods import create

    try:
        tags = getattr(create(method, options).options, "tags", None)
    except Exception:  # noqa: BLE001 - an unknown method or option: its points are not known
        return []
    return [w for tag, widths in points.items() if tags is None or tag in tags for w in widths]


# -- the per-cell frame ------------------------------------------------------------------------------
def explain_frame(records: list[dict], describe: Any = None) -> pd.DataFrame:
    """One row per cell and non-BP method with paired BP gaps (the task's own settings and data only:
    rows with overrides or user data are left out). ``describe(domain, dataset, model, scale)`` gives
    the network's facts (``recorded_facts(records)`` by default; tests pass their own)."""
    from .shares import control_problem, lost_share, trivial_reference

    describe = describe or recorded_facts(records)
    frame = records_frame(records)
    frame = frame[(frame.overrides == "") & (frame.data == "")]
    if frame.empty:
        return pd.DataFrame()
    gaps = paired_gaps(frame)
    means = summary(frame).set_index(CELL + ["method"])["mean"]
    alignment, dead = end_alignment(records), dead_units(records)
    options = {(r["domain"], r["dataset"], r["model"], r["method"]): (r.get("hparams") or {}).get("method_options")
               for r in records if r.get("status") == "ok"}
    ok = frame[frame.status == "ok"]
    rows = []
    for _, g in gaps.iterrows():
        cell = tuple(g[c] for c in CELL)
        if g.pairs == 0 or g.method == "shallow":  # the control's own gap is a column of every row
            continue
        here = ok[(ok[CELL] == pd.Series(dict(zip(CELL, cell)))).all(axis=1) & (ok.metric == g.metric)]
        higher = bool(here.higher_is_better.iloc[0])
        shallow = gaps[(gaps[CELL] == pd.Series(dict(zip(CELL, cell)))).all(axis=1) & (gaps.method == "shallow")]
        shallow_gap = float(shallow.gap.iloc[0]) if len(shallow) else math.nan
        shallow_ci = float(shallow.ci95.iloc[0]) if len(shallow) else math.nan
        by_seed = {m: here[here.method == m].set_index("seed")["value"] for m in ("bp", g.method, "shallow")}
        # lost: the share of what BP's hidden layers add over the shallow control that the method loses,
        # its interval a bootstrap over seeds resampling both gaps; none where the control is no control
        share = lost_share(by_seed["bp"], by_seed[g.method], by_seed["shallow"], higher)
        problem = control_problem(means.get(cell + ("shallow",), math.nan), trivial_reference(frame, *cell), higher)
        if problem:
            share = {**share, "lost": math.nan, "low": None, "high": None}
        key = (cell[1], cell[2], cell[3], g.method)
        facts = describe(cell[1], cell[2], cell[3], cell[0])
        mine = alignment.get(key, {})
        driven = active_points(facts.get("points") or {}, g.method, options.get(key))
        rows.append({
            **dict(zip(CELL, cell)), "method": g.method, "metric": g.metric, "higher_is_better": higher,
            "bp": means.get(cell + ("bp",), math.nan), "value": means.get(cell + (g.method,), math.nan),
            "gap": g.gap, "ci95": g.ci95, "pairs": int(g.pairs),
            "shallow_gap": shallow_gap, "shallow_ci95": shallow_ci, "control_problem": problem,
            "lost": share["lost"], "lost_low": share["low"], "lost_high": share["high"], "lost_seeds": share["n"],
            "grad_cos": mine.get("grad_cos"), "signal_cos": mine.get("signal_cos"),
            "point_alignment": mine.get("points") or {},
            "dead_units": dead.get(key), "bp_dead_units": dead.get(key[:3] + ("bp",)),
            "output_dim": facts.get("output_dim"), "depth": len(driven) if driven else None,
            "widths": "-".join(map(str, driven)), "points": facts.get("points") or {},
            "norm": facts.get("norm"), "placement": facts.get("placement"), "convolutions": facts.get("convolutions"),
            "architecture_error": facts.get("error", ""),
        })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_m"] = out.method.map(method_key)
    return out.sort_values(["scale", "domain", "dataset", "model", "_m"]).drop(columns="_m").reset_index(drop=True)


# -- rank correlations ------------------------------------------------------------------------------
def rank_correlation(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis`` (Pearson's of the mid-ranks, ties included), for many bootstrap
    resamples at once; NaN where a side is constant."""
    from scipy import stats

    ra, rb = stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis)
    ra = ra - ra.mean(axis=axis, keepdims=True)
    rb = rb - rb.mean(axis=axis, keepdims=True)
    return (ra * rb).sum(axis=axis) / np.sqrt((ra ** 2).sum(axis=axis) * (rb ** 2).sum(axis=axis))


def spearman(x: Iterable[float], y: Iterable[float], seed: int = 0) -> dict[str, Any]:
    """Spearman's rho of the finite (x, y) pairs with a 95% percentile bootstrap interval over the
    pairs (scipy.stats.bootstrap, paired); ``rho`` is None below MIN_CELLS pairs or with a constant side."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    out: dict[str, Any] = {"n": n, "rho": None, "low": None, "high": None}
    if n < MIN_CELLS:
        return out
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    out["rho"] = float(stats.spearmanr(xs, ys).statistic)

    with np.errstate(invalid="ignore", divide="ignore"):
        result = stats.bootstrap((xs, ys), rank_correlation, paired=True, vectorized=True, n_resamples=BOOTSTRAP,
                                 method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    out["low"], out["high"] = (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else (None, None)
    return out


def relations(frame: pd.DataFrame, method: str = "dfa") -> list[dict[str, Any]]:
    """The rank correlations the report states: ``lost`` against each factor over every cell of
    ``method``, and per domain the gap against the shallow control's gap (raw, in the metric's units)."""
    mine = frame[frame.method == method]
    found = []
    for factor, label in (("grad_cos", "mean grad_cos at the end"), ("signal_cos", "mean signal_cos at the end"),
                          ("output_dim", "output dimension"), ("depth", "depth (feedback points driven)")):
        values = pd.to_numeric(mine[factor], errors="coerce")
        found.append({"y": f"{method} lost share", "x": label, "over": "all cells",
                      **spearman(values.tolist(), mine.lost.tolist())})
    for domain, part in mine.groupby("domain"):
        found.append({"y": f"{method} lost share", "x": "mean grad_cos at the end", "over": f"{domain} cells",
                      **spearman(pd.to_numeric(part.grad_cos, errors="coerce").tolist(), part.lost.tolist())})
    for domain, part in mine[mine.control_problem == ""].groupby("domain"):  # a control that is one
        sign = np.where(part.higher_is_better, 1.0, -1.0)
        found.append({"y": f"{method} − BP (oriented)", "x": "shallow − BP (oriented)", "over": f"{domain} cells",
                      **spearman((sign * part.shallow_gap).tolist(), (sign * part.gap).tolist())})
    return found


# -- figures -----------------------------------------------------------------------------------------
def figures(frame: pd.DataFrame, out_dir: Path, method: str = "dfa") -> list[Path]:
    """gap_vs_alignment.png, gap_vs_output_dim.png, gap_vs_shallow.png for ``method``'s cells."""
    from .plots import pyplot

    plt = pyplot()
    mine = frame[frame.method == method]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    domains = sorted(mine.domain.unique())
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(domains)}

    def scatter(ax, xs, part, ys, errs):
        """errs: half-widths (n,) or (low, high) distances (2, n); NaN draws no bar."""
        for domain in domains:
            keep = (part.domain == domain).to_numpy() & np.isfinite(xs) & np.isfinite(ys)
            if keep.any():
                ax.errorbar(xs[keep], ys[keep], yerr=np.nan_to_num(errs[..., keep]), fmt="o", capsize=2,
                            color=colours[domain], label=domain, alpha=0.8)

    lost = mine.lost.to_numpy(float)
    low = pd.to_numeric(mine.lost_low, errors="coerce").to_numpy(float)
    high = pd.to_numeric(mine.lost_high, errors="coerce").to_numpy(float)
    lost_ci = np.vstack([lost - low, high - lost])
    for factor, name, xlabel, log in (("grad_cos", "gap_vs_alignment", "mean grad_cos at the end of training", False),
                                      ("output_dim", "gap_vs_output_dim", "output dimension (rank of the feedback)",
                                       True)):
        fig, ax = plt.subplots(figsize=(6, 4))
        scatter(ax, pd.to_numeric(mine[factor], errors="coerce").to_numpy(float), mine, lost, lost_ci)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axhline(1, color="grey", lw=0.5, ls="--")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{method}: share of the hidden layers' worth lost")
        ax.set_title(f"{method} vs BP per cell (0: as BP, 1: as shallow; 95% bootstrap interval)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    cols = max(1, min(3, len(domains)))
    rows = max(1, math.ceil(len(domains) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    for ax, domain in zip(axes.flat, domains):
        part = mine[mine.domain == domain]
        sign = np.where(part.higher_is_better, 1.0, -1.0)
        scatter(ax, sign * part.shallow_gap.to_numpy(float), part, sign * part.gap.to_numpy(float),
                part.ci95.to_numpy(float))
        ax.set_title(f"{domain} ({part.metric.iloc[0]})", fontsize=9)
        ax.set_xlabel("shallow − BP (oriented)", fontsize=8)
        ax.set_ylabel(f"{method} − BP (oriented)", fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
    for ax in list(axes.flat)[len(domains):]:
        ax.set_visible(False)
    fig.suptitle(f"{method}'s gap against the shallow control's, per domain (oriented: below 0 is worse than BP)",
                 fontsize=9)
    fig.tight_layout()
    path = out_dir / "gap_vs_shallow.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return written + [path]


# -- the report --------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{digits}g}" if isinstance(value, float) else str(value)


def _count(value: Any) -> str:
    return "—" if value is None or value != value else str(int(value))


def _points_text(points: dict[str, list[int]]) -> str:
    return "; ".join(f"{tag}: {'-'.join(map(str, widths))}" for tag, widths in sorted(points.items())) or "—"


def _lost_text(r) -> str:
    if r.control_problem:
        return f"— ({r.control_problem})"
    if r.lost != r.lost:
        return "—"
    interval = (f"[{r.lost_low:+.2f}, {r.lost_high:+.2f}]" if r.lost_low is not None and r.lost_low == r.lost_low
                else "[unbounded]")
    return f"{r.lost:.2f} {interval}"


def left_out(frame: pd.DataFrame, method: str) -> list[str]:
    """Every cell of ``method`` that some relation cannot use, and why: no architecture facts (the
    output-dimension and depth relations), a shallow control that is no control (every ``lost``
    relation), no alignment recorded (the alignment relations)."""
    mine = frame[frame.method == method]
    lines = []
    for _, r in mine.iterrows():
        cell = f"{r.scale}/{r.domain}/{r.dataset}/{r.model}"
        if r.architecture_error:
            lines.append(f"{cell}: left out of the output-dimension and depth relations: {r.architecture_error}")
        if r.control_problem:
            lines.append(f"{cell}: left out of every relation with the shallow control: {r.control_problem}")
        elif r.lost != r.lost:
            lines.append(f"{cell}: left out of every lost-share relation: no shallow control, or BP does not "
                         "beat it")
    return lines


def cell_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in frame.iterrows():
        rows.append({
            "cell": f"{r.domain}/{r.dataset}/{r.model}", "method": r.method,
            "metric": f"{r.metric} {'↑' if r.higher_is_better else '↓'}",
            "gap to BP (95% CI)": f"{_num(r.gap)} ± {_num(r.ci95).lstrip('+')} (n={r.pairs})",
            "shallow − BP": f"{_num(r.shallow_gap)} ± {_num(r.shallow_ci95).lstrip('+')}",
            "lost [95% CI]": _lost_text(r), "grad_cos": _num(r.grad_cos, 2), "signal_cos": _num(r.signal_cos, 2),
            "out dim": _count(r.output_dim), "depth": _count(r.depth), "widths driven": r.widths or "—",
            "points (tag: widths)": _points_text(r.points),
            "norm (placement)": f"{r.norm} ({r.placement})" if isinstance(r.norm, str) and r.norm
            else f"unknown: {r.architecture_error}",
            "dead units (bp)": "—" if r.dead_units is None or r.dead_units != r.dead_units
            else f"{r.dead_units:.2f} ({_num(r.bp_dead_units, 2)})",
        })
    return pd.DataFrame(rows)


def point_table(frame: pd.DataFrame) -> pd.DataFrame:
    """grad_cos / signal_cos per feedback point, one row per cell and method that measured them."""
    rows = []
    for _, r in frame.iterrows():
        if r.point_alignment:
            rows.append({"cell": f"{r.domain}/{r.dataset}/{r.model}", "method": r.method,
                         "point: grad_cos / signal_cos": "; ".join(
                             f"{name}: {v.get('grad_cos', math.nan):.2f} / {v.get('signal_cos', math.nan):.2f}"
                             for name, v in r.point_alignment.items())})
    return pd.DataFrame(rows)


def _relation_line(rel: dict[str, Any]) -> str:
    if rel["rho"] is None:
        why = f"only {rel['n']} cells" if rel["n"] < MIN_CELLS else "one side is constant"
        return f"| {rel['y']} | {rel['x']} | {rel['over']} | {rel['n']} | — | — | not computed: {why} |"
    if rel["low"] is None:
        return f"| {rel['y']} | {rel['x']} | {rel['over']} | {rel['n']} | {rel['rho']:+.2f} | — | interval undefined |"
    spans = rel["low"] <= 0 <= rel["high"]
    verdict = "the interval contains 0: no evidence of a relation" if spans else (
        "increasing" if rel["low"] > 0 else "decreasing")
    return (f"| {rel['y']} | {rel['x']} | {rel['over']} | {rel['n']} | {rel['rho']:+.2f} | "
            f"[{rel['low']:+.2f}, {rel['high']:+.2f}] | {verdict} |")


def thin_evidence(frame: pd.DataFrame, rels: list[dict[str, Any]], method: str) -> list[str]:
    """Plain statements of what the records cannot carry, from the numbers themselves."""
    mine = frame[frame.method == method]
    lines = []
    small = mine[mine.pairs < 3]
    if len(small):
        lines.append(f"{len(small)} of {len(mine)} {method} cells have fewer than 3 paired seeds: "
                     + ", ".join(f"{r.domain}/{r.dataset}/{r.model} (n={r.pairs})" for _, r in small.iterrows()) + ".")
    unaligned = mine[mine.grad_cos.isna()]
    if len(unaligned):
        lines.append(f"{len(unaligned)} {method} cells recorded no alignment (alignment_every 0 or not measured): "
                     + ", ".join(sorted({f"{r.domain}/{r.dataset}/{r.model}" for _, r in unaligned.iterrows()}))
                     + "; they are absent from every alignment relation.")
    for line in left_out(frame, method):
        lines.append(line + ".")
    counts = mine.domain.value_counts()
    if len(counts) and counts.iloc[0] > len(mine) / 2:
        lines.append(f"{counts.index[0]} supplies {counts.iloc[0]} of the {len(mine)} cells: pooled correlations "
                     f"mostly rank {counts.index[0]}'s cells, which share one dataset or model family and are "
                     "not independent draws.")
    dims = pd.to_numeric(mine.output_dim, errors="coerce").dropna()
    if len(dims) and dims.nunique() <= 3:
        lines.append(f"The output dimension takes only {dims.nunique()} distinct values over these cells "
                     f"({', '.join(str(int(d)) for d in sorted(dims.unique()))}); the output-dimension probe varies "
                     "it with everything else fixed.")
    for rel in rels:
        if rel["rho"] is not None and rel["low"] is not None and rel["low"] <= 0 <= rel["high"]:
            lines.append(f"{rel['y']} vs {rel['x']} ({rel['over']}): rho {rel['rho']:+.2f}, interval "
                         f"[{rel['low']:+.2f}, {rel['high']:+.2f}] contains 0.")
        elif rel["rho"] is None:
            lines.append(f"{rel['y']} vs {rel['x']} ({rel['over']}): not computed ({rel['n']} cells).")
    lines.append("Cells differ in many things at once (data, model, budget); a rank correlation over them "
                 "describes these cells and does not isolate a cause. The probes under results/probes/ do.")
    return lines


def render(frame: pd.DataFrame, results: Path, scale: str | None, figure_paths: list[Path], out_dir: Path,
           method: str = "dfa") -> str:
    rels = relations(frame, method)
    where = f"`{results}`" + (f", scale {scale}" if scale else "")
    lines = [f"# Why DFA works here and not there: the records of {where}", "",
             f"Built by `dfabench explain --results {results}" + (f" --scale {scale}" if scale else "") + "` from the "
             "run records alone (dfabench/report/explain.py): the network's facts are those each run recorded "
             f"(`architecture`), or for records older than that the committed `{FACTS_FILE}` "
             "(`python -m dfabench.report.architecture_facts`); no model is rebuilt. A cell without them is listed below, "
             "never dropped in silence.", "",
             "**lost** = (BP − method) / (BP − shallow), oriented by the metric's direction: the share of what BP's "
             "hidden layers add over the shallow control (only the output layer trained) that the method loses; "
             "0 = as BP, 1 = as shallow, above 1 = worse than shallow. Its interval: a 95% percentile bootstrap over "
             "seeds resampling a seed's BP, method and shallow runs together (both gaps' noise). A shallow control "
             "that does not beat the cell's trivial model (the task's floor; logistic regression for CTR) is no "
             "control: that cell has no lost share. "
             "**placement**: post = every default feedback point receives a normalisation's output; pre = norms "
             "only inside the blocks (the points see un-normalised tensors); +final = a norm also runs after the "
             "last point, before the error. **out dim**: the features of one example where the error e is taken, "
             "the rank of the feedback B e.", "",
             f"## Rank correlations ({method}; Spearman, 95% percentile bootstrap over cells, {BOOTSTRAP} resamples)", "",
             "| y | x | over | n | rho | 95% CI | reading |", "|---|---|---|---|---|---|---|"]
    lines += [_relation_line(rel) for rel in rels]
    lines += ["", "## Where the evidence is thin", ""] + [f"* {line}" for line in thin_evidence(frame, rels, method)]
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figure_paths]
    lines += ["", "## Every cell and method", "", "gap: method − BP on the primary metric, paired by seed, ± 95% "
              "t-interval half-width (the numbers of `dfabench table`); grad_cos / signal_cos: mean over feedback "
              "points and seeds at the last alignment probe; dead units: mean share over points and seeds.", ""]
    lines.append(cell_table(frame).to_markdown(index=False, disable_numparse=True))
    points = point_table(frame)
    if not points.empty:
        lines += ["", "## Alignment per feedback point (end of training, mean over seeds)", "",
                  points.to_markdown(index=False, disable_numparse=True)]
    return "\n".join(lines) + "\n"


def explain(results: Path, scale: str | None = None, out: Path | None = None, describe: Any = None,
            method: str = "dfa") -> list[Path]:
    """The command: the report and figures of the records under ``results`` (of one ``scale``, or all),
    into ``out`` (default RESULTS/explain)."""
    results = Path(results)
    if not results.is_dir():
        raise ConfigError(f"--results {results}: no such folder")
    records = [r for r in iter_records(results) if scale in (None, r.get("scale"))]
    if describe is None:
        side = facts_file(results)
        describe = recorded_facts(records, json.loads(side.read_text()) if side else {},
                                  str(side) if side else FACTS_FILE)
    frame = explain_frame(records, describe)
    if frame.empty:
        raise ConfigError(f"no paired BP records under {results}/runs" + (f" at scale {scale}" if scale else ""))
    out = Path(out) if out is not None else results / "explain"
    out.mkdir(parents=True, exist_ok=True)
    paths = figures(frame, out / "figures", method)
    report = out / "report.md"
    report.write_text(render(frame, results, scale, paths, out, method))
    csv = out / "cells.csv"
    frame.drop(columns=["point_alignment"]).to_csv(csv, index=False)
    for line in left_out(frame, method):
        print(f"left out: {line}", file=sys.stderr)
    for path in (report, csv, *paths):
        print(f"wrote {path}", file=sys.stderr)
    return [report, csv, *paths]
