"""`dfabench table --format compact`: one row per cell, the methods side by side, in the field's units.

The form the README quotes: a row per cell (and variant) and metric with BP, DFA and shallow as
columns, every other method in one ``others`` column (``name: value``), DFA's gap to BP paired by
seed with its 95% interval, and the trivial floor the records report. Values use the units and
digits of the glance table (accuracy and AUC in points, PSNR in dB), so the two never disagree.
``--cell GLOB`` (repeatable) keeps the matching ``domain/dataset/model`` cells, in the order given.
"""
from __future__ import annotations

import fnmatch
import math

import pandas as pd

from .glance import _cell_order, _column, _gap, _value
from .tables import GROUP, _method_key, paired_gaps, summary

COLUMNS = ("bp", "dfa", "shallow")


def _cells(part: pd.DataFrame, patterns: list[str] | None) -> list[tuple]:
    """(domain, dataset, model) in the tasks' declared order, or in the order of ``patterns``."""
    found = sorted(set(zip(part.domain, part.dataset, part.model)))
    ordered = [(d, *cell) for d in sorted({c[0] for c in found})
               for cell in _cell_order(d, [c[1:] for c in found if c[0] == d])]
    if not patterns:
        return ordered
    out = []
    for pattern in patterns:
        out += [c for c in ordered if fnmatch.fnmatchcase("/".join(c), pattern) and c not in out]
    return out


def compact_frame(frame: pd.DataFrame, patterns: list[str] | None = None) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame()
    summ, gaps = summary(frame), paired_gaps(frame)
    floors = frame.groupby(GROUP + ["metric"])["floor"].mean() if "floor" in frame else pd.Series(dtype=float)
    rows = []
    for scale in sorted(summ.scale.unique()):
        part = summ[summ.scale == scale]
        for domain, dataset, model in _cells(part, patterns):
            here = part[(part.domain == domain) & (part.dataset == dataset) & (part.model == model)]
            for key, rows_here in here.groupby(GROUP + ["metric", "higher_is_better"], sort=False, dropna=False):
                *group, metric, higher = key
                factor, name, digits = _column(metric, bool(higher), rows_here)
                by_method = {m: r for m, r in rows_here.set_index("method").iterrows()}

                n = int(rows_here.n.max())

                def shown(method: str) -> str:
                    r = by_method.get(method)
                    if r is None:
                        return ""
                    text = _value(factor * r["mean"], factor * r["std"], int(r["n"]), int(r["failed"]), digits)
                    return text + (f" (n={int(r['n'])})" if int(r["n"]) != n else "")

                g = gaps[(gaps[GROUP + ["metric"]] == pd.Series(dict(zip(GROUP + ["metric"], (*group, metric)))))
                         .all(axis=1) & (gaps.method == "dfa")] if len(gaps) else gaps
                floor = floors.get(tuple(group) + (metric,), math.nan)
                variant = "; ".join(str(v) for v in group[4:] if v)
                rows.append({
                    "cell": f"{domain}/{dataset}/{model}" + (f" ({variant})" if variant else ""),
                    "metric": name, "n": n,
                    **{m: shown(m) for m in COLUMNS},
                    "others": "; ".join(f"{m}: {shown(m)}" for m in sorted(by_method, key=_method_key)
                                        if m not in COLUMNS),
                    "DFA − BP (95% CI)": _gap(factor * g.gap.iloc[0], factor * g.ci95.iloc[0], digits) if len(g) else "",
                    "floor": f"{factor * floor:.{digits}f}" if floor == floor else "",
                })
    table = pd.DataFrame(rows)
    for column in ("others", "floor"):
        if column in table and (table[column] == "").all():
            table = table.drop(columns=column)
    return table.rename(columns={"bp": "BP", "dfa": "DFA"})


def render_compact(frame: pd.DataFrame, patterns: list[str] | None = None) -> str:
    table = compact_frame(frame, patterns)
    if table.empty:
        return "no run records\n"
    return table.to_markdown(index=False, disable_numparse=True) + "\n"  # the text as formatted: 10.0, not 10
