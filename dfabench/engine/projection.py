"""How DFA turns the output error into every point's signal, planned once per set of shapes.

A step's points and outputs have the same shapes step after step, so everything that depends only
on shapes is worked out once and cached by them: which points each output group feeds, how many
columns of ``B`` each uses, the scale each signal gets, and every shape check (which raises
``FeedbackShapeError`` the first time a shape is seen, never later). A step then does one product
per group, a slice and (only where the scale is not folded away) one multiply per signal.

Scales are folded into ``B`` only where that is exact: a factor of 1 is dropped and a power of two
is multiplied into (a cached copy of) ``B``, since ``(e B) 2^k`` and ``e (B 2^k)`` round alike
(outside the subnormal range). Any other factor is applied after the product, as before, so the
gradients are bit for bit those of the unplanned computation (tests/test_engine_hotpath.py). The
buffers themselves stay as drawn (checkpoints and ``B``'s documented distribution do not change).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .feedback import FEEDBACK_PREFIX, FeedbackMatrices, FeedbackOptions, point_scale
from .points import DEFAULT_GROUP
from .router import OutputRecord, feature_size

import torch.autograd.graph as autograd_graph


class FeedbackShapeError(RuntimeError):
    pass


def inject(roots: list, signals: list[torch.Tensor]) -> None:
    """``torch.autograd.backward(roots, signals)`` without its per-root checks: the plan made every
    signal with its root's shape and dtype, so one direct engine call does the same accumulation.
    ``roots`` are tensors or their graph edges (``root_of``)."""
    # the engine call torch.autograd.backward ends in, after its own checks (private API, so guarded)
    run = getattr(autograd_graph, "_engine_run_backward", None)
    if run is None:  # pragma: no cover - a torch without it: the public call
        torch.autograd.backward(roots, signals)
        return
    run(tuple(roots), tuple(signals), False, False, (), allow_unreachable=True, accumulate_grad=True)


@functools.cache
def edge_roots_supported() -> bool:
    """Whether this torch's engine takes graph edges as roots (2.13 does; the package admits 2.2, which
    may not). Checked once, on a two-element graph, the first time DFA injects."""
    get_edge = getattr(autograd_graph, "get_gradient_edge", None)
    if get_edge is None:
        return False
    try:
        with torch.enable_grad():
            x = torch.zeros(2, requires_grad=True)
            inject([get_edge(x * 2)], [torch.ones(2)])
        return x.grad is not None and bool((x.grad == 2).all())
    except (TypeError, RuntimeError):
        return False


def root_of(tensor: torch.Tensor):
    """What ``inject`` is handed for a root: its graph edge where the engine takes one, so the caller
    holds no reference to the tensor and autograd frees its storage once its block is done."""
    return autograd_graph.get_gradient_edge(tensor) if edge_roots_supported() else tensor


def exact_fold(factor: float) -> bool:
    """Whether multiplying B by ``factor`` rounds exactly like multiplying the product: powers of two."""
    if factor == 0 or not math.isfinite(factor):
        return False
    return abs(math.frexp(factor)[0]) == 0.5


def _factor(value: float) -> float | None:
    return None if value == 1.0 else value


@dataclass(frozen=True)
class Delivery:
    """One point's share of its group's projection."""

    index: int  # position in the router's recorded points
    columns: int  # l_i: the first l_i columns of the projection (shared B)
    shape: torch.Size  # h_i's shape
    factor: float | None  # multiply after slicing (per_layer scales that differ between points)
    dtype: torch.dtype | None  # h_i's dtype where it differs from B's
    matrix: str | None = None  # per_point: this point's own buffer


class GroupPlan:
    """One output group's projection for one set of shapes."""

    def __init__(self, matrices: FeedbackMatrices, name: str, out_features: int, need: int, full: int,
                 fold: float | None, post: float | None, deliveries: list[Delivery]):
        self.model = matrices.model
        self.name, self.out_features, self.need, self.full = name, out_features, need, full
        self.fold, self.post, self.deliveries = fold, post, deliveries
        self._folded: dict[str, tuple[int, int, torch.Tensor]] = {}  # name -> (data_ptr, version, B * fold)

    def _matrix(self, name: str) -> torch.Tensor:
        B = self.model._buffers[name]
        if self.fold is None:
            return B
        cached = self._folded.get(name)
        if cached is None or cached[0] != B.data_ptr() or cached[1] != B._version:  # moved or reloaded
            cached = self._folded[name] = (B.data_ptr(), B._version, B * self.fold)
        return cached[2]

    def signals(self, error: torch.Tensor):
        """Yield (point index, signal) for the group's points, each signal shaped and typed like h_i."""
        flat = error.reshape(-1, self.out_features)
        if self.name is None:  # per_point: one product per point with its own matrix
            for d in self.deliveries:
                B = self._matrix(d.matrix)
                signal = (flat if flat.dtype == B.dtype else flat.to(B.dtype)) @ B
                if self.post is not None:
                    signal = self.post * signal
                yield d.index, _finish(signal, d)
            return
        B = self._matrix(self.name)
        if flat.dtype != B.dtype:
            flat = flat.to(B.dtype)
        projected = flat @ (B if self.need == self.full else B[:, :self.need])  # once for all points
        if self.post is not None:
            projected = projected * self.post
        for d in self.deliveries:
            signal = projected if d.columns == self.need else projected[:, :d.columns]
            if d.factor is not None:
                signal = signal * d.factor
            yield d.index, _finish(signal, d)


def _finish(signal: torch.Tensor, d: Delivery) -> torch.Tensor:
    signal = signal.reshape(d.shape)
    return signal if d.dtype is None else signal.to(d.dtype)


class ProjectionPlans:
    """The plans of one method instance, cached by the shapes of a step's outputs and points."""

    def __init__(self, matrices: FeedbackMatrices, options: FeedbackOptions):
        self.matrices, self.options = matrices, options
        self._cache: dict[tuple, list[GroupPlan | None]] = {}

    def lookup(self, outputs: list[OutputRecord], points: list[tuple[object, torch.Tensor]]) -> list[GroupPlan | None]:
        key = (tuple((o.marker, o.leaf.shape, o.leaf.dtype, o.batch_dims) for o in outputs),
               tuple((p, h.shape, h.dtype) for p, h in points))
        plans = self._cache.get(key)
        if plans is None:
            plans = [self._plan(record, points) for record in outputs]
            self._cache[key] = plans
        return plans

    def _plan(self, record: OutputRecord, points) -> GroupPlan | None:
        group = record.marker.group if record.marker is not None else DEFAULT_GROUP
        indices = [i for i, (p, _) in enumerate(points) if p.group == group]
        if not indices:
            return None
        k, error_shape = record.batch_dims, tuple(record.leaf.shape)
        if self.options.per_point:
            return self._plan_per_point(group, k, error_shape, points, indices)
        options = self.options
        B = self.matrices.matrix(group)
        out_features, max_point = B.shape
        if feature_size(error_shape, k) != out_features:
            raise FeedbackShapeError(
                f"output of group {group!r} has {feature_size(error_shape, k)} features per example, "
                f"the feedback matrix expects {out_features}"
            )
        sizes = [feature_size(tuple(points[i][1].shape), k) for i in indices]
        need = max(sizes)
        if need > max_point:
            raise FeedbackShapeError(f"a feedback point of group {group!r} grew to {need} > {max_point} features")
        batch_shape = error_shape[:k]
        for i in indices:
            h = points[i][1]
            if tuple(h.shape[:k]) != batch_shape:
                raise FeedbackShapeError(
                    f"feedback point shape {tuple(h.shape)} does not share the output's batch dims {batch_shape}"
                )
        if options.scaling == "global":
            factors = [options.scale] * len(indices)
        else:
            factors = [point_scale(size, max_point, options) for size in sizes]
        common = factors[0] if all(f == factors[0] for f in factors) else None
        fold = post = None
        if common is not None:  # one factor for the whole group: fold it (exact) or apply it once
            fold, post = (common, None) if exact_fold(common) and common != 1.0 else (None, _factor(common))
            factors = [None] * len(indices)
        else:
            factors = [_factor(f) for f in factors]
        deliveries = [Delivery(i, size, points[i][1].shape, factor, _other_dtype(points[i][1], B))
                      for i, size, factor in zip(indices, sizes, factors)]
        return GroupPlan(self.matrices, f"{FEEDBACK_PREFIX}{group}", out_features, need, max_point, fold, post,
                         deliveries)

    def _plan_per_point(self, group, k, error_shape, points, indices) -> GroupPlan:
        """Independent matrices: signal_i = scale * e B_i, one product per point."""
        batch_shape, features = error_shape[:k], feature_size(error_shape, k)
        deliveries = []
        for index, i in enumerate(indices):
            h = points[i][1]
            B = self.matrices.point_matrix(group, index)
            if tuple(h.shape[:k]) != batch_shape or feature_size(tuple(h.shape), k) != B.shape[1] \
                    or features != B.shape[0]:
                raise FeedbackShapeError(
                    f"point {index} of group {group!r} has shape {tuple(h.shape)} (output error "
                    f"{error_shape}); its per-point feedback matrix is {tuple(B.shape)}")
            # each B_i was drawn for its own width, so per_layer needs no further sqrt(l_max/l_i)
            deliveries.append(Delivery(i, B.shape[1], h.shape, None, _other_dtype(h, B),
                                       f"{FEEDBACK_PREFIX}{group}_{index}"))
        scale = self.options.scale
        fold, post = (scale, None) if exact_fold(scale) and scale != 1.0 else (None, _factor(scale))
        return GroupPlan(self.matrices, None, features, 0, 0, fold, post, deliveries)


def _other_dtype(h: torch.Tensor, B: torch.Tensor) -> torch.dtype | None:
    return None if h.dtype == B.dtype else h.dtype
