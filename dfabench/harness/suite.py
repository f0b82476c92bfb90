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
        return run_ray(runs, results, config.device, address=config.address)
    from ..leaderboard.wandb_logging import record_logger, wandb_requested

    on_record = None
    if wandb_requested(config.wandb):
        try:
            on_record = record_logger(results)
        except RuntimeError as err:
            raise ConfigError(str(err)) from err
    return run_local(runs, results, config.device, on_record=on_record)

