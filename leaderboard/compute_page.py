"""The leaderboard's equal-compute page (``compute.html``): what each method reaches with BP's FLOPs and
BP's training seconds, FLOPs- and time-to-target, the performance profiles with AlgoPerf's integrated
score, and the quality-against-compute figures. Built only when the folders hold budgeted records
(``dfabench run --budget``); the numbers come from ``dfabench.report.compute``, as in
``dfabench table --at``. Figures are embedded, so the page stays one self-contained file."""
from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from dfabench.report import compute as cr

PAGE = "compute.html"


def has_budgets(records: list[dict]) -> bool:
    return any(r.get("budget") for r in records)


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def page_context(records: list[dict]) -> dict:
    """The tables' rows and the figures (as data URIs) the template shows."""
    equal = {axis: cr.equal_compute(records, axis) for axis in cr.AXES}
    targets = cr.time_to_target(records)
    profiles = cr.profile_table(targets)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for (where, scale, label, variant), arms in cr.comparisons(records).items():
            for axis in cr.AXES:
                title = f"{where} ({scale}), budget {label}" + (f", {variant}" if variant else "")
                path = cr.curve_figure(arms, axis, title, Path(tmp) / f"{len(figures)}.png")
                figures.append({"title": f"{title}: against {axis}", "src": _png(path)})
        for label, scale in sorted({(r["budget"], r["scale"]) for r in targets}):
            for axis in cr.AXES:
                path = cr.profile_figure(targets, axis, label, scale, Path(tmp) / f"p{len(figures)}.png")
                figures.append({"title": f"performance profile ({scale}), budget {label}, {axis} to target",
                                "src": _png(path)})
    return {"equal": equal, "targets": targets, "profiles": profiles, "figures": figures, "tau_max": cr.TAU_MAX,
            "fmt": cr._num}


def write_compute_page(records: list[dict], out_dir: Path, env, common: dict) -> Path | None:
    """Writes ``compute.html`` when there are budgeted records; None otherwise."""
    if not has_budgets(records):
        return None
    path = Path(out_dir) / PAGE
    path.write_text(env.get_template("compute.html").render(title="dfabench: equal compute",
                                                            **page_context(records), **common))
    return path
