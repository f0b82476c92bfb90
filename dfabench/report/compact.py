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

from .glance import UNITS, entries
from .frame import GROUP

COLUMNS = ("bp", "dfa", "shallow")


def _cells(rows: pd.DataFrame, patterns: list[str] | None) -> list[tuple]:
    """(domain, dataset, model) in the tasks' declared order (the entries'), or in that of ``patterns``."""
    ordered = list(dict.fromkeys(zip(rows.domain, rows.dataset, rows.model)))
    if not patterns:
        return ordered
    out = []
    for pattern in patterns:
        out += [c for c in ordered if fnmatch.fnmatchcase("/".join(c), pattern) and c not in out]
    return out


def compact_frame(frame: pd.DataFrame, patterns: list[str] | None = None) -> pd.DataFrame:
    table_entries = entries(frame)
    if table_entries.empty:
        return pd.DataFrame()
    floors = frame.groupby(GROUP + ["metric"])["floor"].mean() if "floor" in frame else pd.Series(dtype=float)
    rows = []
    for scale in sorted(table_entries.scale.unique()):
        part = table_entries[table_entries.scale == scale]
        for cell in _cells(part, patterns):
            here = part[(part.domain == cell[0]) & (part.dataset == cell[1]) & (part.model == cell[2])]
            for key, group in here.groupby(GROUP + ["metric"], sort=False, dropna=False):
                n = int(group.n.max())
                by_method = group.set_index("method")

                def shown(method: str) -> str:
                    if method not in by_method.index:
                        return ""
                    e = by_method.loc[method]
                    return e.text + (f" (n={int(e.n)})" if int(e.n) != n else "")

                floor = floors.get(key, math.nan)
                variant = "; ".join(str(v) for v in key[4:6] if v)
                rows.append({
                    "cell": "/".join(cell) + (f" ({variant})" if variant else ""),
                    "metric": group.label.iloc[0], "n": n,
                    **{m: shown(m) for m in COLUMNS},
                    "others": "; ".join(f"{m}: {shown(m)}" for m in by_method.index if m not in COLUMNS),
                    "DFA − BP (95% CI)": by_method.loc["dfa"].gap_text if "dfa" in by_method.index else "",
                    "floor": f"{UNITS.get(key[-1], (1.0, ''))[0] * floor:.{int(group.digits.iloc[0])}f}"
                             if floor == floor else "",
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
