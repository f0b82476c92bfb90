"""One run: data -> model -> method.prepare -> train loop -> evaluate -> record.

The loop is the same for every task and method; the task supplies the pieces (``dfabench.task``).
Test metrics are taken with the weights of the best validation evaluation. A NaN/inf loss ends the
run as ``diverged``, a time limit as ``timeout``, an exception as ``error`` (with its message): all
three still produce a record, so a suite goes on. Ctrl-C is not caught: no record, and the next
identical command re-runs this run.
"""
from __future__ import annotations

import copy
import math
import random
import time
import traceback
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import alignment, startup
from ..architecture import at_run_time
from ..methods import create
from ..task import Task, get_task
from . import identity
from .capture import training_step
from .compute import BudgetClock, Meter, budget_lr_factor
from .optim import Schedule, build_optimizer
from .plan import PlannedRun
from .provenance import peak_memory_mb, provenance


class Diverged(Exception):
    pass


# Steps between looks at the loss on the host: reading it is a device sync, which would stop the
# host from queueing the next step while the device works. A NaN is still dated to its own step.
LOSS_CHECK_EVERY = 25


class LossWindow:
    """The last steps' losses, left on the device until ``check`` reads them all in one transfer."""

    def __init__(self, epoch: int):
        self.epoch, self.total, self.count = epoch, 0.0, 0
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.steps.append(step)
        self.values.append(loss.detach())

    def full(self) -> bool:
        return len(self.values) >= LOSS_CHECK_EVERY

    def check(self, state: dict[str, Any]) -> None:
        """Add the window to the epoch's total; raise Diverged at the first non-finite loss, dated to its
        step, with the step count rolled back to the steps before it (as if checked at every step)."""
        if not self.values:
            return
        values = torch.stack(self.values).reshape(-1).tolist()
        for index, (step, value) in enumerate(zip(self.steps, values)):
            if not math.isfinite(value):
                state["steps"] -= len(values) - index
                raise Diverged(f"loss became {value} at epoch {self.epoch}, step {step}")
            self.total, self.count = self.total + value, self.count + 1
        self.steps, self.values = [], []


def _is_better(value: float, best: float | None, higher_is_better: bool) -> bool:
    if value != value:  # NaN never improves
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def run_one(run: PlannedRun, results: Path, device: str = "cpu", progress=None,
            on_eval: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one planned run and return its record (the caller stores it).

    ``on_eval(epoch, val_metrics)`` is called after every validation pass (Ray Tune reports with it).
    """
    task = get_task(run.domain)
    torch_device = torch.device(device)
    started = datetime.now(timezone.utc)
    wall_start = time.perf_counter()
    state: dict[str, Any] = {"history": [], "alignment": None, "train_s": 0.0, "eval_s": 0.0, "steps": 0,
                             "best_val": {}, "test": {}, "fingerprint": "unknown", "n_params": None,
                             "extras": {}, "items": 0, "meter": None}
    status, error = "ok", None
    try:
        _train(task, run, torch_device, results, state, progress, on_eval)
    except Diverged as err:
        status, error = "diverged", str(err)
    except TimeoutError as err:
        status, error = "timeout", str(err)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # recorded, so one broken cell does not stop the suite
        status, error = "error", f"{type(err).__name__}: {err}"
        state["traceback"] = traceback.format_exc(limit=8)
    wall_s = time.perf_counter() - wall_start
    peak_mb, peak_kind = peak_memory_mb(torch_device)
    record = {
        "id": run.id, "domain": run.domain, "dataset": run.dataset, "model": run.model, "method": run.method,
        "scale": run.scale, "seed": run.seed, "hparams": run.recorded_hparams(),
        # what sets this run apart from the task's own settings: tables give these their own row
        "overrides": run.overrides, "data": run.data,
        **({"method_origin": run.method_origin} if run.method_origin else {}),  # an outside method's code
        "status": status, "error": error,
        "metrics": {"val": state["best_val"], "test": state["test"]},
        "primary_metric": task.primary_for(run.model),
        "higher_is_better": task.higher_is_better_for(run.model),
        "history": state["history"],
        "timings": {"train_s": state["train_s"], "eval_s": state["eval_s"], "wall_s": wall_s,
                    "step_ms": 1000 * state["train_s"] / state["steps"] if state["steps"] else None,
                    "steps": state["steps"],
                    # optimiser steps only (forward, backward, update), so methods compare fairly
                    "train_items_per_s": state["items"] / state["train_s"] if state["items"] and state["train_s"] else None,
                    "item_unit": task.throughput_unit},
        "peak_mem_mb": peak_mb, "peak_mem_kind": peak_kind,
        "n_params": state["n_params"],
        "alignment": state["alignment"],
        "architecture": state.get("architecture"),
        "extras": state["extras"],
        # FLOPs by phase per batch shape and in total (compute.py); the curve has them per epoch
        "compute": state["meter"].summary() if state["meter"] is not None else None,
        "budget": run.budget,
        "started_at": started.isoformat(timespec="seconds"),
        "provenance": provenance(torch_device, state["fingerprint"]),
    }
    if "traceback" in state:
        record["traceback"] = state["traceback"]
    return identity.scrub(record)  # no path of this machine in what may be shared


def _train(task: Task, run: PlannedRun, device: torch.device, results: Path, state: dict[str, Any], progress,
           on_eval) -> None:
    hp = run.hparams
    # Every global generator a library may draw from (torch_geometric's negative sampling uses
    # Python's `random`), so that the same seed gives the same metrics.
    torch.manual_seed(run.seed)
    random.seed(run.seed)
    np.random.seed(run.seed)
    generator = torch.Generator().manual_seed(run.seed)
    data = task.load_data(run.dataset, hp, run.seed, run.scale, device)
    state["fingerprint"] = task.fingerprint(data)
    model = task.build_model(run.model, hp, data).to(device)
    state["n_params"] = sum(p.numel() for p in model.parameters())
    state["start_extras"] = task.extras_at_start(model, data, hp)
    method = create(run.method, hp.method_options, spec=run.method_spec)
    probe = next(iter(task.train_batches(data, hp, torch.Generator().manual_seed(run.seed))))
    state["architecture"] = at_run_time(model, lambda: task.forward(model, probe))  # for `explain`
    method.prepare(model, lambda: task.forward(model, probe), run.seed)
    optimizer = build_optimizer(model.parameters(), hp, capturable=hp.capture and device.type == "cuda")
    schedule = Schedule(optimizer, hp)

    def loss_fn(out, batch):
        return task.loss(out, batch, model, hp)

    train_step = training_step(model, method, optimizer, task.forward, loss_fn, hp.grad_clip, device, hp.capture)
    meter = state["meter"] = Meter(train_step, model, method, optimizer, task.forward, loss_fn, hp.grad_clip)
    clock = BudgetClock(run.budget)
    higher = task.higher_is_better_for(run.model)
    primary = task.primary_for(run.model)
    best_value, best_weights, evals_since_best = None, None, 0
    deadline = time.perf_counter() + hp.time_limit_s if hp.time_limit_s else None
    # a budgeted run has as many epochs as its budget buys: the bar cannot know how many
    bar = progress(total=None if clock.active else hp.epochs, desc=run.label(), leave=False,
                   unit="epoch") if progress else nullcontext()
    startup.resume()  # the command's imports are done: the collector is back on before the first step

    with bar:
        epoch = 0
        while clock.active or epoch < hp.epochs:
            epoch += 1
            model.train()
            t0 = time.perf_counter()
            losses = LossWindow(epoch)
            spent = False
            for step, batch in enumerate(task.train_batches(data, hp, generator)):
                if hp.steps_per_epoch is not None and step >= hp.steps_per_epoch:
                    break
                losses.add(step, meter(batch))
                schedule.after_step()
                state["steps"] += 1
                state["items"] += task.batch_items(batch) or 0
                if losses.full():
                    losses.check(state)
                # FLOPs: stop before a step that would overspend; seconds: once spent
                if clock.active and clock.spent(meter.flops + meter.last, state["train_s"] + time.perf_counter() - t0):
                    spent = True  # the budget ends the run, mid-epoch too: evaluate and stop
                    break
            losses.check(state)
            total, count = losses.total, losses.count
            state["train_s"] += time.perf_counter() - t0
            last = spent or (not clock.active and epoch == hp.epochs)
            _after_epoch(schedule, optimizer, hp, clock, meter.flops, state["train_s"])
            entry: dict[str, Any] = {"epoch": epoch, "step": state["steps"], "train_loss": total / max(count, 1),
                                     "lr": float(optimizer.param_groups[0]["lr"]),
                                     # the compute curve: what was spent up to this point
                                     "flops": meter.flops, "train_s": state["train_s"], "items": state["items"]}
            if hp.alignment_every and epoch % hp.alignment_every == 0:
                report = alignment.measure(model, method, lambda: task.forward(model, probe),
                                           lambda out: task.loss(out, probe, model, hp))
                entry["alignment"] = report
                state["alignment"] = {"epoch": epoch, **report}
            if epoch % hp.eval_every == 0 or last:
                t1 = time.perf_counter()
                val = _evaluate(task, model, data, "val", hp)
                state["eval_s"] += time.perf_counter() - t1
                entry["val"] = val
                value = val[primary]
                schedule.after_eval(-value if higher else value)
                if _is_better(value, best_value, higher):
                    best_value, evals_since_best = value, 0
                    best_weights = copy.deepcopy(model.state_dict())
                    state["best_val"] = {**val, "epoch": epoch}
                else:
                    evals_since_best += 1
                if on_eval is not None:
                    on_eval(epoch, val)
            entry["time_s"] = state["train_s"] + state["eval_s"]
            state["history"].append(entry)
            if progress:
                bar.update(1)
                bar.set_postfix(loss=f"{entry['train_loss']:.4g}", **{primary: f"{entry.get('val', {}).get(primary, float('nan')):.4g}"})
            if hp.patience is not None and evals_since_best >= hp.patience:
                break
            if deadline is not None and time.perf_counter() > deadline:
                _finish(task, model, data, hp, best_weights, results, run, state)
                raise TimeoutError(f"time limit of {hp.time_limit_s}s reached after epoch {epoch}")
            if last:
                break
    _finish(task, model, data, hp, best_weights, results, run, state)


def _after_epoch(schedule: Schedule, optimizer, hp, clock: BudgetClock, flops: float, train_s: float) -> None:
    """The epoch's schedule step; under a budget an epoch-sized schedule follows the budget's fraction."""
    factor = budget_lr_factor(hp, clock.fraction(flops, train_s)) if clock.active else None
    if factor is None:
        schedule.after_epoch()
        return
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):  # a capturable optimiser's lr lives on the device
            group["lr"].fill_(hp.lr * factor)
        else:
            group["lr"] = hp.lr * factor


def _evaluate(task: Task, model, data, split: str, hp) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, data, split, hp)
    model.train()
    return {k: float(v) for k, v in metrics.items()}


def _finish(task, model, data, hp, best_weights, results: Path, run: PlannedRun, state) -> None:
    """Test at the best validation point, then let the task add its extras."""
    if best_weights is not None:
        model.load_state_dict(best_weights)
    t1 = time.perf_counter()
    state["test"] = _evaluate(task, model, data, "test", hp)
    state["eval_s"] += time.perf_counter() - t1
    run_dir = Path(results) / "artifacts" / run.id
    model.eval()
    with torch.no_grad():
        state["extras"] = {**state.get("start_extras", {}), **task.extras(model, data, hp, run_dir)}
