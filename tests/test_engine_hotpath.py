"""The planned DFA step (engine/projection.py) against a frozen copy of the step it replaced, bit for bit.

``FrozenDFA`` is the projection and injection code of dfabench/methods/dfa.py as it was before the
plans (commit 73e4ded), copied verbatim: generator per point, scales multiplied after the product,
``torch.autograd.backward`` for the injection. Same weights, same batch, same B: every gradient must be
``torch.equal``, on float32 (where a reordered rounding would show) and float64, with scales that
are folded (powers of two), applied after the product (0.3), per_layer with differing widths, and
per_point matrices.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfabench import alignment
from dfabench.engine import FeedbackOutput, FeedbackPoint
from dfabench.engine.feedback import point_scale
from dfabench.engine.points import DEFAULT_GROUP
from dfabench.engine.projection import exact_fold
from dfabench.engine.router import OutputRecord, feature_size
from dfabench.methods import create
from dfabench.methods.dfa import DFA, FeedbackShapeError, _add


class FrozenDFA(DFA):
    """dfa.py's _backward/_project/_project_per_point before the plans, unchanged."""

    def _backward(self, output, loss_fn, params):
        router = self.router
        outputs = list(router.recorded_outputs)
        points = list(router.recorded_points)
        router.clear()
        if outputs:
            loss = loss_fn(output)
        else:
            leaf = output.detach().requires_grad_(True)
            outputs = [OutputRecord(None, output, leaf, self.options.batch_dims)]
            loss = loss_fn(leaf)
        leaves = [o.leaf for o in outputs]
        local = None
        if params is None:
            loss.backward()
            errors = [leaf.grad for leaf in leaves]
        else:
            grads = torch.autograd.grad(loss, leaves + params, allow_unused=True)
            errors, local = list(grads[: len(leaves)]), list(grads[len(leaves):])
        roots, signals = [], []
        self.last_signals = []
        for record, error in zip(outputs, errors):
            if error is None:
                error = torch.zeros_like(record.leaf)
            if record.value.requires_grad:
                roots.append(record.value)
                signals.append(error)
            group = record.marker.group if record.marker is not None else DEFAULT_GROUP
            group_points = [(p, h) for p, h in points if p.group == group]
            if group_points:
                feedback = self._feedback_error(record, error)
                for point, h, signal in self._project(group, feedback, record.batch_dims, group_points):
                    roots.append(h)
                    signals.append(signal)
                    self.last_signals.append((point, signal))
        if params is None:
            if roots:
                torch.autograd.backward(roots, signals)
            return loss, None
        injected = torch.autograd.grad(roots, params, signals, allow_unused=True) if roots else [None] * len(params)
        return loss, [_add(a, b) for a, b in zip(local, injected)]

    def _project(self, group, error, k, group_points):
        if self.options.per_point:
            yield from self._project_per_point(group, error, k, group_points)
            return
        B = self.matrices.matrix(group)
        out_features, max_point = B.shape
        if feature_size(tuple(error.shape), k) != out_features:
            raise FeedbackShapeError("features")
        sizes = [feature_size(tuple(h.shape), k) for _, h in group_points]
        need = max(sizes)
        if need > max_point:
            raise FeedbackShapeError("grew")
        batch_shape = tuple(error.shape[:k])
        projected = error.reshape(-1, out_features).to(B.dtype) @ B[:, :need]
        projected = projected * self.options.scale if self.options.scaling == "global" else projected
        for (point, h), size in zip(group_points, sizes):
            if tuple(h.shape[:k]) != batch_shape:
                raise FeedbackShapeError("batch")
            signal = projected[:, :size]
            if self.options.scaling == "per_layer":
                signal = signal * point_scale(size, max_point, self.options)
            yield point, h, signal.reshape(h.shape).to(h.dtype)

    def _project_per_point(self, group, error, k, group_points):
        batch_shape = tuple(error.shape[:k])
        flat = error.reshape(-1, feature_size(tuple(error.shape), k))
        flat = flat.to(self.matrices.point_matrix(group, 0).dtype) if group_points else flat
        for index, (point, h) in enumerate(group_points):
            B = self.matrices.point_matrix(group, index)
            if tuple(h.shape[:k]) != batch_shape or feature_size(tuple(h.shape), k) != B.shape[1] \
                    or flat.shape[1] != B.shape[0]:
                raise FeedbackShapeError("per point")
            yield point, h, (self.options.scale * (flat @ B)).reshape(h.shape).to(h.dtype)


class Widths(nn.Module):
    """Points of three different widths (per_layer scales differ) and a decoder above a FeedbackOutput."""

    def __init__(self, dtype):
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b, self.c = nn.Linear(9, 24), nn.Linear(24, 16), nn.Linear(16, 6)
        self.pa, self.pb = FeedbackPoint(), FeedbackPoint()
        self.out, self.decoder = FeedbackOutput(), nn.Linear(6, 5)
        self.to(dtype)

    def forward(self, x):
        h = self.pa(torch.tanh(self.a(x)))
        h = self.pb(torch.relu(self.b(h)))
        return self.decoder(torch.tanh(self.out(self.c(h))))


def grads_after(method, build, x, y, steps=2):
    model = build()
    method.prepare(model, lambda: model(x), seed=5)
    for _ in range(steps):  # a second step goes through the cached plan
        model.zero_grad(set_to_none=True)
        method.backward(model(x), lambda out: F.cross_entropy(out, y) + 1e-3 * model.c.weight.pow(2).sum())
    return [p.grad for p in model.parameters()], model


OPTIONS = [
    {},
    {"scale": 0.5},  # a power of two: folded into B
    {"scale": 0.3},  # not: multiplied after the product
    {"scale": 0.0},
    {"scaling": "per_layer"},
    {"scaling": "per_layer", "scale": 4.0},
    {"scaling": "per_layer", "scale": 0.3, "distribution": "gaussian"},
    {"per_point": True, "scale": 0.25},
    {"per_point": True, "scale": 1.7, "scaling": "per_layer"},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_planned_step_is_bit_identical_to_the_frozen_step(options, dtype):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(11, 9, generator=g).to(dtype)
    y = torch.randint(0, 5, (11,), generator=g)
    new, new_model = grads_after(DFA(options), lambda: Widths(dtype), x, y)
    old, _ = grads_after(FrozenDFA(options), lambda: Widths(dtype), x, y)
    assert all(g is not None for g in new)
    for got, want in zip(new, old):
        assert torch.equal(got, want)
    assert new_model.a.weight.grad.abs().sum() > 0 or options.get("scale") == 0.0


def test_fold_is_used_only_where_it_is_exact():
    assert exact_fold(0.5) and exact_fold(4.0) and exact_fold(-2.0)
    assert not exact_fold(0.3) and not exact_fold(0.0) and not exact_fold(float("inf")) and not exact_fold(3.0)
    model = Widths(torch.float32)
    x = torch.randn(4, 9)
    method = DFA({"scale": 0.5})
    method.prepare(model, lambda: model(x), seed=0)
    method.backward(model(x), lambda out: out.sum())
    (plan,) = list(method.plans._cache.values())[0]
    assert plan.fold == 0.5 and plan.post is None
    B = model.dfabench_feedback_default
    with torch.no_grad():  # a reloaded B (in place) is refolded, not served stale
        B.mul_(2)
    method.backward(model(x), lambda out: out.sum())
    assert torch.equal(plan._folded[plan.name][2], B * 0.5)


def test_signals_are_kept_only_for_the_alignment_probe():
    model = Widths(torch.float64)
    x, y = torch.randn(6, 9, dtype=torch.float64), torch.randint(0, 5, (6,))
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    method.backward(model(x), lambda out: F.cross_entropy(out, y))
    assert method.last_signals == []  # a training step frees them before the optimiser step
    report = alignment.measure(model, method, lambda: model(x), lambda out: F.cross_entropy(out, y))
    assert all("signal_cos" in p for p in report["points"].values())
    method.keep_signals = True
    method.backward(model(x), lambda out: F.cross_entropy(out, y))
    assert [tuple(s.shape) for _, s in method.last_signals] == [(6, 24), (6, 16)]


def test_a_point_that_changes_shape_is_still_checked():
    model = Widths(torch.float32)
    x = torch.randn(4, 9)
    method = DFA()
    method.prepare(model, lambda: model(x), seed=0)
    method.backward(model(x), lambda out: out.sum())
    model.b = nn.Linear(24, 30)  # wider than B: refused at the first step with the new shape
    model.c = nn.Linear(30, 6)
    with pytest.raises(FeedbackShapeError, match="grew to 30"):
        method.backward(model(x), lambda out: out.sum())
