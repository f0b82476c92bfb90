"""Figures from run records with matplotlib (Agg: files only, no display needed).

Per domain, one panel per cell: the validation primary metric against the epoch, one line per method
(mean over seeds), and the alignment of the DFA-family updates with the BP gradient (mean cosine over
feedback points) against the epoch. Both come from each record's ``history``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from ..hparams import ConfigError

CONTROLS = ("bp", "shallow")  # methods without feedback alignment to plot


def pyplot():
    """matplotlib.pyplot on the Agg backend; without matplotlib, one line (exit 2) rather than a traceback."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("figures need matplotlib: pip install 'dfabench[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def history_frame(records: Iterable[dict], value: Callable[[dict, dict], float | None]) -> pd.DataFrame:
    """Long format (cell, method, seed, epoch, value) of ``value(record, history entry)`` over ok runs."""
    rows = []
    for r in records:
        if r.get("status") != "ok":
            continue
        for entry in r.get("history") or []:
            v = value(r, entry)
            if isinstance(v, (int, float)) and math.isfinite(v):
                rows.append({"cell": f"{r['dataset']}/{r['model']}", "method": r["method"], "seed": r["seed"],
                             "epoch": entry.get("epoch"), "value": float(v)})
    return pd.DataFrame(rows, columns=["cell", "method", "seed", "epoch", "value"])


def _val_metric(record: dict, entry: dict) -> float | None:
    return (entry.get("val") or {}).get(record.get("primary_metric"))


def _grad_cos(record: dict, entry: dict) -> float | None:
    return (entry.get("alignment") or {}).get("mean_grad_cos")


def panels(frame: pd.DataFrame, methods: Iterable[str], label: Callable[[str], str], ylabels: dict[str, str],
           title: str, path: Path) -> Path:
    """One panel per cell, one line per method (mean over seeds at each epoch), one legend."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    cells = sorted(frame.cell.unique())
    cols = min(4, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.6), squeeze=False, layout="constrained")
    means = frame.groupby(["cell", "method", "epoch"])["value"].mean().reset_index()
    colours = {m: f"C{i}" for i, m in enumerate(methods)}  # a method keeps its colour across figures
    order = [m for m in colours if m in set(frame.method)]
    for ax, cell in zip(axes.flat, cells):
        for method in order:
            line = means[(means.cell == cell) & (means.method == method)]
            if len(line):
                ax.plot(line.epoch, line.value, color=colours[method], marker="." if len(line) < 12 else None)
        ax.set_title(cell, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabels.get(cell, ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colours[m], label=label(m)) for m in order]
    # the title heads the legend: a suptitle and an outside legend overlap under constrained layout
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=8, frameon=False,
               title=title, title_fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def domain_figures(domain: str, records: list[dict], methods: Iterable[str], label: Callable[[str], str],
                   out_dir: Path) -> list[Path]:
    """``<domain>_curves.png`` and, where DFA-family runs measured it, ``<domain>_alignment.png``."""
    methods = list(methods)
    written = []
    curves = history_frame(records, _val_metric)
    if not curves.empty:
        arrows = {r["primary_metric"]: "↑" if r.get("higher_is_better", True) else "↓" for r in records}
        ylabels = {f"{r['dataset']}/{r['model']}": f"val {r['primary_metric']} {arrows[r['primary_metric']]}"
                   for r in records}
        written.append(panels(curves, methods, label, ylabels, f"{domain}: validation metric, mean over seeds",
                              Path(out_dir) / f"{domain}_curves.png"))
    aligned = history_frame((r for r in records if r["method"] not in CONTROLS), _grad_cos)
    if not aligned.empty:
        ylabels = {cell: "grad cosine with BP" for cell in aligned.cell.unique()}
        written.append(panels(aligned, methods, label, ylabels,
                              f"{domain}: alignment of the update with the BP gradient (mean over points, seeds)",
                              Path(out_dir) / f"{domain}_alignment.png"))
    return written
