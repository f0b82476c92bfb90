"""Executors: run the planned runs that are not recorded yet, storing each record as it finishes.

Every run is claimed (``claims.py``) before it starts. A run another live invocation holds is left to
it: this one goes on with the rest, then waits for those, and takes the other's record as the outcome
(an ``error`` there is not retried here: that would run it twice). Only a run whose holder vanished
without a record is run here after all.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .claims import try_claim
from .plan import PlannedRun
from . import threads
from .progress import SuiteBar
from .runner import run_one
from .store import FINISHED, is_finished, read_valid, record_path, write_record

POLL_S = 1.0  # how often to look at runs another process holds


def pending(runs: list[PlannedRun], results: Path) -> list[PlannedRun]:
    return [r for r in runs if not is_finished(results, r.id)]


def _outcome(results: Path, run: PlannedRun, since_ns: int) -> dict | None:
    """The record that settles ``run`` for this invocation: a finished one, or any valid one written
    since ``since_ns`` (another invocation ran it meanwhile, perhaps into an error); None: run it."""
    path = record_path(results, run.id)
    try:
        fresh = path.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return None
    record = read_valid(path)
    return record if record is not None and (fresh or record["status"] in FINISHED) else None


def run_local(runs: list[PlannedRun], results: Path, device: str = "cpu",
              on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Run sequentially in this process with a suite bar (failures counted apart) and one bar per
    run's epochs. Returns the records of this invocation's runs, those another invocation ran for it
    included."""
    started = time.time_ns()
    todo = pending(runs, results)
    done = len(runs) - len(todo)
    records: list[dict] = []
    with SuiteBar(total=len(runs), done=done) as suite:
        while todo:
            waiting = []
            for run in todo:
                record = _outcome(results, run, started)
                if record is None:
                    claim = try_claim(results, run.id)
                    if claim is None:  # another live invocation is running it: come back later
                        waiting.append(run)
                        continue
                    with claim:
                        record = _outcome(results, run, started)  # it may have finished just before our claim
                        if record is None:
                            suite.start(run.label())
                            if device == "cpu":  # no more threads than free cores (threads.py)
                                threads.apply()
                            record = run_one(run, results, device, progress=lambda **kw: tqdm(file=sys.stderr, **kw))
                            write_record(results, record)
                            if on_record:
                                on_record(record)
                records.append(record)
                suite.finished(record)
            if waiting:
                suite.start(f"waiting for {len(waiting)} run(s) another invocation is running")
                time.sleep(POLL_S)
            todo = waiting
    return records
