"""Mirror run records to Weights & Biases: one W&B run per record, offline by default.

The local records stay the source of truth; W&B only mirrors them. Offline runs are kept beside the
results (``<results>/wandb/``) for a later ``wandb sync``; set WANDB_MODE=online to log live.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

MISSING = "W&B logging asked for, but wandb is not installed: pip install 'dfabench[wandb]'"


def wandb_requested(flag: bool) -> bool:
    return bool(flag) or os.environ.get("DFABENCH_WANDB", "") == "1"


def _import_wandb():
    try:
        import wandb
    except ImportError as err:
        raise RuntimeError(MISSING) from err
    return wandb


def log_record(record: dict, results: Path, project: str = "dfabench"):
    """Log one record as one W&B run; returns the run's local directory."""
    wandb = _import_wandb()
    cell = f"{record['domain']}/{record['dataset']}/{record['model']}"
    run = wandb.init(project=project, dir=str(Path(results)), mode=os.environ.get("WANDB_MODE", "offline"),
                     name=f"{cell} {record['method']} s{record['seed']}", group=f"{record['scale']}/{cell}",
                     job_type=record["method"], reinit="create_new",
                     config={"record_id": record["id"], "scale": record["scale"], "domain": record["domain"],
                             "dataset": record["dataset"], "model": record["model"], "method": record["method"],
                             "seed": record["seed"], "hparams": record.get("hparams") or {}})
    for h in record.get("history") or []:
        row = {"epoch": h.get("epoch"), "train_loss": h.get("train_loss"), "lr": h.get("lr")}
        row.update({f"val/{k}": v for k, v in (h.get("val") or {}).items() if isinstance(v, (int, float))})
        run.log({k: v for k, v in row.items() if isinstance(v, (int, float))})
    metric = record.get("primary_metric")
    if metric:
        run.define_metric(f"val/{metric}", summary="max" if record.get("higher_is_better", True) else "min")
    for split, values in (record.get("metrics") or {}).items():
        for k, v in (values or {}).items():
            if isinstance(v, (int, float)):
                run.summary[f"{split}/{k}"] = v
    run.summary["status"] = record["status"]
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir


def record_logger(results: Path) -> Callable[[dict], None]:
    """A callback for ``run_local(..., on_record=...)``; fails early if wandb is missing."""
    _import_wandb()
    return lambda record: log_record(record, results)


def publish_tables(results: Path, project: str = "dfabench") -> list[str]:
    """One leaderboard table per domain, from the local records."""
    wandb = _import_wandb()
    from dfabench.tables import load, summary

    frame = load(Path(results))
    published = []
    for domain in sorted(frame.domain.unique()):
        summ = summary(frame[frame.domain == domain]).astype({"mean": float, "std": float})
        run = wandb.init(project=project, dir=str(Path(results)), mode=os.environ.get("WANDB_MODE", "offline"),
                         name=f"leaderboard {domain}", job_type="leaderboard", reinit="create_new")
        run.log({f"leaderboard/{domain}": wandb.Table(dataframe=summ)})
        run.finish()
        published.append(domain)
    return published
