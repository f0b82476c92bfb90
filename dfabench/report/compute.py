"""Equal-compute comparisons from budgeted records (``dfabench run --budget``; issue 33).

* **Arms.** A budgeted record (``record["budget"]``) belongs to the comparison of its cell, scale,
  budget label (``flops=bp``, ``flops=2e9``, ...) and other overrides. Under a ``...=bp`` budget BP's
  arm is the reference record each run names (BP's full, unbudgeted run: by definition it spends the
  budget). Unbudgeted records that no budgeted run names never enter.
* **Quality at equal compute** (``at="flops"`` or ``"seconds"``): per seed, the best validation value
  of the primary metric a run reached by the time it had spent what BP spent in all (FLOPs, or training
  seconds); its gap to BP paired by seed, mean with a 95% t-interval. A run that ended before that
  point (a FLOP budget spent in less time than BP took) is marked: its value is a lower bound on what
  more time would give.
* **Time-to-target / FLOPs-to-target**, as AlgoPerf scores them: the target of a cell is declared
  (``bp-half``: the median over BP's seeds of the best validation value BP reached within half its
  FLOPs); a run's time is the spend at its first evaluation that reaches the target; a run that never
  does scores infinity. A method's time on a cell is the median over its seeds.
* **Performance profiles** over the cells of a domain and of the whole suite: rho_m(tau) is the share
  of cells on which method m is within a factor tau of the fastest; AlgoPerf's integrated score is
  ``1/(tau_max - 1) * integral_1^tau_max rho_m(tau) dtau`` with tau_max = 4 (1: fastest everywhere; 0:
  never within 4x). A profile counts only methods run on every cell of its group.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Iterable

AXES = ("flops", "seconds")
TAU_MAX = 4.0
INF = math.inf


# ---------------------------------------------------------------- the records as comparisons
def cell(record: dict) -> str:
    return f"{record['domain']}/{record['dataset']}/{record['model']}"


def _variant(record: dict) -> str:
    """Everything but the budget that sets a run apart (its other overrides)."""
    return " ".join(f"{k}={v}" for k, v in sorted((record.get("overrides") or {}).items()) if k != "budget")


def comparisons(records: Iterable[dict]) -> dict[tuple, dict[str, dict[int, dict]]]:
    """(cell, scale, budget label, variant) -> method -> seed -> record, for every budgeted group,
    BP's reference records included as BP's arm."""
    records = [r for r in records if r.get("status") == "ok"]
    by_id = {r["id"]: r for r in records}
    groups: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        budget = r.get("budget")
        if not budget:
            continue
        key = (cell(r), r["scale"], budget.get("label") or f"{budget['kind']}={budget['value']:g}", _variant(r))
        groups[key][r["method"]][r["seed"]] = r
        ref = by_id.get(budget.get("reference") or "")
        if ref is not None:
            groups[key]["bp"][ref["seed"]] = ref
    return {k: dict(v) for k, v in sorted(groups.items())}


def curve(record: dict, axis: str) -> list[tuple[float, float]]:
    """(spend, validation primary metric) at every evaluation, in order."""
    key = "flops" if axis == "flops" else "train_s"
    primary = record["primary_metric"]
    return [(float(h[key]), float(h["val"][primary])) for h in record.get("history", [])
            if "val" in h and key in h and isinstance(h["val"].get(primary), (int, float))]


def spend(record: dict, axis: str) -> float:
    """What a run spent in all: its FLOPs, or its training seconds."""
    return float(record["compute"]["flops"]) if axis == "flops" else float(record["timings"]["train_s"])


def best_within(record: dict, axis: str, limit: float) -> float | None:
    """The best validation value among evaluations made by ``limit`` (None: none was)."""
    values = [v for x, v in curve(record, axis) if x <= limit * (1 + 1e-9)]
    if not values:
        return None
    return max(values) if record["higher_is_better"] else min(values)


def _t975(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def paired(diffs: list[float]) -> tuple[float, float | None]:
    """Mean of the paired differences and the half-width of its 95% t-interval (None for one seed)."""
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return mean, None
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return mean, _t975(len(diffs) - 1) * sd / math.sqrt(len(diffs))


# ---------------------------------------------------------------- quality at equal compute
def equal_compute(records: Iterable[dict], at: str) -> list[dict]:
    """One row per comparison and method: quality at BP's total spend on axis ``at``, paired by seed."""
    if at not in AXES:
        raise ValueError(f"--at {at!r}: use one of {', '.join(AXES)}")
    rows = []
    for (where, scale, label, variant), arms in comparisons(records).items():
        bp = arms.get("bp", {})
        for method in sorted(arms, key=lambda m: (m != "bp", m)):
            values, diffs, short, ratios = [], [], 0, []
            for seed, r in sorted(arms[method].items()):
                if seed not in bp:
                    continue
                limit = spend(bp[seed], at)
                value = best_within(r, at, limit)
                if value is None:
                    continue
                values.append(value)
                diffs.append(value - best_within(bp[seed], at, limit))
                # the run ended more than a step before BP's spend on this axis
                short += spend(r, at) * (1 + 1 / max(r["timings"]["steps"], 1)) < limit
                ratios.append(_step_ratio(r, bp[seed], at))
            if not values:
                continue
            gap, half = paired(diffs)
            rows.append({"cell": where, "scale": scale, "budget": label, "variant": variant, "method": method,
                         "metric": bp[next(iter(bp))]["primary_metric"] if bp else "",
                         "higher_is_better": arms[method][next(iter(arms[method]))]["higher_is_better"],
                         "n": len(values), "mean": sum(values) / len(values), "gap": gap, "half": half,
                         "ended_early": short, "step_ratio": median(ratios)})
    return rows


def _step_ratio(record: dict, bp: dict, at: str) -> float:
    """The method's cost of one step over BP's on the axis: FLOPs per step or training seconds per step."""
    def per_step(r):
        return spend(r, at) / max(r["timings"]["steps"], 1)
    return per_step(record) / per_step(bp)


# ---------------------------------------------------------------- time-to-target and profiles
def target(bp_records: list[dict], fraction: float = 0.5) -> float | None:
    """``bp-half``: median over BP's seeds of its best validation value within ``fraction`` of its FLOPs."""
    values = [best_within(r, "flops", fraction * spend(r, "flops")) for r in bp_records]
    values = [v for v in values if v is not None]
    return median(values) if values else None


def to_target(record: dict, level: float, axis: str) -> float:
    """Spend at the first evaluation that reaches ``level``; infinity if none does (AlgoPerf)."""
    for x, v in curve(record, axis):
        if (v >= level) if record["higher_is_better"] else (v <= level):
            return x
    return INF


def time_to_target(records: Iterable[dict], fraction: float = 0.5) -> list[dict]:
    """One row per comparison and method: the target, per-seed spends to reach it on both axes, medians."""
    rows = []
    for (where, scale, label, variant), arms in comparisons(records).items():
        level = target(list(arms.get("bp", {}).values()), fraction)
        if level is None:
            continue
        for method in sorted(arms, key=lambda m: (m != "bp", m)):
            runs = [r for _, r in sorted(arms[method].items())]
            row = {"cell": where, "scale": scale, "budget": label, "variant": variant, "method": method,
                   "target": level, "metric": runs[0]["primary_metric"], "n": len(runs)}
            for axis in AXES:
                each = [to_target(r, level, axis) for r in runs]
                row[f"{axis}_each"] = each
                row[axis] = median(each)  # infinity once half the seeds miss
            rows.append(row)
    return rows


def profile_ratios(rows: list[dict], axis: str, cells: list[str] | None = None) -> dict[str, list[float]]:
    """method -> its ratio to the fastest method on each cell (infinity: missed, or every method missed)."""
    by_cell: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if cells is None or row["cell"] in cells:
            by_cell[row["cell"]][row["method"]] = row[axis]
    methods = set.intersection(*(set(m) for m in by_cell.values())) if by_cell else set()
    ratios: dict[str, list[float]] = {m: [] for m in sorted(methods)}
    for times in by_cell.values():
        best = min(times[m] for m in methods)
        for m in methods:
            ratios[m].append(times[m] / best if math.isfinite(times[m]) else INF)
    return ratios


def rho(ratios: list[float], tau: float) -> float:
    """The share of cells within a factor tau of the fastest."""
    return sum(r <= tau for r in ratios) / len(ratios)


def integrated_score(ratios: list[float], tau_max: float = TAU_MAX) -> float:
    """AlgoPerf's score: the profile's area from tau = 1 to tau_max over (tau_max - 1); exact for the
    step function (a cell at ratio r <= tau_max contributes tau_max - r)."""
    return sum(tau_max - r for r in ratios if r <= tau_max) / ((tau_max - 1) * len(ratios))


def profiles(rows: list[dict], axis: str) -> list[dict]:
    """Integrated scores per budget, per domain and for the suite, per method present on every cell of
    the group (cells are compared under one budget label at a time)."""
    out = []
    for label, scale in sorted({(r["budget"], r["scale"]) for r in rows}):
        out += _profiles(_one_budget(rows, label, scale), axis, label, scale)
    return out


def _one_budget(rows: list[dict], label: str, scale: str) -> list[dict]:
    """The rows compared in one profile: one budget label, one scale, the task's own settings."""
    return [r for r in rows if r["budget"] == label and r["scale"] == scale and not r["variant"]]


def _profiles(rows: list[dict], axis: str, label: str, scale: str) -> list[dict]:
    domains = sorted({row["cell"].split("/")[0] for row in rows})
    groups = [(d, sorted({r["cell"] for r in rows if r["cell"].startswith(d + "/")})) for d in domains]
    groups.append(("suite", sorted({r["cell"] for r in rows})))
    out = []
    for name, cells in groups:
        for method, ratios in profile_ratios(rows, axis, cells).items():
            out.append({"group": name, "axis": axis, "budget": label, "scale": scale, "method": method,
                        "cells": len(ratios),
                        "score": integrated_score(ratios), "ratios": ratios})
    return out


# ---------------------------------------------------------------- rendering
def _num(value: float, axis: str | None = None) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    if axis == "flops":
        return f"{value:.3g}"
    if axis == "seconds":
        return f"{value:.3g} s"
    return f"{value:.4g}"


def render_equal(rows: list[dict], at: str) -> str:
    lines = [f"| cell | scale | budget | method | n | best val within BP's {at} | − BP (paired, 95% CI) | "
             f"{'FLOPs' if at == 'flops' else 'seconds'} per step / BP's |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = "" if r["method"] == "bp" else f"{r['gap']:+.4g}" + (f" ± {r['half']:.2g}" if r["half"] is not None else "")
        mark = " †" if r["ended_early"] else ""
        where = r["cell"] + (f" ({r['variant']})" if r["variant"] else "")
        lines.append(f"| {where} | {r['scale']} | {r['budget']} | {r['method']} | {r['n']} | {r['metric']} {r['mean']:.4g}{mark} | "
                     f"{gap} | {r['step_ratio']:.3f} |")
    if any(r["ended_early"] for r in rows):
        lines.append(f"\n†: on {sum(bool(r['ended_early']) for r in rows)} row(s) a seed's run ended (its budget spent) "
                     f"more than a step before BP's {at}: a lower bound on what it would reach there.")
    return "\n".join(lines) + "\n"


def render_targets(rows: list[dict]) -> str:
    lines = ["| cell | scale | budget | target (BP at half its FLOPs) | method | FLOPs to target (median; per seed) | "
             "seconds to target (median; per seed) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        each = {a: ", ".join(_num(v, a) for v in r[f"{a}_each"]) for a in AXES}
        lines.append(f"| {r['cell']} | {r['scale']} | {r['budget']} | {r['metric']} {r['target']:.4g} | {r['method']} | "
                     f"{_num(r['flops'], 'flops')} ({each['flops']}) | {_num(r['seconds'], 'seconds')} "
                     f"({each['seconds']}) |")
    return "\n".join(lines) + "\n"


def profile_table(rows: list[dict]) -> list[dict]:
    """One entry per scale, budget, group and method: its integrated scores on both axes."""
    scores = {(p["scale"], p["budget"], p["group"], p["method"], p["axis"]): p for a in AXES for p in profiles(rows, a)}
    return [{"scale": sc, "budget": b, "group": g, "method": m, "cells": p["cells"], "flops": p["score"],
             "seconds": scores[(sc, b, g, m, "seconds")]["score"] if (sc, b, g, m, "seconds") in scores else None}
            for (sc, b, g, m, axis), p in sorted(scores.items()) if axis == "flops"]


def render_profiles(rows: list[dict]) -> str:
    lines = ["| scale | budget | group | cells | method | score, FLOPs to target | score, seconds to target |",
             "|---|---|---|---|---|---|---|"]
    for p in profile_table(rows):
        seconds = "–" if p["seconds"] is None else f"{p['seconds']:.3f}"
        lines.append(f"| {p['scale']} | {p['budget']} | {p['group']} | {p['cells']} | {p['method']} | "
                     f"{p['flops']:.3f} | {seconds} |")
    return "\n".join(lines) + "\n"


def report(records: list[dict], at: str | None = None) -> str:
    """The markdown report: quality at equal compute (one axis, or both), time-to-target, profiles."""
    parts = []
    for axis in ([at] if at else AXES):
        parts.append(f"## Quality at equal {'FLOPs' if axis == 'flops' else 'training time'}\n\n"
                     + render_equal(equal_compute(records, axis), axis))
    rows = time_to_target(records)
    parts.append("## Time-to-target and FLOPs-to-target (∞: never reached, as in AlgoPerf)\n\n" + render_targets(rows))
    parts.append(f"## Performance profiles: AlgoPerf's integrated score (tau_max = {TAU_MAX:g})\n\n"
                 + render_profiles(rows))
    return "\n".join(parts)


# ---------------------------------------------------------------- figures
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")


def _axes():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.2, 3.4))


def _save(fig, ax, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve_figure(arms: dict[str, dict[int, dict]], axis: str, title: str, path: Path) -> Path:
    """Validation metric against FLOPs or training seconds: a line per method (the mean over seeds on a
    common grid, each seed's curve carried forward as its best so far), its seeds' range as a band."""
    import numpy as np

    fig, ax = _axes()
    any_record = next(iter(next(iter(arms.values())).values()))
    higher = any_record["higher_is_better"]
    for method in sorted(arms, key=lambda m: (m != "bp", m)):
        curves = [curve(r, axis) for _, r in sorted(arms[method].items())]
        curves = [c for c in curves if c]
        if not curves:
            continue
        grid = np.linspace(0, max(c[-1][0] for c in curves), 200)
        rows = []
        for c in curves:
            xs = np.array([x for x, _ in c])
            best = (np.maximum if higher else np.minimum).accumulate(np.array([v for _, v in c]))
            index = np.searchsorted(xs, grid, side="right") - 1  # the last evaluation made by each point
            rows.append(np.where(index >= 0, best[np.clip(index, 0, None)], np.nan))
        rows = np.array(rows)
        covered = ~np.isnan(rows).all(axis=0)
        mean = np.nanmean(rows[:, covered], axis=0)
        line, = ax.plot(grid[covered], mean, label=f"{method} (n={len(curves)})")
        ax.fill_between(grid[covered], np.nanmin(rows[:, covered], axis=0), np.nanmax(rows[:, covered], axis=0),
                        color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training FLOPs" if axis == "flops" else "training seconds")
    ax.set_ylabel(f"best validation {any_record['primary_metric']} so far")
    return _save(fig, ax, title, path)


def profile_figure(rows: list[dict], axis: str, label: str, scale: str, path: Path) -> Path:
    """rho_m(tau) over the suite's cells for one budget and scale, tau from 1 to tau_max."""
    import numpy as np

    ratios = profile_ratios(_one_budget(rows, label, scale), axis)
    taus = np.linspace(1, TAU_MAX, 301)
    fig, ax = _axes()
    for method, rs in ratios.items():
        ax.step(taus, [rho(rs, t) for t in taus], where="post",
                label=f"{method} (score {integrated_score(rs):.2f})")
    ax.set_xlabel(f"tau: within this factor of the fastest ({'FLOPs' if axis == 'flops' else 'seconds'} to target)")
    ax.set_ylabel("share of cells")
    ax.set_ylim(-0.02, 1.02)
    cells = len(next(iter(ratios.values()), []))
    return _save(fig, ax, f"performance profile, {cells} cells ({scale}), budget {label}", path)


def write_report(results: Path, out: Path | None = None) -> list[Path]:
    """RESULTS/compute/: README.md (every table) and the figures: a curve per comparison and axis, and
    the suite's profiles."""
    from ..harness.store import iter_records

    records = list(iter_records(Path(results)))
    out = Path(out) if out else Path(results) / "compute"
    figures = []
    for (where, scale, label, variant), arms in comparisons(records).items():
        for axis in AXES:
            name = _slug(f"{where}-{scale}-{label}-{variant}".rstrip("-")) + f"-{axis}.png"
            title = f"{where} ({scale}), budget {label}" + (f", {variant}" if variant else "")
            figures.append(curve_figure(arms, axis, title, out / "figures" / name))
    rows = time_to_target(records)
    for label, scale in sorted({(r["budget"], r["scale"]) for r in rows}):
        for axis in AXES:
            name = f"profile-{scale}-{_slug(label)}-{axis}.png"
            figures.append(profile_figure(rows, axis, label, scale, out / "figures" / name))
    text = ("# Equal compute: quality per FLOP and per second\n\n"
            f"Generated by `dfabench table --at flops --write --results {results}` from the records under "
            "runs/ (dfabench/report/compute.py says how each number is made).\n\n" + report(records)
            + "\n## Figures\n\n" + "".join(f"![{p.stem}](figures/{p.name})\n" for p in figures))
    readme = out / "README.md"
    readme.write_text(text)
    return [readme, *figures]
