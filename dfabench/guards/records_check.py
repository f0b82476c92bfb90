"""`dfabench records check DIR`: do the run records under DIR keep the record contract?

The package's own form of the project's record checker: every ``*.json`` under DIR that looks like a
run record (an object with ``domain`` and ``method``) must parse, carry the contract's fields (those a
run writes: who the run is, its status and metrics, its history, timings and provenance) and pass the
readers' schema (``harness.schema.problem``: an ``ok`` record holds a finite primary metric). With
``need_methods``, every cell must hold an ``ok`` run of each of them. One summary line per folder
lists each cell's mean primary test metric per method. With ``clean``, a record no commit of the
dfabench checkout reproduces is a violation too: one made from a modified working tree
(``provenance.dirty``), or at a commit outside that checkout's history (checked where dfabench runs
from a git checkout with its whole history: not an installed package, not a shallow clone).
`dfabench records rerun` makes them again.

Exit codes (cli.py): 0 when every record keeps the contract, 1 on a violation (each named on its own
line), 2 on bad input (no such folder).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..harness.schema import problem
from .rerun import history_of, why_not_reproducible

# What a record written by `dfabench run` always holds (the schema lets older readers skip some).
CONTRACT = ("id", "domain", "dataset", "model", "method", "scale", "seed", "hparams", "status", "metrics",
            "primary_metric", "higher_is_better", "history", "timings", "provenance")


@dataclass
class Report:
    records: int = 0
    violations: list[str] = field(default_factory=list)
    cells: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)  # cell -> method -> ok values

    def summary(self) -> str:
        parts = []
        for cell, by_method in sorted(self.cells.items()):
            means = [f"{m}={statistics.mean(v):.4g}" if (v := [x for x in values if x is not None]) else f"{m}=none-ok"
                     for m, values in sorted(by_method.items())]
            parts.append(f"{cell}[{' '.join(means)}]")
        return f"{self.records} records, {len(self.cells)} cells: " + "; ".join(parts)


def check(folder: Path, need_methods: tuple[str, ...] = (), domain: str | None = None, clean: bool = False) -> Report:
    """Read every record under ``folder`` (recursively) and collect what breaks the contract."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    report = Report()
    history = history_of() if clean else None
    for path in sorted(folder.rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            report.violations.append(f"{path}: unreadable ({err})")
            continue
        if not (isinstance(record, dict) and "method" in record and "domain" in record):
            continue  # a verification file, a table: not a run record
        if domain and record["domain"] != domain:
            continue
        report.records += 1
        missing = [k for k in CONTRACT if k not in record]
        why = problem(record)
        if missing or why:
            report.violations.append(f"{path}: " + "; ".join(
                ([f"lacks {', '.join(missing)}"] if missing else []) + ([why] if why else [])))
            continue
        if clean and (why := why_not_reproducible(record, history)):
            report.violations.append(f"{path}: {why}; `dfabench records rerun` makes it again")
        cell = f"{record['domain']}/{record['dataset']}/{record['model']}"
        value = record["metrics"]["test"].get(record["primary_metric"]) if record["status"] == "ok" else None
        report.cells.setdefault(cell, {}).setdefault(record["method"], []).append(value)
    if report.records == 0:
        report.violations.append(f"{folder}: no run records")
    for cell, by_method in sorted(report.cells.items()):
        for method in need_methods:
            if method not in by_method:
                report.violations.append(f"{cell}: no {method} run")
            elif all(v is None for v in by_method[method]):
                report.violations.append(f"{cell}: no successful {method} run")
    return report
