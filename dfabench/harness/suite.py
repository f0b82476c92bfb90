"""Run a configuration: plan it, skip what is recorded, hand the rest to an executor, summarise.

The one path from a configuration to records: `dfabench run` takes it, and so does the regression
gate for the runs it is missing (``dfabench.guards.check``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError


def plan_config(config):
    """The planned runs of a configuration (``harness.config.run_config``) and the planner's notes;
    nothing to run at all is bad input, and says why."""
    from .plan import plan

    runs, notes = plan(config.selectors, config.methods, config.scale, list(range(config.seeds)),
                       overrides=config.set)
    if not runs:  # every (cell, method) pair was skipped: say why instead of "0 runs planned"
        raise ConfigError(f"nothing to run: {', '.join(config.methods)} applies to none of the selected cells"
                          + (f" ({notes[0].split(': ', 1)[1]})" if notes else ""))
    return runs, notes


def run_suite(config, results: Path) -> list[dict]:
    """Run what is missing of ``config`` into ``results`` (a writable folder); the records of every
    planned run, as the executor returns them."""
    from .. import startup
    from .config import check_device
    from .executor import pending, run_local

    runs, notes = plan_config(config)
    references: list[dict] = []
    if config.budget is not None:  # BP's reference runs first under a bp budget
        from .compute import parse_budget

        runs, notes, references = budgeted(runs, notes, parse_budget(config.budget), config, results)
    check_device(config.device, will_run=True)
    if any(run.hparams.capture for run in runs):
        from .capture import preflight

        preflight(config.device)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    todo = pending(runs, results)
    print(f"{len(runs)} runs planned, {len(runs) - len(todo)} already recorded in {results}/runs, "
          f"{len(todo)} to run", file=sys.stderr)
    if config.executor == "ray":
        from .ray_executor import run_ray

        startup.resume()  # the workers train; this process waits for hours
        return references + run_ray(runs, results, config.device, address=config.address)
    from ..leaderboard.wandb_logging import record_logger, wandb_requested

    on_record = None
    if wandb_requested(config.wandb):
        try:
            on_record = record_logger(results)
        except RuntimeError as err:
            raise ConfigError(str(err)) from err
    return references + run_local(runs, results, config.device, on_record=on_record)


def budgeted(runs: list, notes: list[str], budget, config, results) -> tuple[list, list[str], list[dict]]:
    """``--budget`` on a planned configuration. Under a ``bp`` budget BP's unbudgeted runs of the same
    cells, seeds and overrides run first (those not recorded yet; here, one after another), and their
    records set each run's budget. Returns the budgeted runs, the notes, and BP's reference records
    (BP's arm of the comparison)."""
    from .compute import plan_budget, reference_value
    from .config import check_device
    from .executor import pending, run_local
    from .plan import plan
    from .store import read_valid, record_path

    references: dict[tuple[str, int], dict] = {}
    if budget.value is None:
        refs, _ = plan(config.selectors, ["bp"], config.scale, list(range(config.seeds)), overrides=config.set)
        for ref in refs:  # before anything trains: an old BP record cannot say what it spent
            path = record_path(results, ref.id)
            record = read_valid(path) if path.exists() else None
            if record is not None and record["status"] == "ok":
                reference_value(record, budget.kind)
        todo = pending(refs, results)
        if todo:
            check_device(config.device, will_run=True)
            print(f"--budget {budget.label}: {len(todo)} BP reference run(s) first", file=sys.stderr)
            run_local(todo, results, config.device)
        references = {(ref.cell, ref.seed): read_valid(record_path(results, ref.id)) for ref in refs}
    planned, more = plan_budget(runs, budget, references)
    return planned, notes + more, [r for r in references.values() if r is not None]
