"""What a training step costs, by phase, and the budget a run may spend.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the run's own first step of
each batch shape (so nothing extra trains and nothing is counted twice): ``forward`` is the model's
forward; ``backward`` is the method's backward call, which takes the loss and, for DFA, the feedback
projection ``e B`` and the blocks' local gradients. FlopCounterMode counts matrix products,
convolutions and attention, i.e. the arithmetic that sets the cost of these models; it does not count
element-wise work (activations, the optimiser's update). The ``optimizer`` phase is therefore a hand
count per trained parameter element (``OPTIMIZER_FLOPS_PER_PARAM``), stated as such in the record.

A budget (``--budget``) is ``flops=X``, ``seconds=X`` (training seconds: optimiser steps only, as
``timings.train_s``), or ``bp`` / ``flops=bp`` / ``seconds=bp``: what BP's full run of the same cell,
scale, overrides and seed spent, read from its record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import ConfigError

KINDS = ("flops", "seconds")
# Element-wise FLOPs per trained parameter element in one optimiser step (a hand count of torch's
# update rules: SGD with momentum: buf*m + g, p - lr*buf; Adam: two moment updates, bias corrections,
# sqrt, divide, update; weight decay adds 2).
OPTIMIZER_FLOPS_PER_PARAM = {"sgd": 4, "adam": 12, "adamw": 14}


@dataclass(frozen=True)
class Budget:
    """A run's budget as asked for. ``value`` None: ``bp`` (resolved per cell and seed from BP's record)."""

    kind: str
    value: float | None

    @property
    def label(self) -> str:
        """What tables show and the record's overrides carry: the same for every seed of a cell."""
        return f"{self.kind}=bp" if self.value is None else f"{self.kind}={self.value:g}"


def parse_budget(text: str) -> Budget:
    """``bp``, ``flops=bp``, ``seconds=bp``, ``flops=2e9``, ``seconds=30``; anything else is a ConfigError."""
    given = text.strip()
    if given == "bp":
        return Budget("flops", None)
    kind, sep, raw = given.partition("=")
    if not sep or kind not in KINDS:
        raise ConfigError(f"--budget {text!r}: expected bp, flops=X, seconds=X, flops=bp or seconds=bp")
    if raw == "bp":
        return Budget(kind, None)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"--budget {text!r}: {raw!r} is not a number (or bp)") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--budget {text!r}: the budget must be a positive finite number")
    return Budget(kind, value)


def signature(batch: Any) -> tuple:
    """Shapes and dtypes of a batch (tensors in tuples, lists, dicts): one FLOP count per signature."""
    if isinstance(batch, torch.Tensor):
        return ("t", tuple(batch.shape), str(batch.dtype))
    if isinstance(batch, (tuple, list)):
        return tuple(signature(b) for b in batch)
    if isinstance(batch, dict):
        return tuple((k, signature(v)) for k, v in sorted(batch.items()))
    return (type(batch).__name__,)


def optimizer_flops(optimizer: torch.optim.Optimizer) -> int:
    """The hand count of one optimiser step: per-element cost times the elements it updates (those
    with a gradient: torch's optimisers skip the rest, e.g. the frozen blocks of ``shallow``)."""
    kind = type(optimizer).__name__.lower()
    per = OPTIMIZER_FLOPS_PER_PARAM.get(kind, OPTIMIZER_FLOPS_PER_PARAM["adam"])
    return per * sum(p.numel() for group in optimizer.param_groups for p in group["params"] if p.grad is not None)


def counted_step(model, method, optimizer, forward: Callable, loss: Callable, grad_clip: float | None,
                 batch) -> tuple[torch.Tensor, dict[str, int]]:
    """One training step, the same update as ``capture.eager_step``, with its phases counted."""
    from torch.utils.flop_counter import FlopCounterMode

    optimizer.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fwd:
        output = forward(model, batch)
    with FlopCounterMode(display=False) as bwd:
        value = method.backward(output, lambda out: loss(out, batch))
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    phases = {"forward": int(fwd.get_total_flops()), "backward": int(bwd.get_total_flops()),
              "optimizer": optimizer_flops(optimizer)}
    optimizer.step()
    return value, phases


class Meter:
    """Wraps the runner's step: counts the first step of each batch shape by phase, then adds that
    count for every later step of the same shape, and keeps the cumulative total."""

    def __init__(self, step: Callable, model, method, optimizer, forward, loss, grad_clip):
        self.step, self.pieces = step, (model, method, optimizer, forward, loss, grad_clip)
        self.per_shape: dict[tuple, dict[str, int]] = {}
        self.steps_per_shape: dict[tuple, int] = {}
        self.flops = self.last = 0

    def __call__(self, batch) -> torch.Tensor:
        key = signature(batch)
        if key not in self.per_shape:
            value, phases = counted_step(*self.pieces, batch)
            self.per_shape[key] = phases
        else:
            value = self.step(batch)
        self.steps_per_shape[key] = self.steps_per_shape.get(key, 0) + 1
        self.last = sum(self.per_shape[key].values())
        self.flops += self.last
        return value

    def summary(self) -> dict[str, Any]:
        """The record's ``compute``: per batch shape its phases and step count, the total, the counter."""
        shapes = [{"shape": repr(key), "steps": self.steps_per_shape.get(key, 0), "flops": phases}
                  for key, phases in self.per_shape.items()]
        main = max(shapes, key=lambda s: s["steps"]) if shapes else None
        return {"flops": self.flops, "step_flops": main["flops"] if main else None, "shapes": shapes,
                "counter": "torch.utils.flop_counter (matmul/conv/attention); optimizer: hand count "
                           "per trained parameter element"}


class BudgetClock:
    """How much of a run's budget is spent: FLOPs from the meter, or training seconds."""

    def __init__(self, budget: dict[str, Any] | None):
        self.kind = budget["kind"] if budget else None
        self.value = float(budget["value"]) if budget else None

    @property
    def active(self) -> bool:
        return self.kind is not None

    def fraction(self, flops: float, train_s: float) -> float:
        if not self.active:
            return 0.0
        return (flops if self.kind == "flops" else train_s) / self.value

    def spent(self, flops: float, train_s: float) -> bool:
        return self.active and self.fraction(flops, train_s) >= 1.0


def budget_lr_factor(hp, fraction: float) -> float | None:
    """The learning-rate multiplier of an epoch-sized schedule at ``fraction`` of the budget: the
    schedule runs over the budget instead of ``hp.epochs``, so a longer run is not cut short by a
    schedule sized for BP's epochs. None: the schedule does not depend on the run's length."""
    f = min(max(fraction, 0.0), 1.0)
    if hp.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * f))
    if hp.schedule == "exponential":
        return hp.gamma ** f
    if hp.schedule == "step":
        return hp.gamma ** math.floor(f * hp.epochs / hp.step_size + 1e-9)
    return None


def plan_budget(runs: list, budget: Budget, references: dict[tuple[str, int], dict] | None) -> tuple[list, list[str]]:
    """The planned runs with their budget set. ``references`` (for ``bp`` budgets): BP's unbudgeted
    record per (cell, seed). Under a ``bp`` budget BP's own arm *is* that reference (its full run spends
    exactly the budget, with the same schedule), so BP is not planned again. Runs whose reference did
    not finish ok are left out, with a note."""
    out, notes = [], []
    for run in runs:
        value, reference = budget.value, None
        if budget.value is None:
            if run.method == "bp":
                continue  # the reference itself is BP's arm
            record = (references or {}).get((run.cell, run.seed))
            if record is None or record.get("status") != "ok":
                notes.append(f"{run.label()}: no budget: BP's reference run "
                             f"{'is missing' if record is None else 'ended ' + record['status']}")
                continue
            value = reference_value(record, budget.kind)
            reference = record["id"]
        run.budget = {"kind": budget.kind, "value": value, "label": budget.label,
                      **({"reference": reference} if reference else {})}
        # tables keep budgeted runs in their own row, as they do runs with other --set values
        run.overrides = {**run.overrides, "budget": budget.label}
        out.append(run)
    return out, notes


def reference_value(record: dict, kind: str) -> float:
    """BP's spend in ``kind`` from its record: total FLOPs, or training seconds."""
    if kind == "flops":
        if not (record.get("compute") or {}).get("flops"):
            raise ConfigError(f"BP's record {record['id']} has no FLOP count (made before compute was "
                              "recorded): run the budget into a fresh --results folder, or remove that record")
        return int(record["compute"]["flops"])
    return float(record["timings"]["train_s"])
