"""Direct feedback alignment (Nøkland 2016; Launay et al. 2020).

One step:
1. forward in ``cut`` mode: each feedback point hands a detached copy upward and keeps its
   graph-carrying input ``h_i``; the output marker hands the loss a leaf;
2. ``loss.backward()`` stops at that leaf: ``e = dL/d(output)``; it also applies any gradient the loss
   gives parameters directly (L1/L2 terms, parameters above the output marker);
3. the projection ``e B`` is computed once for all points of a group, sliced per point;
4. one ``torch.autograd.backward`` call over the output and every ``h_i``: the output layer gets
   its true gradient, every block below a point gets ``dW = ((B_i e) * f'(a_i)) h_{i-1}^T`` (autograd
   applies f' locally since points sit after the non-linearity). Block inputs do not require grad,
   so no dX is computed across cuts.
"""
from __future__ import annotations

import torch

from ..engine.feedback import FeedbackMatrices, FeedbackOptions, point_scale
from ..engine.points import DEFAULT_GROUP
from ..engine.router import OutputRecord, feature_size
from .base import Method
from .registry import register, register_variant


class FeedbackShapeError(RuntimeError):
    pass


@register
class DFA(Method):
    name = "dfa"
    summary = "direct feedback alignment: a fixed random projection of the output error to every point"
    router_mode = "cut"
    records = True
    Options = FeedbackOptions

    def prepare(self, model, probe_forward, seed):
        super().prepare(model, probe_forward, seed)
        self.router.mode = "discover"
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                returned = probe_forward()
        finally:
            model.train(was_training)
            self.router.mode = self.router_mode
        found = self.router.discovery
        if not found.point_shapes:
            raise FeedbackShapeError("the model has no FeedbackPoint: DFA has nowhere to deliver feedback")
        shapes, shapes_k = {}, {}
        for group, point_shapes in found.point_shapes.items():
            if group in found.output_shapes:
                out_shape, k = found.output_shapes[group]
            elif group == DEFAULT_GROUP and isinstance(returned, torch.Tensor):
                out_shape, k = tuple(returned.shape), self.options.batch_dims
            else:
                raise FeedbackShapeError(f"feedback group {group!r} has points but no FeedbackOutput")
            shapes[group] = (feature_size(out_shape, k), max(feature_size(s, k) for s in point_shapes))
            shapes_k[group] = k
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        point_sizes = {group: [feature_size(s, shapes_k[group]) for s in point_shapes]
                       for group, point_shapes in found.point_shapes.items()} if self.options.per_point else None
        self.matrices = FeedbackMatrices(model, shapes, self.options, _feedback_seed(seed), device, point_sizes)
        self.last_signals: list[tuple[object, torch.Tensor]] = []

    def _backward(self, output, loss_fn, params):
        router = self.router
        outputs = list(router.recorded_outputs)
        points = list(router.recorded_points)
        router.clear()
        if outputs:
            loss = loss_fn(output)
        else:  # no FeedbackOutput: what the model returned is the output
            leaf = output.detach().requires_grad_(True)
            outputs = [OutputRecord(None, output, leaf, self.options.batch_dims)]
            loss = loss_fn(leaf)

        leaves = [o.leaf for o in outputs]
        local: list | None = None
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

    def _feedback_error(self, record: OutputRecord, error: torch.Tensor) -> torch.Tensor:
        """What is projected to the points: the output error e (DRTP projects the target instead)."""
        return error

    def _project(self, group, error, k, group_points):
        """Yield (point, h, signal) with signal = scale_i * (e B)[:, :l_i] shaped like h."""
        if self.options.per_point:
            yield from self._project_per_point(group, error, k, group_points)
            return
        B = self.matrices.matrix(group)
        out_features, max_point = B.shape
        if feature_size(tuple(error.shape), k) != out_features:
            raise FeedbackShapeError(
                f"output of group {group!r} has {feature_size(tuple(error.shape), k)} features per example, "
                f"the feedback matrix expects {out_features}"
            )
        sizes = [feature_size(tuple(h.shape), k) for _, h in group_points]
        need = max(sizes)
        if need > max_point:
            raise FeedbackShapeError(f"a feedback point of group {group!r} grew to {need} > {max_point} features")
        batch_shape = tuple(error.shape[:k])
        projected = error.reshape(-1, out_features).to(B.dtype) @ B[:, :need]  # once for all points
        projected = projected * self.options.scale if self.options.scaling == "global" else projected
        for (point, h), size in zip(group_points, sizes):
            if tuple(h.shape[:k]) != batch_shape:
                raise FeedbackShapeError(
                    f"feedback point shape {tuple(h.shape)} does not share the output's batch dims {batch_shape}"
                )
            signal = projected[:, :size]
            if self.options.scaling == "per_layer":
                signal = signal * point_scale(size, max_point, self.options)
            yield point, h, signal.reshape(h.shape).to(h.dtype)


    def _project_per_point(self, group, error, k, group_points):
        """Independent matrices: signal_i = scale * e B_i, one product per point."""
        batch_shape = tuple(error.shape[:k])
        flat = error.reshape(-1, feature_size(tuple(error.shape), k))
        flat = flat.to(self.matrices.point_matrix(group, 0).dtype) if group_points else flat
        for index, (point, h) in enumerate(group_points):
            B = self.matrices.point_matrix(group, index)
            if tuple(h.shape[:k]) != batch_shape or feature_size(tuple(h.shape), k) != B.shape[1] \
                    or flat.shape[1] != B.shape[0]:
                raise FeedbackShapeError(
                    f"point {index} of group {group!r} has shape {tuple(h.shape)} (output error "
                    f"{tuple(error.shape)}); its per-point feedback matrix is {tuple(B.shape)}")
            # each B_i was drawn for its own width, so per_layer needs no further sqrt(l_max/l_i)
            yield point, h, (self.options.scale * (flat @ B)).reshape(h.shape).to(h.dtype)


def _feedback_seed(run_seed: int) -> int:
    # Decoupled from the run seed's global stream, but still a function of it.
    return 1_000_003 * (run_seed + 1) + 7


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


# Alternative placements a model may offer through tagged points (see engine/points.py).
register_variant("dfa-micro", DFA, "DFA also at the points tagged 'micro' (three per Transformer block)",
                 requires_tags=frozenset({"micro"}), tags=["default", "micro"])
register_variant("dfa-head", DFA, "DFA at the head's points only; BP inside the blocks tagged 'conv'",
                 requires_tags=frozenset({"conv"}), tags=["default"])
