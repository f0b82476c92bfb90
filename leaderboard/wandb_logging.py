"""Mirror run records to Weights & Biases: one W&B run per record, and the leaderboard's tables; offline
by default.

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


def table_keys(board) -> dict:
    """What the W&B leaderboard logs, by key: the summary, and one wide table per domain and metric, the
    same frames the HTML site renders (``leaderboard.board``), with plain column names."""
    from .board import summary_flat, wide_flat

    tables = {"leaderboard/summary": summary_flat(board)}
    for domain in board.domains():
        wide = board.tables(domain)
        several_scales = len({scale for scale, *_ in wide}) > 1
        for scale, metric, _, frame in wide:
            tables[f"leaderboard/{domain}/{metric}" + (f"/{scale}" if several_scales else "")] = wide_flat(frame)
    return tables


def publish_tables(folders, baselines: Path | None = None, project: str = "dfabench") -> tuple[Path, list[str]]:
    """One W&B run, ``leaderboard``, holding the summary and every domain's wide tables of the records in
    ``folders``, verified entries marked; written under the first folder's ``wandb/``. Returns the run's
    local directory and the keys of the tables logged."""
    wandb = _import_wandb()
    from .board import build_board

    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    board = build_board(folders, baselines)
    tables = {key: frame for key, frame in table_keys(board).items() if not frame.empty}
    run = wandb.init(project=project, dir=str(folders[0]), mode=os.environ.get("WANDB_MODE", "offline"),
                     name="leaderboard", job_type="leaderboard", reinit="create_new",
                     config={"results": [str(f) for f in folders], "records": len(board.records),
                             "verification": board.verification.files})
    run.log({key: wandb.Table(dataframe=frame) for key, frame in tables.items()})
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir, list(tables)
