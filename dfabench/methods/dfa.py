"""Direct feedback alignment (Nøkland 2016; Launay et al. 2020).

One step:
1. forward in ``cut`` mode: each feedback point hands a detached copy upward and keeps its
   graph-carrying input ``h_i``; the output marker hands the loss a leaf;
2. ``loss.backward()`` stops at that leaf: ``e = dL/d(output)``; it also applies any gradient the loss
   gives parameters directly (L1/L2 terms, parameters above the output marker);
3. the projection ``e B`` is computed once for all points of a group, sliced per point, following a
   plan made once per set of shapes (``engine/projection.py``: sizes, slices, scales, checks);
4. one direct autograd engine call over the output and every ``h_i``: the output layer gets
   its true gradient, every block below a point gets ``dW = ((B_i e) * f'(a_i)) h_{i-1}^T`` (autograd
   applies f' locally since points sit after the non-linearity). Block inputs do not require grad,
   so no dX is computed across cuts. The roots are handed over as graph edges, with no reference to
   the ``h_i`` kept, so each block's activations are freed when its backward is done, as under BP.
"""
from __future__ import annotations

import torch

from ..engine.feedback import FeedbackMatrices, FeedbackOptions
from ..engine.projection import FeedbackShapeError, ProjectionPlans, inject, root_of  # noqa: F401  (re-exported)
from ..engine.points import DEFAULT_GROUP
from ..engine.points import probe_forward as run_probe
from ..engine.router import OutputRecord, feature_size
from .base import Method
from .registry import register, register_variant


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
        try:
            returned = run_probe(model, probe_forward)
        finally:
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
        self.plans = ProjectionPlans(self.matrices, self.options)
        # The injected signals of the last step, kept only when asked (gradients(), which the
        # alignment probe calls, or keep_signals): otherwise they would live through the optimiser step.
        self.keep_signals = False
        self.last_signals: list[tuple[object, torch.Tensor]] = []

    def _backward(self, output, loss_fn, params):
        outputs, points = self.router.take()
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

        plans = self.plans.lookup(outputs, points)
        keep = params is not None or self.keep_signals  # only the alignment probe reads the signals
        # Into .grad, the roots go to the engine as graph edges and no reference to the tensors is kept
        # (the router's records are dropped here): each block's output h_i then lives only in its
        # graph's saved tensors, which the engine frees block by block, as it frees BP's. Held as
        # tensors, every h_i would stay alive until the last block's backward (a higher peak than BP's).
        roots, signals, self.last_signals = self._deliveries(outputs, errors, plans, points, keep,
                                                            edges=params is None)
        del outputs, points, errors

        if params is None:
            if roots:
                inject(roots, signals)
            return loss, None
        injected = torch.autograd.grad(roots, params, signals, allow_unused=True) if roots else [None] * len(params)
        return loss, [_add(a, b) for a, b in zip(local, injected)]

    def _deliveries(self, outputs, errors, plans, points, keep: bool, edges: bool):
        """The engine's roots (tensors, or their graph edges when ``edges``) with their signals: each
        output's own error, then every point's share of the projection; and the kept (point, signal)s."""
        root = root_of if edges else _tensor
        kept: list[tuple[object, torch.Tensor]] = []
        roots, signals = [], []
        for record, error, plan in zip(outputs, errors, plans):
            if error is None:
                error = torch.zeros_like(record.leaf)
            if record.value.requires_grad:
                roots.append(root(record.value))
                signals.append(error)
            if plan is not None:
                for index, signal in plan.signals(self._feedback_error(record, error)):
                    roots.append(root(points[index][1]))
                    signals.append(signal)
                    if keep:
                        kept.append((points[index][0], signal))
        return roots, signals, kept

    def _feedback_error(self, record: OutputRecord, error: torch.Tensor) -> torch.Tensor:
        """What is projected to the points: the output error e (DRTP projects the target instead)."""
        return error


def _feedback_seed(run_seed: int) -> int:
    # Decoupled from the run seed's global stream, but still a function of it.
    return 1_000_003 * (run_seed + 1) + 7


def _tensor(t: torch.Tensor) -> torch.Tensor:
    return t


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
# Other feedback matrices (survey 001, DFA variants), options of ``FeedbackOptions`` (engine/feedback.py),
# so any of them also combines with plain ``dfa`` (``method_options: {per_point: true}`` for
# independent matrices per point).
register_variant("dfa-sparse", DFA, "DFA with a sparse feedback matrix (10% of entries; single_connection: one per unit)",
                 density=0.1)
register_variant("dfa-sign", DFA, "DFA with a binary +-1 feedback matrix (scaled like the uniform one)",
                 distribution="sign")
