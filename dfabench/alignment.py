"""Alignment: how close a method's update is to the true BP gradient, per feedback point.

Measured on a fixed probe batch with the model in eval mode (no dropout noise, no BatchNorm
statistics update), without copying the model: three forward passes through the same weights,
switching the router's mode.

For each active feedback point ``i`` it reports
* ``grad_cos``: cosine between the method's update of the parameters that point ``i`` drives (the
  block between point ``i-1`` and point ``i``) and their true BP gradient;
* ``signal_cos`` (methods that inject a signal, e.g. DFA): cosine between the injected signal
  ``B_i e`` and the true ``dL/dh_i``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .engine.router import configured
from .methods.base import Method


def _cosine(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> float:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None or y is not None]
    if not pairs:
        return float("nan")
    flat_a = torch.cat([(x if x is not None else torch.zeros_like(y)).reshape(-1).double() for x, y in pairs])
    flat_b = torch.cat([(y if y is not None else torch.zeros_like(x)).reshape(-1).double() for x, y in pairs])
    denominator = flat_a.norm() * flat_b.norm()
    return float((flat_a @ flat_b) / denominator) if denominator > 0 else 0.0


def measure(model: nn.Module, method: Method, forward: Callable[[], Any], loss_fn: Callable[[Any], torch.Tensor],
            ) -> dict[str, Any]:
    router = method.router
    params = [p for p in model.parameters() if p.requires_grad]
    names = {id(module): name for name, module in model.named_modules()}
    was_training = model.training
    model.eval()
    try:
        # 1. the truth: a BP pass that keeps every active point's output
        with configured(router, "identity", record=True):
            points = None
            output = forward()
            points = list(router.recorded_points)
            hs = [h for _, h in points]
            grads = torch.autograd.grad(loss_fn(output), params + hs, allow_unused=True)
            true_param_grads, true_signals = list(grads[: len(params)]), list(grads[len(params):])
        # 2. the method's update, computed the way it trains
        with configured(router, method.router_mode, record=method.records):
            _, method_grads = method.gradients(forward(), loss_fn, params)
            injected = {id(point): signal for point, signal in getattr(method, "last_signals", [])}
        # 3. which parameters each point drives: differentiate each point's input in a cut graph
        with configured(router, "cut", record=True):
            forward()
            segments = []
            for _, h in router.recorded_points:
                reach = torch.autograd.grad(h, params, torch.ones_like(h), allow_unused=True, retain_graph=True)
                segments.append([i for i, g in enumerate(reach) if g is not None])
    finally:
        model.train(was_training)

    report: dict[str, Any] = {"points": {}}
    seen: dict[str, int] = {}
    for index, ((point, _), true_signal, segment) in enumerate(zip(points, true_signals, segments)):
        name = names.get(id(point), f"point{index}")
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        entry = {"grad_cos": _cosine([method_grads[i] for i in segment], [true_param_grads[i] for i in segment])}
        if id(point) in injected and true_signal is not None:
            entry["signal_cos"] = _cosine([injected[id(point)]], [true_signal])
        report["points"][name] = entry
    values = [e["grad_cos"] for e in report["points"].values() if e["grad_cos"] == e["grad_cos"]]
    report["mean_grad_cos"] = sum(values) / len(values) if values else None
    report["update_cos"] = _cosine(method_grads, true_param_grads)
    return report


def inactive_units(model: nn.Module, forward: Callable[[], Any]) -> dict[str, float]:
    """Per feedback point: the fraction of its units that output exactly zero on every example of
    one forward pass (dead ReLUs). DFA pushes every example's hidden units along the same fixed
    direction ``B e``; where the error has one sign for most examples this drives units to zero
    for good, which BP's gradients do not. Under ``no_grad`` and in eval mode."""
    from .engine.points import FeedbackPoint

    names = {module: name for name, module in model.named_modules() if isinstance(module, FeedbackPoint)}
    seen: dict[str, torch.Tensor] = {}

    def record(module, _inputs, output):
        active = (output != 0).reshape(-1, output.shape[-1]).any(0)
        name = names[module]
        seen[name] = seen[name] | active if name in seen else active

    hooks = [module.register_forward_hook(record) for module in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {name: float(1 - active.float().mean()) for name, active in seen.items()}
