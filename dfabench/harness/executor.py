"""Executors: run the planned runs that are not recorded yet, storing each record as it finishes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .plan import PlannedRun
from .runner import run_one
from .store import is_finished, write_record


def pending(runs: list[PlannedRun], results: Path) -> list[PlannedRun]:
    return [r for r in runs if not is_finished(results, r.id)]


def run_local(runs: list[PlannedRun], results: Path, device: str = "cpu",
              on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Run sequentially in this process with a suite bar and one bar per run's epochs."""
    todo = pending(runs, results)
    done = len(runs) - len(todo)
    records = []
    with tqdm(total=len(runs), initial=done, desc="suite", unit="run", file=sys.stderr, dynamic_ncols=True) as suite:
        for run in todo:
            suite.set_postfix_str(run.label())
            record = run_one(run, results, device, progress=lambda **kw: tqdm(file=sys.stderr, **kw))
            write_record(results, record)
            records.append(record)
            if on_record:
                on_record(record)
            suite.update(1)
    return records
