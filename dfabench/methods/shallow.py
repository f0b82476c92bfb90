"""Shallow control: the graph is cut at every feedback point and nothing is injected.

Only the layers above the last point learn; the paper's control in every table. The layers below
stay exactly as initialised: a loss term that reaches them without going through the output (an
L1/L2 penalty on all weights) is not applied to them either, or the control would shrink its own
random features instead of leaving them fixed.
"""
import torch

from ..engine.router import configured
from .base import Method
from .registry import register


@register
class Shallow(Method):
    name = "shallow"
    summary = "cut at every feedback point, inject nothing: only the top learns"
    router_mode = "cut"
    records = False

    def prepare(self, model, probe_forward, seed):
        super().prepare(model, probe_forward, seed)
        params = [p for p in model.parameters() if p.requires_grad]
        was_training = model.training
        model.eval()  # no BatchNorm statistics update from this probe
        try:
            # Cut at every point, output markers as the identity: what the model returns reaches
            # exactly the parameters above the last cut, wherever the error would be taken (a
            # decoder above a FeedbackOutput at its input learns; the blocks below the cuts do not).
            with configured(self.router, "cut", record=False), torch.enable_grad():
                roots = [t.sum() for t in _tensors(probe_forward()) if t.requires_grad]
                reach = torch.autograd.grad(roots, params, allow_unused=True) if roots else [None] * len(params)
        finally:
            model.train(was_training)
        self.frozen = {id(p) for p, g in zip(params, reach) if g is None}

    def _backward(self, output, loss_fn, params):
        loss = loss_fn(output)
        if params is None:
            loss.backward()
            for p in self.model.parameters():
                if id(p) in self.frozen:
                    p.grad = None
            return loss, None
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return loss, [None if id(p) in self.frozen else g for p, g in zip(params, grads)]


def _tensors(value):
    """Every tensor in what a model returned (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
