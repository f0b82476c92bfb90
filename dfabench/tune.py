"""Reproducible tuning with Ray Tune, on validation metrics only.

A task declares its search space in ``hparams.yaml``::

    search:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      dropout: {grid: [0.0, 0.1, 0.5]}      # a grid as in the paper
      hidden: {choice: [[256, 256], [512, 512]]}

``dfabench tune SELECTOR --method M --scale S --samples N --search grid|random|asha`` tunes each
matched cell: every trial trains the cell with the trial's values for each seed and scores it by the
best validation value of the primary metric (mean over seeds; test metrics are never looked at).
ASHA prunes trials on the first seed's per-epoch validation value. The winner is appended as a rule,
with its provenance (space, search, samples, scale, seeds, date, commit, score), to the task's
``tuned.yaml`` (read after ``hparams.yaml``), or to ``--output FILE``.
"""
from __future__ import annotations

import datetime
import statistics
from pathlib import Path
from typing import Any

import yaml

from .harness.plan import PlannedRun, match_cells
from .harness.preflight import check_data
from .harness.provenance import git_state
from .hparams import ConfigError, resolve
from .task import SCALES, Task, get_task

SEARCHES = ("grid", "random", "asha")


def _import_tune():
    try:
        from ray import tune
    except ImportError:
        raise ConfigError("dfabench tune needs Ray Tune: pip install 'dfabench[ray]'") from None
    return tune


def search_space(task: Task) -> dict[str, dict[str, Any]]:
    path = task.hparams_path()
    doc = yaml.safe_load(path.read_text()) if path.exists() else {}
    space = (doc or {}).get("search") or {}
    if not space:
        raise ConfigError(f"task {task.domain} declares no search space (a 'search:' mapping in {path.name})")
    return space


def to_tune_space(space: dict[str, dict[str, Any]], search: str) -> dict[str, Any]:
    tune = _import_tune()
    out = {}
    for key, spec in space.items():
        if len(spec) != 1:
            raise ConfigError(f"search space entry {key!r} needs exactly one of grid, choice, uniform, loguniform")
        (kind, values), = spec.items()
        if kind == "grid":
            out[key] = tune.grid_search(list(values)) if search == "grid" else tune.choice(list(values))
        elif kind == "choice":
            out[key] = tune.choice(list(values))
        elif kind == "uniform":
            out[key] = tune.uniform(*values)
        elif kind == "loguniform":
            out[key] = tune.loguniform(*values)
        else:
            raise ConfigError(f"search space entry {key!r}: unknown kind {kind!r}")
    return out


def _plain(value: Any) -> Any:
    """numpy scalars and tuples from Ray -> plain YAML-able Python values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def tune_cell(cell: str, method: str, scale: str, samples: int, search: str, seeds: list[int],
              storage: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tune one cell; returns the winning rule (``when``, ``set``, ``provenance``)."""
    tune = _import_tune()
    import ray

    domain, dataset, model = cell.split("/")
    task = get_task(domain)
    higher = task.higher_is_better_for(model)
    primary = task.primary_for(model)
    space = search_space(task)
    base_overrides = dict(overrides or {})
    resolve(task, scale=scale, method=method, dataset=dataset, model=model, overrides=base_overrides)

    def trainable(config: dict[str, Any]) -> None:
        from .harness import threads
        from .harness.runner import run_one

        threads.apply(1)  # one thread per trial: Ray runs as many trials as cores (harness/threads.py)
        values = {**base_overrides, **{k: _plain(v) for k, v in config.items()}}
        hp = resolve(task, scale=scale, method=method, dataset=dataset, model=model, overrides=values)
        scores = []
        for i, seed in enumerate(seeds):
            run = PlannedRun(domain, dataset, model, method, scale, seed, hp)
            report = (lambda epoch, val: tune.report({"val": val[primary], "seed_index": 0})) if i == 0 else None
            record = run_one(run, storage / "records", "cpu", on_eval=report)
            best = record["metrics"]["val"].get(primary)
            scores.append(float("nan") if best is None or record["status"] != "ok" else float(best))
        tune.report({"val": statistics.fmean(scores), "seed_index": len(seeds), "final": 1})

    scheduler = None
    if search == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="val", mode="max" if higher else "min", grace_period=1)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": task.cpus_per_run}),
            param_space=to_tune_space(space, search),
            tune_config=tune.TuneConfig(num_samples=1 if search == "grid" else samples, scheduler=scheduler,
                                        search_alg=None),
            run_config=tune.RunConfig(storage_path=str(storage.resolve()), name=f"{domain}-{dataset}-{model}-{method}",
                                      verbose=0),
        )
        grid = tuner.fit()
        finals = [r for r in grid if r.metrics and r.metrics.get("final") and r.metrics.get("val") == r.metrics.get("val")]
        if not finals:
            raise ConfigError(f"{cell}: no trial finished with a validation score")
        best = (max if higher else min)(finals, key=lambda r: r.metrics["val"])
    finally:
        if started_here:
            ray.shutdown()
    winner = {k: _plain(v) for k, v in best.config.items()}
    return {
        "when": {"scale": scale, "method": method, "dataset": dataset, "model": model},
        "set": winner,
        "provenance": {
            "tuned_by": "dfabench tune", "search": search, "samples": len(finals), "space": space,
            "scale": scale, "seeds": seeds, "metric": f"best validation {primary} (mean over seeds)",
            "score": float(best.metrics["val"]), "date": datetime.date.today().isoformat(),
            "commit": git_state()["commit"],
        },
    }


def append_rule(path: Path, rule: dict[str, Any]) -> None:
    doc = yaml.safe_load(path.read_text()) if path.exists() else None
    doc = doc or {"rules": []}
    doc.setdefault("rules", []).append(rule)
    header = "# Written by `dfabench tune`: winners with their provenance, applied after hparams.yaml.\n"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


def tune_command(selectors: list[str], method: str, scale: str, samples: int, search: str, seeds: int,
                 output: str | None, storage: Path, overrides: dict[str, Any] | None = None) -> list[Path]:
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if search not in SEARCHES:
        raise ConfigError(f"unknown search {search!r}; known: {', '.join(SEARCHES)}")
    from .methods import METHODS

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    written = []
    for cell in match_cells(selectors):
        task = get_task(cell.split("/")[0])
        if not task.method_applies(cell.split("/")[2], method):
            raise ConfigError(f"{cell}: {method} does not apply")
        # the pre-flight data check, as `run` does: bad data is one line before any trial starts
        domain, dataset, model = cell.split("/")
        hp = resolve(task, scale=scale, method=method, dataset=dataset, model=model, overrides=overrides)
        check_data([PlannedRun(domain, dataset, model, method, scale, 0, hp)])
        rule = tune_cell(cell, method, scale, samples, search, list(range(seeds)), storage, overrides)
        target = Path(output) if output else task.hparams_path().with_name("tuned.yaml")
        append_rule(target, rule)
        written.append(target)
        print(f"{cell} {method}: best validation {rule['provenance']['score']:.4g} with {rule['set']} -> {target}")
    return written
